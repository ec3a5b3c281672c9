"""``mlsd ui``: the tools people already use, on 127.0.0.1, pointed at a workdir.

- MLflow's UI over the workdir's tracking store (``mlflow ui`` as a child process: only
  registry.py imports mlflow, and the UI is MLflow's own server anyway);
- the address of Ray's dashboard when a cluster runs (``RAY_ADDRESS``); a local ``mlsd run``
  starts and stops its own Ray, so there is nothing to open afterwards;
- the Grafana dashboard for the Prometheus metrics that serving exports
  (``deploy/grafana/mlsd-serving.json``), to import into a Grafana that reads Ray's metrics.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from mlsd_ray.errors import ServiceError
from mlsd_ray.runtime import check_port_free
from mlsd_ray.settings import Workdir, ray_address

log = logging.getLogger(__name__)
STARTUP_S = 240  # MLflow's server imports a lot; on a loaded 2-core machine that takes minutes

GRAFANA_DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "mlsd-serving.json"


def mlflow_command(w: Workdir, host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        w.tracking_uri,
        "--default-artifact-root",
        w.artifact_root,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def ray_dashboard() -> tuple[str | None, str]:
    """(dashboard URL or None, a sentence saying what was found)."""
    address = ray_address()
    if not address:
        return None, (
            "no Ray cluster (RAY_ADDRESS is not set; `mlsd run` starts and stops its own Ray). "
            "Start one with `ray start --head --port 6380 --dashboard-host 127.0.0.1` and set "
            "RAY_ADDRESS to see its dashboard"
        )
    import ray

    from mlsd_ray.runtime import check_ray_address

    check_ray_address(address)
    context = ray.init(address=address, log_to_driver=False, ignore_reinit_error=True)
    try:
        url = getattr(context, "dashboard_url", None) or ""
    finally:
        ray.shutdown()
    if not url:
        return None, f"the Ray cluster at {address} runs without a dashboard"
    url = url if "://" in url else f"http://{url}"
    return url, f"Ray dashboard of the cluster at {address}"


def wait_http(host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(
                f"MLflow's UI exited with code {proc.returncode} before it listened.",
                fix="run `mlsd ui -v` to see its log",
            )
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise ServiceError(f"MLflow's UI did not listen on {host}:{port} within {timeout_s:.0f} s.")


def start_mlflow(
    w: Workdir, host: str, port: int, log_file: Path | None
) -> subprocess.Popen[bytes]:
    if not (w.root / "mlflow.db").is_file() and "MLFLOW_TRACKING_URI" not in os.environ:
        raise ServiceError(
            f"No MLflow store in {w.root}.",
            why="nothing has been registered from this workdir yet",
            fix="run `mlsd run CARD --workdir DIR` first, or point --workdir at a run's folder",
        )
    check_port_free(host, port, what="--port")
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(mlflow_command(w, host, port), stdout=out, stderr=out)
    try:
        wait_http(host, port, STARTUP_S, proc)
    except BaseException:
        proc.terminate()  # never leave a half-started server behind
        proc.wait(timeout=20)
        raise
    return proc
