"""The project's own Prometheus metrics, exported next to Serve's built-in ones.

They are ``ray.serve.metrics`` objects: Ray's metrics agent exports them on the same endpoint
as Serve's ``ray_serve_*`` series (each node's ``--metrics-export-port``, path ``/metrics``),
tagged with the application, deployment and replica, so one scrape job gets both. Names get
Ray's ``ray_`` prefix on export (``mlsd_requests_total`` -> ``ray_mlsd_requests_total``).

- ``mlsd_requests_total{code}``: answers by HTTP status (errors are the codes >= 400);
- ``mlsd_request_latency_ms``: time in the HTTP edge per request (histogram);
- ``mlsd_batch_size``: requests per formed batch (histogram), ``mlsd_instances_total``;
- ``mlsd_predicted_score``: distribution of the predicted probability (binary: P(positive);
  multiclass: the top class's) or value (regression);
- ``mlsd_model_info{model_name, model_version, inference}``: 1 for the model a replica serves.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

LATENCY_MS_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256]
SCORE_BUCKETS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]


def _make(kind: str, name: str, description: str, **kwargs: Any) -> Any:
    """A ``ray.serve.metrics`` object, or None outside a Ray worker (unit tests, plain
    Python use of the classes): metrics must never break serving."""
    try:
        from ray.serve import metrics

        return getattr(metrics, kind)(name, description=description, **kwargs)
    except Exception as err:  # no Ray / no Serve context
        log.debug("metric %s not created: %s", name, err)
        return None


class EdgeMetrics:
    """What the HTTP edge records: answers by status and their latency."""

    def __init__(self) -> None:
        self.requests = _make(
            "Counter", "mlsd_requests_total", "HTTP answers by status code", tag_keys=("code",)
        )
        self.latency = _make(
            "Histogram",
            "mlsd_request_latency_ms",
            "Time from request to answer in the HTTP edge, ms",
            boundaries=LATENCY_MS_BUCKETS,
        )

    def answered(self, status: int, latency_ms: float) -> None:
        if self.requests is not None:
            self.requests.inc(1, tags={"code": str(status)})
        if self.latency is not None:
            self.latency.observe(latency_ms)


class ModelMetrics:
    """What a model replica records: batches, instances, scores and the version it serves."""

    def __init__(self) -> None:
        self.batch_size = _make(
            "Histogram",
            "mlsd_batch_size",
            "Requests per formed batch",
            boundaries=BATCH_BUCKETS,
        )
        self.instances = _make("Counter", "mlsd_instances_total", "Instances scored")
        self.scores = _make(
            "Histogram",
            "mlsd_predicted_score",
            "Predicted probability (binary: positive class; multiclass: top class) or value",
            boundaries=SCORE_BUCKETS,
        )
        self.info = _make(
            "Gauge",
            "mlsd_model_info",
            "1 for the model package this replica serves",
            tag_keys=("model_name", "model_version", "inference"),
        )
        self._info_tags: dict[str, str] | None = None

    def model_loaded(self, predictor: Any) -> None:
        if self.info is None:
            return
        if self._info_tags is not None:
            self.info.set(0, tags=self._info_tags)  # the old version is no longer served
        self._info_tags = {
            "model_name": str(predictor.manifest.name),
            "model_version": str(predictor.version),
            "inference": str(predictor.inference),
        }
        self.info.set(1, tags=self._info_tags)

    def batch(self, requests: int, instances: int, scores: np.ndarray) -> None:
        if self.info is not None and self._info_tags is not None:
            # Set again with every batch: a gauge set only once at load time was missing
            # from some scrapes (set before the replica's exporter reported).
            self.info.set(1, tags=self._info_tags)
        if self.batch_size is not None:
            self.batch_size.observe(requests)
        if self.instances is not None:
            self.instances.inc(instances)
        if self.scores is not None:
            values = np.asarray(scores, dtype=float)
            top = values.max(axis=1) if values.ndim == 2 else values
            for v in top.tolist():
                self.scores.observe(v)
