"""`mlsd ui`: MLflow's UI on 127.0.0.1 over a workdir's store; the Grafana dashboard's queries."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "mlsd-serving.json"


def test_mlsd_ui_serves_the_workdirs_mlflow_store(tmp_path: Path) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.create_experiment("mlsd-ui-test", artifact_location=str(tmp_path / "mlartifacts"))
    mlflow.set_tracking_uri("")
    port = free_port()
    env = {**os.environ, "RAY_ADDRESS": "", "MLFLOW_TRACKING_URI": ""}
    env.pop("MLFLOW_TRACKING_URI")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from mlsd_ray.cli import main; main()",
            "ui",
            "--workdir",
            str(tmp_path),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        found = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and found is None:
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search",
                    params={"max_results": 50},
                    timeout=5,
                )
                if r.status_code == 200:
                    found = [e["name"] for e in r.json().get("experiments", [])]
            except httpx.HTTPError:
                time.sleep(0.5)
        assert found is not None and "mlsd-ui-test" in found
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert f"MLflow UI:       http://127.0.0.1:{port}" in out, (out, err)
    assert "Ray dashboard:   -  (no Ray cluster" in out
    assert str(DASHBOARD) in out


def test_mlsd_ui_without_a_store_says_what_to_run(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mlsd_ray.cli import main; main()",
            "ui",
            "--workdir",
            str(tmp_path / "empty"),
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    assert done.returncode == 1 and "No MLflow store" in done.stderr
    assert "mlsd run CARD" in done.stderr


def test_grafana_dashboard_queries_are_valid_promql_on_serving_metrics(tmp_path: Path) -> None:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert len(exprs) >= 7 and {p["type"] for p in board["panels"]} >= {"timeseries", "heatmap"}
    used = set(re.findall(r"ray_(mlsd_[a-z_]+?)(?:_bucket|_sum|_count)?\b", " ".join(exprs)))
    metrics_py = REPO / "mlsd_ray" / "serve" / "metrics.py"
    if metrics_py.is_file():  # the serving metrics' own names (Ray exports them as ray_<name>)
        declared = set(re.findall(r'"(mlsd_[a-z_]+)"', metrics_py.read_text()))
        assert used <= declared, used - declared
    assert {"mlsd_requests_total", "mlsd_request_latency_ms"} <= used
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian's prometheus) not installed")
    rules = {
        "groups": [
            {
                "name": "board",
                "rules": [{"record": f"mlsd:panel_{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
