"""The two Serve deployments: an HTTP ingress and the model it calls through a handle.

* ``Ingress`` (FastAPI) checks the body, forwards the instances to the model, maps every
  rejection to a 4xx with a reason, and keeps the counters behind ``/stats``. It holds no
  model, so it stays small and needs no CPU reservation.
* ``ModelServer`` loads the package once per replica, validates instances with the
  ``Predictor`` (the same code as batch inference), and groups concurrent requests with
  ``@serve.batch`` so that one vectorised ``predict_frame`` call answers many requests. It
  logs every prediction for the monitor.

Batch size and wait come from the card at run time (``set_max_batch_size``); the values in
the decorator are only defaults.
"""

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable
from typing import Any, cast

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from mlsd_ray.monitor.log import PredictionLogger
from mlsd_ray.predict import InvalidInput, Predictor
from mlsd_ray.serve.requests import BadRequest, parse_predict_body
from mlsd_ray.serve.stats import ServeStats

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 10.0

api = FastAPI(
    title="mlsd-ray model server",
    description='POST /predict {"instances": [...]} -> one probability per instance.',
)


@serve.deployment
class ModelServer:
    """One replica = one loaded model package (+ its prediction logger)."""

    def __init__(
        self,
        model_dir: str,
        version: str | None,
        max_batch_size: int,
        batch_wait_timeout_s: float,
        log_options: dict[str, Any] | None = None,
        inference: str | None = None,
    ) -> None:
        self.predictor = Predictor(model_dir, version=version, inference=inference)
        batcher = cast(Any, self._predict_batch)  # @serve.batch adds these setters
        batcher.set_max_batch_size(max_batch_size)
        batcher.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.logger = PredictionLogger(**log_options) if log_options else None
        self._replica = uuid.uuid4().hex[:8]
        self._batches = itertools.count()
        log.info(
            "model %s version %s ready (batch <= %d, wait %.3f s, log %s)",
            self.predictor.manifest.name,
            self.predictor.version,
            max_batch_size,
            batch_wait_timeout_s,
            log_options["uri"] if log_options else "off",
        )

    def describe(self) -> dict[str, Any]:
        return self.predictor.describe()

    async def predict(self, instances: list[Any], request_id: str) -> dict[str, Any]:
        """Validate one request's instances, then wait for the batch that scores them.

        Invalid input is returned (not raised) so the ingress can answer 422 with the reason.
        """
        try:
            frame = self.predictor.to_frame(instances)
        except InvalidInput as err:
            return {"error": str(err)}
        return await self._predict_batch((request_id, frame))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _predict_batch(self, items: list[tuple[str, pd.DataFrame]]) -> list[dict[str, Any]]:
        frames = [frame for _, frame in items]
        merged = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        # Off the event loop, so that requests keep arriving (and the next batch keeps
        # forming) while this one is scored.
        scores = await asyncio.to_thread(self.predictor.predict_frame, merged)
        batch_id = f"{self._replica}-{next(self._batches)}"
        answers, start = [], 0
        for request_id, frame in items:
            part = scores[start : start + len(frame)]
            start += len(frame)
            if self.logger is not None:
                self.logger.log(request_id, frame, part, self.predictor.version)
            answers.append(
                {
                    "predictions": part.tolist(),
                    "model_version": self.predictor.version,
                    "model_name": self.predictor.manifest.name,
                    "batch_id": batch_id,
                    "batch_size": len(items),
                }
            )
        return answers

    def __del__(self) -> None:
        # Serve calls __del__ on graceful shutdown: write the buffered prediction records.
        logger = getattr(self, "logger", None)
        if logger is not None:
            logger.close()


async def _wait(response: Awaitable[Any]) -> Any:
    return await response


@serve.deployment
@serve.ingress(api)
class Ingress:
    """HTTP edge: request checks, error mapping, stats."""

    def __init__(self, model: DeploymentHandle, max_instances: int) -> None:
        self.model = model
        self.max_instances = max_instances
        self.counters = ServeStats()

    def _reply(
        self, status: int, body: dict[str, Any], t0: float, instances: int = 0
    ) -> JSONResponse:
        self.counters.record(status, (time.perf_counter() - t0) * 1000, instances)
        # Serve's proxy already answers with the X-Request-Id header (the same id).
        return JSONResponse(body, status_code=status)

    @api.post("/predict")
    async def predict(self, request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        # Serve's proxy keeps a client's X-Request-Id and makes one up otherwise.
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        try:
            instances = parse_predict_body(await request.body(), self.max_instances)
            answer = await self.model.predict.remote(instances, request_id)
            if "error" in answer:
                raise BadRequest(422, answer["error"])
        except BadRequest as err:
            return self._reply(
                err.status_code, {"detail": err.reason, "request_id": request_id}, t0
            )
        except Exception:
            log.exception("request %s failed", request_id)
            body = {
                "detail": "internal error while predicting; see the replica logs",
                "request_id": request_id,
            }
            return self._reply(500, body, t0)
        self.counters.record_batch(answer["batch_id"], answer["batch_size"])
        body = {
            "predictions": answer["predictions"],
            "model_version": answer["model_version"],
            "model_name": answer["model_name"],
            "request_id": request_id,
        }
        return self._reply(200, body, t0, instances=len(instances))

    @api.get("/healthz")
    async def healthz(self) -> JSONResponse:
        """Healthy = the model deployment answers (not just this process being up)."""
        try:
            info = await asyncio.wait_for(_wait(self.model.describe.remote()), HEALTH_TIMEOUT_S)
        except Exception as err:
            return JSONResponse({"status": "unavailable", "detail": str(err)}, status_code=503)
        return JSONResponse(
            {"status": "ok", "model_version": info["version"], "model_name": info["name"]}
        )

    @api.get("/stats")
    async def stats(self) -> dict[str, Any]:
        return self.counters.snapshot()
