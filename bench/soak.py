"""Soak test of the served harmful-content card: memory of every Serve process and errors
under a steady load at a fraction of the measured capacity.

    PYTHONPATH=$PWD .venv/bin/python bench/soak.py --minutes 10 --fraction 0.7 --json /tmp/soak.json

1. Starts a local Ray (2 CPUs) and serves ``systems/harmful_content.yaml`` (the card's proxy:
   HAProxy under ``auto``) with a MiniLM package (``--model-dir``, else one is built now).
2. Capacity: a closed-loop load test (``--capacity-clients`` connections for
   ``--capacity-seconds``) gives requests/s; ``--capacity-rps`` skips it.
3. Soak: an open-loop load at ``fraction x capacity`` requests/s for ``--minutes`` (requests
   start on a fixed schedule whatever the answers; at most ``--max-in-flight`` at once, and a
   request that finds the cap full counts as ``skipped``), one tweet per request.
4. RSS of every Serve process of this Ray (controller, proxy, replicas, haproxy), found among
   this process's descendants by their process titles, at the start and end of the soak and
   once a minute; errors by status code; p50/p99 per minute.

Prints the figures and writes them as JSON. Loopback only; Ray is shut down at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _bench_serve() -> Any:
    """bench/serve.py's helpers (Ray start, MiniLM package, tweets), loaded by path: the bench
    folder is scripts, not a package."""
    spec = importlib.util.spec_from_file_location("bench_serve", REPO / "bench" / "serve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _bench_serve()
CARD: Path = bench.CARD

log = logging.getLogger("bench.soak")
APP = "soak"
#: Process title (``ray::<actor class>``) or executable name -> role in the report.
ROLES = {
    "ServeController": "controller",
    "ProxyActor": "proxy",
    "HAProxy": "proxy",
    "ServeReplica": "replica",
    "haproxy": "haproxy",
}


# Serve processes ---------------------------------------------------------------------------
def serve_processes() -> list[dict[str, Any]]:
    """Role, pid, title and RSS (MB) of this Ray's Serve processes (descendants of this one)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            title = " ".join(proc.cmdline()) or proc.name()
            rss = proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        role = _role(title, proc.name())
        if role:
            found.append(
                {
                    "role": role,
                    "pid": proc.pid,
                    "title": title[:80],
                    "rss_mb": round(rss / 2**20, 1),
                }
            )
    return sorted(found, key=lambda p: (p["role"], p["pid"]))


def _role(title: str, name: str) -> str | None:
    if name == "haproxy":
        return "haproxy"
    if not title.startswith("ray::"):
        return None
    return next((role for key, role in ROLES.items() if key in title), None)


def rss_change(start: list[dict[str, Any]], end: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per process present at both ends: RSS at start, at end and the change (MB)."""
    before = {p["pid"]: p for p in start}
    rows = []
    for p in end:
        b = before.get(p["pid"])
        if b is not None:
            rows.append(
                {
                    "role": p["role"],
                    "pid": p["pid"],
                    "start_mb": b["rss_mb"],
                    "end_mb": p["rss_mb"],
                    "change_mb": round(p["rss_mb"] - b["rss_mb"], 1),
                }
            )
    return rows


# Load --------------------------------------------------------------------------------------
async def _open_loop(
    url: str, texts: list[str], rate: float, seconds: float, max_in_flight: int
) -> dict[str, Any]:
    """Requests on a fixed schedule of ``rate``/s for ``seconds``; RSS sampled each minute."""
    endpoint = f"{url}/predict"
    statuses: Counter[str] = Counter()
    by_minute: dict[int, list[float]] = {}
    samples: list[dict[str, Any]] = []
    in_flight = asyncio.Semaphore(max_in_flight)
    tasks: set[asyncio.Task[None]] = set()
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)

    async def one(client: httpx.AsyncClient, i: int, started: float) -> None:
        try:
            t0 = time.perf_counter()
            try:
                r = await client.post(
                    endpoint,
                    json={"instances": [texts[i % len(texts)]]},
                    headers={"X-Request-Id": uuid.uuid4().hex},
                )
                statuses[str(r.status_code)] += 1
                if r.status_code == 200:
                    minute = int((t0 - started) // 60)
                    by_minute.setdefault(minute, []).append((time.perf_counter() - t0) * 1000)
            except httpx.HTTPError as err:
                statuses[type(err).__name__] += 1
        finally:
            in_flight.release()

    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        started = time.perf_counter()
        next_sample = 60.0
        i = 0
        while (now := time.perf_counter() - started) < seconds:
            if now >= next_sample:
                samples.append({"at_s": round(now), "processes": serve_processes()})
                next_sample += 60.0
            if in_flight.locked():
                statuses["skipped"] += 1  # the server fell behind: the schedule is not queued
            else:
                await in_flight.acquire()
                task = asyncio.create_task(one(client, i, started))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            i += 1
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    minutes = [
        {
            "minute": m,
            "answered": len(lat),
            "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1),
        }
        for m, lat in sorted(by_minute.items())
    ]
    everything = [x for lat in by_minute.values() for x in lat]
    ok = statuses.get("200", 0)
    return {
        "scheduled": i,
        "seconds": round(elapsed, 1),
        "achieved_rps": round(ok / elapsed, 2) if elapsed else 0.0,
        "statuses": dict(statuses),
        "errors": sum(v for k, v in statuses.items() if k != "200"),
        "p50_ms": round(float(np.percentile(everything, 50)), 1) if everything else None,
        "p99_ms": round(float(np.percentile(everything, 99)), 1) if everything else None,
        "per_minute": minutes,
        "rss_samples": samples,
    }


def capacity(url: str, texts: list[str], clients: int, seconds: float) -> dict[str, Any]:
    from mlsd_ray.serve.loadtest import load_test

    result = load_test(url, texts, clients=clients, requests=10**6, max_seconds=seconds)
    result.pop("timeline")
    return result


# Serving -----------------------------------------------------------------------------------
def setup_logging() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)


@contextlib.contextmanager
def serving(sets: list[str], model_dir: Path | None) -> Iterator[tuple[str, Any]]:
    """The harmful-content card served on a fresh local Ray (loopback, free ports) with a MiniLM
    package; yields (base URL, card). Serve and Ray are shut down on the way out."""
    import ray
    from ray import serve

    from mlsd_ray.serve import proxy
    from mlsd_ray.serve.app import build_application
    from mlsd_ray.settings import Workdir
    from mlsd_ray.spec import load_card

    port = bench.free_port()
    card = load_card(
        CARD,
        overrides=[
            f"name={APP}",
            f"deployment.port={port}",
            f"deployment.haproxy.stats_port={bench.free_port()}",
            f"deployment.haproxy.metrics_port={bench.free_port()}",
            *sets,
        ],
    )
    model_dir = model_dir or bench.minilm_package(Path(tempfile.mkdtemp(prefix="soak_")) / "m")
    proxy.prepare(card)  # the proxy is fixed when Ray starts: its variables go in first
    bench.start_ray()
    try:
        workdir = Workdir.of(tempfile.mkdtemp(prefix="soak_work_"))
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_application(card, workdir, model_dir=model_dir), name=APP, route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        bench.wait_ready(url)
        yield url, card
    finally:
        serve.shutdown()
        ray.shutdown()


def proxy_of(card: Any) -> str:
    from mlsd_ray.serve import proxy

    return str(proxy.chosen(card))


# Main --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fraction", type=float, default=0.7, help="of the measured capacity")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--capacity-rps", type=float, help="skip the capacity measurement")
    parser.add_argument("--capacity-clients", type=int, default=16)
    parser.add_argument("--capacity-seconds", type=float, default=20.0)
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--model-dir", type=Path, help="a MiniLM package (default: built now)")
    parser.add_argument("--set", action="append", default=[], help="card override KEY=VALUE")
    args = parser.parse_args(argv)
    if not 0 < args.fraction <= 1 or args.minutes <= 0:
        parser.error("--fraction must be in (0, 1] and --minutes > 0")
    setup_logging()
    load_before = os.getloadavg()
    with serving(args.set, args.model_dir) as (url, card):
        texts = bench.tweets()
        cap = None
        if args.capacity_rps is None:
            log.info(
                "measuring capacity: %d clients, %s s", args.capacity_clients, args.capacity_seconds
            )
            cap = capacity(url, texts, args.capacity_clients, args.capacity_seconds)
        rps = args.capacity_rps or cap["requests_per_s"]  # type: ignore[index]
        rate = args.fraction * rps
        log.info(
            "soak: %.1f req/s (%.0f%% of %.1f) for %s min",
            rate,
            args.fraction * 100,
            rps,
            args.minutes,
        )
        start = serve_processes()
        soak = asyncio.run(_open_loop(url, texts, rate, args.minutes * 60, args.max_in_flight))
        end = serve_processes()
        stats = httpx.get(f"{url}/stats", timeout=10).json()
        chosen_proxy = proxy_of(card)
    out = {
        "card": str(CARD.relative_to(REPO)),
        "proxy": chosen_proxy,
        "minutes": args.minutes,
        "fraction": args.fraction,
        "capacity_rps": rps,
        "capacity": cap,
        "target_rps": round(rate, 2),
        **soak,
        "rss_start": start,
        "rss_end": end,
        "rss_change": rss_change(start, end),
        "replica_stats": {k: stats.get(k) for k in ("requests", "batches", "inference", "threads")},
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    text = json.dumps(out, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
