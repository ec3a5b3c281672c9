"""Counters behind ``GET /stats``: requests by outcome, instances, formed batch sizes, latency.

The ingress keeps them. Each answer from the model deployment names the batch it was
computed in (replica + sequence number) and that batch's size, so the ingress counts every
batch once however many requests it served - across model replicas too.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict, deque
from typing import Any

import numpy as np

#: Batches remembered to count each once; answers of one batch arrive together.
_SEEN_BATCHES = 4096
_LATENCIES = 2048


class ServeStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.instances = 0
        self.batch_sizes: Counter[int] = Counter()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._latency_ms: deque[float] = deque(maxlen=_LATENCIES)

    def record(self, status_code: int, latency_ms: float, instances: int = 0) -> None:
        outcome = (
            "ok" if status_code < 400 else "client_error" if status_code < 500 else "server_error"
        )
        with self._lock:
            self.requests["total"] += 1
            self.requests[outcome] += 1
            self.instances += instances
            self._latency_ms.append(latency_ms)

    def record_batch(self, batch_id: str, size: int) -> None:
        with self._lock:
            if batch_id in self._seen:
                return
            self._seen[batch_id] = None
            if len(self._seen) > _SEEN_BATCHES:
                self._seen.popitem(last=False)
            self.batch_sizes[size] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            sizes = dict(sorted(self.batch_sizes.items()))
            n_batches = sum(sizes.values())
            latencies = np.asarray(self._latency_ms)
            return {
                "requests": {
                    k: self.requests.get(k, 0)
                    for k in ("total", "ok", "client_error", "server_error")
                },
                "instances": self.instances,
                "batches": {
                    "count": n_batches,
                    "mean_size": round(sum(k * v for k, v in sizes.items()) / n_batches, 3)
                    if n_batches
                    else 0.0,
                    "max_size": max(sizes, default=0),
                    "size_histogram": {str(k): v for k, v in sizes.items()},
                },
                "latency_ms": {
                    "window": int(latencies.size),
                    "p50": round(float(np.percentile(latencies, 50)), 2)
                    if latencies.size
                    else None,
                    "p99": round(float(np.percentile(latencies, 99)), 2)
                    if latencies.size
                    else None,
                },
            }
