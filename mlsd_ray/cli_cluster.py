"""``mlsd`` commands for running on a cluster (registered on the app by ``cli.py``)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("mlflow-server")(mlflow_server)


def mlflow_server(
    backend_store_uri: Annotated[
        str, typer.Option(help="SQLAlchemy URI of the PostgreSQL backend store.")
    ] = "postgresql+psycopg://postgres@127.0.0.1:5432/mlsd_mlflow",
    artifacts: Annotated[
        str, typer.Option(help="Where artifacts go (s3://bucket/prefix); default: state dir.")
    ] = "",
    host: Annotated[
        str, typer.Option(help="Bind address; anything but loopback turns basic auth on.")
    ] = "127.0.0.1",
    port: int = 5000,
    state_dir: Annotated[Path, typer.Option(help="Logs and the auth app's user store.")] = Path(
        "mlsd-mlflow-server"
    ),
    auth: Annotated[
        bool | None, typer.Option("--auth/--no-auth", help="Default: on off loopback only.")
    ] = None,
) -> None:
    """Start an MLflow tracking server (PostgreSQL + S3) for every node; Ctrl-C stops it.
    Point runs at it with MLFLOW_TRACKING_URI or the card's storage.tracking_uri."""
    from mlsd_ray import tracking_server as ts

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = ts.ServerConfig(
        backend_store_uri=backend_store_uri,
        artifacts_destination=artifacts,
        host=host,
        port=port,
        state_dir=state_dir,
        auth=auth,
    )
    if auth is False and not ts.is_loopback(host):
        raise typer.BadParameter("--no-auth is refused off loopback", param_hint="--auth")
    proc = ts.start(cfg)
    typer.echo(f"MLflow tracking server at {cfg.url} (auth: {cfg.needs_auth}); Ctrl-C to stop")
    typer.echo(f"export MLFLOW_TRACKING_URI={cfg.url}")
    signal.signal(signal.SIGTERM, lambda *_: ts.stop(proc))
    try:
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        ts.stop(proc)
