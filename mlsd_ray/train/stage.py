"""The training stage: fit every model of the card on the ETL splits and package it.

Each model goes through its kind's trainer (mlsd_ray.models.kinds names it): cheap kinds are
fitted in Ray tasks, all at once; the transformer, the GBDTs and the MLP go through Ray Train,
ensembles fan their members out as Ray tasks. Each model is scored by the task on the
validation split and saved as a model package under ``workdir.model_dir(name)``; the stage
writes ``train_summary.json`` so later stages (evaluation, registry) and scripts can find them.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from mlsd_ray import progress
from mlsd_ray.data.etl import dataset_version
from mlsd_ray.data.layout import read_split
from mlsd_ray.errors import CardError, DataError
from mlsd_ray.models.kinds import get_kind
from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
from mlsd_ray.models.selection import save_scores
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, ModelSpec
from mlsd_ray.tasks import Decision, get_task
from mlsd_ray.train.refit import refit
from mlsd_ray.train.trainers import Fitted, kind_params

log = logging.getLogger(__name__)

LABEL = "label"


def select_specs(card: DesignCard, only: list[str] | None) -> list[ModelSpec]:
    specs = [card.models.baseline, *card.models.candidates]
    if not only:
        return specs
    known = {s.name for s in specs}
    unknown = sorted(set(only) - known)
    if unknown:
        raise CardError(
            f"No model named {unknown} in card {card.name!r}.", fix=f"use one of {sorted(known)}"
        )
    return [s for s in specs if s.name in only]


def simple_params(spec: ModelSpec, card: DesignCard) -> dict[str, Any]:
    """The spec's params, with what the kind needs from the card filled in."""
    return kind_params(spec, card)


def _manifest(
    spec: ModelSpec, card: DesignCard, params: dict[str, Any], metadata: dict[str, Any]
) -> ModelManifest:
    return ModelManifest(
        name=spec.name,
        kind=spec.kind,
        category=card.framing.category,
        inputs=[
            InputSchema(name=f.name, type=f.type, required=f.required) for f in card.framing.inputs
        ],
        classes=list(card.framing.label.classes),
        threshold=card.evaluation.threshold,
        class_thresholds=dict(card.evaluation.class_thresholds),
        params=params,
        metadata=metadata,
    )


def _check_split(frame: pd.DataFrame, card: DesignCard, which: str, uri: str) -> None:
    missing = [c for c in [*card.feature_names, LABEL] if c not in frame.columns]
    if missing:
        raise DataError(
            f"The {which} split at {uri!r} lacks column(s) {missing}.",
            fix="re-run ETL with this card; splits hold the card's inputs and `label`",
        )
    if which == "train" and len(frame) == 0:
        raise DataError(f"The train split at {uri!r} has no rows.", fix="check the ETL report")


def train_models(card: DesignCard, workdir: Workdir, only: list[str] | None = None) -> dict:
    """Train, score and package the card's models (or the ``only`` ones); returns the summary
    that is also written to ``workdir.summary_path("train")``."""
    import ray

    from mlsd_ray.runtime import ensure_ray

    ensure_ray()
    specs = select_specs(card, only)
    uris = {s: workdir.split_uri(card, s) for s in ("train", "validation")}
    train, val = read_split(uris["train"]), read_split(uris["validation"])
    _check_split(train, card, "train", uris["train"])
    _check_split(val, card, "validation", uris["validation"])
    rows = {"train": len(train), "validation": len(val)}
    data_version = dataset_version(card, workdir)  # lineage: the model names its data
    log.info(
        "training %s on %d train / %d validation rows", [s.name for s in specs], *rows.values()
    )

    # `tuning:` on a kind other than the mlp: search first, then train the best params like any
    # spec (the mlp tunes inside its own trainer, per epoch).
    specs, tuned = tune_specs(specs, card, train, val, workdir)
    blends = [s for s in specs if get_kind(s.kind).combines]
    specs = [s for s in specs if not get_kind(s.kind).combines]

    # One loop over the card's models, each through its kind's trainer. Kinds fitted in a Ray
    # task go first, so they overlap with the driver-run trainers (Ray Train, Tune, fan-outs).
    task = get_task(card.framing.category)
    pending: dict[str, Any] = {}
    fitted: dict[str, Fitted] = {}
    shared: tuple[Any, Any] | None = None
    for spec in sorted(specs, key=lambda s: not get_kind(s.kind).in_task):
        kind = get_kind(spec.kind)
        if kind.in_task:
            shared = shared or (ray.put(train), ray.put(val))
            # stages.train: the card's CPUs, GPUs, memory and custom resources per task
            remote = ray.remote(**card.stages.train.ray_options(num_cpus=1))(kind.trainer_fn())
            pending[spec.name] = remote.remote(spec, card, *shared, workdir)
        else:
            with progress.task(f"train {spec.name}"):
                fitted[spec.name] = kind.trainer_fn()(spec, card, train, val, workdir)
    with progress.task(f"train {', '.join(pending)}" if pending else "train"):
        fitted.update(zip(pending, ray.get(list(pending.values())), strict=True))

    summary: dict[str, Any] = {
        "card": card.name,
        "dataset_version": data_version,
        "train_uri": uris["train"],
        "validation_uri": uris["validation"],
        "rows": rows,
        "models": {},
    }
    decision = Decision(list(card.framing.label.classes), card.evaluation.threshold)
    packaged: dict[str, tuple[Any, np.ndarray]] = {}  # name -> (package, validation scores)
    context = (card, task, decision, summary, train, val, workdir, tuned)
    for spec in specs:
        packaged[spec.name] = _package(spec, fitted[spec.name], *context)
    # Blends combine the packages just made, from their out-of-sample validation scores.
    for spec in blends:
        members = {n: packaged[n] for n in spec.params.get("members", []) if n in packaged}
        with progress.task(f"train {spec.name}"):
            fit = get_kind(spec.kind).trainer_fn()(spec, card, train, val, workdir, members)
        packaged[spec.name] = _package(spec, fit, *context)

    from mlsd_ray.train.deep import write_training_report

    report = write_training_report(summary, workdir.reports / "training")
    if report is not None:
        summary["report"] = str(report)
    path = workdir.summary_path("train")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    log.info("wrote %s", path)
    return summary


def _package(
    spec: ModelSpec,
    fit: Fitted,
    card: DesignCard,
    task: Any,
    decision: Decision,
    summary: dict[str, Any],
    train: pd.DataFrame,
    val: pd.DataFrame,
    workdir: Workdir,
    tuned: dict[str, dict[str, Any]],
) -> tuple[Any, np.ndarray]:
    """Score one fitted model on validation (calibrating it as the card says), refit it where
    the card and kind say so, save its package and its summary entry; returns (the package
    folder, its out-of-sample validation scores)."""
    kind, inputs, data_version = get_kind(spec.kind), card.feature_names, summary["dataset_version"]
    model, params, seconds = fit.model, fit.params, fit.seconds
    extra = dict(fit.extra)
    if spec.name in tuned:
        extra["tuning"] = tuned[spec.name]
    y_val = val[LABEL].to_numpy()
    scores = fit.validation_scores
    if scores is None:
        scores = task.answer(model, val[inputs])
    calibrator = None
    if task.calibrates:  # a calibration map fitted on validation, shipped in the package
        from mlsd_ray.train.calibrate import calibrate_validation

        calibrator, scores, extra = calibrate_validation(card, spec, scores, val, extra)
    # Every gate metric on validation, so evaluation can rank models before test.
    validation = task.metrics(y_val, scores, decision)
    auc = task.headline(validation)
    extra["validation"] = validation
    selection = None
    if card.models.refit and kind.refit:  # validation figures stay those above
        selection = scores  # the selection model's (calibrated) scores, out of sample
        model, params, extra["refit"] = refit(spec.kind, inputs, params, model, train, val)
    rows = summary["rows"]
    metadata = {
        "card": card.name,
        "dataset_version": data_version,
        "train_uri": summary["train_uri"],
        "validation_uri": summary["validation_uri"],
        "rows": rows,
        "train_seconds": round(seconds, 3),
        "validation_roc_auc": auc,
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    folder = save_package(
        model, workdir.model_dir(spec.name), _manifest(spec, card, params, metadata)
    )
    if calibrator is not None:  # applied by every Predictor of the package
        calibrator.save(folder)
    if selection is not None or fit.validation_scores is not None:
        save_scores(folder, y_val, scores)  # what the threshold is chosen on: out of sample
    summary["models"][spec.name] = {
        "kind": spec.kind,
        "dir": str(folder),
        "train_seconds": round(seconds, 3),
        "validation_roc_auc": auc,
        "rows": rows,
    }
    for key in ("validation", "learning_curve", "tuning", "calibration", "refit"):
        if key in extra:
            summary["models"][spec.name][key] = extra[key]
    log.info("%s (%s): validation ROC-AUC %s in %.1f s", spec.name, spec.kind, auc, seconds)
    return folder, np.asarray(scores)


def tune_specs(
    specs: list[ModelSpec],
    card: DesignCard,
    train: pd.DataFrame,
    val: pd.DataFrame,
    workdir: Workdir,
) -> tuple[list[ModelSpec], dict[str, dict[str, Any]]]:
    """(the specs, tuned ones with their best params and no tuning left; tuning info by name).
    Kinds tuned by epoch (the mlp) tune inside their trainer (`train.deep.fit_deep`)."""
    out, info = [], {}
    for spec in specs:
        if spec.tuning is None or get_kind(spec.kind).tune_by == "epochs":
            out.append(spec)
            continue
        from mlsd_ray.train.tune_kinds import tune_params

        params = kind_params(spec, card)
        best, info[spec.name] = tune_params(spec, params, card, train, val, workdir)
        out.append(spec.model_copy(update={"params": best, "tuning": None}))
    return out, info


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
