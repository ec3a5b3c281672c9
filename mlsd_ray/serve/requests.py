"""Checking a ``POST /predict`` body before it reaches the model.

Kept apart from the deployments (and free of Ray) so that every rejection reason is unit
tested. Each problem maps to a 4xx with a sentence saying what to change, never to a 500.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Seconds a client is told to wait (Retry-After) when the service sheds load; here, not in
#: app.py, so the deployments need not import the app builder (that was an import cycle).
RETRY_AFTER_S = 1
#: Bodies larger than this are refused before parsing (413).
MAX_BODY_BYTES = 8 * 1024 * 1024


class BadRequest(ValueError):
    """The request cannot be served as sent; ``status_code`` is the HTTP status to answer."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


def parse_predict_body(body: bytes, max_instances: int) -> list[Any]:
    """``{"instances": [...]}`` -> the list of raw instances.

    400 for a body that is not JSON or not an object, 413 for an oversized body, 422 for a
    missing/extra key, a non-list, an empty list or more than ``max_instances`` instances.
    Whether each instance fits the model's inputs is checked by ``Predictor.to_frame``.
    """
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(413, f"request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    if not body.strip():
        raise BadRequest(400, 'request body is empty; send JSON like {"instances": [...]}')
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadRequest(400, f"request body is not valid JSON: {err}") from None
    if not isinstance(payload, dict):
        raise BadRequest(
            400,
            f'request body must be a JSON object like {{"instances": [...]}}, '
            f"got a JSON {_json_type(payload)}",
        )
    if "instances" not in payload:
        raise BadRequest(422, "'instances' is missing; send {\"instances\": [...]}")
    extra = sorted(set(payload) - {"instances"})
    if extra:
        raise BadRequest(422, f"unknown key(s) {extra}; the body takes only 'instances'")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise BadRequest(422, f"'instances' must be a list, got a JSON {_json_type(instances)}")
    if not instances:
        raise BadRequest(422, "'instances' is empty; send at least one instance")
    if len(instances) > max_instances:
        raise BadRequest(
            422,
            f"'instances' has {len(instances)} items; at most {max_instances} per request "
            "(deployment.max_instances_per_request); split the request",
        )
    return instances


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


class PredictBody(BaseModel):
    """The documented body of ``POST /predict`` (for the OpenAPI schema and fuzzers).

    The ingress parses the raw bytes itself (``parse_predict_body``) so that every malformed
    body gets a 4xx with a reason; this model only describes the contract.
    """

    model_config = ConfigDict(extra="forbid")

    #: Raw instances: a string for text-only models, else an object of input fields.
    instances: list[str | dict[str, Any]] = Field(min_length=1)
