"""Train the two-tower model with Ray Train's ``TorchTrainer`` (or in the driver when
``num_workers: 0``), and wrap it with its FAISS index as a :class:`Recommender`.

The driver encodes the interactions once and puts the arrays in the object store; each worker
trains on its shard with the same :func:`fit_two_tower` loop as the in-process path, DDP when
there are several. Rank 0's weights come back in the checkpoint (safetensors).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from mlsd_ray.errors import ModelError
from mlsd_ray.recsys.baselines import Recommender
from mlsd_ray.recsys.index import ItemIndex
from mlsd_ray.recsys.two_tower import (
    WEIGHTS,
    Encoders,
    TrainArrays,
    TwoTowerModel,
    TwoTowerNet,
    TwoTowerParams,
    fit_two_tower,
    train_arrays,
)

log = logging.getLogger(__name__)


def train_worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: one copy per worker."""
    import ray
    import ray.train
    import ray.train.torch

    p = TwoTowerParams.model_validate(config["params"])
    torch.set_num_threads(p.cpus_per_worker)
    enc = Encoders.from_json(config["encoders"])
    data: TrainArrays = ray.get(config["data"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    net = TwoTowerNet(enc, p)
    model = ray.train.torch.prepare_model(net) if world > 1 else net
    history: list[dict[str, Any]] = []

    def on_epoch(record: dict[str, Any]) -> None:
        history.append(record)
        if len(history) < p.epochs:
            ray.train.report(record)
            return
        with tempfile.TemporaryDirectory(prefix="mlsd-two-tower-") as tmp:
            checkpoint = None
            if rank == 0:
                state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
                save_file(state, str(Path(tmp) / WEIGHTS))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(record, checkpoint=checkpoint)

    fit_two_tower(model, data, p, rank=rank, world=world, on_epoch=on_epoch)


def train_two_tower(
    train: pd.DataFrame,
    items: Sequence[str],
    users: pd.DataFrame,
    item_table: pd.DataFrame,
    params: TwoTowerParams | Mapping[str, Any] | None = None,
    storage_path: str | None = None,
    name: str = "two_tower",
) -> TwoTowerModel:
    """Fit the two-tower model on ``train`` interactions; Ray Train unless ``num_workers: 0``."""
    p = (
        params
        if isinstance(params, TwoTowerParams)
        else TwoTowerParams.model_validate(params or {})
    )
    if len(train) == 0:
        raise ModelError(f"{name}: no training interactions.", fix="check the split")
    enc = Encoders.fit(train, items, users, item_table)
    data = train_arrays(enc, train, users, item_table)
    net = TwoTowerNet(enc, p)
    if p.num_workers == 0:
        threads = torch.get_num_threads()
        torch.set_num_threads(p.cpus_per_worker)
        try:
            history = fit_two_tower(net, data, p)
        finally:
            torch.set_num_threads(threads)
    else:
        net.load_state_dict(_run_trainer(p, enc, data, name, storage_path))
        history = []
    model = TwoTowerModel(enc, p, net, users, item_table)
    model.history_ = history
    return model


def _run_trainer(
    p: TwoTowerParams, enc: Encoders, data: TrainArrays, name: str, storage_path: str | None
) -> dict[str, torch.Tensor]:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from mlsd_ray.train.mlp import storage_args

    run_config = RunConfig(name=name, **(storage_args(storage_path) if storage_path else {}))
    result = TorchTrainer(
        train_worker,
        train_loop_config={
            "params": p.model_dump(),
            "encoders": enc.to_json(),
            "data": ray.put(data),
        },
        scaling_config=ScalingConfig(
            num_workers=p.num_workers, resources_per_worker={"CPU": p.cpus_per_worker}
        ),
        run_config=run_config,
    ).fit()
    if result.checkpoint is None:
        raise ModelError(
            f"Ray Train run {name!r} finished without a checkpoint.",
            why="the training split produced no batches, or the worker failed",
            fix="check that the train split is not empty and see the worker logs above",
        )
    with result.checkpoint.as_directory() as folder:
        return load_file(str(Path(folder) / WEIGHTS))


class TwoTowerRecommender(Recommender):
    """Candidates from the two-tower model: the user's vector searched in the FAISS index of the
    item vectors; seen items are dropped after an over-fetch of as many as the user has seen."""

    name = "two_tower"

    def __init__(self, model: TwoTowerModel, index: ItemIndex | None = None) -> None:
        super().__init__(model.enc.items)
        self.model = model
        self.index = index or ItemIndex.build(model.item_vectors(), model.enc.items)

    def score(self, users: Sequence[str]) -> np.ndarray:
        return self.model.user_vectors(users) @ self.model.item_vectors().T

    def recommend(
        self, users: Sequence[str], k: int, seen: Mapping[str, set[str]] | None = None
    ) -> tuple[list[list[str]], np.ndarray]:
        seen = seen or {}
        extra = max((len(seen.get(u, ())) for u in users), default=0)
        found, scores = self.index.search(self.model.user_vectors(users), k + extra)
        lists, out = [], np.full((len(users), k), -np.inf)
        for row, (user, ids) in enumerate(zip(users, found, strict=True)):
            keep = [j for j, item in enumerate(ids) if item not in seen.get(user, ())][:k]
            lists.append([ids[j] for j in keep])
            out[row, : len(keep)] = scores[row, keep]
        return lists, out
