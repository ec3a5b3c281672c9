"""The model registry: the only module that imports mlflow.

Runs hold params, metrics and artifacts (the model package, reports and plots); each
registered version points at a model package logged as run artifacts. Loading goes through
our own package loader (JSON + safetensors), never through pickle. The tracking store defaults
to a sqlite file in the workdir, with artifacts beside it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlsd_ray import storage
from mlsd_ray.errors import RegistryError
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)
CHAMPION, CHALLENGER = "champion", "challenger"
MODEL_ARTIFACT = "model"


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    run_id: str
    model_name: str  # the card's model name (e.g. "minilm")
    aliases: list[str]
    metrics: dict[str, float]
    tags: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _client(workdir: Workdir) -> MlflowClient:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow  # lazy: importing mlflow costs over a second

    workdir.root.mkdir(parents=True, exist_ok=True)
    uri = workdir.tracking_uri
    storage.export_mlflow_s3_endpoint()
    if _mirrored_store(workdir):
        from mlsd_ray.workspace import pull

        pull(workdir, only=[STORE_FILE])
    # set_tracking_uri also exports MLFLOW_TRACKING_URI, which Workdir.tracking_uri honours as
    # the user's choice: leave the variable as the user set it, or a second workdir in this
    # process would silently write to the first one's store.
    user_uri = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if user_uri is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = user_uri
    return mlflow.MlflowClient(tracking_uri=uri)


STORE_FILE = "mlflow.db"


def _mirrored_store(workdir: Workdir) -> bool:
    """A remote workdir without a tracking server keeps its sqlite store in the bucket; the
    node works on a copy, fetched before use and published after each change (one writer at
    a time: use `mlsd mlflow-server` when several runs register at once)."""
    return workdir.remote and workdir.tracking_uri.startswith("sqlite:")


def _publish(workdir: Workdir) -> None:
    if _mirrored_store(workdir):
        from mlsd_ray.workspace import push

        push(workdir, only=[STORE_FILE])


def _experiment_id(client: MlflowClient, card: DesignCard, workdir: Workdir) -> str:
    exp = client.get_experiment_by_name(card.name)
    if exp is not None:
        return str(exp.experiment_id)
    # Keep artifacts inside the workdir, not in ./mlruns of wherever the process started.
    where = workdir.artifact_root
    if _is_server(workdir.tracking_uri) and not workdir.remote:
        where = ""  # the server's own --artifacts-destination (S3), reachable from every node
    location = where if "://" in where or not where else Path(where).as_uri()
    return str(client.create_experiment(card.name, artifact_location=location or None))


def _is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


@contextmanager
def tracked_run(card: DesignCard, workdir: Workdir, run_name: str) -> Iterator[Any]:
    """A tracking run in the card's experiment; yields the mlflow module bound to it."""
    import mlflow

    client = _client(workdir)
    exp_id = _experiment_id(client, card, workdir)
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name) as run:
        mlflow.set_tags({"mlsd.card": card.name})
        yield run


def log_and_register(
    card: DesignCard,
    workdir: Workdir,
    model_name: str,
    model_dir: Path,
    params: dict[str, Any],
    metrics: dict[str, float],
    artifacts: list[Path] = (),  # type: ignore[assignment]
    tags: dict[str, str] | None = None,
) -> VersionInfo:
    """Log a trained package with its params, metrics and reports; register it as a version."""
    import mlflow

    client = _client(workdir)
    with tracked_run(card, workdir, run_name=model_name) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in _flatten(params).items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if _is_number(v)})
        mlflow.log_artifacts(str(model_dir), artifact_path=MODEL_ARTIFACT)
        for path in artifacts:
            if Path(path).is_dir():
                mlflow.log_artifacts(str(path), artifact_path="reports")
            elif Path(path).exists():
                mlflow.log_artifact(str(path), artifact_path="reports")
        mlflow.set_tags({"mlsd.model_name": model_name, **(tags or {})})
        run_id = run.info.run_id
        source = f"{run.info.artifact_uri}/{MODEL_ARTIFACT}"
    name = card.registered_model_name
    try:
        client.get_registered_model(name)
    except Exception:
        client.create_registered_model(name, description=card.description or None)
    mv = client.create_model_version(
        name, source=source, run_id=run_id, tags={"mlsd.model_name": model_name, **(tags or {})}
    )
    log.info("registered %s version %s (%s)", name, mv.version, model_name)
    _publish(workdir)
    return _info(client, name, str(mv.version))


def _info(client: MlflowClient, name: str, version: str) -> VersionInfo:
    mv = client.get_model_version(name, version)
    run_id = str(mv.run_id)
    run = client.get_run(run_id)
    return VersionInfo(
        name=name,
        version=str(mv.version),
        run_id=run_id,
        model_name=(mv.tags or {}).get("mlsd.model_name", ""),
        aliases=sorted(mv.aliases or []),
        metrics=dict(run.data.metrics),
        tags={k: v for k, v in (mv.tags or {}).items() if k.startswith("mlsd.")},
    )


def get_alias(card: DesignCard, workdir: Workdir, alias: str = CHAMPION) -> VersionInfo | None:
    client = _client(workdir)
    try:
        mv = client.get_model_version_by_alias(card.registered_model_name, alias)
    except Exception:
        return None
    return _info(client, card.registered_model_name, str(mv.version))


def set_alias(card: DesignCard, workdir: Workdir, alias: str, version: str) -> None:
    client = _client(workdir)
    _require_version(client, card, version)
    client.set_registered_model_alias(card.registered_model_name, alias, version)
    client.set_model_version_tag(card.registered_model_name, version, f"mlsd.was_{alias}", "true")
    log.info("alias %s -> %s version %s", alias, card.registered_model_name, version)
    _publish(workdir)


def _require_version(client: MlflowClient, card: DesignCard, version: str) -> None:
    try:
        client.get_model_version(card.registered_model_name, version)
    except Exception:
        raise RegistryError(
            f"Model {card.registered_model_name!r} has no version {version!r}.",
            fix="list versions with `mlsd registry` and pick one of them",
        ) from None


def list_versions(card: DesignCard, workdir: Workdir) -> list[VersionInfo]:
    client = _client(workdir)
    name = card.registered_model_name
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except Exception:
        return []
    return sorted(
        (_info(client, name, str(v.version)) for v in versions), key=lambda v: int(v.version)
    )


def fetch_model(card: DesignCard, workdir: Workdir, alias: str = CHAMPION) -> tuple[str, Path]:
    """(version, local package folder) of the version an alias points at.

    Packages are cached under ``workdir/registry_cache/<name>/<version>``; versions are
    immutable, so a cached copy never goes stale.
    """
    import mlflow

    client = _client(workdir)
    name = card.registered_model_name
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except Exception:
        raise RegistryError(
            f"Model {name!r} has no version with alias {alias!r}.",
            why="nothing has been promoted under that alias in this tracking store "
            f"({workdir.tracking_uri})",
            fix="run `mlsd run CARD` (or `mlsd promote`) with the same --workdir first",
        ) from None
    source = str(mv.source)
    if workdir.remote:  # a node-local cache, keyed by the (immutable) artifact location
        target = _cached_package(workdir.cache, source)
    else:
        target = workdir.root / "registry_cache" / name / str(mv.version)
    if not (target / "mlsd_model.json").is_file():
        _download(
            lambda dst: mlflow.artifacts.download_artifacts(
                run_id=mv.run_id, artifact_path=MODEL_ARTIFACT, dst_path=dst
            ),
            target,
        )
    # Where the package came from, so a Serve replica on another node can fetch it itself.
    storage.write_json(
        str(target.with_name(target.name + ".source.json")),
        {"uri": source, "tracking_uri": workdir.tracking_uri},
    )
    return str(mv.version), target


def _cached_package(cache: Path, source: str) -> Path:
    return cache / "packages" / hashlib.sha256(source.encode()).hexdigest()[:24]


def _download(fetch: Any, target: Path) -> None:
    """Download into a sibling folder, then rename: a package appears whole or not at all."""
    tmp = target.with_name(f"{target.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        got = Path(fetch(str(tmp)))
        shutil.rmtree(target, ignore_errors=True)
        got.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def package_source(package: Path) -> dict[str, str] | None:
    """The registry location ``fetch_model`` recorded for a cached package (None: not one)."""
    sidecar = package.with_name(package.name + ".source.json")
    return storage.read_json(str(sidecar)) if sidecar.is_file() else None


def localize(model_dir: str | Path, source: dict[str, str] | None = None) -> Path:
    """A package folder usable on this node: ``model_dir`` when this node has it, else the
    registry's copy of ``source`` downloaded into this node's cache (``MLSD_CACHE_DIR``).

    A Serve replica calls this: the driver's ``model_dir`` exists only on the driver's node."""
    path = Path(model_dir)
    if (path / "mlsd_model.json").is_file() or not source:
        return path
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    from mlsd_ray.settings import cache_dir

    storage.export_mlflow_s3_endpoint()
    target = _cached_package(cache_dir(), source["uri"])
    if not (target / "mlsd_model.json").is_file():
        log.info("fetching package %s into %s", source["uri"], target)
        _download(
            lambda dst: mlflow.artifacts.download_artifacts(
                artifact_uri=source["uri"], dst_path=dst, tracking_uri=source.get("tracking_uri")
            ),
            target,
        )
    return target


def rollback(card: DesignCard, workdir: Workdir, alias: str = CHAMPION) -> VersionInfo:
    """Point ``alias`` at the newest earlier version that once held it."""
    current = get_alias(card, workdir, alias)
    if current is None:
        raise RegistryError(f"Nothing to roll back: alias {alias!r} is not set.")
    client = _client(workdir)
    earlier = [
        v
        for v in client.search_model_versions(f"name='{card.registered_model_name}'")
        if int(v.version) < int(current.version) and (v.tags or {}).get(f"mlsd.was_{alias}")
    ]
    if not earlier:
        raise RegistryError(
            f"Cannot roll back {alias!r} from version {current.version}: no earlier version "
            f"ever held it.",
            fix="promote a specific version with `mlsd promote CARD --version N`",
        )
    target = str(max(int(v.version) for v in earlier))
    set_alias(card, workdir, alias, target)
    return _info(client, card.registered_model_name, target)


def attach_model_card(card: DesignCard, workdir: Workdir, version: str, path: Path) -> None:
    """Log the model card with the version's run (``model_card/``) and make it the version's
    description, so the registry UI shows it beside the version."""
    client = _client(workdir)
    _require_version(client, card, version)
    mv = client.get_model_version(card.registered_model_name, version)
    client.log_artifact(str(mv.run_id), str(path), artifact_path="model_card")
    client.update_model_version(
        card.registered_model_name, version, description=Path(path).read_text()[:5000]
    )
    _publish(workdir)


def metric_intervals(info: VersionInfo) -> dict[str, dict[str, float | None]]:
    """``test_<m>`` metrics with their ``test_<m>_ci_low/high`` bounds, as logged by register."""
    out: dict[str, dict[str, float | None]] = {}
    for key, value in info.metrics.items():
        if key.startswith("test_") and not key.endswith(("_ci_low", "_ci_high")):
            out[key[5:]] = {
                "value": value,
                "ci_low": info.metrics.get(f"{key}_ci_low"),
                "ci_high": info.metrics.get(f"{key}_ci_high"),
            }
    return out


def format_versions(versions: list[VersionInfo], metrics: list[str]) -> str:
    """A plain-text table: version, model, aliases, gate, metrics with intervals."""
    header = ["version", "model", "aliases", "gate", *metrics]
    rows = [header]
    for v in versions:
        iv = metric_intervals(v)
        cells = []
        for m in metrics:
            e = iv.get(m)
            if e is None:
                cells.append("-")
            elif e["ci_low"] is not None and e["ci_high"] is not None:
                cells.append(f"{e['value']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}]")
            else:
                cells.append(f"{e['value']:.3f}")
        gate = v.tags.get("mlsd.gate", "-")
        rows.append([v.version, v.model_name, ",".join(v.aliases) or "-", gate, *cells])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


# Tuning: one parent run, one child run per trial ---------------------------------------------
def log_tuning(
    card: DesignCard,
    workdir: Workdir,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    trials: list[dict[str, Any]],
    artifacts: list[Path] = (),  # type: ignore[assignment]
) -> str:
    """Log a Ray Tune search: a parent run (the search settings, the best result, the trial
    table) and under it one child run per trial (its sampled config, its metrics per epoch as
    steps, its status). Returns the parent run id."""
    import time

    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    client = _client(workdir)
    exp_id = _experiment_id(client, card, workdir)
    tags = {"mlsd.card": card.name, "mlsd.kind": "tuning"}
    parent = client.create_run(exp_id, run_name=run_name, tags=tags)
    pid = parent.info.run_id
    now = int(time.time() * 1000)
    client.log_batch(
        pid,
        params=[Param(k, str(v)[:500]) for k, v in _flatten(params).items()],
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if _is_number(v)],
    )
    for path in artifacts:
        if Path(path).exists():
            client.log_artifact(pid, str(path), artifact_path="tuning")
    for trial in trials:
        child = client.create_run(
            exp_id,
            run_name=str(trial["trial"]),
            tags={**tags, MLFLOW_PARENT_RUN_ID: pid, "mlsd.trial_status": str(trial["status"])},
        )
        steps = [
            Metric(k, float(h[k]), now, int(h["epoch"]))
            for h in trial["history"]
            for k in ("train_loss", "val_loss", "val_roc_auc")
            if _is_number(h.get(k)) and h.get("epoch") is not None
        ]
        client.log_batch(
            child.info.run_id,
            params=[Param(k, str(v)[:500]) for k, v in trial["config"].items()],
            metrics=steps,
            tags=[RunTag(MLFLOW_RUN_NAME, str(trial["trial"]))],
        )
        client.set_terminated(child.info.run_id, "FAILED" if trial["status"] == "error" else None)
    client.set_terminated(pid)
    _publish(workdir)
    log.info("logged tuning %s: parent run %s with %d trials", run_name, pid, len(trials))
    return str(pid)


def child_runs(card: DesignCard, workdir: Workdir, parent_run_id: str) -> list[dict[str, Any]]:
    """The child runs of a parent run: run id, name, params, last metrics, tags."""
    client = _client(workdir)
    exp_id = _experiment_id(client, card, workdir)
    runs = client.search_runs(
        [exp_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"
    )
    return [
        {
            "run_id": r.info.run_id,
            "name": r.info.run_name,
            "params": dict(r.data.params),
            "metrics": dict(r.data.metrics),
            "tags": {k: v for k, v in r.data.tags.items() if k.startswith("mlsd.")},
        }
        for r in runs
    ]


def dataset_versions_in_use(card: DesignCard, workdir: Workdir) -> set[str]:
    """The dataset versions the card's registered model versions were trained on (their
    ``mlsd.dataset_version`` tag); pruning must keep them. Raises ``RegistryError`` when the
    registry cannot be read, so a caller never prunes on a guess."""
    client = _client(workdir)
    name = card.registered_model_name
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except Exception as err:
        raise RegistryError(
            f"Cannot list the versions of {name!r} in the registry at {workdir.tracking_uri}.",
            str(err),
            "check MLFLOW_TRACKING_URI and that the tracking server is up",
        ) from None
    found = {str((v.tags or {}).get("mlsd.dataset_version", "")) for v in versions}
    return found - {"", "None"}


def version_lineage(card: DesignCard, workdir: Workdir, version: str) -> dict[str, Any]:
    """What one registered version came from: its run's tags and params, and the chain of
    parent runs (``mlflow.parentRunId``) up to the top."""
    client = _client(workdir)
    _require_version(client, card, version)
    info = _info(client, card.registered_model_name, version)
    run = client.get_run(info.run_id)
    parents: list[dict[str, str]] = []
    parent_id = run.data.tags.get("mlflow.parentRunId")
    while parent_id and len(parents) < 20:  # a bound, in case a store holds a loop
        parent = client.get_run(parent_id)
        parents.append(
            {"run_id": parent_id, "run_name": str(parent.info.run_name or ""), **parent.data.tags}
        )
        parent_id = parent.data.tags.get("mlflow.parentRunId")
    return {
        "version": info.as_dict(),
        "run": {
            "run_id": info.run_id,
            "run_name": str(run.info.run_name or ""),
            "tags": {k: v for k, v in run.data.tags.items() if k.startswith("mlsd.")},
            "params": dict(run.data.params),
            "artifact_uri": str(run.info.artifact_uri),
        },
        "parents": parents,
    }
