"""The HTTP edge of a served card: body checks, timeouts, error mapping, counters, metrics.

``HttpEdge`` is a plain class shared by the two deployments that take HTTP: ``Ingress`` (in
front of a graph: canary, shadow, ensembles) and ``ModelIngress`` (the single-model path, edge
and batched model in one replica). ``answer`` turns a request into a small JSON answer:

    {"predictions": [...], "labels": [...], "model_version": "3", "model_name": "...",
     "request_id": "..."}

``labels`` are decided at the package's stored business threshold (binary) or by argmax
(multiclass); regression answers have none. Every failure becomes a 4xx/5xx with a reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from mlsd_ray.serve import metrics
from mlsd_ray.serve.requests import RETRY_AFTER_S, BadRequest, PredictBody, parse_predict_body
from mlsd_ray.serve.stats import ServeStats

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 10.0

#: ``openapi_extra`` of ``POST /predict``: the body is parsed by hand (every malformed body gets
#: a 4xx with a reason), so the schema is given explicitly for clients and fuzzers.
PREDICT_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PredictBody.model_json_schema()}},
    }
}

Scorer = Callable[[list[Any], str], Awaitable[dict[str, Any]]]


def json_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """Compact JSON (no spaces): the answers are small, and so is their serialisation."""
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


class HttpEdge:
    """Mixed into the HTTP deployments; call ``init_edge`` from their ``__init__``."""

    def init_edge(self, max_instances: int, request_timeout_s: float) -> None:
        self.max_instances = int(max_instances)
        self.timeout_s = float(request_timeout_s)
        self.counters = ServeStats()
        self.edge_metrics = metrics.EdgeMetrics()

    def reply(
        self,
        status: int,
        body: dict[str, Any],
        t0: float,
        instances: int = 0,
        headers: dict[str, str] | None = None,
    ) -> Response:
        latency_ms = (time.perf_counter() - t0) * 1000
        self.counters.record(status, latency_ms, instances)
        self.edge_metrics.answered(status, latency_ms)
        return json_response(body, status, headers)

    async def bounded(self, call: Awaitable[Any], cancel: Callable[[], Any] | None = None) -> Any:
        """``call`` within ``request_timeout_s``, else 504 (and the call is cancelled)."""
        try:
            return await asyncio.wait_for(_wait(call), self.timeout_s)
        except asyncio.TimeoutError:
            if cancel is not None:
                cancel()
            raise BadRequest(
                504, f"no answer within {self.timeout_s} s (deployment.request_timeout_s)"
            ) from None

    async def answer(
        self,
        request: Request,
        score: Scorer,
        extra: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> tuple[Response, list[Any] | None]:
        """Parse, score, reply. Returns the response and the instances when it succeeded."""
        t0 = time.perf_counter()
        request_id = request_id or request_id_of(request)
        try:
            instances = parse_predict_body(await request.body(), self.max_instances)
            result = await score(instances, request_id)
            if "error" in result:
                raise BadRequest(422, result["error"])
        except BadRequest as err:
            headers = {"Retry-After": str(RETRY_AFTER_S)} if err.status_code == 503 else None
            body = {"detail": err.reason, "request_id": request_id}
            return self.reply(err.status_code, body, t0, headers=headers), None
        except Exception:
            log.exception("request %s failed", request_id)
            body = {
                "detail": "internal error while predicting; see the replica logs",
                "request_id": request_id,
            }
            return self.reply(500, body, t0), None
        self.counters.record_batch(result["batch_id"], result["batch_size"])
        out: dict[str, Any] = {"predictions": result["predictions"]}
        if "labels" in result:
            out["labels"] = result["labels"]
        out |= {
            "model_version": result["model_version"],
            "model_name": result["model_name"],
            **(extra or {}),
            "request_id": request_id,
        }
        headers = {"X-Model-Version": str(result["model_version"])}
        return self.reply(200, out, t0, instances=len(instances), headers=headers), instances


def request_id_of(request: Request) -> str:
    """The client's X-Request-Id (Serve's proxy keeps it, and makes one up otherwise; the
    direct-ingress/HAProxy path may not), else a new one."""
    return request.headers.get("x-request-id") or uuid.uuid4().hex


async def _wait(response: Awaitable[Any]) -> Any:
    return await response
