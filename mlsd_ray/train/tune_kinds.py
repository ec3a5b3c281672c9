"""``tuning:`` on any tunable kind but the mlp (which `train.deep` tunes epoch by epoch).

- **GBDTs** (xgboost, LightGBM): the driver fits the preprocessor once on the train split and
  ships the float32 matrices to every trial through the object store. A trial boosts with the
  sampled parameters and reports every ``rounds / max_t`` rounds (validation ROC-AUC and log
  loss for binary, the loss otherwise), so ASHA stops a trial that trails at a rung. Trials
  boost without the library's early stopping (ASHA stops them instead); the retrain of the
  best configuration keeps it, so early stopping picks the number of rounds as usual.
- **Single-fit kinds** (logreg, tfidf_logreg, ridge): a trial is one fit scored on validation.

Every trial becomes an MLflow child run (`registry.log_tuning`); the best configuration goes
back into the spec's params and the training stage fits and packages it like any other model.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from mlsd_ray.models.kinds import get_kind
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, ModelSpec, Tuning

log = logging.getLogger(__name__)
LABEL = "label"
#: Params a single-fit kind's search space may name.
SIMPLE_TUNABLE = {
    "logreg": {"C", "max_categories", "hash_buckets"},
    "tfidf_logreg": {"C", "max_features", "ngram_max", "min_df"},
    "ridge": {"alpha", "max_categories", "hash_buckets"},
}


def _binary_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import log_loss, roc_auc_score

    return {
        "val_roc_auc": float(roc_auc_score(y, p)),
        "val_loss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
    }


# Trials (run inside Ray Tune workers) ----------------------------------------------------
def gbdt_trial(config: dict[str, Any], base: dict[str, Any], data: dict[str, Any]) -> None:
    """Boost with the sampled params; report every ``data["chunk"]`` rounds."""
    from ray import tune

    from mlsd_ray.models import gbdt

    params = {**base, **config}
    settings = {**gbdt.check_params(params), "early_stopping_rounds": 0}  # ASHA stops instead
    y, y_val, chunk = data["y"], data["y_val"], int(data["chunk"])
    binary = settings["category"] == "binary"
    n_classes = gbdt.n_classes_of(settings["category"], y)
    weights = gbdt.sample_weights(settings, y, n_classes)
    spw = gbdt.pos_weight(settings, y)
    rounds = settings["rounds"]

    def due(done: int) -> bool:
        return done % chunk == 0 or done == rounds

    if data["kind"] == "xgboost":
        import xgboost as xgb

        xgb_params = gbdt.xgb_params(settings, n_classes, spw, gbdt.base_score(settings, y))
        if binary:
            xgb_params["eval_metric"] = ["logloss", "auc"]

        class Report(xgb.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
                if due(epoch + 1):
                    val = evals_log["validation"]
                    record: dict[str, Any] = {"epoch": epoch + 1}
                    if binary:
                        record.update(val_roc_auc=val["auc"][-1], val_loss=val["logloss"][-1])
                    else:
                        record["val_loss"] = next(iter(val.values()))[-1]
                    tune.report(record)
                return False

        xtrain = xgb.DMatrix(data["X"], label=y, weight=weights)
        xval = xgb.DMatrix(data["X_val"], label=y_val)
        gbdt.xgb_boost(settings, xgb_params, xtrain, xval, callbacks=[Report()])
        return

    import lightgbm as lgb

    lgb_params = gbdt.lgb_params(settings, n_classes, spw)
    if binary:
        lgb_params["metric"] = ["auc", "binary_logloss"]

    def report(env: Any) -> None:
        if due(env.iteration + 1):
            values = {name: value for _, name, value, _ in env.evaluation_result_list}
            record: dict[str, Any] = {"epoch": env.iteration + 1}
            if binary:
                record.update(val_roc_auc=values["auc"], val_loss=values["binary_logloss"])
            else:
                record["val_loss"] = next(iter(values.values()))
            tune.report(record)

    dtrain = lgb.Dataset(data["X"], label=y, weight=weights)
    dval = lgb.Dataset(data["X_val"], label=y_val, reference=dtrain)
    gbdt.lgb_boost(settings, lgb_params, dtrain, dval, callbacks=[report])


def simple_trial(config: dict[str, Any], base: dict[str, Any], data: dict[str, Any]) -> None:
    """One fit of a single-fit kind with the sampled params, scored on validation."""
    from ray import tune

    from mlsd_ray.models.base import load_model_class

    inputs, train, val = data["inputs"], data["train"], data["val"]
    model = load_model_class(data["kind"])(inputs, **{**base, **config})
    model.fit(train[inputs], train[LABEL].to_numpy())
    y_val = val[LABEL].to_numpy()
    if model.is_regressor:
        error = model.predict(val[inputs]) - y_val
        tune.report({"epoch": 1, "val_loss": float(np.sqrt(np.mean(error**2)))})
    else:
        tune.report({"epoch": 1, **_binary_scores(y_val, model.predict_proba(val[inputs])[:, 1])})


# The driver ------------------------------------------------------------------------------
def _search_inputs(
    spec: ModelSpec,
    params: dict[str, Any],
    tuning: Tuning,
    card: DesignCard,
    train: pd.DataFrame,
    val: pd.DataFrame,
) -> tuple[Any, dict[str, Any], set[str]]:
    """(trial function, data for every trial, the params the space may name)."""
    inputs = card.feature_names
    if get_kind(spec.kind).tune_by == "rounds":
        from mlsd_ray.features import TabularPreprocessor
        from mlsd_ray.models.gbdt import KNOWN, check_params

        pre = TabularPreprocessor.from_params(params, keep_nan=True).fit(train[inputs])
        rounds = check_params(params)["rounds"]
        data = {
            "kind": spec.kind,
            "X": pre.transform(train[inputs]).astype(np.float32),
            "y": train[LABEL].to_numpy(),
            "X_val": pre.transform(val[inputs]).astype(np.float32),
            "y_val": val[LABEL].to_numpy(),
            "chunk": max(1, -(-rounds // tuning.max_t)),  # max_t reports over all rounds
        }
        lists = {"numeric", "categorical", "encodings", "crosses", "category"}
        return gbdt_trial, data, KNOWN - lists
    data = {"kind": spec.kind, "inputs": inputs, "train": train, "val": val}
    return simple_trial, data, SIMPLE_TUNABLE[spec.kind]


def tune_params(
    spec: ModelSpec,
    params: dict[str, Any],
    card: DesignCard,
    train: pd.DataFrame,
    val: pd.DataFrame,
    workdir: Workdir,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params with the best sampled values, tuning info for the manifest) for one spec."""
    from mlsd_ray.train.spaces import resolve
    from mlsd_ray.train.tune import record_tuning, run_search, search_space

    assert spec.tuning is not None
    tuning = resolve(spec.tuning, spec.kind, card.framing.category)
    if get_kind(spec.kind).tune_by == "fit":  # one fit, one report: nothing for ASHA to cut short
        tuning = tuning.model_copy(update={"max_t": 1, "grace_period": 1})
    where = f"models.{spec.name}.tuning"
    started = time.perf_counter()
    trial, data, known = _search_inputs(spec, params, tuning, card, train, val)
    space = search_space(tuning.space, where, known, spec.kind)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    name = f"tune-{card.name}-{spec.name}-{stamp}"
    storage = workdir.ray_results_uri  # the workdir's store: an s3:// workdir's bucket too
    best, trials = run_search(tuning, trial, space, params, data, storage, name, where)
    info = record_tuning(card, workdir, spec.name, tuning, name, best, trials)
    info["seconds"] = round(time.perf_counter() - started, 2)
    log.info("tuned %s: %s", spec.name, info)
    return {**params, **best}, info
