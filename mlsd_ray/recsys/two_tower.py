"""The two-tower retrieval model: a user tower and an item tower that map ids and side features
to unit vectors whose dot product scores a (user, item) pair. No Ray here (``train.py`` drives it
with Ray Train) and no pickle: weights are safetensors, encoders JSON.

Training uses in-batch softmax over the other items of the batch with the logQ correction (Yi
et al. 2019): an item's logit loses log(its sampling probability), or popular items, which are
in-batch negatives more often, would be pushed down. A share of users (``id_dropout``) is shown
as "unknown" so the user tower also learns to recommend from demographics alone, which is what a
cold user gets at serving time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from mlsd_ray.recsys.data import ITEM, USER

WEIGHTS, ENCODERS, PARAMS = "two_tower.safetensors", "encoders.json", "params.json"


class TwoTowerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dim: int = 32
    hidden: int = 64
    epochs: int = 8
    batch_size: int = 512
    lr: float = 0.005
    weight_decay: float = 1e-6
    temperature: float = 0.1
    id_dropout: float = 0.1
    logq_correction: bool = True
    seed: int = 0
    num_workers: int = 1  # 0: train in the driver
    cpus_per_worker: int = 1


def _bucket_age(age: Any) -> int:
    try:
        a = int(age)
    except (TypeError, ValueError):
        return 0
    return 1 + min(a // 10, 7)


def _year(value: Any) -> int:
    try:
        return 1 + max(0, min((int(value) - 1920) // 10, 9))
    except (TypeError, ValueError):
        return 0


@dataclass
class Encoders:
    """Id and side-feature vocabularies; index 0 is "unknown" in every one of them."""

    users: list[str]
    items: list[str]
    genders: list[str]
    occupations: list[str]
    genres: list[str]

    @classmethod
    def fit(
        cls,
        train: pd.DataFrame,
        items: Sequence[str],
        users: pd.DataFrame,
        item_table: pd.DataFrame,
    ) -> Encoders:
        def vocab(frame: pd.DataFrame, col: str) -> list[str]:
            return sorted(set(frame[col].astype(str))) if col in frame else []

        genres = sorted({g for v in item_table.get("class", []) for g in str(v).split() if g})
        return cls(
            users=sorted(set(train[USER])),
            items=[str(i) for i in items],
            genders=vocab(users, "gender"),
            occupations=vocab(users, "occupation"),
            genres=genres,
        )

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> Encoders:
        return cls(**json.loads(text))

    @staticmethod
    def _lookup(vocab: list[str], values: Sequence[Any]) -> np.ndarray:
        index = {v: i + 1 for i, v in enumerate(vocab)}
        return np.array([index.get(str(v), 0) for v in values], dtype=np.int64)

    def user_arrays(self, user_ids: Sequence[str], users: pd.DataFrame) -> dict[str, np.ndarray]:
        table = users.set_index(USER) if USER in users else pd.DataFrame()
        rows = table.reindex([str(u) for u in user_ids])
        return {
            "user": self._lookup(self.users, user_ids),
            "age": np.array([_bucket_age(a) for a in rows.get("age", [None] * len(rows))]),
            "gender": self._lookup(self.genders, rows.get("gender", [None] * len(rows))),
            "occupation": self._lookup(
                self.occupations, rows.get("occupation", [None] * len(rows))
            ),
        }

    def item_arrays(self, item_table: pd.DataFrame) -> dict[str, np.ndarray]:
        table = item_table.set_index(ITEM) if ITEM in item_table else pd.DataFrame()
        rows = table.reindex(self.items)
        genre_index = {g: i for i, g in enumerate(self.genres)}
        multi_hot = np.zeros((len(self.items), max(len(self.genres), 1)), dtype=np.float32)
        for r, value in enumerate(rows.get("class", [None] * len(rows))):
            for g in str(value).split() if isinstance(value, str) else []:
                if g in genre_index:
                    multi_hot[r, genre_index[g]] = 1.0
        years = rows.get("release_year", [None] * len(rows))
        return {
            "item": np.arange(1, len(self.items) + 1, dtype=np.int64),
            "year": np.array([_year(y) for y in years], dtype=np.int64),
            "genres": multi_hot,
        }


class TwoTowerNet(nn.Module):
    def __init__(self, enc: Encoders, p: TwoTowerParams) -> None:
        super().__init__()
        side = 8
        self.user = nn.Embedding(len(enc.users) + 1, p.dim)
        self.age = nn.Embedding(9, side)
        self.gender = nn.Embedding(len(enc.genders) + 1, side)
        self.occupation = nn.Embedding(len(enc.occupations) + 1, side)
        self.item = nn.Embedding(len(enc.items) + 1, p.dim)
        self.year = nn.Embedding(11, side)
        self.genres = nn.Linear(max(len(enc.genres), 1), side, bias=False)
        self.user_mlp = nn.Sequential(
            nn.Linear(p.dim + 3 * side, p.hidden), nn.ReLU(), nn.Linear(p.hidden, p.dim)
        )
        self.item_mlp = nn.Sequential(
            nn.Linear(p.dim + 2 * side, p.hidden), nn.ReLU(), nn.Linear(p.hidden, p.dim)
        )

    def users(self, u: dict[str, torch.Tensor]) -> torch.Tensor:
        x = torch.cat(
            [self.user(u["user"]), self.age(u["age"]), self.gender(u["gender"]),
             self.occupation(u["occupation"])],
            dim=1,
        )  # fmt: skip
        return F.normalize(self.user_mlp(x), dim=1)

    def items(self, i: dict[str, torch.Tensor]) -> torch.Tensor:
        x = torch.cat([self.item(i["item"]), self.year(i["year"]), self.genres(i["genres"])], 1)
        return F.normalize(self.item_mlp(x), dim=1)

    def forward(self, u: dict[str, torch.Tensor], i: dict[str, torch.Tensor]) -> torch.Tensor:
        """(users x items) similarities; DDP wraps this call."""
        return self.users(u) @ self.items(i).T


@dataclass
class TrainArrays:
    """Everything a worker needs, as plain arrays (put in the object store once)."""

    user_cols: dict[str, np.ndarray]  # one row per interaction
    item_rows: np.ndarray  # catalogue row of each interaction's item
    item_cols: dict[str, np.ndarray]  # one row per catalogue item
    log_q: np.ndarray  # log sampling probability of each catalogue item


def train_arrays(
    enc: Encoders, train: pd.DataFrame, users: pd.DataFrame, item_table: pd.DataFrame
) -> TrainArrays:
    user_cols = enc.user_arrays(train[USER].tolist(), users)
    item_rows = Encoders._lookup(enc.items, train[ITEM].tolist()) - 1
    keep = item_rows >= 0
    counts = np.bincount(item_rows[keep], minlength=len(enc.items)) + 1.0
    return TrainArrays(
        user_cols={k: v[keep] for k, v in user_cols.items()},
        item_rows=item_rows[keep],
        item_cols=enc.item_arrays(item_table),
        log_q=np.log(counts / counts.sum()).astype(np.float32),
    )


def _tensors(cols: dict[str, np.ndarray], rows: np.ndarray | slice) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v[rows]) for k, v in cols.items()}


def fit_two_tower(
    net: nn.Module,
    data: TrainArrays,
    p: TwoTowerParams,
    rank: int = 0,
    world: int = 1,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """The training loop, shared by the driver and the Ray Train workers (each rank trains on
    ``rows[rank::world]``, truncated to equal shards so DDP's allreduce never waits)."""
    torch.manual_seed(p.seed + rank)
    rng = np.random.default_rng(p.seed + rank)
    n = len(data.item_rows) // world
    mine = np.arange(rank, len(data.item_rows), world)[:n]
    opt = torch.optim.Adam(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    log_q = torch.tensor(data.log_q)
    history: list[dict[str, Any]] = []
    for epoch in range(p.epochs):
        started, total, batches = time.perf_counter(), 0.0, 0
        order = mine[rng.permutation(n)]
        for start in range(0, n, p.batch_size):
            rows = order[start : start + p.batch_size]
            u = _tensors(data.user_cols, rows)
            if p.id_dropout > 0:
                u["user"] = torch.where(torch.rand(len(rows)) < p.id_dropout, 0, u["user"])
            item_rows = data.item_rows[rows]
            i = _tensors(data.item_cols, item_rows)
            logits = net(u, i) / p.temperature
            if p.logq_correction:
                logits = logits - log_q[torch.tensor(item_rows)][None, :]
            # The same item twice in a batch is not a negative of itself.
            same = torch.tensor(item_rows[:, None] == item_rows[None, :])
            logits = logits.masked_fill(same & ~torch.eye(len(rows), dtype=torch.bool), -1e9)
            loss = F.cross_entropy(logits, torch.arange(len(rows)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, batches = total + float(loss.detach()), batches + 1
        record = {
            "epoch": epoch,
            "train_loss": total / max(batches, 1),
            "samples_per_s": n / max(time.perf_counter() - started, 1e-9),
        }
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return history


class TwoTowerModel:
    """A fitted two-tower model: encoders, net, and the side tables it encodes requests with."""

    def __init__(
        self,
        enc: Encoders,
        p: TwoTowerParams,
        net: TwoTowerNet,
        users: pd.DataFrame,
        item_table: pd.DataFrame,
    ) -> None:
        self.enc, self.params, self.net = enc, p, net.eval()
        self.users_table = users
        self.item_table = item_table
        self.history_: list[dict[str, Any]] = []

    @torch.no_grad()
    def user_vectors(self, user_ids: Sequence[str]) -> np.ndarray:
        cols = self.enc.user_arrays([str(u) for u in user_ids], self.users_table)
        return self.net.users(_tensors(cols, slice(None))).numpy()

    @torch.no_grad()
    def item_vectors(self) -> np.ndarray:
        return self.net.items(_tensors(self.enc.item_arrays(self.item_table), slice(None))).numpy()

    def save(self, folder: str | Path) -> None:
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, out / WEIGHTS)
        (out / ENCODERS).write_text(self.enc.to_json())
        (out / PARAMS).write_text(self.params.model_dump_json())
        self.users_table.to_parquet(out / "users.parquet", index=False)
        self.item_table.to_parquet(out / "items.parquet", index=False)

    @classmethod
    def load(cls, folder: str | Path) -> TwoTowerModel:
        src = Path(folder)
        enc = Encoders.from_json((src / ENCODERS).read_text())
        p = TwoTowerParams.model_validate_json((src / PARAMS).read_text())
        net = TwoTowerNet(enc, p)
        net.load_state_dict(load_file(str(src / WEIGHTS)))
        users = pd.read_parquet(src / "users.parquet")
        items = pd.read_parquet(src / "items.parquet")
        return cls(enc, p, net, users, items)
