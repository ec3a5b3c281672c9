"""The shortest path for a single-model card: one deployment that is both the HTTP ingress and
the batched model.

    HTTP --> proxy --> ModelIngress (FastAPI routes + @serve.batch + the model)

Behind Serve's Python proxy a request used to cross three processes (proxy, ingress, model
replica), each parsing, routing and serialising it; here it crosses two, and with HAProxy or
direct ingress (``deployment.proxy``) the replica's own HTTP server takes it. Concurrent
requests reach the batch queue of the replica that holds them, so batches fill from the HTTP
edge directly. Canary, shadow and ensembles keep the ingress hop (``deployments.Ingress``).

No ``from __future__ import annotations`` here: FastAPI must see ``Request`` as a class, not
a string, in the routes Serve wraps (it took ``request`` for a query parameter).
"""

import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve

from mlsd_ray.serve.edge import PREDICT_OPENAPI, HttpEdge, json_response
from mlsd_ray.serve.scoring import BatchedModel

api = FastAPI(
    title="mlsd-ray model server",
    description='POST /predict {"instances": [...]} -> one prediction (and label) per instance.',
)


@serve.deployment
@serve.ingress(api)
class ModelIngress(BatchedModel, HttpEdge):
    """Edge and model in one replica. ``settings``: ``max_instances``, ``request_timeout_s``;
    the model and batch settings come as ``user_config`` (``reconfigure``), as for
    ``ModelServer``."""

    def __init__(self, settings: dict[str, Any], log_options: dict[str, Any] | None = None) -> None:
        BatchedModel.__init__(self, log_options)
        self.init_edge(settings["max_instances"], settings["request_timeout_s"])

    @api.post("/predict", openapi_extra=PREDICT_OPENAPI)
    async def http_predict(self, request: Request) -> Response:
        async def score(instances: list[Any], rid: str) -> dict[str, Any]:
            # A timed-out request is cancelled: the batcher drops it before scoring.
            return await self.bounded(self.predict(instances, rid))  # type: ignore[no-any-return]

        response, _ = await self.answer(request, score)
        return response

    @api.get("/healthz")
    async def healthz(self) -> Response:
        """Healthy = this replica has a model loaded (it is the model)."""
        try:
            info = self.describe()
        except Exception as err:
            return json_response({"status": "unavailable", "detail": str(err)}, 503)
        return json_response(
            {"status": "ok", "model_version": info["version"], "model_name": info["name"]}
        )

    @api.get("/stats")
    async def stats(self) -> dict[str, Any]:
        """This replica's counters (each replica counts its own requests)."""
        return self.counters.snapshot() | {
            "rollout": "none",
            "replica": self._replica,
            "pid": os.getpid(),  # which process answers (operators, the replica-kill test)
            # The CPU path really run and its intra-op threads (= the replica's num_cpus).
            **{k: v for k, v in self.describe().items() if k in ("inference", "threads")},
        }
