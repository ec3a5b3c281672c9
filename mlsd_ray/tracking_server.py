"""An MLflow tracking server every node can reach: PostgreSQL backend, artifacts on S3.

``mlsd mlflow-server`` starts ``mlflow server`` for development on 127.0.0.1. On any other
address it runs MLflow's ``basic-auth`` app, and refuses to start without the admin
credentials in the environment (``MLFLOW_AUTH_ADMIN_USERNAME`` / ``MLFLOW_AUTH_ADMIN_PASSWORD``);
clients then set ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``. Credentials are
never put on a command line, in a file this module writes, or in a log line.

Artifacts are proxied by the server (``--artifacts-destination s3://...``): clients and Serve
replicas need only the server's URL, not the bucket's credentials.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from mlsd_ray import storage
from mlsd_ray.errors import StorageError

log = logging.getLogger(__name__)
AUTH_ENV = ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD")
DEFAULT_BACKEND = "postgresql+psycopg://postgres@127.0.0.1:5432/mlsd_mlflow"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: treat as reachable from outside


@dataclass(frozen=True)
class ServerConfig:
    backend_store_uri: str = DEFAULT_BACKEND
    artifacts_destination: str = ""  # s3://bucket/prefix; empty = <state_dir>/artifacts
    host: str = "127.0.0.1"
    port: int = 5000
    state_dir: Path = Path("mlsd-mlflow-server")
    auth: bool | None = None  # None = auth exactly when the host is not loopback
    workers: int = 1

    @property
    def needs_auth(self) -> bool:
        return (not is_loopback(self.host)) if self.auth is None else self.auth

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def check_auth_env(cfg: ServerConfig) -> None:
    missing = [k for k in AUTH_ENV if not os.environ.get(k)]
    if cfg.needs_auth and missing:
        raise StorageError(
            f"Refusing to start the MLflow server on {cfg.host}: it would be reachable from "
            f"other machines without authentication ({', '.join(missing)} not set).",
            why="off loopback the server runs MLflow's basic-auth app, whose admin comes "
            "from the environment only",
            fix="export MLFLOW_AUTH_ADMIN_USERNAME and MLFLOW_AUTH_ADMIN_PASSWORD (from a "
            "secret store), or bind --host 127.0.0.1",
        )


def ensure_database(uri: str) -> None:
    """Create the PostgreSQL database named in ``uri`` if it is missing (development)."""
    if not uri.startswith("postgresql"):
        return
    import psycopg
    from psycopg import sql

    url = urlparse(uri.replace("+psycopg", "", 1))
    name = url.path.lstrip("/")
    admin = url._replace(path="/postgres").geturl()
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not found:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                log.info("created database %s", name)
    except psycopg.OperationalError as err:
        raise StorageError(
            f"Cannot reach the MLflow backend store at {url.hostname}:{url.port or 5432} "
            f"({str(err).strip().splitlines()[0]}).",
            fix="start PostgreSQL or pass --backend-store-uri "
            "postgresql+psycopg://USER@HOST:PORT/DB",
        ) from None


def drop_database(uri: str) -> None:
    """Drop the database ``uri`` names (tests clean up after themselves)."""
    import psycopg
    from psycopg import sql

    url = urlparse(uri.replace("+psycopg", "", 1))
    admin = url._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(url.path.lstrip("/"))
            )
        )


def command(cfg: ServerConfig) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command line and its environment (secrets stay in the env)."""
    state = cfg.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    artifacts = cfg.artifacts_destination or str(state / "artifacts")
    storage.export_mlflow_s3_endpoint()
    env = dict(os.environ)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    argv = [
        mlflow if Path(mlflow).exists() else "mlflow",
        "server",
        "--backend-store-uri",
        cfg.backend_store_uri,
        "--artifacts-destination",
        artifacts,
        "--serve-artifacts",
        "--host",
        cfg.host,
        "--port",
        str(cfg.port),
        "--workers",
        str(cfg.workers),
    ]
    if cfg.needs_auth:
        # The auth app's own users live beside the server's state; no secret in this file.
        ini = state / "basic_auth.ini"
        ini.write_text(
            "[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
            f"database_uri = sqlite:///{state / 'basic_auth.db'}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
        # CSRF key of the auth app: from the environment, else random for this one process
        # (several servers behind one name must share it: set it in their environment).
        env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
        argv += ["--app-name", "basic-auth"]
    if not is_loopback(cfg.host):
        # MLflow's host-header check admits localhost only by default.
        argv += ["--allowed-hosts", f"{cfg.host},{cfg.host}:{cfg.port},localhost,127.0.0.1"]
    return argv, env


def start(cfg: ServerConfig, timeout_s: float = 300.0) -> subprocess.Popen[bytes]:
    """Start the server (its own process group) and wait until ``/health`` answers."""
    check_auth_env(cfg)
    ensure_database(cfg.backend_store_uri)
    if cfg.artifacts_destination.startswith("s3://"):
        from mlsd_ray.preflight import check_workdir
        from mlsd_ray.settings import Workdir

        check_workdir(Workdir(cfg.state_dir, uri=cfg.artifacts_destination.rstrip("/")))
    argv, env = command(cfg)
    log_file = (cfg.state_dir / "server.log").open("ab")
    proc = subprocess.Popen(
        argv, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StorageError(
                f"The MLflow server exited at start (code {proc.returncode}).",
                fix=f"read {cfg.state_dir / 'server.log'}",
            )
        try:
            with urllib.request.urlopen(f"{cfg.url}/health", timeout=2) as r:
                if r.status == 200:
                    log.info("MLflow server up at %s (auth: %s)", cfg.url, cfg.needs_auth)
                    return proc
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise StorageError(
        f"The MLflow server did not answer {cfg.url}/health within {timeout_s:.0f} s.",
        fix=f"read {cfg.state_dir / 'server.log'}",
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started by ``start`` (its process group: uvicorn workers included)."""
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
