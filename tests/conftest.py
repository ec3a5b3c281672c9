"""Shared fixtures: one local Ray per session, one S3 server on loopback, real data paths.

Services are real: moto's S3 server on 127.0.0.1, PostgreSQL on 127.0.0.1:5432, a sqlite MLflow
store under tmp_path. Unit tests never touch these fixtures and never start Ray.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATASETS} (a fresh clone has none)")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3-compatible server on a free loopback port; env points every client at it."""
    # The venv's own moto first: an older one elsewhere on PATH fails pyarrow's S3 writes.
    local = Path(sys.executable).parent / "moto_server"
    moto = str(local) if local.exists() else shutil.which("moto_server") or "moto_server"
    port = free_port()
    proc = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(600):  # 60 s: on a loaded machine (load 100 on 2 cores) 10 s was too short
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto_server did not start")
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(env)
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_bucket(s3_server):
    """A fresh bucket on the loopback S3 server; returns its name."""
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    name = "mlsd-test"
    if not fs.exists(name):
        fs.mkdir(name)
    return name


@pytest.fixture(scope="session")
def ray_cluster(s3_server):
    """One local Ray for the whole session. The S3 server starts first so that workers inherit
    its endpoint."""
    import ray

    from mlsd_ray.runtime import ensure_ray

    ensure_ray(num_cpus=2)
    yield ray
    ray.shutdown()
