"""Connecting to Ray, on demand and never at import."""

from __future__ import annotations

import logging
import os

from mlsd_ray.settings import ray_address

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
    "TOKENIZERS_PARALLELISM",
    "PGPASSWORD",  # database sources; never logged
)


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
    log.info("connecting to Ray at %s", address or "a new local cluster")
    ray.init(
        address=address,
        num_cpus=None if address else num_cpus,
        include_dashboard=False if not address else None,
        runtime_env={"env_vars": env} if env else None,
        log_to_driver=True,
        ignore_reinit_error=True,
    )
