"""`ray job submit` of the pipeline job against a local head that this test starts (and stops:
only its own processes, never `ray stop`, which would end every Ray on the machine)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import REPO, fast_overrides

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def ray_head(tmp_path: Path):
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",  # the job's python is this venv's
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)
    port, dash = free_port(), free_port()
    temp = Path("/tmp") / f"rayjob{port}"  # short: Ray's socket paths have a length limit
    head_log = tmp_path / "ray_head.log"
    head = subprocess.Popen(
        [
            str(bin_dir / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--dashboard-port={dash}",
            "--dashboard-host=127.0.0.1",
            "--num-cpus=2",
            "--include-dashboard=true",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=head_log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dash}"
    auth = Path.home() / ".ray" / "auth_token"
    client_env = dict(env)
    tried = ""
    deadline = time.time() + 240  # a loaded 2-core machine can take minutes to start a head
    while time.time() < deadline and head.poll() is None:
        if auth.exists():
            client_env["RAY_AUTH_MODE"] = "token"  # Ray 2.60 heads turn on token auth
        ok = subprocess.run(
            [str(bin_dir / "ray"), "job", "list", "--address", address],
            env=client_env,
            capture_output=True,
            text=True,
        )
        if ok.returncode == 0:
            break
        tried = ok.stderr
        time.sleep(2)
    else:
        if head.poll() is None:
            os.killpg(head.pid, 9)
        pytest.fail(
            f"ray head did not come up (exit {head.poll()}): {tried[-1500:]}\n"
            f"head output: {head_log.read_text()[-1500:]}"
        )
    yield address, client_env, temp
    os.killpg(head.pid, 15)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, 9)
    shutil.rmtree(temp, ignore_errors=True)


def test_pipeline_job_runs_on_a_submitted_cluster(ray_head, tmp_path: Path) -> None:
    address, env, temp = ray_head
    workdir = tmp_path / "work"
    cmd = [
        str(Path(sys.executable).parent / "ray"),
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        str(REPO),
        "--",
        "python",
        "jobs/pipeline.py",
        "--card",
        "systems/harmful_content.yaml",
        "--workdir",
        str(workdir),
    ]
    for o in fast_overrides():
        cmd += ["--set", o]
    deadline = time.time() + 240
    while True:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        # The head answers before its job agent is up (slower on a loaded machine); Ray says
        # to try again later.
        if "No available agent" not in proc.stdout + proc.stderr or time.time() > deadline:
            break
        time.sleep(5)
    if proc.returncode != 0:
        agent_log = sorted(temp.glob("session_latest/logs/dashboard_agent*.log"))
        tail = agent_log[-1].read_text()[-3000:] if agent_log else "(no agent log)"
        pytest.fail(f"job failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\nagent:\n{tail}")
    assert "succeeded" in proc.stdout
    summary = json.loads((workdir / "pipeline_summary.json").read_text())
    assert set(summary["seconds"]) == {"etl", "train", "evaluate", "register"}
    assert summary["register"]["registered_version"] == "1"
