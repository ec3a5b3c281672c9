"""A real Prometheus (the Debian package) on loopback, with the repo's alert rules, scrapes the
monitor's exporter; drifted traffic goes through the prediction logger and the drift windows,
and the drift alert fires. Durations in the rules are shortened to seconds for the test."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mlsd_ray.monitor.log import PredictionLogger, read_prediction_log
from mlsd_ray.monitor.metrics import MonitorMetrics
from mlsd_ray.monitor.windows import drift_windows
from mlsd_ray.spec import load_card
from tests.conftest import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"


@pytest.fixture()
def exporter() -> Iterator[tuple[MonitorMetrics, int]]:
    card = load_card(
        REPO / "systems" / "event_registration.yaml",
        overrides=["monitoring.loop.drift.min_rows=100", "monitoring.loop.drift.ignore=[Month]"],
    )
    metrics = MonitorMetrics(card)
    port = free_port()
    server = metrics.start(port)
    yield metrics, port
    server.shutdown()


@pytest.fixture()
def prometheus(tmp_path: Path, exporter: tuple[MonitorMetrics, int]) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (apt-get install prometheus; .ci/run does it)"
    rules = re.sub(r"for: \d+[smh]", "for: 2s", RULES.read_text())
    (tmp_path / "alerts.yml").write_text(rules)
    _, target = exporter
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [alerts.yml]\n"
        "scrape_configs:\n"
        f"  - job_name: mlsd\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, 60)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _until(check: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout_s} s")


def _alerts(url: str) -> dict[str, str]:
    body = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()
    return {(a["labels"]["alertname"]): a["state"] for a in body["data"]["alerts"]}


def _traffic(rng: np.random.Generator, n: int, page_values_shift: float) -> list[dict[str, Any]]:
    return [
        {"PageValues": float(v), "BounceRates": float(b)}
        for v, b in zip(
            rng.exponential(5, n) + page_values_shift, rng.uniform(0, 0.2, n), strict=True
        )
    ]


def test_drifted_traffic_fires_the_drift_alert(
    tmp_path: Path, exporter: tuple[MonitorMetrics, int], prometheus: str
) -> None:
    metrics, _ = exporter
    card = load_card(
        REPO / "systems" / "event_registration.yaml",
        overrides=["monitoring.loop.drift.min_rows=100", "monitoring.loop.drift.ignore=[Month]"],
    )
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(_traffic(rng, 2000, 0.0))
    start = datetime.now(timezone.utc)

    def serve_and_watch(shift: float) -> dict[str, Any]:
        log_uri = str(tmp_path / f"log-{shift}")
        with PredictionLogger(log_uri, 1000, 600) as logger:
            rows = _traffic(rng, 300, shift)
            for i in range(0, 300, 10):
                logger.log(f"r{shift}-{i}", rows[i : i + 10], rng.uniform(size=10), "1")
        metrics.observe_logger(logger.stats())
        for _ in range(50):
            metrics.observe_request(0.004, ok=True)
        served = read_prediction_log(log_uri)
        windows = [w for w in drift_windows(card, reference, served) if w["drifted"] is not None]
        assert len(windows) == 1
        metrics.observe_window(windows[0], consecutive=int(bool(windows[0]["drifted"])))
        return windows[0]

    calm = serve_and_watch(0.0)
    assert calm["drifted"] is False
    query = f"{prometheus}/api/v1/query"
    _until(
        lambda: httpx.get(query, params={"query": "mlsd_drift_alerting_features"}).json()["data"][
            "result"
        ],
        30,
    )
    time.sleep(4)  # longer than the shortened `for:`: a false alarm would be firing by now
    assert _alerts(prometheus).get("MlsdFeatureDrift") is None
    assert _alerts(prometheus).get("MlsdHighErrorRate") is None

    drifted = serve_and_watch(20.0)
    assert drifted["drifted"] is True and "PageValues" in drifted["alerting"]
    _until(lambda: _alerts(prometheus).get("MlsdFeatureDrift") == "firing", 60)
    assert datetime.now(timezone.utc) - start < timedelta(minutes=2)

    # The watch loop's own health: a failed step pages.
    assert _alerts(prometheus).get("MlsdWatchStepFailing") is None
    metrics.observe_decision({"action": "step_failed", "at": time.time()}, {"phase": "watching"})
    _until(lambda: _alerts(prometheus).get("MlsdWatchStepFailing") == "firing", 60)
