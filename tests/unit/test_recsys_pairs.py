"""Pair features, label windows, the paired bootstrap over users and date-time timestamps
(no Ray)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd_ray.recsys.data import normalise_interactions
from mlsd_ray.recsys.metrics import paired_over_users
from mlsd_ray.recsys.pair_features import add_affinity, add_ranks, genre_matrix, rank_desc
from mlsd_ray.recsys.two_stage import label_windows


def test_ranks_per_user_and_ties_in_list_order() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b"],
            "item_id": list("xyzxy"),
            "mf_score": [0.1, 0.9, 0.9, 5.0, 7.0],
        }
    )
    out = add_ranks(frame, ["mf_score"])
    assert out["mf_rank"].tolist() == [3.0, 1.0, 2.0, 2.0, 1.0]
    assert rank_desc([0.1, 0.9, 0.9]).tolist() == [3.0, 1.0, 2.0]  # what the graph computes


def test_genre_affinity_is_the_cosine_with_the_seen_genres() -> None:
    items = pd.DataFrame({"item_id": ["1", "2", "3"], "class": ["Comedy", "Drama Comedy", "War"]})
    genres = genre_matrix(items, ["1", "2", "3"])
    pairs = pd.DataFrame({"user_id": ["u", "u", "new"], "item_id": ["2", "3", "2"]})
    out = add_affinity(pairs, {"u": {"1"}}, genres, {"1": 0, "2": 1, "3": 2})
    # u has seen one comedy: item 2 (drama + comedy) has cosine 1/sqrt(2), the war film 0;
    # a user with no history has no affinity.
    assert out["genre_affinity"].tolist() == pytest.approx([2**-0.5, 0.0, 0.0])
    assert genre_matrix(pd.DataFrame(), ["1", "2"]).shape == (2, 1)


def test_label_windows_go_back_in_time_without_overlap() -> None:
    frame = pd.DataFrame({"timestamp": np.arange(100.0)})
    train, val = frame.iloc[:80], frame.iloc[80:]
    windows = label_windows(train, val, 3)
    assert [(len(h), len(w)) for h, w in windows] == [(80, 20), (60, 20), (40, 20)]
    for history, window in windows:
        assert history["timestamp"].max() < window["timestamp"].min()
        assert window["timestamp"].max() <= val["timestamp"].max()
    # Stops while each history is still longer than a window.
    assert len(label_windows(train, val, 10)) == 3


def test_paired_bootstrap_over_users() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(size=300)
    same = paired_over_users(a, a.copy(), "ndcg@10", n_resamples=200)
    assert same["interval"] == [0.0, 0.0] and same["mean"] == 0.0
    better = paired_over_users(a + 0.05, a, "ndcg@10", n_resamples=200)
    assert better["interval"][0] > 0  # a planted gain: the lower bound clears zero
    noise = paired_over_users(rng.uniform(size=300), a, "ndcg@10", n_resamples=200)
    assert noise["interval"][0] < 0 < noise["interval"][1]  # no effect: zero inside
    with_nan = paired_over_users(np.array([np.nan, 1.0]), np.array([0.5, 0.5]), "m", n_resamples=20)
    assert with_nan["mean"] == pytest.approx(0.5)  # users without relevant items are left out


def test_iso_timestamps_become_epoch_seconds() -> None:
    when = ["2019-11-24 00:00:17+00:00", "2019-11-24 00:01:17+00:00"]
    frame = pd.DataFrame({"user_id": [1, 2], "item_id": [3, 4], "timestamp": when})
    out = normalise_interactions(frame)
    assert out["timestamp"].tolist() == [1574553617.0, 1574553677.0]
