"""Serving benchmark of the MiniLM classifier: the machine's limit, mlsd Serve, a plain server.

    PYTHONPATH=$PWD .venv/bin/python bench/serve.py --json /tmp/serve.json [--quick]

At concurrency 1, 8, 32 and 64, in one run (so the ratios hold under the same load):

(a) ``raw``   raw batched torch fp32 in this process at min(concurrency, best batch size),
              the best batch picked by a short sweep: no HTTP, no queueing (the limit);
(b) ``mlsd``  the Ray Serve app of ``systems/harmful_content.yaml`` (mlsd_ray.serve), fp32,
              with the card's batching unless ``--max-batch-size/--batch-wait-s`` say otherwise;
(c) ``plain`` a FastAPI/uvicorn server doing one forward pass per request (what a user would
              write instead), in a subprocess;
(d) ``mlsd_<path>`` the same Serve app with ``deployment.inference`` = ``--inference`` (bf16);
(e) ``raw_<path>``   (a) on the fast path;
(f) ``plain_<path>`` (c) on the same fast path: the fair peer of (d).

A single-model card is served as one deployment (HTTP edge and batched model in one replica,
``mlsd_ray.serve.single``), behind Serve's default proxy, or ``--proxy haproxy|direct``.

Every HTTP request carries one tweet (Davidson dev when present) and goes to 127.0.0.1 only.
The load generator is wrk (``mlsd_ray/serve/wrk.py``) when it is installed: each level keeps as many
connections busy for ``--max-seconds``. With ``--client httpx`` (or without wrk) it runs in this
process, costs the shared cores about a millisecond of Python per request, and each level sends
at most ``--requests`` requests and stops after ``--max-seconds`` whatever the count.
Prints a table and writes JSON with ``ratio_vs_plain`` ((b), (d) over (c) at concurrency 8) and
``ratio_vs_limit`` ((b) over (a)).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from mlsd_ray.serve import wrk

REPO = Path(__file__).resolve().parents[1]
CARD = REPO / "systems" / "harmful_content.yaml"
DAVIDSON = REPO.parent / "shared" / "datasets" / "harmful_content" / "davidson_dev.csv"
LEVELS: tuple[int, ...] = (1, 8, 32, 64)
RAW_BATCHES = (1, 8, 16, 32, 64)
CLIENT = "httpx"  # the load generator: "wrk" (mlsd_ray.serve.wrk) or "httpx" (in this process)

log = logging.getLogger("bench.serve")


# Inputs ------------------------------------------------------------------------------------
def tweets(n: int = 2000) -> list[str]:
    if DAVIDSON.is_file():
        import pandas as pd

        return pd.read_csv(DAVIDSON)["tweet"].astype(str).sample(n, random_state=0).tolist()
    from mlsd_ray.serve.loadtest import DEFAULT_INSTANCES

    return list(DEFAULT_INSTANCES) * (n // len(DEFAULT_INSTANCES))


def minilm_package(out: Path) -> Path:
    """A MiniLM classifier package with an untrained head: speed does not depend on it."""
    from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
    from mlsd_ray.models.transformer import TransformerTextClassifier, build_net

    params = {"pretrained": "minilm", "max_length": 64, "n_classes": 2, "text_input": "text"}
    net, tokenizer = build_net("minilm", 2)
    model = TransformerTextClassifier(["text"], **params).set_fitted(net, tokenizer, 2)
    manifest = ModelManifest(
        name="minilm_bench",
        kind="transformer",
        category="binary",
        inputs=[InputSchema(name="text", type="text")],
        classes=["ok", "harmful"],
        params=params,
    )
    return save_package(model, out, manifest)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def summary(latencies_ms: list[float], seconds: float, done: int) -> dict[str, Any]:
    lat = np.asarray(latencies_ms)
    pct = {
        f"p{q}_ms": round(float(np.percentile(lat, q)), 1) if lat.size else None
        for q in (50, 95, 99)
    }
    return {"requests_per_s": round(done / seconds, 1) if seconds > 0 else 0.0, **pct}


# (a) the in-process limit -------------------------------------------------------------------
def raw_torch(
    model_dir: Path, texts: list[str], seconds: float, inference: str = "fp32"
) -> dict[str, Any]:
    """Sequences per second of Predictor.predict at each batch size, then per level."""
    from mlsd_ray.predict import Predictor

    predictor = Predictor(model_dir, inference=inference)
    predictor.predict(texts[:8])  # warm-up

    def run(batch: int, budget_s: float, max_batches: int) -> dict[str, Any]:
        lat, done, i = [], 0, 0
        t0 = time.perf_counter()
        while i < max_batches and (time.perf_counter() - t0) < budget_s:
            chunk = [texts[(i * batch + k) % len(texts)] for k in range(batch)]
            s = time.perf_counter()
            predictor.predict(chunk)
            lat.append((time.perf_counter() - s) * 1000)  # every request waits for its batch
            done += batch
            i += 1
        return summary(lat, time.perf_counter() - t0, done)

    import torch

    # The limit is the best of 1 and 2 threads: on a busy machine 2 OpenMP threads can lose
    # most of their time spinning, and one thread then computes more.
    sweep: dict[str, dict[str, Any]] = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for b in RAW_BATCHES:
            sweep[f"{threads}x{b}"] = {
                **run(b, seconds / 2, max(4, 256 // b)),
                "threads": threads,
                "batch": b,
            }
    best = max(sweep.values(), key=lambda r: r["requests_per_s"])
    torch.set_num_threads(best["threads"])
    levels = {}
    for c in LEVELS:
        batch = min(c, best["batch"])
        levels[c] = {**run(batch, seconds, max(4, 512 // batch)), "batch": batch}
    torch.set_num_threads(2)
    return {
        "inference": predictor.inference,
        "sweep": sweep,
        "best_batch": best["batch"],
        "best_threads": best["threads"],
        "limit_per_s": best["requests_per_s"],
        "levels": levels,
    }


def raw_spot(model_dir: Path, texts: list[str], threads: int, batch: int, seconds: float) -> float:
    """The raw limit again (best threads x batch of the sweep), measured next to a server's
    run: the load of a shared machine drifts within minutes, so the ratio to the limit is
    taken against the spot measured beside the server, not the sweep at the start."""
    import torch

    from mlsd_ray.predict import Predictor

    predictor = _SPOT.get(str(model_dir)) or _SPOT.setdefault(str(model_dir), Predictor(model_dir))
    torch.set_num_threads(threads)
    predictor.predict(texts[:batch])
    t0, done, i = time.perf_counter(), 0, 0
    while time.perf_counter() - t0 < seconds or i < 2:
        predictor.predict([texts[(i * batch + k) % len(texts)] for k in range(batch)])
        done, i = done + batch, i + 1
    torch.set_num_threads(2)
    return round(done / (time.perf_counter() - t0), 1)


_SPOT: dict[str, Any] = {}


# HTTP load ---------------------------------------------------------------------------------
async def _load(
    url: str, texts: list[str], clients: int, requests: int, max_s: float
) -> dict[str, Any]:
    sent, latencies, statuses = 0, [], Counter[int]()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def worker(client: httpx.AsyncClient, deadline: float) -> None:
        nonlocal sent
        while sent < requests and time.perf_counter() < deadline:
            i = sent
            sent += 1
            t0 = time.perf_counter()
            try:
                r = await client.post(f"{url}/predict", json={"instances": [texts[i % len(texts)]]})
                statuses[r.status_code] += 1
                if r.status_code == 200:
                    latencies.append((time.perf_counter() - t0) * 1000)
            except httpx.HTTPError:
                statuses[-1] += 1

    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        warm = time.perf_counter() + 10
        await asyncio.gather(*(worker(client, warm) for _ in range(min(clients, 4))))  # warm-up
        sent, latencies, statuses = 0, [], Counter()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client, t0 + max_s) for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    return {
        **summary(latencies, elapsed, len(latencies)),
        "ok": len(latencies),
        "statuses": {str(k): v for k, v in statuses.items()},
        "seconds": round(elapsed, 2),
    }


def load_levels(
    url: str, texts: list[str], requests: int, max_s: float
) -> dict[int, dict[str, Any]]:
    """Every level against one server, from wrk when it is installed (``CLIENT``), else httpx."""
    out = {}
    bodies = [{"instances": [t]} for t in texts]
    for c in LEVELS:
        if CLIENT == "wrk":
            wrk.run(url, bodies, min(c, 4), 3)  # warm-up, as the httpx client does
            out[c] = wrk.run(url, bodies, c, max_s)
        else:
            out[c] = asyncio.run(_load(url, texts, c, max(requests, 4 * c), max_s))
        log.info("  %s clients=%d %s", url, c, out[c])
    return out


def wait_ready(url: str, timeout_s: float = 180) -> None:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout_s} s")


# (c) the plain server ----------------------------------------------------------------------
def plain_app(model_dir: str, inference: str = "fp32") -> Any:
    """What a user writes without a serving stack: one forward pass per request."""
    from fastapi import FastAPI

    from mlsd_ray.predict import Predictor

    predictor = Predictor(model_dir, inference=inference)
    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict[str, Any]) -> dict[str, Any]:
        return {"predictions": predictor.predict(body["instances"])}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def run_plain(
    model_dir: Path, texts: list[str], requests: int, max_s: float, inference: str = "fp32"
) -> dict[int, dict[str, Any]]:
    import uvicorn  # noqa: F401  (fail here, not in the child, when it is missing)

    port = free_port()
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--plain-server",
            str(port),
            "--model-dir",
            str(model_dir),
            "--inference",
            inference,
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        return load_levels(url, texts, requests, max_s)
    finally:
        child.terminate()
        child.wait(timeout=30)


# (b), (d) mlsd Serve ---------------------------------------------------------------------
def run_mlsd(
    model_dir: Path,
    texts: list[str],
    requests: int,
    max_s: float,
    overrides: list[str],
    name: str,
    port: int,
) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    from ray import serve

    from mlsd_ray.serve.app import build_application
    from mlsd_ray.settings import Workdir
    from mlsd_ray.spec import load_card

    card = load_card(CARD, overrides=overrides)
    workdir = Workdir.of(tempfile.mkdtemp(prefix="mlsd_bench_"))
    serve.run(build_application(card, workdir, model_dir=model_dir), name=name, route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url)
        levels = load_levels(url, texts, requests, max_s)
        stats = httpx.get(f"{url}/stats", timeout=10).json()
        health = httpx.get(f"{url}/healthz", timeout=10).json()
    finally:
        serve.delete(name)
    d = card.deployment
    config = {
        "inference": d.inference,
        "max_batch_size": d.batching.max_batch_size,
        "batch_wait_timeout_s": d.batching.batch_wait_timeout_s,
        "replicas": d.autoscaling.max_replicas,
        "num_cpus_per_replica": d.num_cpus_per_replica,
        "max_ongoing_requests": d.effective_max_ongoing_requests,
        "batches": stats.get("batches"),
        "healthz": health,
    }
    return levels, config


def start_ray(attempts: int = 3) -> None:
    """A local Ray of 2 CPUs; retried, as its GCS can time out at start on a loaded machine."""
    import ray

    env = {"PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    for attempt in range(1, attempts + 1):
        try:
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={"env_vars": env},
            )
            return
        except Exception as err:  # Ray raises a bare Exception on a start-up timeout
            log.warning("Ray did not start (attempt %d): %s", attempt, err)
            ray.shutdown()
            if attempt == attempts:
                raise


# Report ------------------------------------------------------------------------------------
def table(results: dict[str, dict[int, dict[str, Any]]]) -> str:
    rows = ["| server | clients | req/s | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|---|---|"]
    for server, levels in results.items():
        for c, r in levels.items():
            cells = [server, c, r["requests_per_s"], r["p50_ms"], r["p95_ms"], r["p99_ms"]]
            rows.append("| " + " | ".join(str(x) for x in cells) + " |")
    return "\n".join(rows)


def goals(out: dict[str, Any], p99_ms: float, d_name: str) -> dict[str, Any]:
    res = out["results"]
    limit = out.get("raw_limit_beside_b") or out["raw"]["limit_per_s"]
    within = [
        r["requests_per_s"]
        for r in res["mlsd"].values()
        if r["p99_ms"] is not None and r["p99_ms"] <= p99_ms
    ]
    best_b = max(within, default=0.0)
    vs_plain = {
        c: {
            k: round(res[k][c]["requests_per_s"] / max(res["plain"][c]["requests_per_s"], 1e-9), 2)
            for k in ("mlsd", d_name)
        }
        for c in LEVELS
        if c >= 8
    }
    path = d_name.removeprefix("mlsd_")
    vs_plain_same_path = {
        c: round(
            res[d_name][c]["requests_per_s"] / max(res[f"plain_{path}"][c]["requests_per_s"], 1e-9),
            2,
        )
        for c in LEVELS
        if c >= 8
    }
    d_over_b = {
        c: round(res[d_name][c]["requests_per_s"] / max(res["mlsd"][c]["requests_per_s"], 1e-9), 2)
        for c in LEVELS
    }
    return {
        "b_best_within_p99_over_limit": round(best_b / limit, 3),
        "b_reaches_0.8_of_limit_within_p99": best_b >= 0.8 * limit,
        "ratio_vs_plain_by_level": vs_plain,
        "b_or_d_2x_plain_at_8_and_above": all(max(v.values()) >= 2.0 for v in vs_plain.values()),
        "d_over_plain_same_path_by_level": vs_plain_same_path,
        "d_1.3x_plain_same_path_at_8_and_above": all(v >= 1.3 for v in vs_plain_same_path.values()),
        "d_over_b_served": d_over_b,
        "d_raw_speedup_over_fp32": round(out["raw_optimised"]["limit_per_s"] / limit, 2),
    }


def main(argv: list[str] | None = None) -> None:
    global LEVELS, CLIENT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--model-dir", type=Path, help="a MiniLM package (default: built now)")
    parser.add_argument("--inference", default="bf16", help="the optimised path of (d)")
    parser.add_argument(
        "--requests", type=int, default=200, help="requests per level (at least 4 x clients)"
    )
    parser.add_argument("--max-seconds", type=float, default=15.0, help="per level")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--max-batch-size", type=int, help="default: the card's")
    parser.add_argument("--batch-wait-s", type=float, help="default: the card's")
    parser.add_argument("--quick", action="store_true", help="60 requests and 8 s per level")
    parser.add_argument(
        "--levels", default=",".join(map(str, LEVELS)), help="client counts, e.g. 1,8,32,64"
    )
    parser.add_argument(
        "--proxy",
        choices=("default", "haproxy", "direct"),
        default="default",
        help="deployment.proxy of (b) and (d): Serve's Python proxy, HAProxy or direct ingress",
    )
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "httpx"),
        default="auto",
        help="load generator: wrk (C, each level lasts --max-seconds) or httpx in this process "
        "(each level sends --requests or lasts --max-seconds); auto = wrk when installed",
    )
    parser.add_argument("--plain-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    LEVELS = tuple(int(x) for x in args.levels.split(","))
    CLIENT = ("wrk" if wrk.available() else "httpx") if args.client == "auto" else args.client
    if CLIENT == "wrk" and not wrk.available():
        parser.error("--client wrk needs wrk on PATH (apt-get install wrk)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray starts its workers (Serve replicas, proxy) at nice 15; the plain server and the raw
    # process run at nice 0. On a machine shared with other load that alone decides the
    # comparison, so the benchmark runs Ray's workers at the same priority.
    os.environ.setdefault("RAY_worker_niceness", "0")
    if args.plain_server:
        import uvicorn

        uvicorn.run(
            plain_app(str(args.model_dir), args.inference),
            host="127.0.0.1",
            port=args.plain_server,
            log_level="warning",
        )
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    if args.quick:
        args.requests, args.max_seconds = 60, 8.0
    started, load_before = time.time(), os.getloadavg()
    model_dir = args.model_dir or minilm_package(
        Path(tempfile.mkdtemp(prefix="mlsd_bench_")) / "minilm"
    )
    texts = tweets()

    import ray
    from ray import serve

    proxy_overrides = [
        f"deployment.proxy={args.proxy}",
        f"deployment.haproxy.stats_port={free_port()}",
        f"deployment.haproxy.metrics_port={free_port()}",
    ]
    if args.proxy != "default":  # fixed when Ray starts: its variables go in before
        from mlsd_ray.serve import proxy
        from mlsd_ray.spec import load_card

        proxy.prepare(load_card(CARD, overrides=proxy_overrides))
    start_ray()  # first: on a loaded machine Ray's start is what fails, so fail early
    log.info("(a) raw torch in this process")
    raw = raw_torch(model_dir, texts, args.max_seconds / 4)
    raw_opt = raw_torch(model_dir, texts, args.max_seconds / 4, args.inference)
    spot: dict[str, float] = {}

    def spot_check(when: str) -> None:
        b, t = raw["best_batch"], raw["best_threads"]
        spot[when] = raw_spot(model_dir, texts, t, b, args.max_seconds / 3)
        log.info("raw limit %s: %s seq/s", when, spot[when])

    spot_check("before_plain")
    log.info("(c) plain FastAPI/uvicorn")
    results: dict[str, dict[int, dict[str, Any]]] = {"raw": raw["levels"]}
    results[f"raw_{args.inference}"] = raw_opt["levels"]
    results["plain"] = run_plain(model_dir, texts, args.requests, args.max_seconds)
    log.info("(f) plain FastAPI/uvicorn %s", args.inference)
    results[f"plain_{args.inference}"] = run_plain(
        model_dir, texts, args.requests, args.max_seconds, args.inference
    )

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    overrides = [
        f"deployment.autoscaling.min_replicas={args.replicas}",
        f"deployment.autoscaling.max_replicas={args.replicas}",
        f"deployment.num_cpus_per_replica={2 / args.replicas}",
        f"deployment.port={port}",
        *proxy_overrides,
    ]
    if args.max_batch_size:
        overrides.append(f"deployment.batching.max_batch_size={args.max_batch_size}")
    if args.batch_wait_s is not None:
        overrides.append(f"deployment.batching.batch_wait_timeout_s={args.batch_wait_s}")
    configs = {}
    try:
        spot_check("before_mlsd")
        log.info("(b) mlsd serve fp32")
        results["mlsd"], configs["mlsd"] = run_mlsd(
            model_dir, texts, args.requests, args.max_seconds, overrides, "bench_fp32", port
        )
        d_name = f"mlsd_{args.inference}"
        spot_check(f"before_{d_name}")
        log.info("(d) mlsd serve %s", args.inference)
        results[d_name], configs[d_name] = run_mlsd(
            model_dir,
            texts,
            args.requests,
            args.max_seconds,
            [*overrides, f"deployment.inference={args.inference}"],
            f"bench_{args.inference}",
            port,
        )
        spot_check("after_all")
    finally:
        serve.shutdown()
        ray.shutdown()

    from mlsd_ray.spec import load_card

    p99_target = load_card(CARD).requirements.latency_p99_ms
    out: dict[str, Any] = {
        "command": " ".join(["bench/serve.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "platform": sys.platform},
        "ray_worker_niceness": os.environ.get("RAY_worker_niceness"),  # noqa: SIM112
        "proxy": args.proxy,
        "client": CLIENT,
        "card_latency_p99_ms": p99_target,
        "raw": {k: v for k, v in raw.items() if k != "levels"},
        "raw_optimised": {k: v for k, v in raw_opt.items() if k != "levels"},
        "serve_configs": configs,
        "results": {k: {str(c): r for c, r in v.items()} for k, v in results.items()},
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "seconds": round(time.time() - started, 1),
    }
    res = {k: {int(c): r for c, r in v.items()} for k, v in out["results"].items()}
    c8 = 8 if 8 in LEVELS else LEVELS[-1]
    out["ratio_vs_plain"] = {
        k: round(res[k][c8]["requests_per_s"] / max(res["plain"][c8]["requests_per_s"], 1e-9), 2)
        for k in ("mlsd", d_name)
    }
    # (b) over the raw limit measured right before and right after it (its bracketing spots).
    beside_b = (spot["before_mlsd"] + spot[f"before_{d_name}"]) / 2
    out["raw_limit_spots"] = spot
    out["raw_limit_beside_b"] = round(beside_b, 1)
    out["ratio_vs_limit_beside"] = round(
        max(r["requests_per_s"] for r in res["mlsd"].values()) / beside_b, 3
    )
    out["ratio_vs_limit"] = round(
        max(r["requests_per_s"] for r in res["mlsd"].values()) / raw["limit_per_s"], 3
    )
    out["goals"] = goals({**out, "results": res}, p99_target, d_name)
    print(table(results))
    print(
        f"raw fp32 best {raw['best_threads']} thread(s) x batch {raw['best_batch']}: "
        f"{raw['limit_per_s']} seq/s; raw {args.inference}: {raw_opt['limit_per_s']} seq/s "
        f"({raw_opt['best_threads']} x {raw_opt['best_batch']})"
    )
    print(f"ratio_vs_plain (8 clients) {out['ratio_vs_plain']}; ratio_vs_limit ", end="")
    print(out["ratio_vs_limit"], "(against the raw limit beside (b):", end=" ")
    print(f"{out['ratio_vs_limit_beside']}; raw spots {spot})")
    print(f"goals {json.dumps(out['goals'])}")
    print(f"load average before {load_before}, after {out['loadavg_after']}; {out['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
