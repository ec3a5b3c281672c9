"""Train an xgboost or LightGBM model through Ray Train (`XGBoostTrainer` / `LightGBMTrainer`).

The driver fits the tabular preprocessor on the train split and hands Ray Train the
*transformed* features (float32 columns ``f0..fN``, ``label`` and ``weight``), so every worker
boosts on exactly what serving will compute. Each worker turns its shard into a DMatrix /
lgb.Dataset and calls the same boosting function `fit` uses (`mlsd_ray.models.gbdt`), with Ray's
`RayTrainReportCallback` reporting per-round validation metrics. The final (early-stopped)
booster comes back as a checkpoint in the library's own format and is packaged with its
preprocessor.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd_ray.errors import ModelError
from mlsd_ray.features import TabularPreprocessor
from mlsd_ray.models.base import load_model_class
from mlsd_ray.models.gbdt import (
    XGBoostModel,
    base_score,
    check_params,
    lgb_boost,
    lgb_params,
    n_classes_of,
    pos_weight,
    sample_weights,
    xgb_boost,
    xgb_params,
)
from mlsd_ray.storage import ray_storage

log = logging.getLogger(__name__)

LABEL = "label"
WEIGHT = "weight"
XGB_FILE = "model.ubj"
LGB_FILE = "model.txt"


def feature_frame(Xt: np.ndarray, y: np.ndarray, weights: np.ndarray | None) -> pd.DataFrame:
    """Transformed features as a frame Ray Data can carry: f0..fN, label, weight."""
    frame = pd.DataFrame(Xt.astype(np.float32), columns=[f"f{i}" for i in range(Xt.shape[1])])
    frame[LABEL] = y.astype(np.float64)
    frame[WEIGHT] = (weights if weights is not None else np.ones(len(y))).astype(np.float64)
    return frame


def _shard(name: str, config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """This worker's shard as arrays; None for a dataset the driver did not pass."""
    import ray.train

    if name not in config["datasets"]:
        return None  # get_dataset_shard raises KeyError for those
    frame = ray.train.get_dataset_shard(name).materialize().to_pandas()
    X = frame.drop(columns=[LABEL, WEIGHT]).to_numpy(np.float32)
    return X, frame[LABEL].to_numpy(), frame[WEIGHT].to_numpy()


def xgb_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: boost on this worker's shard; Ray's callback reports every round's
    validation metric, and the early-stopped booster is checkpointed once at the end."""
    import xgboost as xgb
    from ray.train.xgboost import RayTrainReportCallback

    X, y, w = _shard("train", config)  # type: ignore[misc]
    dtrain = xgb.DMatrix(X, label=y, weight=w)
    val = _shard("validation", config)
    dval = xgb.DMatrix(val[0], label=val[1]) if val is not None else None
    started = time.perf_counter()
    booster = xgb_boost(
        config["settings"],
        config["params"],
        dtrain,
        dval,
        callbacks=_reporting(
            RayTrainReportCallback(filename=XGB_FILE, checkpoint_at_end=False), dval
        ),
    )
    _report_final(booster, _timing(started, len(y), int(booster.num_boosted_rounds())))


#: Report the validation metric to Ray Train every this many rounds. Each report is a
#: synchronous round trip to the controller: 1.8 s measured on the 2-core machine at load 5
#: (3 s loaded), against a few ms for a tree of card-sized data (see BENCHMARKS.md).
REPORT_EVERY = 50


def _every_xgb(inner: Any) -> Any:
    """Ray's xgboost callback, called every ``REPORT_EVERY`` rounds only."""
    import xgboost as xgb

    class Every(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            if (epoch + 1) % REPORT_EVERY == 0:
                inner.after_iteration(model, epoch, evals_log)
            return False

    return Every()


def _every_lgb(inner: Any) -> Any:
    def callback(env: Any) -> None:
        if (env.iteration + 1) % REPORT_EVERY == 0:
            inner(env)

    callback.order = 10  # type: ignore[attr-defined]  # before early stopping (30)
    return callback


def _reporting(callback: Any, dval: Any) -> list[Any]:
    """Ray's report callback, thinned to every ``REPORT_EVERY`` rounds, when there is a
    validation metric to report."""
    if dval is None:
        return []
    return [_every_xgb(callback) if hasattr(callback, "after_iteration") else _every_lgb(callback)]


def _timing(started: float, rows: int, rounds: int) -> dict[str, Any]:
    return {"boost_s": time.perf_counter() - started, "shard_rows": rows, "best_iteration": rounds}


def _report_final(booster: Any, metrics: dict[str, Any]) -> None:
    """Every worker reports (Ray Train V2 expects it); rank 0 attaches the booster in the
    library's format. Ray Train keeps metrics only with checkpoints, so the timing rides here."""
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if ray.train.get_context().get_world_rank() == 0:
            file = XGB_FILE if hasattr(booster, "num_boosted_rounds") else LGB_FILE
            if file == XGB_FILE:
                booster.save_model(str(Path(tmp) / file))
            else:
                booster.save_model(str(Path(tmp) / file), num_iteration=metrics["best_iteration"])
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)


def lgb_worker(config: dict[str, Any]) -> None:
    """Ray Train worker for LightGBM. Ray's callback reports every round; LightGBM's early
    stopping ends training by exception before the callback's end-of-training checkpoint, so
    the best booster is reported once boosting returns."""
    import lightgbm as lgb
    from ray.train.lightgbm import RayTrainReportCallback, get_network_params

    X, y, w = _shard("train", config)  # type: ignore[misc]
    params = {**config["params"], **get_network_params()}
    dtrain = lgb.Dataset(X, label=y, weight=w)
    val = _shard("validation", config)
    dval = lgb.Dataset(val[0], label=val[1], reference=dtrain) if val is not None else None
    started = time.perf_counter()
    booster = lgb_boost(
        config["settings"],
        params,
        dtrain,
        dval,
        callbacks=_reporting(RayTrainReportCallback(checkpoint_at_end=False), dval),
    )
    best = int(booster.best_iteration or 0) or int(booster.current_iteration())
    _report_final(booster, _timing(started, len(y), best))


def _check_result(result: Any, name: str) -> Any:
    """The run's checkpoint; a clear error when there is none."""
    if result.checkpoint is None:
        raise ModelError(
            f"Ray Train run {name!r} finished without a checkpoint.",
            why="no worker reported a booster (empty train split, or the workers failed)",
            fix="check the train split and the worker logs above",
        )
    return result.checkpoint


def train_gbdt(
    kind: str,
    inputs: list[str],
    params: dict[str, Any],
    train: pd.DataFrame,
    val: pd.DataFrame | None,
    *,
    num_workers: int = 1,
    cpus_per_worker: int = 1,
    name: str = "gbdt",
    storage_path: str | None = None,
    resources_per_worker: dict[str, float] | None = None,
) -> Any:
    """A fitted `XGBoostModel` / `LightGBMModel`, boosted by Ray Train workers.

    ``train``/``val`` hold the inputs and an int ``label``; early stopping watches ``val``.
    """
    import ray.data
    from ray.train import DataConfig, RunConfig, ScalingConfig

    if kind not in ("xgboost", "lightgbm"):
        raise ModelError(f"train_gbdt got kind {kind!r}.", fix="use xgboost or lightgbm")
    settings = check_params(params)
    y = train[LABEL].to_numpy()
    pre = TabularPreprocessor.from_params(params, keep_nan=True).fit(train[inputs])
    n_classes = n_classes_of(settings["category"], y)
    spw = pos_weight(settings, y)
    datasets = {
        "train": ray.data.from_pandas(
            feature_frame(pre.transform(train[inputs]), y, sample_weights(settings, y, n_classes))
        )
    }
    if val is not None and len(val):
        datasets["validation"] = ray.data.from_pandas(
            feature_frame(pre.transform(val[inputs]), val[LABEL].to_numpy(), None)
        )
    if kind == "xgboost":
        library_params = xgb_params(settings, n_classes, spw, base_score(settings, y))
    else:
        library_params = lgb_params(settings, n_classes, spw)
    common: dict[str, Any] = {
        "train_loop_config": {
            "settings": settings,
            "params": library_params,
            "datasets": list(datasets),
        },
        # the card's stages.train (CPUs, GPUs, memory, custom resources) when it sets them
        "scaling_config": ScalingConfig(
            num_workers=num_workers,
            use_gpu=bool((resources := resources_per_worker or {}).get("GPU")),
            resources_per_worker=resources or {"CPU": cpus_per_worker},
        ),
        "run_config": RunConfig(name=name, **ray_storage(storage_path)),
        "datasets": datasets,
        # Each worker boosts on its share of train; validation is split too, and the libraries'
        # collectives combine the per-worker metrics.
        "dataset_config": DataConfig(datasets_to_split="all"),
    }
    if kind == "xgboost":
        from ray.train.xgboost import RayTrainReportCallback, XGBoostConfig, XGBoostTrainer

        result = XGBoostTrainer(xgb_worker, xgboost_config=XGBoostConfig(), **common).fit()
        checkpoint = _check_result(result, name)
        booster: Any = RayTrainReportCallback.get_model(checkpoint, filename=XGB_FILE)
    else:
        from ray.train.lightgbm import LightGBMTrainer
        from ray.train.lightgbm import RayTrainReportCallback as LgbCallback

        result = LightGBMTrainer(lgb_worker, **common).fit()
        booster = LgbCallback.get_model(_check_result(result, name), filename=LGB_FILE)
    model = load_model_class(kind)(inputs, **params)
    if isinstance(model, XGBoostModel):
        booster.set_param({"nthread": settings["n_threads"]})
    model.set_fitted(pre, booster, n_classes)  # type: ignore[attr-defined]
    model.train_metrics_ = dict(result.metrics or {})  # type: ignore[attr-defined]
    return model
