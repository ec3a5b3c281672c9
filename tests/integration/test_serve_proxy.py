"""``deployment.proxy: haproxy``: Serve's HAProxy ingress answers, its listeners stay on
127.0.0.1, and its process is gone after shutdown, so a second start on the same ports works.

The proxy is fixed when Ray starts, so each start runs in a child process with its own local
Ray (``proxy_child.py``); the suite's shared Ray keeps the default proxy. Only haproxy
processes whose config lies in the child's own run folder are ever stopped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _start(mode: str, ports: list[int], tmp: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    run = subprocess.run(
        [sys.executable, "-m", "tests.integration.proxy_child", mode, *map(str, ports), tmp],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=env,
    )
    lines = [x for x in run.stdout.splitlines() if x.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stdout[-3000:] + run.stderr[-5000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def test_haproxy_start_stop_start_on_the_same_ports(tmp_path):
    ports = [free_port(), free_port(), free_port()]  # HTTP, stats, metrics
    for attempt in ("first", "second"):
        out = _start("haproxy", ports, str(tmp_path / attempt))
        assert out["status"] == 200, out
        answer = json.loads(out["body"])
        assert answer["labels"] and answer["model_version"]
        # HAProxy listened on the card's ports, and on loopback only.
        assert {f"127.0.0.1:{p}" for p in ports} <= set(out["listeners"]), out["listeners"]
        assert all(x.startswith("127.0.0.1:") for x in out["listeners"]), out["listeners"]
        assert out["left"] == 0  # no haproxy of ours outlived the shutdown


def test_direct_ingress_answers(tmp_path):
    """``deployment.proxy: direct``: replicas take HTTP themselves (the issue's quick try of
    direct ingress got a 500; the single-model deployment answers)."""
    out = _start("direct", [free_port(), free_port(), free_port()], str(tmp_path))
    assert out["status"] == 200, out
    assert json.loads(out["body"])["labels"]
    assert out["listeners"] == [] and out["left"] == 0  # no haproxy in this mode


def test_the_default_card_serves_through_haproxy_on_loopback(tmp_path):
    """``proxy: auto`` (the default) with a Ray this process starts: HAProxy, its stats and
    metrics listeners on free loopback ports, gone after shutdown."""
    port = free_port()
    out = _start("auto", [port, 0, 0], str(tmp_path))
    assert out["status"] == 200, out
    assert json.loads(out["body"])["labels"]
    assert f"127.0.0.1:{port}" in out["listeners"], out["listeners"]
    assert len(out["listeners"]) >= 3  # HTTP, stats, metrics
    assert all(x.startswith("127.0.0.1:") for x in out["listeners"]), out["listeners"]
    assert out["open"] == []  # nothing of this Ray listens off loopback but the known gRPC
    assert out["left"] == 0
