"""A small, bounded HTTP load generator for a served card (tests and quick measurements).

    python -m mlsd_ray.serve.loadtest http://127.0.0.1:8000 --clients 32 --requests 1000

``clients`` concurrent connections send ``requests`` ``POST /predict`` calls in all (each
with ``instances_per_request`` instances) and stop at ``max_seconds`` whatever the count, so a
slow server never makes it run away. Reports throughput and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from mlsd_ray import progress

log = logging.getLogger(__name__)

DEFAULT_INSTANCES = [
    "thanks for sharing, lovely photo",
    "you are a complete idiot and everyone hates you",
    "see you at the game tonight @sam",
    "what a great article http://example.com/post",
]


async def _run(
    url: str,
    instances: Sequence[Any],
    clients: int,
    requests: int,
    instances_per_request: int,
    max_seconds: float,
) -> dict[str, Any]:
    endpoint = f"{url.rstrip('/')}/predict"
    next_request = 0
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    deadline = time.perf_counter() + max_seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_request
        while next_request < requests and time.perf_counter() < deadline:
            i = next_request
            next_request += 1
            body = {
                "instances": [
                    instances[(i * instances_per_request + k) % len(instances)]
                    for k in range(instances_per_request)
                ]
            }
            t0 = time.perf_counter()
            try:
                r = await client.post(endpoint, json=body)
                statuses[r.status_code] += 1
            except httpx.HTTPError as err:
                statuses[-1] += 1
                log.debug("request %d failed: %s", i, err)
                continue
            latencies.append((time.perf_counter() - t0) * 1000)
            bar.advance(1, p50_ms=round(float(np.median(latencies)), 1))

    with progress.task(f"load test {clients} clients", total=requests, unit="requests") as bar:
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            t0 = time.perf_counter()
            await asyncio.gather(*(worker(client) for _ in range(clients)))
            elapsed = time.perf_counter() - t0
    lat = np.asarray(latencies)
    return {
        "clients": clients,
        "requests": int(sum(statuses.values())),
        "ok": statuses.get(200, 0),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(lat) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
    }


def load_test(
    url: str,
    instances: Sequence[Any] = DEFAULT_INSTANCES,
    clients: int = 32,
    requests: int = 500,
    instances_per_request: int = 1,
    max_seconds: float = 60.0,
) -> dict[str, Any]:
    """Send ``requests`` POST /predict calls over ``clients`` connections; returns the figures."""
    if clients < 1 or requests < 1:
        raise ValueError("clients and requests must be >= 1")
    return asyncio.run(
        _run(url, list(instances), clients, requests, instances_per_request, max_seconds)
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="base URL of the served card, e.g. http://127.0.0.1:8000")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--instances-per-request", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    result = load_test(
        args.url,
        clients=args.clients,
        requests=args.requests,
        instances_per_request=args.instances_per_request,
        max_seconds=args.max_seconds,
    )
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
