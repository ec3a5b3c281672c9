"""One trainer per family of kinds, each ``fit(spec, card, train, val, workdir) -> Fitted``.

The table of kinds (mlsd_ray.models.kinds) names each kind's trainer; `train_models` calls it
for every model of the card and never branches on the kind. What a kind needs from the card is
filled into its params here, from what the kind declares (its inputs, its tasks).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlsd_ray.errors import CardError
from mlsd_ray.models.base import Model
from mlsd_ray.models.kinds import ALL_TASKS, get_kind
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, ModelSpec

log = logging.getLogger(__name__)

LABEL = "label"
NUMERIC_TYPES = ("int", "float", "bool")
CATEGORICAL_TYPES = ("category", "string")


@dataclass
class Fitted:
    """What every trainer hands back."""

    model: Model
    #: The params the model was built with (card params plus what the card filled in); they go
    #: into the package manifest.
    params: dict[str, Any]
    seconds: float
    #: Facts for the manifest and the summary: best iteration, learning curve, tuning, run name.
    extra: dict[str, Any] = field(default_factory=dict)
    #: Out-of-sample validation scores when the model's own would be in sample (a blend's
    #: combiner is fitted on validation: its cross-fitted scores); None = score validation.
    validation_scores: np.ndarray | None = None


def kind_params(spec: ModelSpec, card: DesignCard) -> dict[str, Any]:
    """The spec's params with what the kind reads from the card filled in (a value the card
    sets wins). Ensemble members inherit the tabular ones."""
    kind = get_kind(spec.kind)
    params = dict(spec.params)
    inputs = card.framing.inputs
    if kind.inputs == "tabular":
        params.setdefault("numeric", [f.name for f in inputs if f.type in NUMERIC_TYPES])
        params.setdefault("categorical", [f.name for f in inputs if f.type in CATEGORICAL_TYPES])
    if kind.inputs == "text":
        if card.framing.text_input is None:
            raise CardError(
                f"models.{spec.name}: kind {spec.kind} needs exactly one input of type text.",
                why=f"framing.inputs are {[(f.name, f.type) for f in inputs]}",
                fix="mark the text column `type: text`, or use a tabular kind (logreg, xgboost)",
            )
        params.setdefault("text_input", card.framing.text_input)
    if kind.tasks == ALL_TASKS:  # kinds that fit any task must be told which one
        params.setdefault("category", card.framing.category)
    return params


def _timed(model: Model, params: dict[str, Any], started: float, **extra: Any) -> Fitted:
    return Fitted(model, params, time.perf_counter() - started, dict(extra))


def fit_simple(
    spec: ModelSpec, card: DesignCard, train: pd.DataFrame, val: pd.DataFrame, workdir: Workdir
) -> Fitted:
    """Closed-form and small models, fitted in this process (the stage runs it in a Ray task)."""
    params = kind_params(spec, card)
    inputs = card.feature_names
    started = time.perf_counter()
    model = get_kind(spec.kind).model_class()(inputs, **params)
    model.fit(train[inputs], train[LABEL].to_numpy())
    return _timed(model, params, started)


def fit_transformer(
    spec: ModelSpec, card: DesignCard, train: pd.DataFrame, val: pd.DataFrame, workdir: Workdir
) -> Fitted:
    """Ray Train (`mlsd_ray.train.transformer`): checkpoints, resume, warm start."""
    from mlsd_ray.train.transformer import train_transformer

    started = time.perf_counter()
    model = train_transformer(
        spec,
        card,
        train,
        val,
        out_dir=workdir.root / "train" / spec.name,
        storage_path=workdir.ray_results_uri,
        workdir=workdir,
    )
    metrics = model.train_metrics_
    keep: tuple[str, ...] = ("run_name", "step", "epoch", "samples_per_s", "resumed_from_step")
    keep += ("best_step", "best_epoch", "best_val_score", "evaluations", "stopped_early")
    return _timed(model, model.params, started, **{k: metrics[k] for k in keep if k in metrics})


def fit_mlp(
    spec: ModelSpec, card: DesignCard, train: pd.DataFrame, val: pd.DataFrame, workdir: Workdir
) -> Fitted:
    """Ray Tune (when the spec has a search), then Ray Train (`mlsd_ray.train.deep`)."""
    from mlsd_ray.train.deep import fit_deep

    model, params, seconds, extra = fit_deep(spec, card, train, val, workdir)
    return Fitted(model, params, seconds, extra)


def fit_cnn(
    spec: ModelSpec, card: DesignCard, train: pd.DataFrame, val: pd.DataFrame, workdir: Workdir
) -> Fitted:
    """Image models through Ray Train (`mlsd_ray.train.cnn`)."""
    from mlsd_ray.train.cnn import fit_cnn as train_cnn_spec

    model, params, seconds, _auc, extra = train_cnn_spec(spec, card, train, val, workdir)
    return Fitted(model, params, seconds, extra)


def fit_gbdt(
    spec: ModelSpec, card: DesignCard, train: pd.DataFrame, val: pd.DataFrame, workdir: Workdir
) -> Fitted:
    """xgboost / LightGBM through Ray Train; ``trainer.num_workers: 0`` boosts in the driver."""
    params = kind_params(spec, card)
    inputs = card.feature_names
    started = time.perf_counter()
    if spec.trainer.num_workers > 0:
        from mlsd_ray.train.gbdt import train_gbdt

        model: Any = train_gbdt(
            spec.kind,
            inputs,
            params,
            train,
            val,
            num_workers=spec.trainer.num_workers,
            cpus_per_worker=spec.trainer.cpus_per_worker,
            name=f"{card.name}-{spec.name}",
            storage_path=workdir.ray_results_uri,
            resources_per_worker=card.stages.train.worker_resources(spec.trainer.cpus_per_worker),
        )
    else:  # debugging, tests
        model = get_kind(spec.kind).model_class()(inputs, **params)
        model.fit(train[inputs], train[LABEL].to_numpy(), val[inputs], val[LABEL].to_numpy())
    metrics = model.train_metrics_
    extra = {k: metrics[k] for k in ("boost_s", "shard_rows") if k in metrics}
    return _timed(model, params, started, best_iteration=model.best_iteration_, **extra)


def fit_ensemble(
    spec: ModelSpec, card: DesignCard, train: pd.DataFrame, val: pd.DataFrame, workdir: Workdir
) -> Fitted:
    """Bagging and stacking: every member fit is a Ray task (`ladder.ray_runner`)."""
    from mlsd_ray.train.ladder import ray_runner

    params = kind_params(spec, card)
    inputs = card.feature_names
    started = time.perf_counter()
    model: Any = get_kind(spec.kind).model_class()(inputs, **params)
    model.with_runner(ray_runner()).fit(train[inputs], train[LABEL].to_numpy())
    return _timed(model, params, started)


def fit_blend(
    spec: ModelSpec,
    card: DesignCard,
    train: pd.DataFrame,
    val: pd.DataFrame,
    workdir: Workdir,
    members: dict[str, tuple[Any, np.ndarray]] | None = None,
) -> Fitted:
    """A cross-family ensemble (`mlsd_ray.models.blend`): its combiner fitted, cross-fitted, on
    the members' out-of-sample validation scores. ``members``: name -> (package folder, those
    scores), from the training stage, which trains a blend after everything else."""
    params = kind_params(spec, card)
    started = time.perf_counter()
    members = members or {}
    model: Any = get_kind(spec.kind).model_class()(card.feature_names, **params)
    model.with_members({name: folder for name, (folder, _) in members.items()})
    scores = np.column_stack([members[name][1] for name in model.names])
    model.fit(val[card.feature_names], val[LABEL].to_numpy(), member_scores=scores)
    fitted = _timed(model, params, started, combiner=model.state_, method=model.method)
    fitted.validation_scores = model.oof_
    return fitted
