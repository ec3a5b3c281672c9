"""Ray Train overhead: TorchTrainer (1 worker) against a plain PyTorch loop, in one run.

    python bench/train.py [--rows 100000] [--features 32] [--epochs 4] [--json OUT]

Both train the same TabularNet on the same float32 arrays with the same loop (`fit_net`),
batch size, seed and torch threads (1). Figures:

* loop samples/s: the median over epochs 2.. of the per-epoch rate the loop measures (epoch 1
  pays warm-up); the overhead of Ray Train *while training* (reporting each epoch included);
* end-to-end samples/s: all samples over the wall time of the whole fit, Ray Train's start-up
  (worker actor, process group, checkpoint) included.

Ray workers run at nice 15, so the plain loop runs twice: in this process as started, then
after renicing this process to the worker's niceness, for a like-for-like comparison. The load
average is printed with the figures: other processes on the host shift them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlsd_ray.models.mlp import Arrays, MLPParams, build_net, fit_net, make_loss


def data(rows: int, features: int, seed: int = 0) -> Arrays:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    w = rng.normal(size=features)
    y = ((X @ w + rng.normal(size=rows)) > 0).astype(np.int64)
    n_val = rows // 10
    return Arrays(X[n_val:], y[n_val:], X[:n_val], y[:n_val])


def loop_rate(history: list[dict[str, Any]]) -> float:
    rates = [r["samples_per_s"] for r in history[1:]] or [history[0]["samples_per_s"]]
    return float(statistics.median(rates))


def plain(p: MLPParams, d: Arrays) -> dict[str, Any]:
    torch.set_num_threads(p.cpus_per_worker)
    started = time.perf_counter()
    net = build_net(p, d.X.shape[1])
    _, history = fit_net(net, make_loss(p, d.y), d, p)
    wall = time.perf_counter() - started
    return {
        "nice": os.nice(0),
        "loop_samples_per_s": loop_rate(history),
        "end_to_end_samples_per_s": len(d.X) * len(history) / wall,
        "wall_s": wall,
    }


def _worker_nice() -> int:
    return os.nice(0)


def ray_train(p: MLPParams, d: Arrays, storage: str) -> dict[str, Any]:
    import ray

    from mlsd_ray.train.mlp import run_trainer

    nice = ray.get(ray.remote(num_cpus=1)(_worker_nice).remote())
    started = time.perf_counter()
    _, history, _ = run_trainer(p, d, f"bench-{int(time.time())}", storage)
    wall = time.perf_counter() - started
    return {
        "nice": nice,
        "loop_samples_per_s": loop_rate(history),
        "end_to_end_samples_per_s": len(d.X) * len(history) / wall,
        "wall_s": wall,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from mlsd_ray.runtime import ensure_ray

    p = MLPParams(
        hidden=[128, 64],
        epochs=args.epochs,
        batch_size=args.batch_size,
        patience=0,
        num_workers=1,
        cpus_per_worker=1,
    )
    d = data(args.rows, args.features)
    load_before = os.getloadavg()
    ensure_ray(num_cpus=2)
    storage = str(Path(os.environ.get("TMPDIR", "/tmp")) / "mlsd-bench-train")
    runs = {"plain": plain(p, d), "ray_train": ray_train(p, d, storage)}
    os.nice(max(runs["ray_train"]["nice"] - os.nice(0), 0))  # like-for-like: worker niceness
    runs["plain_same_nice"] = plain(p, d)
    load_after = os.getloadavg()
    ray_rate = runs["ray_train"]["loop_samples_per_s"]
    result = {
        "command": "python bench/train.py " + " ".join(sys.argv[1:]),
        "rows_train": len(d.X),
        "features": args.features,
        "hidden": p.hidden,
        "epochs": args.epochs,
        "batch_size": p.batch_size,
        "torch_threads": p.cpus_per_worker,
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "runs": runs,
        "loop_overhead_vs_plain": 1 - ray_rate / runs["plain"]["loop_samples_per_s"],
        "loop_overhead_vs_plain_same_nice": 1
        - ray_rate / runs["plain_same_nice"]["loop_samples_per_s"],
    }
    print(
        f"{len(d.X)} rows x {args.features} features, MLP {p.hidden}, batch {p.batch_size}, "
        f"{args.epochs} epochs, 1 torch thread; load average before {result['loadavg_before']}, "
        f"after {result['loadavg_after']}"
    )
    print("| run | nice | loop samples/s | end-to-end samples/s | wall s |\n|---|---|---|---|---|")
    for name, r in runs.items():
        print(
            f"| {name} | {r['nice']} | {r['loop_samples_per_s']:,.0f} | "
            f"{r['end_to_end_samples_per_s']:,.0f} | {r['wall_s']:.1f} |"
        )
    print(
        f"Ray Train loop overhead: {result['loop_overhead_vs_plain']:+.1%} vs plain, "
        f"{result['loop_overhead_vs_plain_same_nice']:+.1%} vs plain at the worker's niceness"
    )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
