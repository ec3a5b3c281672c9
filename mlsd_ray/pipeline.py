"""The pipeline: the seven steps for one card, each stage a function with a named output.

    etl -> train -> evaluate -> register (gate) -> serve -> monitor

Each stage reads what the previous one wrote into the workdir (or object store) and writes a
``<stage>_summary.json`` there, so any stage can be re-run alone by the CLI, a job or a test.
"""

from __future__ import annotations

import json
import logging
import pkgutil
import time
from pathlib import Path
from typing import Any

from mlsd_ray import progress, storage
from mlsd_ray.errors import CardError, DataError, GateError, SourceError
from mlsd_ray.evaluate.report import write_markdown
from mlsd_ray.models.package import read_manifest
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard
from mlsd_ray.tasks import get_task
from mlsd_ray.workspace import push, synced

log = logging.getLogger(__name__)


def own_stage(card: DesignCard, stage: str) -> Any:
    """The card's task's own function for ``stage`` (ranking runs mlsd_ray.recsys.stage), or
    None where the row-level stage below applies."""
    target = get_task(card.framing.category).own_stages.get(stage)
    return None if target is None else pkgutil.resolve_name(target)


@synced("etl")  # a remote workdir: check, mirror, publish
def etl(card: DesignCard, workdir: Workdir) -> dict[str, Any]:
    from mlsd_ray.data.etl import run_etl
    from mlsd_ray.lineage import prune_data_versions

    if own := own_stage(card, "etl"):  # recommendation: mlsd_ray.recsys.stage
        return own(card, workdir)  # type: ignore[no-any-return]

    summary = run_etl(card, workdir)
    out = summary.model_dump() if hasattr(summary, "model_dump") else dict(summary)
    out["data_versions"] = prune_data_versions(card, workdir)  # keeps what models point to
    return out


@synced("train")
def train(card: DesignCard, workdir: Workdir, only: list[str] | None = None) -> dict[str, Any]:
    from mlsd_ray.train.stage import train_models

    if own := own_stage(card, "train"):
        return own(card, workdir)  # type: ignore[no-any-return]

    return train_models(card, workdir, only=only)


@synced("evaluate")
def evaluate(card: DesignCard, workdir: Workdir) -> dict[str, Any]:
    from mlsd_ray.evaluate.stage import evaluate_models

    if own := own_stage(card, "evaluate"):
        return own(card, workdir)  # type: ignore[no-any-return]

    return evaluate_models(card, workdir)


@synced("register")
def register(
    card: DesignCard,
    workdir: Workdir,
    report: dict[str, Any] | None = None,
    *,
    promote: bool = True,
) -> dict[str, Any]:
    """Register the candidate the evaluation put forward; move ``challenger`` to it, and
    ``champion`` only when the gate passed (and ``promote``: the watch loop canaries first).
    The report records why."""
    from mlsd_ray import registry

    if report is None:
        report = storage.read_json(str(workdir.summary_path("evaluate")))
    name = report["candidate"]
    manifest = read_manifest(workdir.model_dir(name))
    metrics = {k: v for k, v in report["metrics"][name].items() if isinstance(v, (int, float))}
    # Intervals, threshold and latency travel with the version (mlsd registry shows them).
    analysis = report.get("analysis", {}).get(name, {})
    for m, ci in analysis.get("intervals", {}).items():
        if ci:
            metrics[f"{m}_ci_low"], metrics[f"{m}_ci_high"] = ci
    for key in ("p50_ms", "p99_ms"):
        if key in analysis.get("latency", {}):
            metrics[f"latency_{key}"] = analysis["latency"][key]
    out_dir = workdir.reports / "evaluation"
    lineage_tags = _lineage_tags(card, manifest.metadata, out_dir)
    info = registry.log_and_register(
        card,
        workdir,
        model_name=name,
        model_dir=workdir.model_dir(name),
        params={"card": card.model_dump(mode="json")["models"], "model": name},
        metrics={f"test_{k}": v for k, v in metrics.items()},
        artifacts=[out_dir],
        tags={
            "mlsd.gate": "passed" if report["gate"]["passed"] else "failed",
            # Lineage: registry version -> model package -> dataset manifest -> sources.
            "mlsd.dataset_version": str(manifest.metadata.get("dataset_version")),
            "mlsd.model_kind": manifest.kind,
            **lineage_tags,
        },
    )
    registry.set_alias(card, workdir, registry.CHALLENGER, info.version)
    if report.get("model_card"):
        registry.attach_model_card(card, workdir, info.version, Path(report["model_card"]))
    previous = report.get("champion")
    if report["gate"]["passed"] and promote:
        registry.set_alias(card, workdir, registry.CHAMPION, info.version)
        summary = f"Version {info.version} ({name}) is now `champion`: every gate rule passed" + (
            f" (previous champion: v{previous['version']})." if previous else " (first champion)."
        )
    elif report["gate"]["passed"]:
        summary = f"Version {info.version} ({name}) passed the gate; `challenger` until its canary"
    else:
        kept = f"v{previous['version']} stays `champion`" if previous else "no champion is set"
        summary = (
            f"Version {info.version} ({name}) is `challenger` only; {kept}. Failed: "
            + "; ".join(report["gate"]["failed"])
        )
    log.info(summary)
    champion = registry.get_alias(card, workdir, registry.CHAMPION)
    result = {
        "registered_version": info.version,
        "model_name": name,
        "promoted": bool(report["gate"]["passed"] and promote),
        "gate_passed": bool(report["gate"]["passed"]),
        "champion_version": champion.version if champion else None,
        "summary": summary,
    }
    report["promotion"] = result
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    (own_stage(card, "register_markdown") or write_markdown)(report, out_dir / "report.md")
    storage.write_json(str(workdir.summary_path("register")), result)
    return result


def _lineage_tags(card: DesignCard, metadata: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """What `mlsd lineage` shows beyond the data version: the resolved card (logged as
    ``reports/card.json`` with its hash), the code version, and the tuning sweep the model
    came from as the run's parent."""
    from mlsd_ray.data.manifest import code_version
    from mlsd_ray.lineage import card_digest

    text, digest = card_digest(card)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "card.json").write_text(text)
    code = code_version()
    tags = {"mlsd.card_sha256": digest, "mlsd.code_version": code["git_commit"] or code["package"]}
    parent = (metadata.get("tuning") or {}).get("parent_run_id")
    if parent:
        tags["mlflow.parentRunId"] = str(parent)
    return tags


@synced("serve")
def serve_and_probe(card: DesignCard, workdir: Workdir, n_requests: int = 1) -> dict[str, Any]:
    """Serve the champion over HTTP, answer ``n_requests`` real requests built from the test
    split, then shut the app down (which flushes the prediction log)."""
    import httpx
    from ray import serve

    from mlsd_ray.data.etl import read_split
    from mlsd_ray.serve.app import run_server

    url = run_server(card, workdir)
    sample = read_split(card, workdir, "test").head(max(n_requests, 1) * 4)
    instances = sample[card.feature_names].to_dict(orient="records")
    answers = []
    try:
        with httpx.Client(timeout=60) as client:
            for i in range(n_requests):
                chunk = instances[i * 4 : (i + 1) * 4] or instances[:4]
                r = client.post(f"{url.rstrip('/')}/predict", json={"instances": chunk})
                r.raise_for_status()
                answers.append(r.json())
    finally:
        serve.delete(card.name)
    result = {"url": url, "requests": n_requests, "first_answer": answers[0] if answers else None}
    storage.write_json(str(workdir.summary_path("serve")), result)
    return result


@synced("monitor")
def monitor(card: DesignCard, workdir: Workdir) -> dict[str, Any]:
    from mlsd_ray.monitor.stage import run_monitor

    return run_monitor(card, workdir)


def run_pipeline(
    card: DesignCard,
    workdir: Workdir,
    *,
    serve_requests: int = 1,
    stop_after: str | None = None,
    use_cache: bool = True,
) -> dict[str, Any]:
    """Run every stage in order; ``serve_requests=0`` skips serving and monitoring. A stage
    whose inputs, card sections and code are unchanged since its last successful run is
    skipped (``stage_cache``) unless ``use_cache`` is off or the card sets ``stages.cache:
    false``; a failing stage is re-run up to ``stages.<stage>.retries`` times."""
    from mlsd_ray import stage_cache
    from mlsd_ray.runtime import configure

    configure(card)  # the card's runtime_env for the Ray this run starts or joins
    if serve_requests > 0:  # the proxy is fixed when Ray starts, which ETL does first
        from mlsd_ray.serve.proxy import prepare

        prepare(card)
    stages: list[tuple[str, Any]] = [
        ("etl", lambda: etl(card, workdir)),
        ("train", lambda: train(card, workdir)),
        ("evaluate", lambda: evaluate(card, workdir)),
        ("register", lambda: register(card, workdir)),
    ]
    if serve_requests > 0:
        stages += [
            ("serve", lambda: serve_and_probe(card, workdir, serve_requests)),
            ("monitor", lambda: monitor(card, workdir)),
        ]
    caching = use_cache and card.stages.cache
    results: dict[str, Any] = {"card": card.name, "workdir": workdir.uri, "seconds": {}}
    results["attempts"], results["cached"] = {}, []
    key: str | None = None
    for name, fn in stages:
        t0 = time.perf_counter()
        key = stage_cache.stage_key(card, name, key) if caching else None
        with progress.stage(name) as done:  # a line per start and end when someone watches
            hit = stage_cache.cached_summary(card, workdir, name, key)
            if hit is not None:
                log.info("stage %s: cached (inputs, card sections and code unchanged)", name)
                results[name] = {**hit, "cached": True}
                results["cached"].append(name)
            else:
                results[name], attempts = _with_retries(card, name, fn)
                stage_cache.record(workdir, name, key, attempts)
                results[name].update(cached=False, attempts=attempts)
                results["attempts"][name] = attempts
            done.set(results[name])
        results["seconds"][name] = round(time.perf_counter() - t0, 2)
        if name == stop_after:
            break
    results["report"] = str(workdir.reports / "evaluation" / "report.md")
    from mlsd_ray.report_html import write_index  # one page over every stage's report

    results["html_report"] = str(write_index(workdir, card.name))
    storage.write_json(str(workdir.summary_path("pipeline")), results)
    push(workdir)
    return results


#: Errors a re-run cannot fix: the card, the data or the gate say no.
_FINAL = (CardError, DataError, SourceError, GateError)


def _with_retries(card: DesignCard, name: str, fn: Any) -> tuple[dict[str, Any], int]:
    """(the stage's result, attempts): ``fn`` re-run up to ``stages.<name>.retries`` times
    after a failure (a lost node, a worker killed), with the stage's resources checked first."""
    from mlsd_ray.runtime import check_stage_resources

    spec = card.stages.of(name)
    check_stage_resources(card, name)
    for attempt in range(1, spec.retries + 2):
        try:
            return dict(fn()), attempt
        except _FINAL:
            raise
        except Exception as err:
            if attempt > spec.retries:
                raise
            log.warning(
                "stage %s failed (attempt %d of %d): %s; running it again",
                name,
                attempt,
                spec.retries + 1,
                err,
            )
    raise AssertionError("unreachable")
