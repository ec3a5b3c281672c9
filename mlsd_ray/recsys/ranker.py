"""The second stage: candidates from the retrievers, features per (user, item) pair, and a
LightGBM lambdarank model that orders them per user.

Pair features are the user view, the item view (``views.py``, the same columns the online store
serves) and each retriever's score for the pair. The target comes from the card: ``interaction``
(1 when the user interacted with the item in the label window) or ``rating`` (the rating given,
0 when none), a graded relevance for lambdarank.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import lightgbm as lgb
import numpy as np
import pandas as pd

from mlsd_ray.errors import DataError
from mlsd_ray.recsys.baselines import Recommender
from mlsd_ray.recsys.data import ITEM, RATING, USER
from mlsd_ray.recsys.views import EVENT_TS, ITEM_FEATURES, USER_FEATURES

log = logging.getLogger(__name__)
Target = Literal["interaction", "rating"]
MODEL, META = "ranker.txt", "ranker.json"
LABEL = "label"


def candidates(
    users: Sequence[str],
    retrievers: Sequence[tuple[Recommender, int]],
    seen: Mapping[str, set[str]],
) -> pd.DataFrame:
    """The union of each retriever's top n unseen items per user, one row per (user, item)."""
    rows: list[tuple[str, str]] = []
    for rec, n in retrievers:
        lists, _ = rec.recommend(list(users), n, seen)
        rows += [(u, i) for u, items in zip(users, lists, strict=True) for i in items]
    return pd.DataFrame(rows, columns=[USER, ITEM]).drop_duplicates(ignore_index=True)


def score_pairs(pairs: pd.DataFrame, scorers: Sequence[Recommender]) -> pd.DataFrame:
    """Add ``<name>_score`` of every scorer for every pair (dense per user: small catalogues)."""
    out = pairs.copy()
    users = list(pd.unique(pairs[USER]))
    row_of = {u: r for r, u in enumerate(users)}
    for rec in scorers:
        dense = rec.score(users)
        cols = pairs[ITEM].map(rec.item_index).fillna(-1).astype(int).to_numpy()
        rows = pairs[USER].map(row_of).to_numpy()
        vals = dense[rows, np.clip(cols, 0, None)]
        out[f"{rec.name}_score"] = np.where(cols >= 0, vals, 0.0)
    return out


def join_views(
    pairs: pd.DataFrame, user_feats: pd.DataFrame, item_feats: pd.DataFrame
) -> pd.DataFrame:
    """Pairs with the user and item features (one snapshot each; defaults where absent)."""
    from mlsd_ray.recsys.views import DEFAULTS

    out = pairs.merge(user_feats.drop(columns=[EVENT_TS], errors="ignore"), on=USER, how="left")
    out = out.merge(item_feats.drop(columns=[EVENT_TS], errors="ignore"), on=ITEM, how="left")
    return out.fillna({f: DEFAULTS[f] for f in (*USER_FEATURES, *ITEM_FEATURES)})


def add_labels(pairs: pd.DataFrame, window: pd.DataFrame, target: Target) -> pd.DataFrame:
    """The label of each pair from the interactions in the label ``window``."""
    got = window.groupby([USER, ITEM], as_index=False)[RATING].max()
    out = pairs.merge(got, on=[USER, ITEM], how="left")
    hit = out.pop(RATING)
    out[LABEL] = (
        hit.notna().astype(int) if target == "interaction" else hit.fillna(0).round().astype(int)
    )
    return out


class LambdaRanker:
    """LightGBM lambdarank over the pair features; groups are users."""

    def __init__(self, features: Sequence[str] | None = None, **params: float | int) -> None:
        self.features = list(features or [])
        self.params = {
            "objective": "lambdarank",
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_data_in_leaf": 20,
            "lambdarank_truncation_level": 20,
            "verbose": -1,
            "num_threads": 1,
            "seed": 0,
            **params,
        }
        self.rounds = int(self.params.pop("rounds", 300))
        self.booster: lgb.Booster | None = None

    def fit(self, frame: pd.DataFrame) -> LambdaRanker:
        frame = frame.sort_values(USER, kind="stable")
        useful = (
            frame.groupby(USER)[LABEL].transform("max") > 0
        )  # a group with no positive teaches nothing
        frame = frame[useful]
        if frame.empty:
            raise DataError(
                "ranker: no user has a positive among its candidates in the label window.",
                fix="retrieve more candidates or use a longer label window",
            )
        if not self.features:
            self.features = [c for c in frame.columns if c not in (USER, ITEM, LABEL)]
        groups = frame.groupby(USER, sort=False).size().to_numpy()
        data = lgb.Dataset(
            frame[self.features].to_numpy(np.float64), frame[LABEL].to_numpy(), group=groups
        )
        self.booster = lgb.train(self.params, data, num_boost_round=self.rounds)
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if self.booster is None:
            raise DataError("ranker: predict before fit.", fix="fit or load the ranker first")
        out = self.booster.predict(frame[self.features].to_numpy(np.float64), num_threads=1)
        return np.asarray(out, dtype=np.float64)

    def rank(
        self, frame: pd.DataFrame, k: int
    ) -> tuple[list[str], dict[str, list[str]], dict[str, list[float]]]:
        """Per user, the top k items by ranker score (best first) and their scores."""
        scored = frame.assign(_s=self.predict(frame)).sort_values(
            [USER, "_s"], ascending=[True, False], kind="stable"
        )
        top = scored.groupby(USER, sort=False).head(k)
        items = top.groupby(USER, sort=False)[ITEM].apply(list).to_dict()
        scores = top.groupby(USER, sort=False)["_s"].apply(list).to_dict()
        return list(items), items, scores

    def save(self, folder: str | Path) -> None:
        assert self.booster is not None
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(out / MODEL))
        (out / META).write_text(json.dumps({"features": self.features, "params": self.params}))

    @classmethod
    def load(cls, folder: str | Path) -> LambdaRanker:
        src = Path(folder)
        meta = json.loads((src / META).read_text())
        ranker = cls(meta["features"])
        ranker.booster = lgb.Booster(model_file=str(src / MODEL))
        return ranker
