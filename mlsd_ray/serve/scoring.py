"""One loaded model package answering batches: the part every model deployment shares.

``BatchedModel`` is a plain class (no Serve decorator) so that two deployments reuse it: the
``ModelServer`` behind an ingress (canary, shadow, ensembles) and the single-model
``ModelIngress``, which is its own HTTP edge. Requests are validated one by one (so a bad one
gets its own 422), then ``@serve.batch`` merges the concurrent ones into one frame and the
whole batch is tokenised and scored in one ``predict_frame`` call, and labelled once at the
package's stored threshold.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from typing import Any, cast

import torch
from ray import serve

from mlsd_ray.monitor.log import PredictionLogger
from mlsd_ray.predict import InvalidInput, Predictor
from mlsd_ray.serve import metrics

log = logging.getLogger(__name__)


class BatchedModel:
    """One replica = one loaded model package (+ its prediction logger)."""

    def __init__(self, log_options: dict[str, Any] | None = None) -> None:
        self.predictor: Predictor | None = None
        self._loaded: tuple[str, str | None, str | None] | None = None
        self.logger = PredictionLogger(**log_options) if log_options else None
        self._replica = uuid.uuid4().hex[:8]
        self._batches = itertools.count()
        self.metrics = metrics.ModelMetrics()

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config``: ``model_dir``, ``version``, ``max_batch_size``,
        ``batch_wait_timeout_s``, ``inference`` (the CPU path of a transformer), ``subdir`` (a
        blend member's folder in ``model_dir``). Serve calls it at start and on every
        user_config change."""
        batcher = cast(Any, self._predict_batch)  # @serve.batch adds these setters
        batcher.set_max_batch_size(int(config["max_batch_size"]))
        batcher.set_batch_wait_timeout_s(float(config["batch_wait_timeout_s"]))
        from mlsd_ray.registry import localize  # the driver's folder, or a registry download

        model_dir = await asyncio.to_thread(localize, config["model_dir"], config.get("source"))
        # A member of a blend served as a graph: its folder inside the blend's package.
        model_dir = model_dir / config["subdir"] if config.get("subdir") else model_dir
        wanted = (str(model_dir), config.get("version"), config.get("inference"))
        # Intra-op threads = the replica's CPUs: torch's and ONNX Runtime's (which copies torch's).
        if config.get("threads"):
            torch.set_num_threads(int(config["threads"]))
        if wanted != self._loaded:
            # Loaded off the event loop: requests keep being answered by the old model until
            # the new one is ready, then a single assignment swaps them.
            self.predictor = await asyncio.to_thread(
                Predictor, wanted[0], version=wanted[1], inference=wanted[2]
            )
            self._loaded = wanted
            self.metrics.model_loaded(self._ready)
        log.info(
            "model %s version %s ready (batch <= %s, wait %s s, inference %s)",
            self._ready.manifest.name,
            self._ready.version,
            config["max_batch_size"],
            config["batch_wait_timeout_s"],
            self._ready.inference,
        )

    @property
    def _ready(self) -> Predictor:
        if self.predictor is None:
            raise RuntimeError("no model loaded: the deployment has no user_config")
        return self.predictor

    def check_health(self) -> None:
        """Serve's health check: a replica without a model is unhealthy and gets replaced."""
        self._ready  # noqa: B018

    def describe(self) -> dict[str, Any]:
        return self._ready.describe() | {"threads": torch.get_num_threads()}

    async def predict(self, instances: list[Any], request_id: str) -> dict[str, Any]:
        """Validate one request's instances, then wait for the batch that scores them.

        Invalid input is returned (not raised) so the caller can answer 422 with the reason.
        """
        try:
            rows = self._ready.validate(instances)
        except InvalidInput as err:
            return {"error": str(err)}
        return cast(dict[str, Any], await self._predict_batch((request_id, rows)))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _predict_batch(
        self, items: list[tuple[str, list[dict[str, Any]]]]
    ) -> list[dict[str, Any]]:
        predictor = self._ready  # one model for the whole batch, even if a swap comes now
        # One frame for the batch: a frame per request and a concat cost a tabular row more
        # than its model did. The rows go to the prediction log as they are.
        merged = predictor.frame([row for _, rows in items for row in rows])
        # Off the event loop, so that requests keep arriving (and the next batch keeps
        # forming) while this one is scored. One call: the batch is tokenised once.
        scores = await asyncio.to_thread(predictor.predict_frame, merged)
        labels = predictor.labels(scores)  # the task decides: class names, or the value
        self.metrics.batch(len(items), len(merged), scores)
        batch_id = f"{self._replica}-{next(self._batches)}"
        answers, start = [], 0
        for request_id, rows in items:
            end = start + len(rows)
            part = scores[start:end]
            if self.logger is not None:
                self.logger.log(request_id, rows, part, predictor.version)
            answer = {
                "predictions": part.tolist(),
                "model_version": predictor.version,
                "model_name": predictor.manifest.name,
                "batch_id": batch_id,
                "batch_size": len(items),
            }
            if labels is not None:
                answer["labels"] = labels[start:end]
            answers.append(answer)
            start = end
        return answers

    def __del__(self) -> None:
        # Serve calls __del__ on graceful shutdown: write the buffered prediction records.
        logger = getattr(self, "logger", None)
        if logger is not None:
            logger.close()
