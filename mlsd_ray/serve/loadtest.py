"""A small, bounded HTTP load generator for a served card (tests and quick measurements).

    python -m mlsd_ray.serve.loadtest http://127.0.0.1:8000 --clients 32 --requests 1000

``clients`` concurrent connections send ``requests`` ``POST /predict`` calls in all (each
with ``instances_per_request`` instances) and stop at ``max_seconds`` whatever the count, so a
slow server never makes it run away. Reports throughput and latency percentiles. The requests
go out from wrk (C) when it is installed, else from httpx in this process (``client``).

Retries (``retries`` > 0) live in the client, with an idempotent request id: every request
carries its own ``X-Request-Id`` and a retry of it sends the same one. Only the client knows
whether it got an answer; a replica killed mid-request may or may not have scored it, Serve's
proxy does not resend a request already handed to a replica, and the prediction log keys
records by request id, so a retried request is recognisable there. A 5xx, a 429 or a
connection error is retried after a short, growing back-off; a 4xx is the client's own error
and is not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from mlsd_ray import progress
from mlsd_ray.serve import wrk

log = logging.getLogger(__name__)

#: Answers worth another try: overload, a replica gone mid-request, no connection (-1).
RETRYABLE = frozenset({-1, 429, 500, 502, 503, 504})
RETRY_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0

DEFAULT_INSTANCES = [
    "thanks for sharing, lovely photo",
    "you are a complete idiot and everyone hates you",
    "see you at the game tonight @sam",
    "what a great article http://example.com/post",
]


def _body(instances: Sequence[Any], i: int, per_request: int) -> dict[str, Any]:
    """Request ``i``'s body: the next ``per_request`` instances, round the list."""
    return {
        "instances": [instances[(i * per_request + k) % len(instances)] for k in range(per_request)]
    }


async def _run(
    url: str,
    instances: Sequence[Any],
    clients: int,
    requests: int,
    instances_per_request: int,
    max_seconds: float,
    retries: int = 0,
    path: str = "/predict",
    bodies: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    endpoint = f"{url.rstrip('/')}{path}"
    next_request = 0
    latencies: list[float] = []
    timeline: list[tuple[float, float]] = []  # (seconds since start, latency ms) of answers
    statuses: Counter[int] = Counter()
    retried = 0
    start = time.perf_counter()
    deadline = time.perf_counter() + max_seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_request, retried
        while next_request < requests and time.perf_counter() < deadline:
            i = next_request
            next_request += 1
            body = bodies[i % len(bodies)] if bodies else _body(instances, i, instances_per_request)
            headers = {"X-Request-Id": uuid.uuid4().hex}  # the same on every retry
            t0 = time.perf_counter()
            for attempt in range(retries + 1):
                try:
                    r = await client.post(endpoint, json=body, headers=headers)
                    status = r.status_code
                except httpx.HTTPError as err:
                    status = -1
                    log.debug("request %d failed: %s", i, err)
                if status not in RETRYABLE or attempt == retries:
                    break
                retried += 1
                await asyncio.sleep(min(RETRY_BACKOFF_S * 2**attempt, MAX_BACKOFF_S))
            statuses[status] += 1
            if status == -1:
                continue
            now = time.perf_counter()
            latencies.append((now - t0) * 1000)
            timeline.append((round(t0 - start, 3), round((now - t0) * 1000, 2)))
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
        "retried": retried,
        "timeline": timeline,
    }


def load_test(
    url: str,
    instances: Sequence[Any] = DEFAULT_INSTANCES,
    clients: int = 32,
    requests: int = 500,
    instances_per_request: int = 1,
    max_seconds: float = 60.0,
    retries: int = 0,
    path: str = "/predict",
    bodies: Sequence[dict[str, Any]] | None = None,
    client: str = "auto",
) -> dict[str, Any]:
    """Send ``requests`` POST /predict calls over ``clients`` connections; returns the figures
    (``timeline``: start offset and latency of every answered request). ``path`` and whole
    request ``bodies`` (taken in turn) serve another API, e.g. the recommender's /recommend.

    ``client``: ``"wrk"`` (C, :mod:`mlsd_ray.serve.wrk`; no retries, no timeline), ``"httpx"``
    (in this process), or ``"auto"``: wrk when it is installed and no retries are asked for,
    so the load generator takes as little as it can of the CPUs it measures."""
    if clients < 1 or requests < 1 or retries < 0:
        raise ValueError("clients and requests must be >= 1, retries >= 0")
    if client not in ("auto", "wrk", "httpx"):
        raise ValueError(f"client must be auto, wrk or httpx, not {client!r}")
    if client == "wrk" and retries:
        raise ValueError("wrk cannot resend a request with the same id: use client='httpx'")
    if client == "wrk" or (client == "auto" and not retries and wrk.available()):
        if not bodies:
            bodies = [_body(instances, i, instances_per_request) for i in range(len(instances))]
        return wrk.run(url, bodies, clients, max_seconds, requests, path)
    return asyncio.run(
        _run(
            url,
            list(instances),
            clients,
            requests,
            instances_per_request,
            max_seconds,
            retries,
            path,
            bodies,
        )
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="base URL of the served card, e.g. http://127.0.0.1:8000")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--instances-per-request", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--retries", type=int, default=0, help="per request, same request id")
    parser.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto")
    args = parser.parse_args(argv)
    result = load_test(
        args.url,
        clients=args.clients,
        requests=args.requests,
        instances_per_request=args.instances_per_request,
        max_seconds=args.max_seconds,
        retries=args.retries,
        client=args.client,
    )
    result.pop("timeline")
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
