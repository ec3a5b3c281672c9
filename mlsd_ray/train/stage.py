"""The training stage: fit every model of the card on the ETL splits and package it.

Simple kinds (majority, tfidf_logreg, logreg) are fitted in Ray tasks, all at once; the
transformer goes through Ray Train (`mlsd_ray.train.transformer`). Each model is scored on the
validation split and saved as a model package under ``workdir.model_dir(name)``; the stage
writes ``train_summary.json`` so later stages (evaluation, registry) and scripts can find them.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from mlsd_ray.data.etl import dataset_version
from mlsd_ray.data.layout import read_split
from mlsd_ray.errors import CardError, DataError
from mlsd_ray.models.base import Model, load_model_class
from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
from mlsd_ray.models.selection import save_scores
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, ModelSpec
from mlsd_ray.train.metrics import roc_auc
from mlsd_ray.train.refit import REFIT_KINDS, refit

log = logging.getLogger(__name__)

LABEL = "label"
SIMPLE_KINDS: tuple[str, ...] = ("majority", "tfidf_logreg", "logreg")
SIMPLE_KINDS += ("mean", "ridge")  # regression (mlsd_ray.models.regression)
NUMERIC_TYPES = ("int", "float", "bool")
CATEGORICAL_TYPES = ("category", "string")


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
    params = dict(spec.params)
    if spec.kind == "logreg":
        params.setdefault(
            "numeric", [f.name for f in card.framing.inputs if f.type in NUMERIC_TYPES]
        )
        params.setdefault(
            "categorical", [f.name for f in card.framing.inputs if f.type in CATEGORICAL_TYPES]
        )
    if spec.kind == "ridge":
        from mlsd_ray.train.deep import tabular_defaults

        params = tabular_defaults(params, card)
    if spec.kind == "tfidf_logreg" and card.feature_names[0] != card.framing.text_input:
        raise CardError(
            f"models.{spec.name}: tfidf_logreg reads the first input as its text.",
            why=f"the card's single text input is {card.framing.text_input!r}, "
            f"the first input is {card.feature_names[0]!r}",
            fix="list the text input first in framing.inputs",
        )
    return params


def fit_simple(
    kind: str,
    inputs: list[str],
    params: dict[str, Any],
    train: pd.DataFrame,
    val: pd.DataFrame,
) -> tuple[Model, float, float | None]:
    """(fitted model, fit seconds, validation ROC-AUC); runs inside a Ray task."""
    started = time.perf_counter()
    model = load_model_class(kind)(inputs, **params).fit(train[inputs], train[LABEL].to_numpy())
    seconds = time.perf_counter() - started
    if model.is_regressor:  # no AUC; the stage records regression metrics on validation
        return model, seconds, None
    return model, seconds, roc_auc(val[LABEL].to_numpy(), model.predict_proba(val[inputs]))


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

    # `tuning:` on a non-mlp kind: search first, then train the best params like any spec.
    specs, tuned = tune_specs(specs, card, train, val, workdir)

    # Simple models: one Ray task each, submitted before the transformer so they overlap.
    inputs = card.feature_names
    pending: dict[str, tuple[Any, dict[str, Any]]] = {}
    if any(s.kind in SIMPLE_KINDS for s in specs):
        task = ray.remote(num_cpus=1)(fit_simple)
        train_ref, val_ref = ray.put(train), ray.put(val)
        for spec in specs:
            if spec.kind in SIMPLE_KINDS:
                params = simple_params(spec, card)
                pending[spec.name] = (
                    task.remote(spec.kind, inputs, params, train_ref, val_ref),
                    params,
                )

    fitted: dict[str, tuple[Model, dict[str, Any], float, float | None, dict[str, Any]]] = {}
    for spec in specs:
        if spec.kind != "transformer":
            continue
        from mlsd_ray.train.transformer import train_transformer

        started = time.perf_counter()
        transformer = train_transformer(
            spec,
            card,
            train,
            val,
            out_dir=workdir.root / "train" / spec.name,
            storage_path=str(workdir.root / "ray_results"),
            workdir=workdir,
        )
        seconds = time.perf_counter() - started
        metrics = dict(getattr(transformer, "train_metrics_", {}))
        auc = metrics.get("val_roc_auc")
        if auc is None:
            auc = roc_auc(val[LABEL].to_numpy(), transformer.predict_proba(val[inputs]))
        extra = {
            k: metrics[k]
            for k in ("run_name", "step", "epoch", "samples_per_s", "resumed_from_step")
            if k in metrics
        }
        fitted[spec.name] = (transformer, transformer.params, seconds, auc, extra)

    for spec in specs:  # deep tabular models: Ray Tune (optional), then Ray Train
        if spec.kind == "mlp":
            from mlsd_ray.train.deep import fit_deep

            mlp, mlp_params, seconds, extra = fit_deep(spec, card, train, val, workdir)
            auc = None
            if not mlp.is_regressor:
                auc = roc_auc(val[LABEL].to_numpy(), mlp.predict_proba(val[inputs]))
            fitted[spec.name] = (mlp, mlp_params, seconds, auc, extra)

    for spec in specs:  # image models: Ray Train
        if spec.kind == "cnn":
            from mlsd_ray.train.cnn import fit_cnn

            fitted[spec.name] = fit_cnn(spec, card, train, val, workdir)

    # The tabular ladder: GBDTs through Ray Train, ensembles fan their members out as tasks.
    from mlsd_ray.train.ladder import LADDER_KINDS, fit_ladder

    for spec in specs:
        if spec.kind in LADDER_KINDS:
            fitted[spec.name] = fit_ladder(
                spec, card, train, val, storage_path=workdir.root / "ray_results"
            )

    for name, (ref, params) in pending.items():
        model, seconds, auc = ray.get(ref)
        fitted[name] = (model, params, seconds, auc, {})

    summary: dict[str, Any] = {
        "card": card.name,
        "dataset_version": data_version,
        "train_uri": uris["train"],
        "validation_uri": uris["validation"],
        "rows": rows,
        "models": {},
    }
    for spec in specs:
        model, params, seconds, auc, extra = fitted[spec.name]
        if spec.name in tuned:
            extra = {**extra, "tuning": tuned[spec.name]}
        calibrator, p_val = None, None
        if card.framing.category == "binary":
            # Every gate metric on validation, so evaluation can rank models before test.
            from mlsd_ray.metrics import classification_metrics
            from mlsd_ray.train.calibrate import calibrate_validation

            p_val = model.predict_proba(val[inputs])[:, 1]
            calibrator, p_val, extra = calibrate_validation(card, spec, p_val, val, extra)
            extra = {
                **extra,
                "validation": classification_metrics(
                    val[LABEL].to_numpy(), p_val, card.evaluation.threshold
                ),
            }
        if card.framing.category == "regression":
            from mlsd_ray.metrics import regression_metrics

            y_hat = model.predict(val[inputs])
            extra = {**extra, "validation": regression_metrics(val[LABEL].to_numpy(), y_hat)}
        selection = None
        if card.models.refit and spec.kind in REFIT_KINDS:  # validation figures stay those above
            selection = p_val  # the selection model's (calibrated) scores, out of sample
            model, params, extra["refit"] = refit(spec.kind, inputs, params, model, train, val)
        metadata = {
            "card": card.name,
            "dataset_version": data_version,
            "train_uri": uris["train"],
            "validation_uri": uris["validation"],
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
        if selection is not None:
            save_scores(folder, val[LABEL].to_numpy(), selection)
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

    from mlsd_ray.train.deep import write_training_report

    report = write_training_report(summary, workdir.reports / "training")
    if report is not None:
        summary["report"] = str(report)
    path = workdir.summary_path("train")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    log.info("wrote %s", path)
    return summary


def tune_specs(
    specs: list[ModelSpec],
    card: DesignCard,
    train: pd.DataFrame,
    val: pd.DataFrame,
    workdir: Workdir,
) -> tuple[list[ModelSpec], dict[str, dict[str, Any]]]:
    """(the specs, tuned ones with their best params and no tuning left; tuning info by name).
    The mlp tunes inside `train.deep.fit_deep` (per epoch, with its own trials)."""
    out, info = [], {}
    for spec in specs:
        if spec.tuning is None or spec.kind == "mlp":
            out.append(spec)
            continue
        from mlsd_ray.train.ladder import LADDER_KINDS, ladder_params
        from mlsd_ray.train.tune_kinds import tune_params

        params = (
            ladder_params(spec, card) if spec.kind in LADDER_KINDS else simple_params(spec, card)
        )
        best, info[spec.name] = tune_params(spec, params, card, train, val, workdir)
        out.append(spec.model_copy(update={"params": best, "tuning": None}))
    return out, info


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
