"""Gradient-boosted trees (xgboost, LightGBM) on the tabular preprocessor's features.

The boosting call (`boost`) is written once per library and driven two ways: `fit` runs it
in-process (bagging and stacking members, tests), and the Ray Train worker in
`mlsd_ray.train.gbdt` runs it on dataset shards with Ray's report callback. Nothing here
imports Ray. Package layout (no pickle)::

    preprocessor.json   the fitted TabularPreprocessor (preprocessing travels with the model)
    model.ubj | model.txt   the booster in xgboost's UBJSON / LightGBM's text format
    gbdt.json           category, n_classes, best iteration

params (all optional): ``n_estimators`` (200; alias ``num_boost_round``), ``max_depth`` (6; -1 =
no limit for LightGBM), ``learning_rate`` (0.1), ``early_stopping_rounds`` (20; used when a
validation set is given), ``class_weight`` ("balanced" or "none"), ``scale_pos_weight`` (a
number, overrides class_weight for binary), ``loss`` (regression: "squared_error" or
"pseudo_huber"), ``subsample`` (1.0), ``colsample`` (1.0), ``min_child_weight`` (1.0),
``n_threads`` (1), ``seed``, ``category`` (binary | multiclass | regression; filled from the card),
and the preprocessor's ``numeric``, ``categorical``, ``max_categories``, ``encodings``,
``crosses``, ``hash_buckets``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from typing_extensions import Self

from mlsd_ray.errors import ModelError
from mlsd_ray.features import TabularPreprocessor
from mlsd_ray.models.base import Model

CATEGORIES = ("binary", "multiclass", "regression")
LOSSES = ("squared_error", "pseudo_huber")
KNOWN = {
    "n_estimators",
    "num_boost_round",
    "max_depth",
    "learning_rate",
    "early_stopping_rounds",
    "class_weight",
    "scale_pos_weight",
    "loss",
    "subsample",
    "colsample",
    "min_child_weight",
    "n_threads",
    "seed",
    "category",
    "numeric",
    "categorical",
    "max_categories",
    "encodings",
    "crosses",
    "hash_buckets",
}


def _number(params: dict[str, Any], key: str, default: float, low: float, kind: type) -> Any:
    value = params.get(key, default)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or number < low:
        raise ModelError(
            f"GBDT param {key}={value!r} is invalid.",
            fix=f"use {'an integer' if kind is int else 'a number'} >= {low} (default {default})",
        )
    return number


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """Validated, defaulted boosting settings (library-neutral); bad values raise ModelError."""
    unknown = sorted(set(params) - KNOWN)
    if unknown:
        raise ModelError(f"Unknown GBDT param(s) {unknown}.", fix=f"use some of {sorted(KNOWN)}")
    category = params.get("category", "binary")
    if category not in CATEGORIES:
        raise ModelError(f"GBDT category {category!r} is unknown.", fix=f"use one of {CATEGORIES}")
    loss = params.get("loss", "squared_error")
    if loss not in LOSSES:
        raise ModelError(f"GBDT loss {loss!r} is unknown.", fix=f"use one of {list(LOSSES)}")
    class_weight = params.get("class_weight", "balanced")
    if class_weight not in ("balanced", "none", None):
        raise ModelError(
            f"GBDT class_weight {class_weight!r} is unknown.", fix="use 'balanced' or 'none'"
        )
    rounds_key = "n_estimators" if "n_estimators" in params else "num_boost_round"
    spw = params.get("scale_pos_weight")
    return {
        "category": category,
        "loss": loss,
        "class_weight": class_weight or "none",
        "scale_pos_weight": None
        if spw is None
        else _number(params, "scale_pos_weight", 1, 0, float),
        "rounds": _number(params, rounds_key, 200, 1, int),
        "max_depth": _number(params, "max_depth", 6, -1, int),
        "learning_rate": _number(params, "learning_rate", 0.1, 1e-9, float),
        "early_stopping_rounds": _number(params, "early_stopping_rounds", 20, 0, int),
        "subsample": _number(params, "subsample", 1.0, 1e-9, float),
        "colsample": _number(params, "colsample", 1.0, 1e-9, float),
        "min_child_weight": _number(params, "min_child_weight", 1.0, 0, float),
        "n_threads": _number(params, "n_threads", 1, 1, int),
        "seed": _number(params, "seed", 0, 0, int),
    }


def n_classes_of(category: str, y: np.ndarray) -> int:
    if category == "regression":
        return 1
    return max(int(np.max(y)) + 1, 2) if len(y) else 2


def sample_weights(settings: dict[str, Any], y: np.ndarray, n_classes: int) -> np.ndarray | None:
    """Per-row weights for class imbalance, or None. Binary uses scale_pos_weight instead."""
    if settings["category"] != "multiclass" or settings["class_weight"] != "balanced":
        return None
    counts = np.bincount(y.astype(np.int64), minlength=n_classes).astype(np.float64)
    per_class = len(y) / (n_classes * np.maximum(counts, 1.0))
    return per_class[y.astype(np.int64)]


def pos_weight(settings: dict[str, Any], y: np.ndarray) -> float | None:
    """scale_pos_weight for a binary task: the card's number, or n_negative / n_positive."""
    if settings["category"] != "binary":
        return None
    if settings["scale_pos_weight"] is not None:
        return float(settings["scale_pos_weight"])
    if settings["class_weight"] != "balanced":
        return None
    positives = float(np.sum(y == 1))
    return (len(y) - positives) / positives if positives else 1.0


class _GBDT(Model):
    """Shared parts: preprocessing, settings, saving; subclasses wrap one library."""

    library: ClassVar[str]
    booster_file: ClassVar[str]

    def __init__(self, inputs: list[str], **params: Any) -> None:
        super().__init__(inputs, **params)
        self.settings = check_params(self.params)
        self.is_regressor = self.settings["category"] == "regression"

    def refit_params(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """No rows are left to stop on: boost the rounds early stopping chose here."""
        rounds = int(self.best_iteration_)
        fixed = {k: v for k, v in params.items() if k != "num_boost_round"}
        return {**fixed, "n_estimators": rounds, "early_stopping_rounds": 0}, {"rounds": rounds}

    # -- library hooks ---------------------------------------------------------------------
    def _boost(
        self,
        Xt: np.ndarray,
        y: np.ndarray,
        weights: np.ndarray | None,
        val: tuple[np.ndarray, np.ndarray] | None,
        spw: float | None,
    ) -> tuple[Any, int]:
        raise NotImplementedError

    def _raw(self, Xt: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _save_booster(self, file: Path) -> None:
        raise NotImplementedError

    def _load_booster(self, file: Path) -> Any:
        raise NotImplementedError

    # -- contract ----------------------------------------------------------------------------
    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        X_val: pd.DataFrame | None = None,
        y_val: np.ndarray | None = None,
    ) -> Self:
        """Fit in this process; early stopping on (X_val, y_val) when given."""
        y = np.asarray(y)
        self.pre_ = TabularPreprocessor.from_params(self.params, keep_nan=True).fit(X)
        self.n_classes_ = n_classes_of(self.settings["category"], y)
        val = None
        if X_val is not None and y_val is not None and len(X_val):
            val = (self.pre_.transform(X_val).astype(np.float32), np.asarray(y_val))
        # float32, as the Ray Train path ships it: both paths bin the very same values.
        self.booster_, self.best_iteration_ = self._boost(
            self.pre_.transform(X).astype(np.float32),
            y,
            sample_weights(self.settings, y, self.n_classes_),
            val,
            pos_weight(self.settings, y),
        )
        return self

    def set_fitted(self, pre: TabularPreprocessor, booster: Any, n_classes: int) -> Self:  # type: ignore[override]
        """Adopt a booster trained elsewhere (the Ray Train worker) with its preprocessor."""
        self.pre_, self.booster_, self.n_classes_ = pre, booster, n_classes
        self.best_iteration_ = int(self._rounds(booster))
        return self

    @staticmethod
    def _rounds(booster: Any) -> int:
        raise NotImplementedError

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self._check_fitted("booster_")
        if self.settings["category"] == "regression":
            raise ModelError(
                "A regression GBDT has no class probabilities.", fix="call predict(X) instead"
            )
        raw = self._raw(self.pre_.transform(X[self.inputs]))
        if raw.ndim == 1:
            return np.column_stack([1.0 - raw, raw])
        return raw

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Regression: the predicted values; classification: the most probable class index."""
        self._check_fitted("booster_")
        if self.settings["category"] == "regression":
            return self._raw(self.pre_.transform(X[self.inputs])).astype(np.float64)
        return np.argmax(self.predict_proba(X), axis=1)

    def save(self, path: Path) -> None:
        self._check_fitted("booster_")
        (path / "preprocessor.json").write_text(json.dumps(self.pre_.to_dict()))
        self._save_booster(path / self.booster_file)
        meta = {
            "library": self.library,
            "category": self.settings["category"],
            "n_classes": self.n_classes_,
            "best_iteration": self.best_iteration_,
        }
        (path / "gbdt.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: Path, inputs: list[str], params: dict[str, Any]) -> Self:
        missing = [f for f in ("preprocessor.json", cls.booster_file, "gbdt.json")
                   if not (path / f).is_file()]  # fmt: skip
        if missing:
            raise ModelError(
                f"{cls.library} package at {str(path)!r} is incomplete: missing {missing}.",
                fix="re-run training; the package is written by `mlsd train`",
            )
        model = cls(inputs, **params)
        meta = json.loads((path / "gbdt.json").read_text())
        model.pre_ = TabularPreprocessor.from_dict(
            json.loads((path / "preprocessor.json").read_text())
        )
        model.booster_ = model._load_booster(path / cls.booster_file)
        model.n_classes_ = int(meta["n_classes"])
        model.best_iteration_ = int(meta["best_iteration"])
        return model


# xgboost -----------------------------------------------------------------------------------
def base_score(settings: dict[str, Any], y: np.ndarray) -> float | None:
    """Regression starts from the median label. xgboost's own estimate for pseudo-Huber can be
    far off, and that loss's bounded gradient (slope 1) cannot climb back within the rounds."""
    return float(np.median(y)) if settings["category"] == "regression" and len(y) else None


def xgb_params(
    settings: dict[str, Any], n_classes: int, spw: float | None, start: float | None = None
) -> dict[str, Any]:
    """xgboost.train params for the card's category: binary logistic, multiclass softprob, or
    regression with squared error / pseudo-Huber loss."""
    objective = {
        # Early stopping watches AUC, not log loss: with class weights the weighted model's
        # log loss on the unweighted validation split rises long before its ranking stops
        # improving.
        "binary": ("binary:logistic", "auc"),
        "multiclass": ("multi:softprob", "mlogloss"),
        "regression": (
            "reg:squarederror" if settings["loss"] == "squared_error" else "reg:pseudohubererror",
            "rmse",
        ),
    }[settings["category"]]
    out: dict[str, Any] = {
        "objective": objective[0],
        "eval_metric": objective[1],
        "tree_method": "hist",
        "max_depth": max(settings["max_depth"], 0),  # 0 = no limit in xgboost
        "eta": settings["learning_rate"],
        "subsample": settings["subsample"],
        "colsample_bytree": settings["colsample"],
        "min_child_weight": settings["min_child_weight"],
        "nthread": settings["n_threads"],
        "seed": settings["seed"],
        "verbosity": 0,
    }
    if settings["category"] == "multiclass":
        out["num_class"] = n_classes
    if spw is not None:
        out["scale_pos_weight"] = spw
    if start is not None:
        out["base_score"] = start
    return out


def xgb_boost(
    settings: dict[str, Any],
    params: dict[str, Any],
    dtrain: Any,
    dval: Any | None,
    callbacks: Sequence[Any] = (),
) -> Any:
    """The one xgboost training call; early stopping (best model kept) when dval is given.
    Extra callbacks (Ray's report callback) run after early stopping has trimmed the model."""
    import xgboost as xgb

    cbs: list[Any] = []
    evals = []
    if dval is not None:
        evals = [(dval, "validation")]
        if settings["early_stopping_rounds"] > 0:
            cbs.append(
                xgb.callback.EarlyStopping(rounds=settings["early_stopping_rounds"], save_best=True)
            )
    return xgb.train(
        params,
        dtrain,
        num_boost_round=settings["rounds"],
        evals=evals,
        callbacks=[*cbs, *callbacks],
        verbose_eval=False,
    )


class XGBoostModel(_GBDT):
    kind = "xgboost"
    library = "xgboost"
    booster_file = "model.ubj"

    def _boost(self, Xt, y, weights, val, spw):  # type: ignore[no-untyped-def]
        import xgboost as xgb

        dtrain = xgb.DMatrix(Xt, label=y, weight=weights)
        dval = xgb.DMatrix(val[0], label=val[1]) if val is not None else None
        params = xgb_params(self.settings, self.n_classes_, spw, base_score(self.settings, y))
        booster = xgb_boost(self.settings, params, dtrain, dval)
        return booster, self._rounds(booster)

    @staticmethod
    def _rounds(booster: Any) -> int:
        return int(booster.num_boosted_rounds())

    def _raw(self, Xt: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        return np.asarray(self.booster_.predict(xgb.DMatrix(Xt)), dtype=np.float64)

    def _save_booster(self, file: Path) -> None:
        self.booster_.save_model(str(file))

    def _load_booster(self, file: Path) -> Any:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(str(file))
        booster.set_param({"nthread": self.settings["n_threads"]})
        return booster


# LightGBM ----------------------------------------------------------------------------------
def lgb_params(settings: dict[str, Any], n_classes: int, spw: float | None) -> dict[str, Any]:
    objective = {
        "binary": ("binary", "auc"),
        "multiclass": ("multiclass", "multi_logloss"),
        "regression": ("regression" if settings["loss"] == "squared_error" else "huber", "l2"),
    }[settings["category"]]
    out: dict[str, Any] = {
        "objective": objective[0],
        "metric": objective[1],
        "max_depth": settings["max_depth"] or -1,
        # LightGBM grows leaf-wise: cap the leaves so max_depth means what it does in xgboost.
        "num_leaves": min(2 ** settings["max_depth"], 131072) if settings["max_depth"] > 0 else 31,
        "learning_rate": settings["learning_rate"],
        "bagging_fraction": settings["subsample"],
        "bagging_freq": 1 if settings["subsample"] < 1 else 0,
        "feature_fraction": settings["colsample"],
        "min_sum_hessian_in_leaf": settings["min_child_weight"],
        "num_threads": settings["n_threads"],
        "seed": settings["seed"],
        "deterministic": True,
        "verbosity": -1,
    }
    if settings["category"] == "multiclass":
        out["num_class"] = n_classes
    if spw is not None:
        out["scale_pos_weight"] = spw
    return out


def lgb_boost(
    settings: dict[str, Any],
    params: dict[str, Any],
    dtrain: Any,
    dval: Any | None,
    callbacks: Sequence[Any] = (),
) -> Any:
    """The one LightGBM training call; early stopping keeps the best iteration."""
    import lightgbm as lgb

    cbs = list(callbacks)
    valid = []
    if dval is not None:
        valid = [dval]
        if settings["early_stopping_rounds"] > 0:
            cbs.append(lgb.early_stopping(settings["early_stopping_rounds"], verbose=False))
    return lgb.train(
        params,
        dtrain,
        num_boost_round=settings["rounds"],
        valid_sets=valid,
        valid_names=["validation"] if valid else None,
        callbacks=cbs,
    )


class LightGBMModel(_GBDT):
    kind = "lightgbm"
    library = "lightgbm"
    booster_file = "model.txt"

    def _boost(self, Xt, y, weights, val, spw):  # type: ignore[no-untyped-def]
        import lightgbm as lgb

        dtrain = lgb.Dataset(Xt, label=y, weight=weights, free_raw_data=True)
        dval = lgb.Dataset(val[0], label=val[1], reference=dtrain) if val is not None else None
        params = lgb_params(self.settings, self.n_classes_, spw)
        booster = lgb_boost(self.settings, params, dtrain, dval)
        return booster, self._rounds(booster)

    @staticmethod
    def _rounds(booster: Any) -> int:
        best = int(booster.best_iteration or 0)
        return best if best > 0 else int(booster.current_iteration())

    def _raw(self, Xt: np.ndarray) -> np.ndarray:
        return np.asarray(
            self.booster_.predict(
                Xt, num_iteration=self.best_iteration_, num_threads=self.settings["n_threads"]
            ),
            dtype=np.float64,
        )

    def _save_booster(self, file: Path) -> None:
        self.booster_.save_model(str(file), num_iteration=self.best_iteration_)

    def _load_booster(self, file: Path) -> Any:
        import lightgbm as lgb

        return lgb.Booster(model_file=str(file))
