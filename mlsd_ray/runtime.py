"""Connecting to Ray, on demand and never at import."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mlsd_ray.errors import CardError, MlsdError, ServiceError
from mlsd_ray.settings import ray_address
from mlsd_ray.spec_cluster import redact_env

if TYPE_CHECKING:
    from mlsd_ray.spec import DesignCard

log = logging.getLogger(__name__)

# Variables every Ray worker needs to see (object store endpoint, offline hub, telemetry off).
FORWARDED_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "MLFLOW_DISABLE_TELEMETRY",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_S3_ENDPOINT_URL",
    "MLFLOW_TRACKING_USERNAME",  # a tracking server with basic auth; never logged
    "MLFLOW_TRACKING_PASSWORD",
    "MLSD_CACHE_DIR",
    "TOKENIZERS_PARALLELISM",
    "PGPASSWORD",  # database sources; never logged
)


#: The card's ``stages.runtime_env`` (Ray's form, real values), set by ``configure``.
_runtime_env: dict[str, Any] = {}


def configure(card: DesignCard) -> None:
    """Use ``card.stages.runtime_env`` when this process starts or joins Ray (the CLI, jobs and
    the pipeline call this once they hold the card)."""
    global _runtime_env
    env = card.stages.runtime_env
    _runtime_env = env.to_ray()
    if _runtime_env:
        shown = {**_runtime_env, "env_vars": redact_env(env.env_vars)}
        log.info("Ray runtime_env from the card: %s", shown)


def runtime_env(forwarded: dict[str, str]) -> dict[str, Any] | None:
    """What ``ray.init`` gets: the card's runtime env, its ``env_vars`` over the forwarded
    ones (the card names them on purpose)."""
    out = dict(_runtime_env)
    env = {**forwarded, **out.get("env_vars", {})}
    if env:
        out["env_vars"] = env
    return out or None


def ensure_ray(num_cpus: int | None = None) -> None:
    """Join ``RAY_ADDRESS`` if set, else start (or reuse) a local single-node Ray."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    address = ray_address()
    if address:
        check_ray_address(address)
    log.info("connecting to Ray at %s", address or "a new local cluster")
    try:
        with loopback_only(address is None):
            try:
                _init(ray, address, num_cpus, env)
            except Exception as err:
                # Under heavy load a fresh local node can miss Ray's start-up deadline ("timed
                # out during startup": an agent wrote its port file too late); one more try.
                if address is not None or "timed out during startup" not in str(err):
                    raise
                log.warning("local Ray did not start in time (%s); trying once more", err)
                ray.shutdown()
                _init(ray, address, num_cpus, env)
    except MlsdError:
        raise
    except Exception as err:  # Ray raises bare Exception for a node that timed out starting
        where = f"the cluster at {address}" if address else "a local Ray"
        raise ServiceError(
            f"Ray did not start or connect ({where}).",
            why=f"{type(err).__name__}: {err}",
            fix="retry when the machine is less loaded; or start Ray once with `ray start --head "
            "--port 6380` and export RAY_ADDRESS=127.0.0.1:6380 so every command reuses it",
        ) from err


def _init(ray: Any, address: str | None, num_cpus: int | None, env: dict[str, str]) -> None:
    ray.init(
        address=address,
        num_cpus=None if address else num_cpus,
        include_dashboard=False if not address else None,
        runtime_env=runtime_env(env),
        # mlsd's quiet console turns worker logs off (they stay in Ray's session folder)
        log_to_driver=os.environ.get("MLSD_RAY_LOG_TO_DRIVER", "1") != "0",
        ignore_reinit_error=True,
    )


@contextmanager
def loopback_only(active: bool = True) -> Iterator[None]:
    """While active, a Ray started here (one node, nobody else joins) listens on 127.0.0.1 only.

    Ray picks the node's routable address for GCS, raylet, agents and worker ports unless
    "clusters are disabled" (its Windows/macOS default): then every listener is on loopback.
    The processes started by ``ray.init`` inherit the variable; it is removed afterwards so a
    later ``ray start`` from this process (a worker node) is not refused. A cluster node is
    started with ``ray start --node-ip-address`` instead (docs/cluster.md)."""
    if not active:
        yield
        return
    from ray._private import ray_constants

    before_env = os.environ.get(_CLUSTERS_VAR)
    before = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_CLUSTERS_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before
        if before_env is None:
            os.environ.pop(_CLUSTERS_VAR, None)
        else:
            os.environ[_CLUSTERS_VAR] = before_env


_CLUSTERS_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def check_ray_address(address: str) -> None:
    """Fail in a second, not after Ray's two-minute retry loop, when nothing answers at a
    ``host:port`` RAY_ADDRESS (``auto``, ``ray://`` and ``http://`` are left to Ray)."""
    import socket

    if "://" in address or address == "auto" or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        return
    except (OSError, ValueError) as err:
        reason = str(err)
    running = _running_clusters()
    raise ServiceError(
        f"No Ray cluster answers at RAY_ADDRESS={address}.",
        why=reason
        + (f"; Ray is running on this machine at {', '.join(running)}" if running else ""),
        fix=(f"export RAY_ADDRESS={running[0]}" if running else "start one with `ray start --head`")
        + ", or unset RAY_ADDRESS to start a local Ray for this command",
    )


def _running_clusters() -> list[str]:
    """GCS addresses of the Ray clusters running on this machine (best effort)."""
    try:
        from ray._private.services import find_gcs_addresses

        return sorted(str(a) for a in find_gcs_addresses())
    except Exception:  # internal API: a hint only, never a reason to fail differently
        return []


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free on ``host`` (loopback for an all-interfaces host)."""
    import socket

    with socket.socket() as s:
        s.bind((host if host not in ("0.0.0.0", "::", "") else "127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_port_free(host: str, port: int, what: str = "deployment.port") -> None:
    """Before minutes of work, make sure Serve will be able to listen on ``host:port``."""
    import socket

    with socket.socket() as s:
        # as the HTTP server will: a listener blocks the port, a closed connection does not
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as err:
            raise ServiceError(
                f"Port {port} on {host} is in use, so the model cannot be served there.",
                why=f"{err.strerror or err}; another process (an earlier `mlsd serve`, another "
                "Serve app) listens on it",
                fix=f"pick a free port: --set {what}={port + 1} (or stop that process)",
            ) from err


def check_stage_resources(card: DesignCard, stage: str) -> None:
    """Before a stage starts: refuse, naming the card key, what ``stages.<stage>`` asks of Ray
    that the whole cluster does not have (a task asking for it would wait forever)."""
    spec = card.stages.of(stage)
    if not spec.requested:
        return
    import ray

    ensure_ray()
    totals = ray.cluster_resources()
    for resource, (key, amount) in spec.cluster_needs().items():
        have = float(totals.get(resource, 0.0))
        if have >= amount:
            continue
        gb = resource == "memory"
        shown = (lambda n: f"{n / 2**30:.1f} GB") if gb else (lambda n: f"{n:g}")
        raise CardError(
            f"stages.{stage}.{key}: the stage asks for {shown(amount)} of Ray resource "
            f"{resource!r}; the Ray cluster has {shown(have)} in all.",
            why="no node could ever run the stage's tasks, so they would wait forever",
            fix=f"lower or remove stages.{stage}.{key}, or join a cluster with that resource "
            "(`ray start --resources '{...}'`, RAY_ADDRESS)",
        )
