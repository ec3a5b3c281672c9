"""The Redis online store (real Redis on 127.0.0.1:6379) and materialisation as Ray tasks."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pandas as pd
import pytest

from mlsd_ray.recsys.data import load_movielens, time_split
from mlsd_ray.recsys.features import (
    FeatureView,
    OnlineStore,
    materialize,
    point_in_time_join,
    snapshots,
)
from mlsd_ray.recsys.views import USER_FEATURES, user_view
from tests.conftest import free_port

pytestmark = pytest.mark.integration
REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def store():
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    online = OnlineStore(REDIS, prefix=f"mlsd-test-i14-{uuid.uuid4().hex[:8]}")
    yield online
    online.delete_prefix()


def test_online_equals_offline_for_the_same_entity_and_time(ray_cluster, store) -> None:
    data = load_movielens()
    train, _, _ = time_split(data.interactions)
    times = np.quantile(train["timestamp"], [0.5, 0.75, 1.0])
    offline = snapshots(train, data.users, times, user_view)
    view = FeatureView(name="user", entity="user_id", features=list(USER_FEATURES))
    as_of = float(times[1]) + 1.0
    summary = materialize(offline, view, as_of, REDIS, store.prefix, chunk_rows=400)
    assert summary["rows"] == offline[offline.event_timestamp <= as_of].user_id.nunique()
    assert summary["tasks"] >= 2
    users = sorted(offline["user_id"].unique())[:50]
    online = store.get(view, users)
    rows = pd.DataFrame({"user_id": users, "timestamp": as_of})
    expected = point_in_time_join(rows, offline, view)
    pd.testing.assert_frame_equal(online, expected[["user_id", *USER_FEATURES]])
    assert store.stats["hit"] == 50


def test_missing_keys_and_redis_down_fall_back_fast_and_are_counted(store) -> None:
    view = FeatureView(name="user", entity="user_id", features=["u_count", "u_mean_rating"])
    got = store.get(view, ["nobody"])
    assert got.loc[0, "u_mean_rating"] == 3.5 and store.stats["missing_key"] == 1
    assert store.get_list("popular", "all", fallback=["1", "2"]) == ["1", "2"]
    store.put_list("seen", "u1", ["5", "6"])
    assert store.get_list("seen", "u1") == ["5", "6"]
    down = OnlineStore(f"redis://127.0.0.1:{free_port()}/0", prefix="x", timeout_s=0.05)
    started = time.perf_counter()
    got = down.get(view, ["u1", "u2"])
    seen = down.get_list("seen", "u1", fallback=[])
    assert time.perf_counter() - started < 0.5  # well inside a 100 ms-class budget per call
    assert got["u_count"].tolist() == [0.0, 0.0] and seen == []
    assert down.stats["redis_down"] == 3 and down.stats["missing_key"] == 0
