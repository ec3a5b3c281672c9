"""Recommendation data, per-user ranking metrics and the baselines (no Ray)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd_ray.metrics import ranking_metrics
from mlsd_ray.recsys.baselines import ItemToItem, Popular, PureSVD, RecentPopular
from mlsd_ray.recsys.data import load_movielens, normalise_interactions, time_split
from mlsd_ray.recsys.metrics import (
    activity_slice,
    bootstrap_over_users,
    coverage,
    evaluate_lists,
    per_user_metrics,
    popularity_bias,
)


def test_per_user_metrics_agree_with_evaluate_ranking_metrics() -> None:
    """Same definitions as the evaluation module's ranking_metrics: build its (group, relevance,
    score) rows from the lists, relevant items not recommended at the bottom."""
    rng = np.random.default_rng(3)
    catalogue = [f"i{j}" for j in range(40)]
    recs, rels, rows = [], [], []
    for u in range(25):
        ranked = list(rng.permutation(catalogue)[:15])
        relevant = {
            str(i): 1.0 for i in rng.choice(catalogue, size=int(rng.integers(1, 8)), replace=False)
        }
        recs.append(ranked)
        rels.append(relevant)
        for pos, item in enumerate(ranked):
            rows.append((u, relevant.get(item, 0.0), -pos))
        for item in relevant:
            if item not in ranked:
                rows.append((u, 1.0, -1000.0))
    g, y, s = (np.array(c) for c in zip(*rows, strict=True))
    for k in (5, 10):
        want = ranking_metrics(g, y, s, k=k)
        got = per_user_metrics(recs, rels, ks=(k,))
        for m in ("ndcg", "map", "recall"):
            assert np.nanmean(got[f"{m}@{k}"]) == pytest.approx(want[f"{m}@{k}"], abs=1e-9)


def test_graded_gains_perfect_order_is_one_and_no_relevant_is_nan() -> None:
    got = per_user_metrics([["a", "b", "c"], ["a"]], [{"a": 5, "b": 3, "c": 1}, {}], ks=(3,))
    assert got["ndcg@3"][0] == pytest.approx(1.0)
    assert np.isnan(got["ndcg@3"][1])
    swapped = per_user_metrics([["c", "b", "a"]], [{"a": 5, "b": 3, "c": 1}], ks=(3,))
    assert swapped["ndcg@3"][0] < 1.0


def test_coverage_popularity_bias_slices_and_bootstrap() -> None:
    recs = [["a", "b"], ["a", "c"]]
    assert coverage(recs, n_items=4, k=2) == pytest.approx(0.75)
    pop = {"a": 10.0, "b": 2.0, "c": 2.0, "d": 1.0}
    bias = popularity_bias(recs, [{"d": 1.0}, {"d": 1.0}], pop, k=2)
    assert bias == pytest.approx(np.mean([10, 2, 10, 2]) / 1.0)
    assert list(activity_slice(np.array([0, 5, 50, 500]))) == ["cold", "light", "medium", "heavy"]
    values = {"m": np.r_[np.zeros(50), np.ones(50)]}
    lo, hi = bootstrap_over_users(values, n_resamples=300)["m"]
    assert lo < 0.5 < hi and hi - lo < 0.4
    report = evaluate_lists(recs, [{"a": 1.0}, {"d": 1.0}], np.array([0, 200]), pop, 4, ks=(2,))
    assert report["slices"]["cold"]["ndcg@2"] == pytest.approx(1.0)
    assert report["slices"]["heavy"]["ndcg@2"] == pytest.approx(0.0)


def _toy() -> pd.DataFrame:
    rows = []
    # item "old" was popular long ago, "new" is popular lately, "x" co-occurs with "a".
    for u in range(10):
        rows.append((f"u{u}", "old", 1.0 + u))
    for u in range(6):
        rows.append((f"u{u}", "new", 1000.0 * 86400 + u))
    for u in range(4):
        rows += [(f"v{u}", "a", 5.0), (f"v{u}", "x", 6.0)]
    rows.append(("w", "a", 7.0))
    return normalise_interactions(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))


def test_baselines_rank_and_filter_seen() -> None:
    train = _toy()
    items = ["a", "new", "old", "x", "y"]
    seen = {"u0": {"old", "new"}}
    (top,), _ = Popular(items).fit(train).recommend(["u0"], 2, seen)
    assert "old" not in top and "new" not in top
    (top,), _ = Popular(items).fit(train).recommend(["nobody"], 1)
    assert top == ["old"]
    (top,), _ = RecentPopular(items, half_life_days=7).fit(train).recommend(["nobody"], 1)
    assert top == ["new"]
    for cls in (ItemToItem, PureSVD):
        model = cls(items).fit(train) if cls is ItemToItem else cls(items, factors=2).fit(train)
        (top,), _ = model.recommend(["w"], 1, {"w": {"a"}})
        assert top == ["x"], cls.name  # w watched a; x is what a's watchers also watched
        (cold,), _ = model.recommend(["nobody"], 1)
        assert cold == ["old"], cls.name  # no history: the popularity tie-break decides


def test_time_split_is_ordered_and_movielens_reads_in_place() -> None:
    data = load_movielens()
    assert len(data.interactions) == 100_000 and {"age", "gender"} <= set(data.users.columns)
    train, val, test = time_split(data.interactions)
    assert train["timestamp"].max() <= val["timestamp"].min()
    assert val["timestamp"].max() <= test["timestamp"].min()
    assert len(train) + len(val) + len(test) == 100_000
