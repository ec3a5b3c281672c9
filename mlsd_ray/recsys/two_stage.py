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
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from mlsd_ray.recsys.baselines import ItemToItem, Popular, PureSVD, RecentPopular, Recommender
from mlsd_ray.recsys.data import ITEM, TS, USER, RecData, relevant_items, seen_items
from mlsd_ray.recsys.metrics import evaluate_lists, per_user_metrics
from mlsd_ray.recsys.pair_features import add_affinity, add_ranks, genre_matrix
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
    #: per-user ranks of the retrieval scores and the user-item genre affinity (pair_features)
    pair_features: bool = True
    #: drop the items a user has interacted with (not for ads, which are shown again)
    filter_seen: bool = True
    #: label windows the ranker learns from, back in time from the validation window
    label_windows: int = 1


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
    exclude = seen if cfg.filter_seen else {}
    pairs = candidates(users, [(retrievers[n], k) for n, k in cfg.retrieve.items()], exclude)
    pairs = score_pairs(pairs, [retrievers[n] for n in cfg.score_with])
    if cfg.pair_features:
        pairs = add_ranks(pairs, [f"{n}_score" for n in cfg.score_with])
        catalogue = [str(i) for i in data.item_ids]
        rows = {item: j for j, item in enumerate(catalogue)}
        pairs = add_affinity(pairs, seen, genre_matrix(data.items, catalogue), rows)
    return join_views(
        pairs, user_view(history, data.users, now), item_view(history, data.items, now)
    )


def label_windows(
    train: pd.DataFrame, val: pd.DataFrame, n: int
) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """``n`` (history, label window) pairs back in time: (train, val) first, then the same
    number of rows as ``val`` just before it, labelled from the history before that, and so on.
    More windows give the ranker more users to learn from; every one ends before ``val``'s end."""
    out = [(train, val)]
    history = train
    for _ in range(n - 1):
        if len(history) <= 2 * len(val):
            break
        cut = float(history[TS].iloc[-len(val)])
        ts = history[TS].to_numpy()
        out.append((history[ts < cut], history[ts >= cut]))
        history = history[ts < cut]
    return out


def fit_ranker(
    train: pd.DataFrame,
    val: pd.DataFrame,
    data: RecData,
    cfg: TwoStageConfig,
    storage_path: str | None = None,
    retrievers: Mapping[str, Recommender] | None = None,
    cache: dict[int, Mapping[str, Recommender]] | None = None,
) -> LambdaRanker:
    """The ranker on the candidates of the label windows' users (``label_windows``), labelled
    by what they did in the window, with features as of its start. Retrievers are fitted on
    each window's history (the first one's may be given; ``cache`` keeps them by history size)."""
    cache = {} if cache is None else cache
    if retrievers is not None:
        cache[len(train)] = retrievers
    frames = []
    for w, (history, window) in enumerate(label_windows(train, val, cfg.label_windows)):
        if len(history) not in cache:
            name = f"two_tower_ranker_window_{w}"
            cache[len(history)] = fit_retrievers(history, data, cfg, storage_path, name)
        users = sorted(set(window[USER]))
        now = float(window[TS].min())
        frame = pair_frame(users, cache[len(history)], history, data, now, cfg)
        frame = add_labels(frame, window, cfg.target)
        frame[USER] = f"{w}:" + frame[USER]  # a user of two windows is two ranking groups
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
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


def select_config(
    train: pd.DataFrame,
    val: pd.DataFrame,
    data: RecData,
    base: TwoStageConfig,
    variants: Mapping[str, Mapping[str, Any]],
    storage_path: str | None = None,
) -> tuple[str, dict[str, float]]:
    """Choose the two-stage settings on the validation window only, never the test window.

    The last eighth of ``train`` (as long as ``val`` in the 80/10/10 split) labels the ranker,
    the retrievers refit on all of ``train`` retrieve for ``val``'s users, and each variant (a
    change of ``base``'s ranker-side fields) is scored by NDCG@10 on ``val``. Returns the best
    variant's name and every variant's score."""
    ts = train[TS].to_numpy()
    cut = float(np.quantile(ts, 0.875))
    inner, inner_val = train[ts < cut], train[ts >= cut]
    label_side = fit_retrievers(inner, data, base, storage_path, "two_tower_select_label")
    rank_side = fit_retrievers(train, data, base, storage_path, "two_tower_select_rank")
    truth = relevant_items(val)
    users = sorted(truth)
    relevant = [{i: 1.0 for i in truth[u]} for u in users]
    now = float(val[TS].min())
    scores: dict[str, float] = {}
    cache: dict[int, Mapping[str, Recommender]] = {}
    for name, change in variants.items():
        cfg = replace(base, **change)
        ranker = fit_ranker(inner, inner_val, data, cfg, storage_path, label_side, cache)
        lists = recommend_two_stage(users, rank_side, ranker, train, data, now, cfg, 10)
        scores[name] = float(np.nanmean(per_user_metrics(lists, relevant, (10,))["ndcg@10"]))
        log.info("select: %s NDCG@10 on validation %.4f", name, scores[name])
    return max(scores, key=lambda n: scores[n]), scores
