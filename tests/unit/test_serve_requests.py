"""Request checks and /stats counters: pure code, no Ray."""

from __future__ import annotations

import json

import pytest

from mlsd_ray.serve.requests import MAX_BODY_BYTES, BadRequest, parse_predict_body
from mlsd_ray.serve.stats import ServeStats


def test_valid_body_returns_the_instances():
    assert parse_predict_body(b'{"instances": ["a", {"text": "b"}]}', 4) == ["a", {"text": "b"}]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"\xff\xfe", 400, "not valid JSON"),
        (b"  ", 400, "empty"),
        (b"[1, 2]", 400, "got a JSON array"),
        (b"null", 400, "got a JSON null"),
        (b'{"instance": []}', 422, "'instances' is missing"),
        (b'{"instances": [1], "extra": 1}', 422, "unknown key(s) ['extra']"),
        (b'{"instances": {"text": "a"}}', 422, "must be a list, got a JSON object"),
        (b'{"instances": 3}', 422, "must be a list, got a JSON number"),
        (b'{"instances": []}', 422, "empty"),
        (b'{"instances": [1, 2, 3]}', 422, "has 3 items; at most 2"),
    ],
)
def test_bad_bodies_map_to_4xx_with_reason(body, status, reason):
    with pytest.raises(BadRequest) as err:
        parse_predict_body(body, max_instances=2)
    assert err.value.status_code == status
    assert reason in err.value.reason


def test_oversized_body_is_413():
    body = json.dumps({"instances": ["x" * MAX_BODY_BYTES]}).encode()
    with pytest.raises(BadRequest) as err:
        parse_predict_body(body, max_instances=2)
    assert err.value.status_code == 413


def test_stats_count_each_batch_once():
    stats = ServeStats()
    for _ in range(3):  # three requests answered by one batch of 3
        stats.record_batch("r1-0", 3)
        stats.record(200, 10.0, instances=1)
    stats.record_batch("r2-0", 1)  # another replica, its batch 0
    stats.record(200, 30.0, instances=2)
    stats.record(422, 1.0)
    stats.record(500, 1.0)
    snap = stats.snapshot()
    assert snap["requests"] == {"total": 6, "ok": 4, "client_error": 1, "server_error": 1}
    assert snap["instances"] == 5
    assert snap["batches"] == {
        "count": 2,
        "mean_size": 2.0,
        "max_size": 3,
        "size_histogram": {"1": 1, "3": 1},
    }
    assert snap["latency_ms"]["window"] == 6
    assert snap["latency_ms"]["p50"] == pytest.approx(10.0)  # of 10, 10, 10, 30, 1, 1


def test_empty_stats():
    snap = ServeStats().snapshot()
    assert snap["batches"]["count"] == 0 and snap["latency_ms"]["p50"] is None
