"""``mlsd`` commands for running on a cluster (registered on the app by ``cli.py``)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("mlflow-server")(mlflow_server)
    app.command("kuberay")(kuberay)


def kuberay(
    card: Annotated[Path, typer.Argument(help="Design card (YAML), as the cluster sees it.")],
    workdir: Annotated[str, typer.Option(help="The shared workdir (s3://bucket/prefix).")],
    out: Annotated[Path, typer.Option(help="Folder for the manifests.")] = Path("deploy/kuberay"),
    image: str = "",
    tracking_uri: Annotated[str, typer.Option(help="MLflow server the pods reach.")] = "",
    s3_endpoint: Annotated[str, typer.Option(help="S3-compatible endpoint (empty: AWS).")] = "",
    workers: int = 2,
    set_: Annotated[list[str] | None, typer.Option("--set", "-s")] = None,
) -> None:
    """Write a RayJob (the pipeline) and a RayService (serveConfigV2 from the card)."""
    from mlsd_ray import kuberay as kr
    from mlsd_ray.spec import load_card

    c = load_card(card, set_ or [])
    paths = kr.write_manifests(
        out,
        c,
        card.as_posix(),
        workdir,
        image=image or kr.DEFAULT_IMAGE,
        tracking_uri=tracking_uri or None,
        s3_endpoint=s3_endpoint or None,
        workers=workers,
    )
    for p in paths:
        typer.echo(str(p))


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
