"""The latency the prediction log adds to a request, at full rate (sample_rate 1).

    PYTHONPATH=$PWD .venv/bin/python bench/log_overhead.py --json /tmp/log.json [--requests N]

A request here is what a model replica does per request: build the input frame of the card's
inputs (Online Shoppers columns, 1 instance), score it with a small fitted logistic regression,
and, in the ``logged`` arm, call ``PredictionLogger.log`` (the only part on the request path;
rows are built and written by the logger's thread). Both arms run interleaved in one process
with the logger's thread writing Parquet partitions to a temporary folder, so the writer's CPU
use is counted too. Reports p50/p99 per arm and the difference of the p99s (goal: < 1 ms).
Measure on a quiet machine: on a loaded one the figures are noise.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from mlsd_ray.monitor.log import PredictionLogger

FIELDS = {f"x{i}": "float" for i in range(10)} | {"Month": "category", "VisitorType": "category"}


def run(requests: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    numeric = [f"x{i}" for i in range(10)]
    train = rng.normal(size=(500, 10))
    model = LogisticRegression().fit(train, (train[:, 0] > 0).astype(int))
    times: dict[str, list[float]] = {"plain": [], "logged": []}
    with tempfile.TemporaryDirectory() as tmp:
        logger = PredictionLogger(tmp, flush_every_n=256, flush_every_s=1.0, fields=FIELDS)
        for i in range(requests):
            for arm in ("plain", "logged") if i % 2 else ("logged", "plain"):
                t0 = time.perf_counter()
                row = dict(zip(numeric, rng.normal(size=10).tolist(), strict=True))
                frame = pd.DataFrame([{**row, "Month": "May", "VisitorType": "New"}])
                p = model.predict_proba(frame[numeric].to_numpy())[:, 1]
                if arm == "logged":
                    logger.log(f"req-{i}", frame, p, "1")
                times[arm].append(time.perf_counter() - t0)
        logger.close()
        stats = logger.stats()
    out: dict[str, Any] = {"requests": requests, "logger": stats}
    for arm, values in times.items():
        ms = np.asarray(values[requests // 10 :]) * 1000  # the first tenth warms up
        out[arm] = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}
    out["added_p99_ms"] = out["logged"]["p99_ms"] - out["plain"]["p99_ms"]
    out["added_p50_ms"] = out["logged"]["p50_ms"] - out["plain"]["p50_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    result = run(args.requests)
    text = json.dumps(result, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
