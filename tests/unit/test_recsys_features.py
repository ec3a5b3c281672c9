"""Point-in-time joins of feature views (pure pandas; the Redis side is an integration test)."""

from __future__ import annotations

import pandas as pd
import pytest

from mlsd_ray.recsys.features import FeatureView, latest_as_of, point_in_time_join
from mlsd_ray.recsys.views import EVENT_TS, user_view

VIEW = FeatureView(name="user_stats", entity="user_id", features=["u_count"])


def _snapshots() -> pd.DataFrame:
    # u1 had 2 interactions at t=100, 50 at t=200 (a later value the join must not see early).
    return pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            EVENT_TS: [100.0, 200.0, 100.0],
            "u_count": [2.0, 50.0, 7.0],
        }
    )


def test_point_in_time_join_never_leaks_a_future_value() -> None:
    labels = pd.DataFrame(
        {"user_id": ["u1", "u1", "u2", "u3"], "timestamp": [150.0, 250.0, 99.0, 150.0]}
    )
    joined = point_in_time_join(labels, _snapshots(), VIEW)
    assert joined["u_count"].tolist() == [2.0, 50.0, 0.0, 0.0]  # u2 at 99: before any snapshot
    # The naive join (latest value per entity) would have given u1 at t=150 the future 50.
    naive = labels.merge(
        _snapshots().sort_values(EVENT_TS).groupby("user_id").tail(1), on="user_id"
    )
    assert naive.loc[0, "u_count"] == 50.0 != joined.loc[0, "u_count"]
    assert joined[["user_id", "timestamp"]].equals(labels)  # row order kept


def test_ttl_drops_stale_snapshots_and_latest_as_of_matches_the_join() -> None:
    ttl_view = VIEW.model_copy(update={"ttl_s": 60.0})
    labels = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "timestamp": [150.0, 180.0, 150.0]})
    # At 180 u1's last snapshot (100) is 80 s old, beyond the 60 s TTL: the default.
    got = point_in_time_join(labels, _snapshots(), ttl_view)["u_count"].tolist()
    assert got == [2.0, 0.0, 7.0]
    state = latest_as_of(_snapshots(), VIEW, 180.0).set_index("user_id")["u_count"]
    assert state.to_dict() == {"u1": 2.0, "u2": 7.0}


def test_user_view_counts_only_the_past() -> None:
    history = pd.DataFrame(
        {"user_id": ["a", "a", "a"], "item_id": ["x", "y", "z"], "rating": [5.0, 3.0, 1.0],
         "timestamp": [10.0, 20.0, 30.0]}
    )  # fmt: skip
    view = user_view(history, pd.DataFrame(), now=25.0).set_index("user_id")
    assert view.loc["a", "u_count"] == 2
    assert view.loc["a", "u_mean_rating"] == pytest.approx(4.0)
