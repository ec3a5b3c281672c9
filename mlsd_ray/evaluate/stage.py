"""The evaluation stage: every trained model, the current champion and the gate on one split.

Predictions run as Ray Data batch inference with the same ``Predictor`` class Serve uses, so
offline numbers describe what the endpoint will answer.
"""

from __future__ import annotations

import json
import logging
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from mlsd_ray import progress, storage
from mlsd_ray.errors import DataError
from mlsd_ray.evaluate.analysis import (
    ensure_threshold,
    model_evidence,
    paired_comparisons,
    score_split,
    select_within_budget,
)
from mlsd_ray.evaluate.gate import Evidence, GateDecision, decide
from mlsd_ray.evaluate.inference_choice import choose_inference
from mlsd_ray.evaluate.model_card import write_model_card
from mlsd_ray.evaluate.report import write_markdown
from mlsd_ray.models.kinds import get_kind
from mlsd_ray.models.package import MANIFEST, read_manifest
from mlsd_ray.plots import quality_latency_plot
from mlsd_ray.predict import Predictor
from mlsd_ray.runtime import ensure_ray
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard
from mlsd_ray.tasks import Decision, Task, get_task

log = logging.getLogger(__name__)


def score(
    ds: Any, model_dir: Path, version: str | None = None, inference: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, positive-class probabilities or regression values) for a Ray Dataset with the
    card's columns and ``label``, scored by ``Predictor`` actors (the class Serve uses) with the
    card's ``deployment.inference`` path, so the gate judges what will be served."""
    frame = score_frame(ds, model_dir, version, inference)
    return frame["label"].to_numpy(), task_of(model_dir).scores(frame)


def task_of(model_dir: Path) -> Task:
    return get_task(read_manifest(model_dir).category)


def output_column(model_dir: Path) -> str:
    """The column the package's task scores into (``probability``, ``prediction``)."""
    return task_of(model_dir).output_column


def decision_of(model_dir: Path, threshold: float | None = None) -> Decision:
    """The package's decision rule; ``threshold`` overrides the stored binary threshold."""
    m = read_manifest(model_dir)
    t = m.threshold if threshold is None else threshold
    return Decision(list(m.classes), t, dict(m.class_thresholds))


def score_frame(
    ds: Any, model_dir: Path, version: str | None = None, inference: str | None = None
) -> Any:
    """Every column of ``ds`` plus ``probability``, in lineage order when the rows carry it
    (so that two models' predictions pair row by row)."""
    import ray

    from mlsd_ray.evaluate.shipped import ShippedPredictor, pack

    # The actor may run on a node without the driver's folder: the files go along (shipped.py).
    digest, files = pack(Path(model_dir))
    # The rows are read before the scoring actor exists: Ray Data's file listing task asks for a
    # whole CPU, so on the one 1-CPU node left after a node loss it and the actor (half a CPU)
    # each waited for the other. Scoring collects every row on the driver anyway.
    ds = ds.materialize()
    scored = ds.map_batches(
        ShippedPredictor,
        fn_constructor_args=(str(model_dir), digest, ray.put(files), version, inference),
        batch_format="pandas",
        batch_size=256,
        concurrency=1,  # one model copy: the cluster is small and loading dominates
        # Half a CPU: next to Serve replicas holding fractions, a 1-CPU actor left the tasks
        # feeding it none on a 2-CPU Ray (the watch loop hung).
        num_cpus=0.5,
    )
    frame = _collect(scored, Path(model_dir).name, ds)
    if {"_source", "_row"} <= set(frame.columns):
        frame = frame.sort_values(["_source", "_row"], kind="stable").reset_index(drop=True)
    return frame


def _collect(scored: Any, name: str, ds: Any) -> Any:
    """``scored.to_pandas()``, batch by batch so a watching console can show the rows."""
    if not progress.active():
        return scored.to_pandas()
    import pandas as pd

    frames = []
    with progress.task(f"scoring {name}", total=ds.count(), unit="rows") as bar:
        for batch in scored.iter_batches(batch_format="pandas", batch_size=None):
            frames.append(batch)
            bar.advance(len(batch))
    return pd.concat(frames, ignore_index=True) if frames else scored.to_pandas()


def batch_predict(
    model_dir: Path, data_uri: str, version: str | None = None, inference: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``score`` over a Parquet split written by the ETL stage."""
    frame = batch_predict_frame(model_dir, data_uri, version, inference)
    return frame["label"].to_numpy(), task_of(model_dir).scores(frame)


def batch_predict_frame(
    model_dir: Path, data_uri: str, version: str | None = None, inference: str | None = None
) -> Any:
    """``score_frame`` over a Parquet split written by the ETL stage."""
    from mlsd_ray.data.layout import read_dataset  # Hive partition columns come back typed

    ensure_ray()
    frame = score_frame(read_dataset(data_uri), model_dir, version, inference)
    if len(frame) == 0:
        raise DataError(f"No rows to evaluate in {data_uri!r}.", fix="run the ETL stage first")
    return frame


def trained_models(card: DesignCard, workdir: Workdir) -> list[str]:
    """Names of the card's models that have a package in the workdir, baseline first."""
    names = [card.models.baseline.name] + [m.name for m in card.models.candidates]
    return [n for n in names if (workdir.model_dir(n) / MANIFEST).is_file()]


def validation_leaderboard(
    card: DesignCard,
    workdir: Workdir,
    names: list[str],
    at_threshold: dict[str, dict[str, Any]] | None = None,
) -> dict[str, float]:
    """The gate metric of each trained model on the *validation* split: models are ranked
    before anyone looks at the test split. ``at_threshold`` holds validation metrics at the
    threshold the business objective chose (the gate judges that threshold); else the metrics
    training recorded."""
    metric = card.evaluation.gate.metric
    scores = {}
    for name in names:
        meta = read_manifest(workdir.model_dir(name)).metadata
        recorded = (at_threshold or {}).get(name) or meta.get("validation", {})
        value = recorded.get(metric, meta.get(f"validation_{metric}"))
        if value is not None:
            scores[name] = float(value)
    # Best first: rmse ascending, AUC descending.
    sign = get_task(card.framing.category).better_first(metric)
    return dict(sorted(scores.items(), key=lambda kv: sign * kv[1]))


def _select_candidate(card: DesignCard, leaderboard: dict[str, float], names: list[str]) -> str:
    """The model to put forward: the best on validation (the baseline may win: a cheap model
    that is as good is a fine champion). Without validation scores, the last candidate."""
    if leaderboard:
        return next(iter(leaderboard))
    candidates = [n for n in names if n != card.models.baseline.name]
    return candidates[-1] if candidates else names[0]


def evaluate_models(
    card: DesignCard, workdir: Workdir, data_uri: str | None = None
) -> dict[str, Any]:
    """Metrics for every trained model and the champion; the gate's decision; plots and a
    JSON + Markdown report under ``workdir/reports/evaluation``."""
    from mlsd_ray import registry

    t0 = time.perf_counter()
    data_uri = data_uri or workdir.split_uri(card, "test")
    out_dir = workdir.reports / "evaluation"
    out_dir.mkdir(parents=True, exist_ok=True)
    task = get_task(card.framing.category)

    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    results: dict[str, dict[str, Any]] = {}
    frames: dict[str, Any] = {}
    thresholds: dict[str, float] = {}
    decisions: dict[str, Decision] = {}
    choices: dict[str, dict[str, Any]] = {}
    inference: dict[str, dict[str, Any]] = {}
    val_uri = workdir.split_uri(card, "validation")
    for name in trained_models(card, workdir):
        log.info("evaluating %s on %s", name, data_uri)
        model_dir = workdir.model_dir(name)
        # First: the CPU path (under ``auto``) is recorded in the package, so test scoring,
        # the latency gate and Serve all run the path that will be served.
        inference[name] = choose_inference(card, model_dir, val_uri)
        choices[name] = ensure_threshold(card, model_dir, partial(score_split, model_dir, val_uri))
        thresholds[name] = choices[name]["threshold"]
        decisions[name] = decision_of(model_dir)
        frames[name] = frame = batch_predict_frame(
            model_dir, data_uri, inference=card.deployment.inference
        )
        y, p = frame["label"].to_numpy(), task.scores(frame)
        curves[name], results[name] = (y, p), task.metrics(y, p, decisions[name])
    if not results:
        raise DataError(
            "No trained model to evaluate.",
            fix=f"run `mlsd train` first; packages live in {workdir.models}",
        )

    champion = registry.get_alias(card, workdir, registry.CHAMPION)
    champion_metrics = None
    if champion is not None:
        version, path = registry.fetch_model(card, workdir, registry.CHAMPION)
        # The champion keeps the threshold it was promoted with (its manifest's), unless the
        # card fixes one for everyone.
        fixed = card.evaluation.threshold_objective.rule == "fixed"
        t_champion = card.evaluation.threshold if fixed else read_manifest(path).threshold
        champion_frame = batch_predict_frame(path, data_uri, version, card.deployment.inference)
        y, p = champion_frame["label"].to_numpy(), task.scores(champion_frame)
        champion_metrics = task.metrics(y, p, decision_of(path, t_champion))
        curves[f"champion v{version}"] = (y, p)

    # Intervals, slices, latency of every model (latency may rule candidates out).
    analysis = {
        name: model_evidence(card, workdir.model_dir(name), frames[name], thresholds[name])
        for name in results
    }
    at_threshold = {n: c["validation"] for n, c in choices.items() if "validation" in c}
    leaderboard = validation_leaderboard(card, workdir, list(results), at_threshold)
    eligible = select_within_budget(
        card, leaderboard, {n: a["latency"] for n, a in analysis.items()}
    )
    candidate = _select_candidate(card, eligible, list(results))
    if card.evaluation.behaviour and card.framing.text_input:
        from mlsd_ray.evaluate.behaviour import run_suite

        analysis[candidate]["behaviour"] = run_suite(
            Predictor(workdir.model_dir(candidate)), card.evaluation.behaviour
        )
    evidence = Evidence(
        slices=analysis[candidate]["slices"],
        latency=analysis[candidate]["latency"],
        requirements=card.requirements,
        behaviour=analysis[candidate].get("behaviour", []),
        threshold_choice=choices[candidate],
        allow_unmet=card.evaluation.threshold_objective.allow_unmet,
    )
    champion_analysis = None
    if champion is not None:
        champion_analysis = model_evidence(card, path, champion_frame, t_champion, version)
        evidence.champion_slices = champion_analysis["slices"]
        evidence.comparisons = paired_comparisons(
            card, frames[candidate], champion_frame, thresholds[candidate], t_champion
        )
    baseline = results.get(card.models.baseline.name)
    decision = decide(
        card.evaluation.gate,
        results[candidate],
        None if candidate == card.models.baseline.name else baseline,
        champion_metrics,
        evidence,
    )
    external: dict[str, Any] = {}
    # Out-of-domain sets, beside test: scored like the binary test split (at each threshold).
    if card.evaluation.external and task.uses_threshold:
        from mlsd_ray.evaluate.external_sets import gate_rules, score_external

        scored: dict[str, tuple[Path, str | None, float]] = {
            n: (workdir.model_dir(n), None, thresholds[n]) for n in results
        }
        champion_name = None
        if champion is not None:
            champion_name = f"champion v{version}"
            scored[champion_name] = (path, version, t_champion)
        external = score_external(card, workdir, scored, score)
        more = gate_rules(card, external, candidate, champion_name)
        passed = decision.passed and all(r["passed"] for r in more)
        decision = GateDecision(passed, [*decision.rules, *more])

    where = Path(data_uri).name
    shared_plots, model_plots = task.plots(card, curves, results, decisions, out_dir, where)
    metric = card.evaluation.gate.metric
    shared_plots.append(
        quality_latency_plot(
            {n: (a["latency"]["p99_ms"], _value(results[n], metric)) for n, a in analysis.items()},
            out_dir / "quality_latency.png",
            f"{card.name}: {metric} vs p99 latency",
            metric,
            card.requirements.latency_p99_ms,
        )
    )
    per_model = [p for ps in model_plots.values() for p in ps]
    plots = list(dict.fromkeys([*shared_plots[:1], *per_model, *shared_plots[1:]]))
    report = {
        "card": card.name,
        "data": data_uri,
        "metrics": results,
        "baseline": card.models.baseline.name,
        "candidate": candidate,
        "validation_leaderboard": leaderboard,
        "champion": None
        if champion is None
        else {
            "version": champion.version,
            "model_name": champion.model_name,
            "metrics": champion_metrics,
        },
        "gate": {"config": card.evaluation.gate.model_dump(), **decision.as_dict()},
        "plots": [str(p) for p in plots],
        "dataset_version": _dataset_version(card, workdir),
        "thresholds": thresholds,
        "inference": inference,
        "analysis": analysis,
        "champion_analysis": champion_analysis,
        "comparisons": evidence.comparisons,
        "model_plots": {n: [str(p) for p in ps] for n, ps in model_plots.items()},
        "shared_plots": [str(p) for p in shared_plots],
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if external:
        report["external"] = external
    combined = [s for s in card.models.candidates if get_kind(s.kind).combines]
    if combined and task.uses_threshold:
        from mlsd_ray.evaluate.blends import blend_comparisons

        report["blends"] = blend_comparisons(card, curves, thresholds)
    if get_task(card.framing.category).calibrates:
        from mlsd_ray.evaluate.calibration import calibration_summary

        report["calibration"] = {
            name: calibration_summary(workdir.model_dir(name), frames[name], curves[name][1])
            for name in results
        }
    report["model_card"] = str(
        write_model_card(
            card, report, candidate, workdir.model_dir(candidate), out_dir / "model_card.md"
        )
    )
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=_json_default))
    write_markdown(report, out_dir / "report.md")
    storage.write_json(str(workdir.summary_path("evaluate")), report)
    log.info("evaluation report: %s", out_dir / "report.md")
    return report


def _value(metrics: dict[str, Any], metric: str) -> float:
    value = metrics.get(metric)
    return float("nan") if value is None else float(value)


def _dataset_version(card: DesignCard, workdir: Workdir) -> str | None:
    try:
        from mlsd_ray.data.etl import dataset_version

        return str(dataset_version(card, workdir))
    except Exception:  # a hand-written split has no manifest; the report says n/a
        return None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
