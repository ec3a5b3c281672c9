"""Training the tabular ladder's kinds: GBDTs through Ray Train, ensembles through Ray tasks.

`train_models` (mlsd_ray.train.stage) calls `fit_ladder` for every spec whose kind is in
`LADDER_KINDS`; every rung is then scored on the same validation split as the rest, so the
evaluation leaderboard ranks the whole ladder side by side.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd_ray.models.base import Model, load_model_class
from mlsd_ray.spec import DesignCard, ModelSpec
from mlsd_ray.train.metrics import roc_auc

log = logging.getLogger(__name__)

LABEL = "label"
GBDT_KINDS = ("xgboost", "lightgbm")
ENSEMBLE_KINDS = ("bagging", "stacking")
LADDER_KINDS = (*GBDT_KINDS, *ENSEMBLE_KINDS)
NUMERIC_TYPES = ("int", "float", "bool")
CATEGORICAL_TYPES = ("category", "string")


def ladder_params(spec: ModelSpec, card: DesignCard) -> dict[str, Any]:
    """The spec's params with the card's column types and category filled in (members of an
    ensemble inherit them)."""
    params = dict(spec.params)
    inputs = card.framing.inputs
    params.setdefault("numeric", [f.name for f in inputs if f.type in NUMERIC_TYPES])
    params.setdefault("categorical", [f.name for f in inputs if f.type in CATEGORICAL_TYPES])
    params.setdefault("category", card.framing.category)
    return params


def ray_runner(num_cpus: float = 1) -> Callable[[Callable[..., Any], list[tuple[Any, ...]]], list]:
    """An ensemble runner that makes every job a Ray task. Large arguments shared by jobs (the
    train frame) are put in the object store once, not once per task."""
    import ray

    def run(fn: Callable[..., Any], jobs: list[tuple[Any, ...]]) -> list[Any]:
        task = ray.remote(num_cpus=num_cpus)(fn)
        refs: dict[int, Any] = {}

        def shared(arg: Any) -> Any:
            if isinstance(arg, (pd.DataFrame, np.ndarray)) and len(arg) > 1000:
                if id(arg) not in refs:
                    refs[id(arg)] = ray.put(arg)
                return refs[id(arg)]
            return arg

        pending = [task.remote(*[shared(a) for a in job]) for job in jobs]
        return list(ray.get(pending))

    return run


def fit_ladder(
    spec: ModelSpec,
    card: DesignCard,
    train: pd.DataFrame,
    val: pd.DataFrame,
    storage_path: Path | str | None = None,
) -> tuple[Model, dict[str, Any], float, float | None, dict[str, Any]]:
    """(model, params, fit seconds, validation ROC-AUC, extra metadata) for one ladder spec."""
    params = ladder_params(spec, card)
    inputs = card.feature_names
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    model: Any
    if spec.kind in GBDT_KINDS and spec.trainer.num_workers > 0:
        from mlsd_ray.train.gbdt import train_gbdt

        model = train_gbdt(
            spec.kind,
            inputs,
            params,
            train,
            val,
            num_workers=spec.trainer.num_workers,
            cpus_per_worker=spec.trainer.cpus_per_worker,
            name=f"{card.name}-{spec.name}",
            storage_path=str(storage_path) if storage_path else None,
        )
        extra["best_iteration"] = model.best_iteration_
        metrics = model.train_metrics_
        extra.update({k: metrics[k] for k in ("boost_s", "shard_rows") if k in metrics})
    elif spec.kind in GBDT_KINDS:  # num_workers 0: boost in the driver (debugging, tests)
        model = load_model_class(spec.kind)(inputs, **params)
        model.fit(train[inputs], train[LABEL].to_numpy(), val[inputs], val[LABEL].to_numpy())
        extra["best_iteration"] = model.best_iteration_
    else:
        model = load_model_class(spec.kind)(inputs, **params).with_runner(ray_runner())  # type: ignore[attr-defined]
        model.fit(train[inputs], train[LABEL].to_numpy())
    seconds = time.perf_counter() - started
    auc = None
    if card.framing.category != "regression":
        auc = roc_auc(val[LABEL].to_numpy(), model.predict_proba(val[inputs]))
    return model, params, seconds, auc, extra
