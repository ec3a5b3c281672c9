"""Single-replica prediction latency, measured beside the metrics.

One-row requests go through the same path a Serve replica takes (``Predictor.predict``:
validation, then the model), one after another, in a loop bounded both in requests and in
seconds. Batching and the HTTP hop are left out on purpose: this is the model's own cost, the
floor under any endpoint's latency, and comparable between candidates on one machine.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mlsd_ray.predict import Predictor


def measure_latency(
    predictor: Predictor,
    instances: list[Any],
    requests: int = 200,
    max_seconds: float = 10.0,
    warmup: int = 5,
) -> dict[str, Any]:
    """{p50_ms, p99_ms, mean_ms, requests, seconds} over up to ``requests`` single-row calls
    cycling through ``instances``, stopping early after ``max_seconds``."""
    if not instances:
        raise ValueError("measure_latency needs at least one instance")
    for inst in instances[:warmup]:  # first calls pay for lazy initialisation
        predictor.predict([inst])
    times = []
    started = time.perf_counter()
    for i in range(requests):
        t0 = time.perf_counter()
        predictor.predict([instances[i % len(instances)]])
        times.append(time.perf_counter() - t0)
        if t0 - started > max_seconds:
            break
    ms = np.asarray(times) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "requests": len(ms),
        "seconds": round(time.perf_counter() - started, 3),
    }
