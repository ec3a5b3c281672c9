"""Retrieval then ranking over a time split, as the stage and the benchmark run it.

1. Fit the retrievers on the train window (up to ``t1``) and take candidates for the users of
   the validation window; label them with what those users did in the window; fit the ranker
   on features as of ``t1`` (nothing from the window leaks into its own features).
2. Refit the retrievers on train + validation (up to ``t2``) and rank the test users'
   candidates with features as of ``t2``. The test window is never seen before scoring.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlsd_ray.recsys.baselines import ItemToItem, Popular, PureSVD, RecentPopular, Recommender
from mlsd_ray.recsys.data import ITEM, TS, USER, RecData, relevant_items, seen_items
from mlsd_ray.recsys.metrics import evaluate_lists
from mlsd_ray.recsys.ranker import (
    LABEL,
    LambdaRanker,
    Target,
    add_labels,
    candidates,
    join_views,
    score_pairs,
)
from mlsd_ray.recsys.train import TwoTowerRecommender, train_two_tower
from mlsd_ray.recsys.two_tower import TwoTowerParams
from mlsd_ray.recsys.views import item_view, user_view

log = logging.getLogger(__name__)


@dataclass
class TwoStageConfig:
    #: retriever name -> candidates it adds per user
    retrieve: dict[str, int] = field(
        default_factory=lambda: {"two_tower": 100, "recent_popular": 50}
    )
    #: retrievers whose score is a ranker feature
    score_with: tuple[str, ...] = ("two_tower", "item2item", "mf")
    target: Target = "interaction"
    two_tower: dict[str, Any] = field(default_factory=dict)
    #: LightGBM lambdarank: small trees; with about 700 users in the label window bigger ones
    #: fit noise (BENCHMARKS.md, recsys).
    ranker: dict[str, Any] = field(
        default_factory=lambda: {"num_leaves": 7, "rounds": 150, "min_data_in_leaf": 50}
    )
    #: Per-user constants the ranker overfits on (demographics reach it through the two tower).
    drop_features: tuple[str, ...] = ("u_age", "u_gender", "u_occupation")
    mf_factors: int = 64
    half_life_days: float = 7.0


def fit_retrievers(
    history: pd.DataFrame,
    data: RecData,
    cfg: TwoStageConfig,
    storage_path: str | None = None,
    name: str = "two_tower",
) -> dict[str, Recommender]:
    items = [str(i) for i in data.item_ids]
    now = float(history[TS].max())
    tt = train_two_tower(
        history, items, data.users, data.items, TwoTowerParams(**cfg.two_tower), storage_path, name
    )
    models: list[Recommender] = [
        Popular(items).fit(history),
        RecentPopular(items, cfg.half_life_days).fit(history, now),
        PureSVD(items, cfg.mf_factors).fit(history),
        ItemToItem(items).fit(history),
        TwoTowerRecommender(tt),
    ]
    return {m.name: m for m in models}


def pair_frame(
    users: Sequence[str],
    retrievers: Mapping[str, Recommender],
    history: pd.DataFrame,
    data: RecData,
    now: float,
    cfg: TwoStageConfig,
) -> pd.DataFrame:
    """Candidates of ``users`` with every ranker feature as of ``now``."""
    seen = seen_items(history)
    pairs = candidates(users, [(retrievers[n], k) for n, k in cfg.retrieve.items()], seen)
    pairs = score_pairs(pairs, [retrievers[n] for n in cfg.score_with])
    return join_views(
        pairs, user_view(history, data.users, now), item_view(history, data.items, now)
    )


def fit_ranker(
    train: pd.DataFrame,
    val: pd.DataFrame,
    data: RecData,
    cfg: TwoStageConfig,
    storage_path: str | None = None,
) -> LambdaRanker:
    retrievers = fit_retrievers(train, data, cfg, storage_path, "two_tower_ranker_window")
    t1 = float(val[TS].min())
    users = sorted(set(val["user_id"]))
    frame = add_labels(pair_frame(users, retrievers, train, data, t1, cfg), val, cfg.target)
    log.info("ranker: %d pairs, %.3f positive", len(frame), float((frame["label"] > 0).mean()))
    features = [c for c in frame.columns if c not in (USER, ITEM, LABEL, *cfg.drop_features)]
    return LambdaRanker(features, **cfg.ranker).fit(frame)


def recommend_two_stage(
    users: Sequence[str],
    retrievers: Mapping[str, Recommender],
    ranker: LambdaRanker,
    history: pd.DataFrame,
    data: RecData,
    now: float,
    cfg: TwoStageConfig,
    k: int,
) -> list[list[str]]:
    frame = pair_frame(users, retrievers, history, data, now, cfg)
    _, ranked, _ = ranker.rank(frame, k)
    return [ranked.get(u, []) for u in users]


def evaluate_systems(
    train: pd.DataFrame,
    val: pd.DataFrame,
    test: pd.DataFrame,
    data: RecData,
    cfg: TwoStageConfig,
    storage_path: str | None = None,
    n_resamples: int = 500,
    min_rating: float | None = None,
) -> dict[str, Any]:
    """Every system's report on the test window: the baselines, MF, item-to-item, the two-tower
    model and the two-stage system (two-tower + recently popular candidates, then the ranker)."""
    ranker = fit_ranker(train, val, data, cfg, storage_path)
    history = pd.concat([train, val], ignore_index=True)
    retrievers = fit_retrievers(history, data, cfg, storage_path, "two_tower_test_window")
    t2 = float(test[TS].min())
    truth = relevant_items(test, min_rating)
    users = sorted(truth)
    seen = seen_items(history)
    relevant = [{i: 1.0 for i in truth[u]} for u in users]
    counts = np.array([len(seen.get(u, ())) for u in users])
    popularity = dict(
        zip(retrievers["popular"].items, retrievers["popular"].popularity, strict=True)
    )
    n_items = len(data.item_ids)
    lists = {name: rec.recommend(users, 100, seen)[0] for name, rec in retrievers.items()}
    lists["two_stage"] = recommend_two_stage(users, retrievers, ranker, history, data, t2, cfg, 100)
    return {
        name: evaluate_lists(recs, relevant, counts, popularity, n_items, (10, 100), n_resamples)
        for name, recs in lists.items()
    }
