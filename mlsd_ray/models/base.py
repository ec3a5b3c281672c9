"""The model contract shared by every kind, and the table of kinds."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from typing_extensions import Self

from mlsd_ray.errors import ModelError, NotFittedError

# kind -> "module:Class". Imported lazily: the transformer pulls in torch and transformers.
MODEL_KINDS: dict[str, str] = {
    "majority": "mlsd_ray.models.simple:MajorityClass",
    "tfidf_logreg": "mlsd_ray.models.simple:TfidfLogReg",
    "logreg": "mlsd_ray.models.simple:TabularLogReg",
    "transformer": "mlsd_ray.models.transformer:TransformerTextClassifier",
    "mlp": "mlsd_ray.models.mlp:TabularMLP",
    "cnn": "mlsd_ray.models.cnn:ImageCNN",
    "mean": "mlsd_ray.models.regression:MeanRegressor",
    "ridge": "mlsd_ray.models.regression:TabularRidge",
    # The tabular ladder (mlsd_ray.models.gbdt / ensemble).
    "xgboost": "mlsd_ray.models.gbdt:XGBoostModel",
    "lightgbm": "mlsd_ray.models.gbdt:LightGBMModel",
    "bagging": "mlsd_ray.models.ensemble:Bagging",
    "stacking": "mlsd_ray.models.ensemble:Stacking",
}


def load_model_class(kind: str) -> type[Model]:
    if kind not in MODEL_KINDS:
        raise ModelError(
            f"Unknown model kind {kind!r}.",
            fix=f"use one of {sorted(MODEL_KINDS)}",
        )
    module, name = MODEL_KINDS[kind].split(":")
    cls: type[Model] = getattr(importlib.import_module(module), name)
    return cls


class Model(ABC):
    """A fitted model maps a DataFrame of the card's inputs to class probabilities.

    ``inputs`` is the list of input column names (from the card); ``n_classes`` comes from fit.
    """

    kind: ClassVar[str]

    def __init__(self, inputs: list[str], **params: Any) -> None:
        self.inputs = list(inputs)
        self.params = dict(params)

    @abstractmethod
    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self: ...

    @abstractmethod
    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Shape (n_rows, n_classes); rows sum to 1."""

    #: Regression models predict values (``predict``); classifiers predict probabilities.
    is_regressor: bool = False

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Classifiers: the most probable class index per row. Regressors override this to
        return the predicted value per row, shape (n_rows,)."""
        return np.asarray(self.predict_proba(X)).argmax(axis=1)

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write learned state as JSON / safetensors into ``path`` (an existing folder)."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path, inputs: list[str], params: dict[str, Any]) -> Self: ...

    def _check_fitted(self, attr: str) -> None:
        if not hasattr(self, attr):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted.", fix="call fit(X, y) before predicting"
            )
