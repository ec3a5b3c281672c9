"""The Serve deployments of a model graph that needs an ingress hop, composed with handles.

    Ingress (HTTP) --> ModelServer (alias)                      canary / shadow rollouts
                   \-> ModelServer "Challenger"
                   \-> Combiner --> Preprocessor, members...    a blend as a graph

A single model without a rollout skips this graph: ``single.ModelIngress`` is edge and batched
model in one replica (one hop fewer per request).

* ``Ingress`` (FastAPI, the shared ``edge.HttpEdge``) checks the body, picks the route (canary
  share or shadow copy), bounds the wait (``request_timeout_s`` -> 504), turns backpressure
  into 503, maps every rejection to a 4xx with a reason and keeps the counters behind
  ``/stats``. It holds no model.
* ``ModelServer`` holds one model package. Which package (and the batch settings) arrive as
  the deployment's ``user_config`` (``reconfigure``), so they are set at run time; a
  redeploy starts new replicas before old ones stop, so promotion and rollback drop no
  request. ``@serve.batch`` groups concurrent requests so that one vectorised
  ``predict_frame`` call answers many.
* ``Preprocessor`` validates and types instances once for every member of a registered blend
  (``deployment.ensemble.graph``); ``Combiner`` fans them out to the members and combines
  their probabilities with the blend's stored combiner (nothing is fitted at deploy time).
"""

import asyncio
import logging
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from mlsd_ray.models.package import read_manifest
from mlsd_ray.monitor.log import PredictionLogger
from mlsd_ray.predict import InvalidInput, Predictor
from mlsd_ray.serve.edge import (
    HEALTH_TIMEOUT_S,
    PREDICT_OPENAPI,
    HttpEdge,
    _wait,
    json_response,
    request_id_of,
)
from mlsd_ray.serve.ensemble import combined_answer
from mlsd_ray.serve.requests import BadRequest
from mlsd_ray.serve.scoring import BatchedModel

log = logging.getLogger(__name__)

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
class ModelServer(BatchedModel):
    """One loaded model package behind an ingress (canary, shadow, ensemble members)."""


@serve.deployment
class Preprocessor:
    """Validation and typing of raw instances, once for all ensemble members."""

    def __init__(
        self, model_dir: str, source: dict[str, str] | None = None, subdir: str = ""
    ) -> None:
        from mlsd_ray.registry import localize  # the driver's folder, or a registry download

        self.schema = SchemaOnly(localize(model_dir, source) / subdir)

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
    """Preprocess -> every member of a registered blend (batched in its own deployment) -> the
    blend's stored combiner (``ensemble.combiner_config``): one probability and label."""

    def __init__(
        self,
        preprocessor: DeploymentHandle,
        members: list[DeploymentHandle],
        config: dict[str, Any],
        log_options: dict[str, Any] | None = None,
    ) -> None:
        self.preprocessor = preprocessor
        self.members = members
        self.config = config
        self.names: list[str] = config["members"]
        self.logger = PredictionLogger(**log_options) if log_options else None

    async def describe(self) -> dict[str, Any]:
        infos = await asyncio.gather(*(m.describe.remote() for m in self.members))
        return {
            "name": self.config["model_name"],
            "kind": "blend",
            "version": self.config["model_version"],
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
        combined, labels = combined_answer(self.config, scores)
        version = self.config["model_version"]
        if self.logger is not None:
            self.logger.log(request_id, rows, combined, version)
        return {
            "predictions": combined.tolist(),
            "labels": labels,
            "model_version": version,
            "model_name": self.config["model_name"],
            "members": {n: a["predictions"] for n, a in zip(self.names, answers, strict=True)},
            # Batches form in the members; report the first member's.
            "batch_id": answers[0]["batch_id"],
            "batch_size": answers[0]["batch_size"],
        }

    def __del__(self) -> None:
        logger = getattr(self, "logger", None)
        if logger is not None:
            logger.close()


@serve.deployment
@serve.ingress(api)
class Ingress(HttpEdge):
    """HTTP edge in front of a graph: request checks, rollout routing, timeouts, load
    shedding, stats. The single-model path does not use it (``single.ModelIngress``).

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
        self.init_edge(settings["max_instances"], settings["request_timeout_s"])
        self.mode = settings.get("rollout_mode", "none") if challenger is not None else "none"
        self.canary_weight = float(settings.get("canary_weight", 0.0))
        self.rng = random.Random(settings.get("seed"))
        self._shadow_tasks: set[asyncio.Task[Any]] = set()

    def _route(self) -> str:
        if self.mode == "canary" and self.rng.random() < self.canary_weight:
            return "challenger"
        return "primary"

    async def _call(self, handle: DeploymentHandle, instances: list[Any], rid: str) -> Any:
        response = handle.predict.remote(instances, rid)
        try:
            return await self.bounded(response, response.cancel)
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

    @api.post("/predict", openapi_extra=PREDICT_OPENAPI)
    async def predict(self, request: Request) -> Response:
        route = self._route()
        handle = self.challenger if route == "challenger" else self.primary
        assert handle is not None

        async def score(instances: list[Any], rid: str) -> dict[str, Any]:
            return cast(dict[str, Any], await self._call(handle, instances, rid))

        extra = {"route": "challenger" if route == "challenger" else "champion"}
        rid = request_id_of(request)
        response, instances = await self.answer(request, score, extra, rid)
        if instances is not None and self.mode == "shadow":
            self._shadow(instances, rid)
        return response

    @api.get("/healthz")
    async def healthz(self) -> Response:
        """Healthy = the model deployment answers (not just this process being up)."""
        try:
            info = await asyncio.wait_for(_wait(self.primary.describe.remote()), HEALTH_TIMEOUT_S)
        except Exception as err:
            return json_response({"status": "unavailable", "detail": str(err)}, 503)
        return json_response(
            {"status": "ok", "model_version": info["version"], "model_name": info["name"]}
        )

    @api.get("/stats")
    async def stats(self) -> dict[str, Any]:
        return self.counters.snapshot() | {
            "rollout": self.mode,
            "shadow_in_flight": len(self._shadow_tasks),
        }
