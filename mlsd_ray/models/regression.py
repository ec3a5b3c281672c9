"""Regression models: the training-mean baseline and a ridge regression on tabular features.

They follow the `Model` contract with ``predict(X)`` returning one value per row;
``predict_proba`` has no meaning for them and raises. State is JSON and safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file
from sklearn.linear_model import Ridge
from typing_extensions import Self

from mlsd_ray.errors import ModelError
from mlsd_ray.features import TabularPreprocessor
from mlsd_ray.models.base import Model


class _Regressor(Model):
    is_regressor = True

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        raise ModelError(
            f"{type(self).__name__} is a regression model; it has no class probabilities.",
            fix="call predict(X) for the predicted values",
        )


class MeanRegressor(_Regressor):
    """Predicts the training mean for every row: the floor any regression model must beat."""

    kind = "mean"

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        y = np.asarray(y, dtype=np.float64)
        if len(y) == 0:
            raise ModelError("MeanRegressor.fit got no rows.", fix="check the train split")
        self.mean_ = float(y.mean())
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        self._check_fitted("mean_")
        return np.full(len(X), self.mean_)

    def save(self, path: Path) -> None:
        (path / "mean.json").write_text(json.dumps({"mean": self.mean_}))

    @classmethod
    def load(cls, path: Path, inputs: list[str], params: dict[str, Any]) -> Self:
        model = cls(inputs, **params)
        model.mean_ = float(json.loads((path / "mean.json").read_text())["mean"])
        return model


class TabularRidge(_Regressor):
    """Standardised numerics + encoded categories (TabularPreprocessor), then ridge regression.

    params: ``alpha`` (1.0) and the preprocessing params of ``logreg`` (``numeric``,
    ``categorical``, ``encodings``, ``crosses``, ``hash_buckets``, ``max_categories``).
    """

    kind = "ridge"

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        self.pre_ = TabularPreprocessor.from_params(self.params).fit(X)
        reg = Ridge(alpha=float(self.params.get("alpha", 1.0)))
        reg.fit(self.pre_.transform(X), np.asarray(y, dtype=np.float64))
        self.weights_ = {
            "coef": np.asarray(reg.coef_, dtype=np.float64).reshape(-1),
            "intercept": np.asarray([reg.intercept_], dtype=np.float64),
        }
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        self._check_fitted("weights_")
        z = self.pre_.transform(X) @ self.weights_["coef"] + self.weights_["intercept"][0]
        return np.asarray(z, dtype=np.float64)

    def save(self, path: Path) -> None:
        (path / "preprocessor.json").write_text(json.dumps(self.pre_.to_dict()))
        save_file(self.weights_, str(path / "weights.safetensors"))

    @classmethod
    def load(cls, path: Path, inputs: list[str], params: dict[str, Any]) -> Self:
        model = cls(inputs, **params)
        model.pre_ = TabularPreprocessor.from_dict(
            json.loads((path / "preprocessor.json").read_text())
        )
        model.weights_ = load_file(str(path / "weights.safetensors"))
        return model
