"""A new user's mistake: Ray runs (here: the test session's), RAY_ADDRESS names another address."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration
CARD = Path(__file__).resolve().parents[2] / "systems" / "harmful_content.yaml"


def test_ray_running_elsewhere_fails_fast_and_names_it(ray_cluster, tmp_path: Path) -> None:
    running = ray_cluster.get_runtime_context().gcs_address
    wrong = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mlsd_ray.cli import main; main()",
            "etl",
            str(CARD),
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "RAY_ADDRESS": wrong},
    )
    assert done.returncode == 1, done.stderr
    assert f"No Ray cluster answers at RAY_ADDRESS={wrong}" in done.stderr
    assert running in done.stderr  # the cluster that does run is named
    assert "export RAY_ADDRESS=" in done.stderr and "unset RAY_ADDRESS" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 120  # not Ray's own two-minute retry loop
