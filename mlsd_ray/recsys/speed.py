"""Speed of the served recommender (for ``bench/recsys.py --speed``): p50/p99 of
``POST /recommend`` at 1 and 8 concurrent clients, and p99 of one Redis feature fetch (a user
plus its candidates). Only meaningful on a quiet machine.

Builds the MovieLens-100k bundle (two-tower trained in the driver), publishes its features
under a fresh Redis prefix, deploys the graph on a free loopback port, and removes both after.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from mlsd_ray.recsys.bundle import ITEM_VIEW, USER_VIEW, publish_online, save_bundle
from mlsd_ray.recsys.data import TS, load_movielens, time_split
from mlsd_ray.recsys.features import OnlineStore
from mlsd_ray.recsys.two_stage import TwoStageConfig, fit_ranker, fit_retrievers
from mlsd_ray.runtime import free_port

REDIS = "redis://127.0.0.1:6379/0"


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = 1000 * np.asarray(seconds)
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "n": len(ms)}  # fmt: skip


async def _load(url: str, users: list[str], clients: int, requests: int) -> dict[str, Any]:
    latencies: list[float] = []
    failures = 0
    queue = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal failures
        for n in queue:
            started = time.perf_counter()
            r = await http.post(
                f"{url}/recommend", json={"user_id": users[n % len(users)], "k": 10}
            )
            latencies.append(time.perf_counter() - started)
            failures += r.status_code != 200

    async with httpx.AsyncClient(timeout=30) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    return {**_percentiles(latencies), "failures": failures, "rps": requests / wall}


def measure(
    requests: int = 300, redis_url: str = REDIS, cfg: TwoStageConfig | None = None
) -> dict[str, Any]:
    """The graph of ``cfg`` (the benchmark's chosen settings; defaults otherwise) under load."""
    from ray import serve

    from mlsd_ray.recsys.serving import run_graph
    from mlsd_ray.runtime import ensure_ray

    ensure_ray(num_cpus=2)
    data = load_movielens()
    train, val, test = time_split(data.interactions)
    cfg = replace(cfg or TwoStageConfig(), two_tower={"num_workers": 0})
    history = pd.concat([train, val], ignore_index=True)
    ranker = fit_ranker(train, val, data, cfg)
    retrievers = fit_retrievers(history, data, cfg)
    prefix = f"mlsd-bench-recsys-{uuid.uuid4().hex[:8]}"
    store = OnlineStore(redis_url, prefix)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-recsys-") as tmp:
        bundle = save_bundle(Path(tmp) / "bundle", retrievers, ranker, cfg, "bench", data.items)
        try:
            publish_online(history, data, float(test[TS].min()), redis_url, prefix)
            users = sorted(set(test["user_id"]))
            items = list(retrievers["popular"].items[:150])
            fetches = []
            for n in range(requests):
                started = time.perf_counter()
                store.get(USER_VIEW, [users[n % len(users)]])
                store.get(ITEM_VIEW, items)
                fetches.append(time.perf_counter() - started)
            out["redis_fetch"] = _percentiles(fetches)
            url = run_graph(str(bundle), redis_url, prefix, free_port(), name="recsys_bench")
            asyncio.run(_load(url, users, 1, 20))  # warm-up
            for clients in (1, 8):
                out[f"clients_{clients}"] = asyncio.run(_load(url, users, clients, requests))
        finally:
            serve.delete("recsys_bench")
            store.delete_prefix()
    return out
