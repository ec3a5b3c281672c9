"""Ray Train overhead: TorchTrainer (1 worker) against a plain PyTorch loop, in one run.

    python bench/train.py [--rows 100000] [--features 32] [--epochs 4] [--json OUT]

Both train the same TabularNet on the same float32 arrays with the same loop (`fit_net`),
batch size, seed and torch threads (1). Figures:

* loop samples/s: the per-epoch rate the loop measures, median and best over epochs 2.. (epoch 1
  pays warm-up); the overhead of Ray Train *while training* (reporting each epoch included);
* samples per CPU-second: the same epochs divided by the CPU time of the training process
  (``time.process_time``, all its threads, Ray's included): the cost of the work, which the
  host's other load hardly changes, so the figure this benchmark judges overhead by;
* end-to-end samples/s: all samples over the wall time of the whole fit, Ray Train's start-up
  (worker actor, process group, checkpoint) included.

The plain loop runs as a standalone process (this script with ``--plain-only``), started like a
Ray worker: at the worker's niceness (15) and with ``OMP_NUM_THREADS=1``, without Ray; it runs
before and after Ray Train, and the plain figure is the mean of the two runs that bracket it.
(Under heavy load the loop in the driver, next to Ray's own threads, ran well below the
worker's rate, so the driver is not the comparison.) The load average is printed with the
figures: other processes on the host shift them (samples per CPU-second the least).
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


def loop_rates(history: list[dict[str, Any]]) -> dict[str, float]:
    rates = [r["samples_per_s"] for r in history[1:]] or [history[0]["samples_per_s"]]
    cpu = [r["samples_per_cpu_s"] for r in history[1:]] or [history[0]["samples_per_cpu_s"]]
    return {
        "loop_samples_per_s": statistics.median(rates),
        "best_epoch_samples_per_s": max(rates),
        "samples_per_cpu_s": statistics.median(cpu),
    }


def plain(p: MLPParams, d: Arrays) -> dict[str, Any]:
    torch.set_num_threads(p.cpus_per_worker)
    started = time.perf_counter()
    net = build_net(p, d.X.shape[1])
    _, history = fit_net(net, make_loss(p, d.y), d, p)
    wall = time.perf_counter() - started
    return {
        "nice": os.nice(0),
        **loop_rates(history),
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
        **loop_rates(history),
        "end_to_end_samples_per_s": len(d.X) * len(history) / wall,
        "wall_s": wall,
    }


def plain_process(args: argparse.Namespace, nice: int, out: Path) -> dict[str, Any]:
    """The plain loop in a fresh process started like a Ray worker (niceness, OMP threads)."""
    import subprocess

    cmd = [sys.executable, __file__, "--plain-only", str(out)]
    cmd += ["--rows", str(args.rows), "--features", str(args.features)]
    cmd += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, preexec_fn=lambda: os.nice(nice))
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--json", dest="json_out", default=None)
    ap.add_argument("--plain-only", default=None, help=argparse.SUPPRESS)
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
    if args.plain_only:  # the child process of plain_process
        Path(args.plain_only).write_text(json.dumps(plain(p, d)))
        return 0
    load_before = os.getloadavg()
    ensure_ray(num_cpus=2)
    import ray

    worker_nice = ray.get(ray.remote(num_cpus=1)(_worker_nice).remote())
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    storage = str(tmp / "mlsd-bench-train")
    runs = {"plain_before": plain_process(args, worker_nice, tmp / "mlsd-bench-plain.json")}
    runs["ray_train"] = ray_train(p, d, storage)
    runs["plain_after"] = plain_process(args, worker_nice, tmp / "mlsd-bench-plain.json")
    load_after = os.getloadavg()
    keys = (
        "loop_samples_per_s",
        "best_epoch_samples_per_s",
        "samples_per_cpu_s",
        "end_to_end_samples_per_s",
    )
    runs["plain_mean"] = {
        "nice": runs["plain_after"]["nice"],
        **{k: (runs["plain_before"][k] + runs["plain_after"][k]) / 2 for k in keys},
        "wall_s": (runs["plain_before"]["wall_s"] + runs["plain_after"]["wall_s"]) / 2,
    }
    ray_run, base = runs["ray_train"], runs["plain_mean"]
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
        "overhead_cpu": 1 - ray_run["samples_per_cpu_s"] / base["samples_per_cpu_s"],
        "overhead_median_epoch": 1 - ray_run["loop_samples_per_s"] / base["loop_samples_per_s"],
        "overhead_best_epoch": 1
        - ray_run["best_epoch_samples_per_s"] / base["best_epoch_samples_per_s"],
        "overhead_end_to_end": 1
        - ray_run["end_to_end_samples_per_s"] / base["end_to_end_samples_per_s"],
    }
    print(
        f"{len(d.X)} rows x {args.features} features, MLP {p.hidden}, batch {p.batch_size}, "
        f"{args.epochs} epochs, 1 torch thread; load average before {result['loadavg_before']}, "
        f"after {result['loadavg_after']}"
    )
    print(
        "| run | nice | median epoch samples/s | best epoch samples/s | samples/CPU-s "
        "| end-to-end samples/s | wall s |\n|---|---|---|---|---|---|---|"
    )
    for name, r in runs.items():
        print(
            f"| {name} | {r['nice']} | {r['loop_samples_per_s']:,.0f} | "
            f"{r['best_epoch_samples_per_s']:,.0f} | {r['samples_per_cpu_s']:,.0f} | "
            f"{r['end_to_end_samples_per_s']:,.0f} | "
            f"{r['wall_s']:.1f} |"
        )
    print(
        f"Ray Train overhead against the plain loop: per CPU-second {result['overhead_cpu']:+.1%}, "
        f"median epoch "
        f"{result['overhead_median_epoch']:+.1%}, best epoch {result['overhead_best_epoch']:+.1%}, "
        f"end to end (start-up included) {result['overhead_end_to_end']:+.1%}"
    )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
