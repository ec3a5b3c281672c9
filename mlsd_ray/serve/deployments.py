"""The Serve deployments of a model graph, composed with deployment handles.

    Ingress (HTTP) --> ModelServer (alias)                      single model
                   \-> Combiner --> Preprocessor, members...    ensemble
                   \-> ModelServer "Challenger"                 canary / shadow rollouts

* ``Ingress`` (FastAPI) checks the body, picks the route (canary share or shadow copy), bounds
  the wait (``request_timeout_s`` -> 504), turns backpressure into 503, maps every rejection to
  a 4xx with a reason and keeps the counters behind ``/stats``. It holds no model.
* ``ModelServer`` holds one model package. Which package (and the batch settings) arrive as
  the deployment's ``user_config`` (``reconfigure``), so they are set at run time; a
  redeploy starts new replicas before old ones stop, so promotion and rollback drop no
  request. ``@serve.batch`` groups concurrent requests so that one vectorised
  ``predict_frame`` call answers many.
* ``Preprocessor`` validates and types instances once for every ensemble member;
  ``Combiner`` fans them out to the members and combines their probabilities.
"""

import asyncio
import itertools
import logging
import random
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from mlsd_ray.models.package import read_manifest
from mlsd_ray.monitor.log import PredictionLogger
from mlsd_ray.predict import InvalidInput, Predictor
from mlsd_ray.serve.combine import combiner_from_config
from mlsd_ray.serve.requests import RETRY_AFTER_S, BadRequest, PredictBody, parse_predict_body
from mlsd_ray.serve.stats import ServeStats

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 10.0

api = FastAPI(
    title="mlsd-ray model server",
    description='POST /predict {"instances": [...]} -> one probability per instance.',
)


class SchemaOnly(Predictor):
    """A ``Predictor`` that only validates (reads the manifest, loads no weights)."""

    def __init__(self, model_dir: str | Path) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = read_manifest(self.model_dir)
        self.version = str(self.manifest.metadata.get("version", "local"))
        inputs = self.manifest.inputs
        self._text_only = len(inputs) == 1 and inputs[0].type in ("text", "string")


@serve.deployment
class ModelServer:
    """One replica = one loaded model package (+ its prediction logger)."""

    def __init__(self, log_options: dict[str, Any] | None = None) -> None:
        self.predictor: Predictor | None = None
        self._loaded: tuple[str, str | None, str | None] | None = None
        self.logger = PredictionLogger(**log_options) if log_options else None
        self._replica = uuid.uuid4().hex[:8]
        self._batches = itertools.count()

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config``: ``model_dir``, ``version``, ``max_batch_size``,
        ``batch_wait_timeout_s``, ``inference`` (the CPU path of a transformer). Serve calls it at
        start and on every user_config change."""
        batcher = cast(Any, self._predict_batch)  # @serve.batch adds these setters
        batcher.set_max_batch_size(int(config["max_batch_size"]))
        batcher.set_batch_wait_timeout_s(float(config["batch_wait_timeout_s"]))
        wanted = (str(config["model_dir"]), config.get("version"), config.get("inference"))
        if wanted != self._loaded:
            # Loaded off the event loop: requests keep being answered by the old model until
            # the new one is ready, then a single assignment swaps them.
            self.predictor = await asyncio.to_thread(
                Predictor, wanted[0], version=wanted[1], inference=wanted[2]
            )
            self._loaded = wanted
        log.info(
            "model %s version %s ready (batch <= %s, wait %s s)",
            self._ready.manifest.name,
            self._ready.version,
            config["max_batch_size"],
            config["batch_wait_timeout_s"],
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
        return self._ready.describe()

    async def predict(self, instances: list[Any], request_id: str) -> dict[str, Any]:
        """Validate one request's instances, then wait for the batch that scores them.

        Invalid input is returned (not raised) so the ingress can answer 422 with the reason.
        """
        try:
            frame = self._ready.to_frame(instances)
        except InvalidInput as err:
            return {"error": str(err)}
        return cast(dict[str, Any], await self._predict_batch((request_id, frame)))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _predict_batch(self, items: list[tuple[str, pd.DataFrame]]) -> list[dict[str, Any]]:
        predictor = self._ready  # one model for the whole batch, even if a swap comes now
        frames = [frame for _, frame in items]
        merged = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        # Off the event loop, so that requests keep arriving (and the next batch keeps
        # forming) while this one is scored.
        scores = await asyncio.to_thread(predictor.predict_frame, merged)
        batch_id = f"{self._replica}-{next(self._batches)}"
        answers, start = [], 0
        for request_id, frame in items:
            part = scores[start : start + len(frame)]
            start += len(frame)
            if self.logger is not None:
                self.logger.log(request_id, frame, part, predictor.version)
            answers.append(
                {
                    "predictions": part.tolist(),
                    "labels": predictor.labels(part),
                    "model_version": predictor.version,
                    "model_name": predictor.manifest.name,
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


@serve.deployment
class Preprocessor:
    """Validation and typing of raw instances, once for all ensemble members."""

    def __init__(self, model_dir: str) -> None:
        self.schema = SchemaOnly(model_dir)

    def clean(self, instances: list[Any]) -> dict[str, Any]:
        try:
            frame = self.schema.to_frame(instances)
        except InvalidInput as err:
            return {"error": str(err)}
        # Plain Python values (None for missing), so members re-validate them as given.
        frame = frame.astype(object).where(frame.notna(), None)
        return {"instances": frame.to_dict(orient="records")}


@serve.deployment
class Combiner:
    """Preprocess -> every member (batched in its own deployment) -> one probability."""

    def __init__(
        self,
        preprocessor: DeploymentHandle,
        members: list[DeploymentHandle],
        config: dict[str, Any],
        log_options: dict[str, Any] | None = None,
    ) -> None:
        self.preprocessor = preprocessor
        self.members = members
        self.names: list[str] = config["members"]
        self.combiner = combiner_from_config(config)
        self.logger = PredictionLogger(**log_options) if log_options else None

    async def describe(self) -> dict[str, Any]:
        infos = await asyncio.gather(*(m.describe.remote() for m in self.members))
        return {
            "name": "ensemble(" + "+".join(i["name"] for i in infos) + ")",
            "version": "+".join(str(i["version"]) for i in infos),
            "members": infos,
        }

    async def predict(self, instances: list[Any], request_id: str) -> dict[str, Any]:
        cleaned = await self.preprocessor.clean.remote(instances)
        if "error" in cleaned:
            return cast(dict[str, Any], cleaned)
        rows = cleaned["instances"]
        answers = await asyncio.gather(*(m.predict.remote(rows, request_id) for m in self.members))
        for answer in answers:
            if "error" in answer:
                return cast(dict[str, Any], answer)
        scores = np.column_stack([a["predictions"] for a in answers])
        combined = self.combiner.combine(scores)
        version = "+".join(str(a["model_version"]) for a in answers)
        if self.logger is not None:
            self.logger.log(request_id, rows, combined, version)
        return {
            "predictions": combined.tolist(),
            "model_version": version,
            "model_name": "ensemble(" + "+".join(a["model_name"] for a in answers) + ")",
            "members": {n: a["predictions"] for n, a in zip(self.names, answers, strict=True)},
            # Batches form in the members; report the first member's.
            "batch_id": answers[0]["batch_id"],
            "batch_size": answers[0]["batch_size"],
        }

    def __del__(self) -> None:
        logger = getattr(self, "logger", None)
        if logger is not None:
            logger.close()


async def _wait(response: Awaitable[Any]) -> Any:
    return await response


@serve.deployment
@serve.ingress(api)
class Ingress:
    """HTTP edge: request checks, rollout routing, timeouts, load shedding, stats.

    ``settings``: ``max_instances``, ``request_timeout_s``, ``rollout_mode``
    ("none" | "canary" | "shadow"), ``canary_weight``, ``seed`` (None = random).
    """

    def __init__(
        self,
        primary: DeploymentHandle,
        challenger: DeploymentHandle | None,
        settings: dict[str, Any],
    ) -> None:
        self.primary = primary
        self.challenger = challenger
        self.settings = settings
        self.max_instances = int(settings["max_instances"])
        self.timeout_s = float(settings["request_timeout_s"])
        self.mode = settings.get("rollout_mode", "none") if challenger is not None else "none"
        self.canary_weight = float(settings.get("canary_weight", 0.0))
        self.rng = random.Random(settings.get("seed"))
        self.counters = ServeStats()
        self._shadow_tasks: set[asyncio.Task[Any]] = set()

    def _reply(
        self,
        status: int,
        body: dict[str, Any],
        t0: float,
        instances: int = 0,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        self.counters.record(status, (time.perf_counter() - t0) * 1000, instances)
        # Serve's proxy already answers with the X-Request-Id header (the same id).
        return JSONResponse(body, status_code=status, headers=headers)

    def _route(self) -> str:
        if self.mode == "canary" and self.rng.random() < self.canary_weight:
            return "challenger"
        return "primary"

    async def _call(self, handle: DeploymentHandle, instances: list[Any], rid: str) -> Any:
        response = handle.predict.remote(instances, rid)
        try:
            return await asyncio.wait_for(_wait(response), self.timeout_s)
        except asyncio.TimeoutError:
            response.cancel()
            raise BadRequest(
                504, f"no answer within {self.timeout_s} s (deployment.request_timeout_s)"
            ) from None
        except (BackPressureError, DeploymentUnavailableError) as err:
            raise BadRequest(503, f"overloaded, retry later: {type(err).__name__}") from None

    def _shadow(self, instances: list[Any], rid: str) -> None:
        """Send a copy to the challenger; its answer is logged by its replica, never returned."""
        assert self.challenger is not None

        async def run() -> None:
            try:
                await self._call(self.challenger, instances, rid)  # type: ignore[arg-type]
            except Exception as err:  # a failing shadow must not touch the live answer
                log.warning("shadow request %s failed: %s", rid, err)

        task = asyncio.get_running_loop().create_task(run())
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    @api.post(
        "/predict",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": PredictBody.model_json_schema()}},
            }
        },
    )
    async def predict(self, request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        # Serve's proxy keeps a client's X-Request-Id and makes one up otherwise.
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        route = self._route()
        try:
            instances = parse_predict_body(await request.body(), self.max_instances)
            handle = self.challenger if route == "challenger" else self.primary
            answer = await self._call(handle, instances, request_id)  # type: ignore[arg-type]
            if "error" in answer:
                raise BadRequest(422, answer["error"])
        except BadRequest as err:
            headers = {"Retry-After": str(RETRY_AFTER_S)} if err.status_code == 503 else None
            body = {"detail": err.reason, "request_id": request_id}
            return self._reply(err.status_code, body, t0, headers=headers)
        except Exception:
            log.exception("request %s failed", request_id)
            body = {
                "detail": "internal error while predicting; see the replica logs",
                "request_id": request_id,
            }
            return self._reply(500, body, t0)
        if self.mode == "shadow":
            self._shadow(instances, request_id)
        self.counters.record_batch(answer["batch_id"], answer["batch_size"])
        body = {
            "predictions": answer["predictions"],
            "model_version": answer["model_version"],
            "model_name": answer["model_name"],
            "route": "challenger" if route == "challenger" else "champion",
            "request_id": request_id,
        }
        headers = {"X-Model-Version": str(answer["model_version"])}
        return self._reply(200, body, t0, instances=len(instances), headers=headers)

    @api.get("/healthz")
    async def healthz(self) -> JSONResponse:
        """Healthy = the model deployment answers (not just this process being up)."""
        try:
            info = await asyncio.wait_for(_wait(self.primary.describe.remote()), HEALTH_TIMEOUT_S)
        except Exception as err:
            return JSONResponse({"status": "unavailable", "detail": str(err)}, status_code=503)
        return JSONResponse(
            {"status": "ok", "model_version": info["version"], "model_name": info["name"]}
        )

    @api.get("/stats")
    async def stats(self) -> dict[str, Any]:
        return self.counters.snapshot() | {
            "rollout": self.mode,
            "shadow_in_flight": len(self._shadow_tasks),
        }
