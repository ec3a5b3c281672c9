"""Features offline and online: feature views, point-in-time joins, a Redis online store, and
materialisation as Ray tasks.

Feast was the first choice; Feast 0.67.0 (the newest on the index) requires ``pandas<3`` while
the project pins pandas 3.1.1, and would also move prometheus_client 0.26.0 -> 0.24.1 (see
docs/recsys.md). So this module keeps Feast's shape over Redis directly:

* a :class:`FeatureView` names an entity column, its features and a TTL;
* the offline store is the view's snapshots (one row per entity and ``event_timestamp``,
  ``views.py``); :func:`point_in_time_join` gives each (entity, time) row the latest snapshot
  at or before that time, never a later one (what a naive "latest value" join leaks);
* :func:`materialize` writes, per entity, the latest snapshot at or before ``as_of`` into Redis
  hashes (``<prefix>:<view>:<entity>``), in parallel Ray tasks;
* :class:`OnlineStore` reads them back; a missing key or an unreachable Redis gives the view's
  defaults, and each fallback is counted (``stats``), so serving degrades instead of failing.

Values travel as ``repr(float)``, which round-trips exactly: online equals offline bit for bit.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from mlsd_ray.recsys.views import DEFAULTS, EVENT_TS

log = logging.getLogger(__name__)


class FeatureView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    entity: str
    features: list[str]
    #: A snapshot older than this is no value at all (the default is used); None: no limit.
    ttl_s: float | None = None

    def defaults(self) -> dict[str, float]:
        return {f: DEFAULTS.get(f, 0.0) for f in self.features}


def point_in_time_join(
    rows: pd.DataFrame, snapshots: pd.DataFrame, view: FeatureView, ts_column: str = "timestamp"
) -> pd.DataFrame:
    """``rows`` (entity, ``ts_column``) with the view's features as of each row's time: the
    latest snapshot with ``event_timestamp <= ts`` (within the TTL), defaults where none."""
    left = rows.reset_index(drop=True).assign(_order=np.arange(len(rows)))
    left["_ts"] = left[ts_column].astype(np.float64)
    right = snapshots[[view.entity, EVENT_TS, *view.features]].copy()
    right[EVENT_TS] = right[EVENT_TS].astype(np.float64)
    joined = pd.merge_asof(
        left.sort_values("_ts", kind="stable"),
        right.sort_values(EVENT_TS, kind="stable"),
        left_on="_ts",
        right_on=EVENT_TS,
        by=view.entity,
        direction="backward",  # never a snapshot from after the row's time
        tolerance=view.ttl_s,
    )
    joined = joined.sort_values("_order").drop(columns=["_order", "_ts", EVENT_TS])
    return joined.fillna(view.defaults()).reset_index(drop=True)


def latest_as_of(snapshots: pd.DataFrame, view: FeatureView, as_of: float) -> pd.DataFrame:
    """Per entity, the latest snapshot at or before ``as_of`` (within the TTL): what the online
    store must hold at time ``as_of``."""
    past = snapshots[snapshots[EVENT_TS] <= as_of]
    if view.ttl_s is not None:
        past = past[past[EVENT_TS] >= as_of - view.ttl_s]
    idx = past.groupby(view.entity)[EVENT_TS].idxmax()
    return past.loc[idx, [view.entity, EVENT_TS, *view.features]].reset_index(drop=True)


def _key(prefix: str, view: str, entity: Any) -> str:
    return f"{prefix}:{view}:{entity}"


def write_rows(url: str, prefix: str, view: FeatureView, rows: pd.DataFrame) -> int:
    """HSET each row of ``rows`` (one pipeline round trip); returns the rows written."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        pipe = client.pipeline(transaction=False)
        for rec in rows.to_dict(orient="records"):
            mapping: dict[Any, Any] = {f: repr(float(rec[f])) for f in view.features}
            mapping[EVENT_TS] = repr(float(rec[EVENT_TS]))
            pipe.hset(_key(prefix, view.name, rec[view.entity]), mapping=mapping)
        pipe.execute()
    finally:
        client.close()
    return len(rows)


def materialize(
    snapshots: pd.DataFrame,
    view: FeatureView,
    as_of: float,
    url: str,
    prefix: str,
    chunk_rows: int = 5000,
) -> dict[str, Any]:
    """Write the view's state at ``as_of`` to Redis, one Ray task per chunk of entities."""
    import ray

    from mlsd_ray.runtime import ensure_ray

    ensure_ray()
    rows = latest_as_of(snapshots, view, as_of)
    task = ray.remote(num_cpus=0.25)(write_rows)
    chunks = [rows.iloc[i : i + chunk_rows] for i in range(0, len(rows), chunk_rows)]
    started = time.perf_counter()
    written = sum(ray.get([task.remote(url, prefix, view, c) for c in chunks]))
    return {
        "view": view.name,
        "as_of": as_of,
        "rows": written,
        "tasks": len(chunks),
        "seconds": round(time.perf_counter() - started, 3),
    }


class OnlineStore:
    """Read features (and item lists) from Redis with a short timeout and counted fallbacks."""

    def __init__(self, url: str, prefix: str, timeout_s: float = 0.05) -> None:
        import redis

        self.prefix = prefix
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self.stats: Counter[str] = Counter()
        self._errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        )

    def get(self, view: FeatureView, entities: Sequence[Any]) -> pd.DataFrame:
        """One row per entity (in order) with the view's features; defaults where the key is
        missing (``stats['missing_key']``) or Redis cannot be reached (``stats['redis_down']``)."""
        defaults = view.defaults()
        fields = [*view.features]
        down = False
        try:
            pipe = self.client.pipeline(transaction=False)
            for e in entities:
                pipe.hmget(_key(self.prefix, view.name, e), fields)
            answers = pipe.execute()
        except self._errors as exc:
            down = True
            self.stats["redis_down"] += len(entities)
            log.warning("online store unreachable (%s); defaults", type(exc).__name__)
            answers = [[None] * len(fields)] * len(entities)
        rows = []
        for e, values in zip(entities, answers, strict=True):
            if all(v is None for v in values):
                self.stats["missing_key"] += 0 if down else 1
                rows.append({view.entity: e, **defaults})
                continue
            self.stats["hit"] += 1
            got = {
                f: float(v) if v is not None else defaults[f]
                for f, v in zip(fields, values, strict=True)
            }
            rows.append({view.entity: e, **got})
        return pd.DataFrame(rows, columns=[view.entity, *fields])

    def put_list(self, name: str, entity: Any, items: Sequence[str]) -> None:
        key = _key(self.prefix, name, entity)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(key)
        if items:
            pipe.rpush(key, *items)
        pipe.execute()

    def get_list(self, name: str, entity: Any, fallback: Sequence[str] = ()) -> list[str]:
        """An item list (a user's seen items, the popular list); ``fallback`` when missing or
        Redis is down (counted as for features)."""
        try:
            raw = self.client.lrange(_key(self.prefix, name, entity), 0, -1)
        except self._errors:
            self.stats["redis_down"] += 1
            return list(fallback)
        if not raw:
            self.stats["missing_key"] += 1
            return list(fallback)
        self.stats["hit"] += 1
        return [v.decode() if isinstance(v, bytes) else str(v) for v in raw]

    def delete_prefix(self) -> int:
        """Remove every key under this store's prefix (tests, teardown)."""
        keys = list(self.client.scan_iter(match=f"{self.prefix}:*", count=1000))
        return int(self.client.delete(*keys)) if keys else 0


def snapshots(
    history: pd.DataFrame,
    side: pd.DataFrame,
    times: Sequence[float],
    view_fn: Any,
) -> pd.DataFrame:
    """The offline store of one view: ``view_fn(history, side, t)`` for every time ``t``."""
    return pd.concat([view_fn(history, side, float(t)) for t in times], ignore_index=True)


def counts(stats: Mapping[str, int]) -> dict[str, int]:
    return {k: int(stats.get(k, 0)) for k in ("hit", "missing_key", "redis_down")}
