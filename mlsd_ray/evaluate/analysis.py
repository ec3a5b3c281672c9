"""What the evaluation stage adds to point metrics, per model: the business threshold (chosen
on validation and written into the package), bootstrap intervals, slices, latency and
behavioural tests; and the paired comparison of the candidate with the champion."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd_ray.evaluate.latency import measure_latency
from mlsd_ray.models.package import MANIFEST, read_manifest
from mlsd_ray.predict import PROBABILITY, Predictor
from mlsd_ray.spec import DesignCard
from mlsd_ray.tasks import Decision, get_task
from mlsd_ray.tasks.bootstrap import HEADLINE, paired_difference

log = logging.getLogger(__name__)
LABEL = "label"


def score_split(model_dir: Path, uri: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of a small split, scored in this process: the validation split is
    small, and a Ray Data job would cost more to start than to run."""
    from mlsd_ray.data.layout import read_split
    from mlsd_ray.models.selection import load_scores

    stored = load_scores(model_dir)  # a refitted model: its selection run's validation scores
    if stored is not None:
        return stored
    frame = read_split(uri)
    predictor = Predictor(model_dir)
    return frame[LABEL].to_numpy(), predictor.predict_frame(frame[predictor.manifest.input_names])


def ensure_threshold(
    card: DesignCard,
    model_dir: Path,
    score_validation: Callable[[], tuple[np.ndarray, np.ndarray]],
) -> dict[str, Any]:
    """Choose the model's decision rule by the task (binary: the card's objective on the
    validation split) and store it in the package manifest (which serving reads). ``fixed``
    keeps the card's threshold. When the rule looked at validation, ``validation`` holds the
    metrics at the chosen rule, so the leaderboard ranks what the gate will judge."""
    task = get_task(card.framing.category)
    objective = card.evaluation.threshold_objective
    manifest = read_manifest(model_dir)
    if task.uses_threshold and objective.rule != "fixed":
        y, p = score_validation()
        choice = task.choose_decision(card, y, p)
        decision = Decision(list(manifest.classes), choice["threshold"])
        choice["validation"] = task.metrics(y, p, decision)
        if not choice["met"]:
            log.warning("%s: no threshold meets %s on validation", manifest.name, objective)
    else:
        choice = task.choose_decision(card, None, None)
    thresholds = dict(choice.get("class_thresholds", manifest.class_thresholds))
    stored = {k: v for k, v in choice.items() if k != "validation"}
    changed = manifest.threshold != choice["threshold"] or thresholds != manifest.class_thresholds
    if changed or manifest.metadata.get("threshold_choice") != stored:
        updated = manifest.model_copy(
            update={
                "threshold": choice["threshold"],
                "class_thresholds": thresholds,
                "metadata": {**manifest.metadata, "threshold_choice": stored},
            }
        )
        (model_dir / MANIFEST).write_text(updated.model_dump_json(indent=2))
    return choice


def model_evidence(
    card: DesignCard,
    model_dir: Path,
    frame: pd.DataFrame,
    threshold: float,
    version: str | None = None,
    behaviour: bool = False,
) -> dict[str, Any]:
    """Intervals, slices, latency (and behavioural tests) of one scored model."""
    ev = card.evaluation
    task = get_task(card.framing.category)
    manifest = read_manifest(model_dir)
    decision = Decision(list(manifest.classes), threshold, dict(manifest.class_thresholds))
    out: dict[str, Any] = {"threshold": threshold}
    out.update(task.evidence(card, frame, frame[LABEL].to_numpy(), task.scores(frame), decision))
    # The path Serve will run (deployment.inference), so the latency gate judges what is served.
    predictor = Predictor(model_dir, version, inference=card.deployment.inference)
    instances = frame[card.feature_names].head(50).to_dict(orient="records")
    out["latency"] = measure_latency(
        predictor, instances, ev.latency.requests, ev.latency.max_seconds
    )
    if behaviour and ev.behaviour and card.framing.text_input:
        from mlsd_ray.evaluate.behaviour import run_suite

        out["behaviour"] = run_suite(predictor, ev.behaviour)
    return out


def paired_comparisons(
    card: DesignCard,
    candidate: pd.DataFrame,
    champion: pd.DataFrame,
    t_candidate: float,
    t_champion: float,
) -> dict[str, dict[str, Any]]:
    """Challenger - champion intervals for the gate's metrics, on the same rows."""
    gate, boot = card.evaluation.gate, card.evaluation.bootstrap
    task = get_task(card.framing.category)
    if boot.n_resamples == 0 or not gate.use_intervals or not task.has_intervals:
        return {}
    joined = _align(candidate, champion)
    if joined is None:
        log.warning("champion and candidate rows do not align; gate uses point estimates")
        return {}
    metrics = {gate.metric} | {
        r.metric for r in gate.rules if r.min_improvement is not None and r.slice is None
    }
    return {
        m: paired_difference(
            joined[LABEL].to_numpy(),
            joined["p_a"].to_numpy(),
            joined["p_b"].to_numpy(),
            t_candidate,
            t_champion,
            m,
            relative=gate.improvement == "relative",
            n_resamples=boot.n_resamples,
            confidence=boot.confidence,
            seed=boot.seed,
        )
        for m in sorted(metrics)
        if m in HEADLINE
    }


def _align(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame | None:
    """Pair rows by lineage (``_source``, ``_row``) when present, else by position."""
    keys = [k for k in ("_source", "_row") if k in a.columns and k in b.columns]
    if len(a) != len(b):
        return None
    if keys:
        left = a[[*keys, LABEL, PROBABILITY]].rename(columns={PROBABILITY: "p_a"})
        right = b[[*keys, PROBABILITY]].rename(columns={PROBABILITY: "p_b"})
        joined = left.merge(right, on=keys, how="inner", validate="one_to_one")
        return joined if len(joined) == len(a) else None
    pa, pb = a[PROBABILITY].to_numpy(), b[PROBABILITY].to_numpy()
    return pd.DataFrame({LABEL: a[LABEL].to_numpy(), "p_a": pa, "p_b": pb})


def select_within_budget(
    card: DesignCard, leaderboard: dict[str, float], latency: dict[str, dict[str, Any]]
) -> dict[str, float]:
    """With ``priority: latency``, drop models over the p99 budget from the leaderboard (the
    best one within budget goes forward); if every model is over, keep them all (the gate
    then names the latency rule)."""
    req = card.requirements
    if req.priority != "latency":
        return leaderboard
    within = {
        n: v
        for n, v in leaderboard.items()
        if n in latency and latency[n]["p99_ms"] <= req.latency_p99_ms
    }
    return within or leaderboard
