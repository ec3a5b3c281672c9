"""The Serve application of a design card, and a way to run it.

``build_app`` is the builder that ``serve run`` / ``serve deploy`` import
(``import_path: mlsd_ray.serve.app:build_app``, ``args: {card: ..., workdir: ...}``);
``run_server`` does the same from Python (``mlsd serve``). Every deployment setting comes from
the card's ``deployment`` section, so the card stays the one place to change them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from mlsd_ray.serve.requests import RETRY_AFTER_S
from mlsd_ray.settings import DEFAULT_WORKDIR, Workdir
from mlsd_ray.spec import DesignCard, load_card

log = logging.getLogger(__name__)

#: The deployment name of the single-model path (edge and model in one replica).
SINGLE_NAME = "ModelIngress"
#: The ingress only forwards requests; it must admit enough of them for batches to fill.
MIN_INGRESS_ONGOING = 64


class ServeArgs(BaseModel):
    """The ``args`` of the Serve application (``serve run`` config or ``build_app``)."""

    model_config = ConfigDict(extra="forbid")

    card: str  # path of the YAML design card
    workdir: str = DEFAULT_WORKDIR
    alias: str | None = None  # registry alias to serve; None = card.deployment.alias
    model_dir: str | None = None  # serve this local package, bypassing the registry
    overrides: list[str] = Field(default_factory=list)  # card --set KEY=VALUE items


def _common_options(card: DesignCard) -> dict[str, Any]:
    d = card.deployment
    return {
        "max_queued_requests": d.max_queued_requests,
        "graceful_shutdown_timeout_s": d.graceful_shutdown_timeout_s,
        "health_check_period_s": d.health_check_period_s,
        # Every redeploy (promotion, rollback, new batch settings) restarts replicas; with a
        # surge the new ones start before the old ones stop, so nothing is dropped.
        "max_surge_percent": d.surge_percent,
    }


def model_options(card: DesignCard) -> dict[str, Any]:
    """``.options()`` of the model deployment, straight from ``card.deployment``."""
    d = card.deployment
    a = d.autoscaling
    if d.effective_max_ongoing_requests < d.batching.max_batch_size:
        log.warning(
            "deployment.max_ongoing_requests (%d) < batching.max_batch_size (%d): a replica "
            "never holds enough requests to fill a batch; leave max_ongoing_requests unset",
            d.effective_max_ongoing_requests,
            d.batching.max_batch_size,
        )
    return {
        "max_ongoing_requests": d.effective_max_ongoing_requests,
        "autoscaling_config": {
            "min_replicas": a.min_replicas,
            "initial_replicas": max(a.min_replicas, 1),
            "max_replicas": a.max_replicas,
            "target_ongoing_requests": a.target_ongoing_requests,
            "upscale_delay_s": a.upscale_delay_s,
            "downscale_delay_s": a.downscale_delay_s,
        },
        # stages.serve overrides the replica's CPUs and adds GPUs, memory, custom resources
        "ray_actor_options": card.stages.serve.ray_options(num_cpus=d.num_cpus_per_replica),
        **_common_options(card),
    }


def ingress_options(card: DesignCard) -> dict[str, Any]:
    """One ingress replica without a CPU reservation: it does no compute, and a reserved CPU
    would be one the model replicas cannot use on a small machine."""
    d = card.deployment
    ongoing = max(
        MIN_INGRESS_ONGOING, 2 * d.effective_max_ongoing_requests * d.autoscaling.max_replicas
    )
    return {
        "num_replicas": 1,
        "max_ongoing_requests": ongoing,
        "ray_actor_options": {"num_cpus": 0},
        **_common_options(card),
        # The proxy queues requests for a moment while it assigns them; the card's bound is
        # for the model, behind which the real waiting happens. Past it the proxy sheds too.
        "max_queued_requests": max(d.max_queued_requests, ongoing),
        "backpressure_config": {"status_code": 503, "retry_after_s": RETRY_AFTER_S},
    }


def single_options(card: DesignCard) -> dict[str, Any]:
    """The single-model deployment: the model's options, plus the proxy's answer when the
    replicas are full (503 + Retry-After, as the ingress gives in a graph)."""
    return model_options(card) | {
        "backpressure_config": {"status_code": 503, "retry_after_s": RETRY_AFTER_S},
    }


def _helper_options(card: DesignCard) -> dict[str, Any]:
    """Preprocessor and combiner: light, asynchronous, one replica each without a CPU
    reservation; they admit as many requests as the ingress."""
    return ingress_options(card)


def resolve_model(
    card: DesignCard,
    workdir: Workdir,
    alias: str | None = None,
    model_dir: str | Path | None = None,
) -> tuple[str | None, Path]:
    """(version, local package folder): ``model_dir`` as given, else the registry's alias."""
    if model_dir is not None:
        return None, Path(model_dir).resolve()  # the Predictor reads the version from the package
    from mlsd_ray.registry import fetch_model

    version, package = fetch_model(card, workdir, alias or card.deployment.alias)
    return version, Path(package).resolve()


def model_user_config(card: DesignCard, version: str | None, package: Path) -> dict[str, Any]:
    """What a ``ModelServer`` replica serves; a change is applied in place (``reconfigure``)."""
    from mlsd_ray.registry import package_source

    b = card.deployment.batching
    return {
        "model_dir": str(package),
        # A replica on another node fetches the package from the registry (registry.localize).
        "source": package_source(package),
        "version": version,
        "max_batch_size": b.max_batch_size,
        "batch_wait_timeout_s": b.batch_wait_timeout_s,
        "inference": card.deployment.inference,
        # Intra-op threads = the replica's CPUs (Ray's OMP_NUM_THREADS only covers some paths).
        "threads": card.deployment.replica_threads,
    }


def _log_options(card: DesignCard, uri: str, arm: str = "champion") -> dict[str, Any]:
    m = card.monitoring
    return {
        "uri": uri,
        "flush_every_n": m.flush_every_n,
        "flush_every_s": m.flush_every_s,
        "fields": {f.name: f.type for f in card.framing.inputs},
        "sample_rate": m.sample_rate,
        "log_text": m.log_text,
        "max_pending_rows": m.max_pending_rows,
        "model_name": card.registered_model_name,
        "arm": arm,
    }


def _model_server(
    card: DesignCard, name: str, version: str | None, package: Path, log_options: Any
) -> serve.Application:
    from mlsd_ray.serve.deployments import ModelServer

    return (
        cast(serve.Deployment, ModelServer)
        .options(
            name=name,
            user_config=model_user_config(card, version, package),
            **model_options(card),
        )
        .bind(log_options)
    )


def _settings(card: DesignCard) -> dict[str, Any]:
    d = card.deployment
    return {
        "max_instances": d.max_instances_per_request,
        "request_timeout_s": d.request_timeout_s,
        "rollout_mode": d.rollout.mode,
        "canary_weight": d.rollout.canary_weight,
        "seed": None,
    }


def _single(
    card: DesignCard, version: str | None, package: Path, log_options: Any
) -> serve.Application:
    """Edge + batched model in one deployment: the shortest path (see ``single.py``)."""
    from mlsd_ray.serve.single import ModelIngress

    return (
        cast(serve.Deployment, ModelIngress)
        .options(
            name=SINGLE_NAME,
            user_config=model_user_config(card, version, package),
            **single_options(card),
        )
        .bind(_settings(card), log_options)
    )


def _ensemble(
    card: DesignCard, version: str | None, package: Path, log_options: Any
) -> serve.Application:
    """The registered blend at ``package`` as a graph: Preprocessor -> one ``Member_<name>``
    deployment per member package inside it -> Combiner with the blend's stored combiner."""
    from mlsd_ray.registry import package_source
    from mlsd_ray.serve.deployments import Combiner, ModelServer, Preprocessor
    from mlsd_ray.serve.ensemble import combiner_config

    config = combiner_config(package, version)
    # Members are folders of the blend's package: a replica on another node fetches the
    # blend (its registry source) and serves its member folder.
    member_apps = [
        cast(serve.Deployment, ModelServer)
        .options(
            name=f"Member_{name}",
            user_config=model_user_config(card, None, package) | {"subdir": folder},
            **model_options(card),
        )
        .bind(None)
        for name, folder in zip(config["members"], config["folders"], strict=True)
    ]
    pre = (
        cast(serve.Deployment, Preprocessor)
        .options(name="Preprocessor", **_helper_options(card))
        .bind(str(package), package_source(package), config["folders"][0])
    )
    return (
        cast(serve.Deployment, Combiner)
        .options(
            name="Combiner",
            **_helper_options(card),
        )
        .bind(pre, member_apps, config, log_options)
    )


def build_application(
    card: DesignCard,
    workdir: Workdir,
    alias: str | None = None,
    model_dir: str | Path | None = None,
) -> serve.Application:
    """The card's model graph; resolves the packages now, loads them in the replicas.

    A single model without a rollout (and no watch loop to start one): one ``ModelIngress``
    deployment (edge and model).
    Otherwise Ingress -> the alias's model (or, with ``deployment.ensemble.graph``, the
    alias's blend as a graph of its members), plus the challenger when the card's rollout mode
    is canary or shadow.
    """
    from mlsd_ray.serve.deployments import Ingress

    d = card.deployment
    main_log = _log_options(card, workdir.prediction_log_uri(card))
    # A card the watch loop acts on (delayed labels configured) gets the graph from the start:
    # its canaries add a challenger behind the same Ingress, whereas changing the app's shape
    # (single deployment <-> graph) dropped requests while the new ingress came up.
    rolls_out = bool(card.monitoring.loop.feedback.sources)
    version, package = resolve_model(card, workdir, alias, model_dir)
    if not d.ensemble.graph and d.rollout.mode == "none" and not rolls_out:
        log.info("serving %s from %s (version %s)", card.name, package, version or "from package")
        return _single(card, version, package, main_log)
    if d.ensemble.graph:
        primary = _ensemble(card, version, package, main_log)
        log.info(
            "serving %s: the blend at %s (version %s) as a graph",
            card.name,
            package,
            version or "from package",
        )
    else:
        primary = _model_server(card, "ModelServer", version, package, main_log)
        log.info("serving %s from %s (version %s)", card.name, package, version or "from package")
    challenger = None
    if d.rollout.mode != "none":
        c_version, c_package = resolve_model(card, workdir, d.rollout.challenger_alias)
        # Canary answers are real answers (main log); shadow answers go to the shadow log.
        uri = (
            main_log["uri"]
            if d.rollout.mode == "canary"
            else workdir.resolve(d.rollout.shadow_log_uri)
        )
        challenger = _model_server(
            card, "Challenger", c_version, c_package, _log_options(card, uri, d.rollout.mode)
        )
        log.info("%s rollout: challenger version %s", d.rollout.mode, c_version)
    return (
        cast(serve.Deployment, Ingress)
        .options(**ingress_options(card))
        .bind(primary, challenger, _settings(card))
    )


def build_app(args: dict[str, Any]) -> serve.Application:
    """Serve application builder: ``args`` are ``ServeArgs`` fields (card path, workdir, ...)."""
    parsed = args if isinstance(args, ServeArgs) else ServeArgs.model_validate(args)
    card = load_card(parsed.card, overrides=parsed.overrides)
    return build_application(
        card, Workdir.for_card(card, parsed.workdir), parsed.alias, parsed.model_dir
    )


def base_url(host: str, port: int, route_prefix: str) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}{route_prefix.rstrip('/')}"


def run_server(
    card: DesignCard,
    workdir: Workdir,
    alias: str | None = None,
    model_dir: str | Path | None = None,
    blocking: bool = False,
) -> str:
    """Start Serve's HTTP proxy on ``card.deployment.host:port``, run the app (named after the
    card) and return its base URL. ``blocking=True`` serves until Ctrl-C, then deletes the
    app (its replicas flush the prediction log) and returns."""
    from mlsd_ray.runtime import ensure_ray
    from mlsd_ray.serve.proxy import prepare

    prepare(card)  # the proxy is chosen by the environment Ray starts with
    ensure_ray()
    d = card.deployment
    serve.start(http_options={"host": d.host, "port": d.port})
    host, port = _running_http(d.host, d.port)
    url = base_url(host, port, d.route_prefix)
    app = build_application(card, workdir, alias, model_dir)
    if not blocking:
        serve.run(app, name=card.name, route_prefix=d.route_prefix)
        log.info("serving %s at %s", card.name, url)
        return url
    log.info("serving %s at %s; Ctrl-C to stop", card.name, url)
    try:
        serve.run(app, name=card.name, route_prefix=d.route_prefix, blocking=True)
    except KeyboardInterrupt:
        # A graceful delete lets the replicas flush the prediction log.
        log.info("stopping %s", card.name)
        serve.delete(card.name)
    return url


def _running_http(host: str, port: int) -> tuple[str, int]:
    """Serve keeps the HTTP options of its first start; if it was already running elsewhere,
    report where it really listens instead of a URL nobody answers."""
    try:
        from ray.serve.context import _get_global_client

        client = _get_global_client(raise_if_no_controller_running=False)
        if client is None:
            return host, port
        actual = (str(client.http_config.host), int(client.http_config.port))
    except Exception:  # private API: best effort only
        return host, port
    if actual != (host, port):
        log.warning(
            "Serve was already running with HTTP on %s:%d; the card asks for %s:%d, which is "
            "ignored until Serve restarts (serve shutdown)",
            *actual,
            host,
            port,
        )
    return actual
