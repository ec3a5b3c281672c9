"""Preprocessors fit on the training split and saved with the model.

They follow the scikit-learn contract (``fit`` returns self, learned state ends in ``_``,
``transform`` before ``fit`` raises) and serialise to plain JSON, so the exact preprocessing
used in training travels inside the model package to serving.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from typing_extensions import Self

from mlsd_ray.errors import NotFittedError

OTHER = "__other__"


class TabularPreprocessor:
    """Standardise numeric columns (mean-imputed) and one-hot encode categorical ones.

    Categories unseen in training, and the rare ones past ``max_categories``, share one
    ``__other__`` column so that serving never fails on a new value.
    """

    def __init__(
        self, numeric: list[str], categorical: list[str], max_categories: int = 50
    ) -> None:
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.max_categories = max_categories

    def fit(self, X: pd.DataFrame) -> Self:
        num = X[self.numeric].astype("float64") if self.numeric else pd.DataFrame(index=X.index)
        self.mean_ = num.mean().fillna(0.0).to_dict()
        std = num.std(ddof=0).fillna(1.0)
        self.scale_ = std.where(std > 0, 1.0).to_dict()
        self.categories_ = {
            c: X[c].astype("string").fillna("").value_counts().index[: self.max_categories].tolist()
            for c in self.categorical
        }
        return self

    def _check(self) -> None:
        if not hasattr(self, "mean_"):
            raise NotFittedError(
                "TabularPreprocessor is not fitted.", fix="call fit(train_frame) first"
            )

    @property
    def feature_names_(self) -> list[str]:
        self._check()
        names = list(self.numeric)
        for c in self.categorical:
            names += [f"{c}={v}" for v in self.categories_[c]] + [f"{c}={OTHER}"]
        return names

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        self._check()
        parts = []
        for c in self.numeric:
            col = pd.to_numeric(X[c], errors="coerce").astype("float64").fillna(self.mean_[c])
            parts.append(((col - self.mean_[c]) / self.scale_[c]).to_numpy()[:, None])
        for c in self.categorical:
            cats = self.categories_[c]
            values = X[c].astype("string").fillna("")
            codes = pd.Categorical(values, categories=cats).codes  # -1 = unseen
            onehot = np.zeros((len(X), len(cats) + 1))
            onehot[np.arange(len(X)), np.where(codes < 0, len(cats), codes)] = 1.0
            parts.append(onehot)
        return np.hstack(parts) if parts else np.zeros((len(X), 0))

    def to_dict(self) -> dict[str, Any]:
        self._check()
        return {
            "numeric": self.numeric,
            "categorical": self.categorical,
            "max_categories": self.max_categories,
            "mean_": self.mean_,
            "scale_": self.scale_,
            "categories_": self.categories_,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TabularPreprocessor:
        pre = cls(d["numeric"], d["categorical"], d["max_categories"])
        pre.mean_, pre.scale_, pre.categories_ = d["mean_"], d["scale_"], d["categories_"]
        return pre
