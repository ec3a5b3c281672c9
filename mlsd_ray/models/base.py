"""The model contract shared by every kind, and the table of kinds."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from typing_extensions import Self

from mlsd_ray.errors import ModelError, NotFittedError


def load_model_class(kind: str) -> type[Model]:
    """The `Model` class of a kind (mlsd_ray.models.kinds is the table of kinds)."""
    from mlsd_ray.models.kinds import get_kind

    return get_kind(kind).model_class()


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

    def refit_params(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(params to fit the same configuration again on train + validation, what to record).
        Kinds that stop early on validation fix what they chose (boosting rounds)."""
        return dict(params), {}

    def set_fitted(self, *state: Any) -> Self:
        """Install learned state that a trainer computed outside ``fit`` (Ray Train workers
        boost or train on shards; the driver builds the model from their checkpoint). Kinds
        trained that way override it."""
        raise ModelError(
            f"{type(self).__name__} is fitted by fit() only.",
            fix="call fit(X, y); set_fitted is for kinds trained by Ray Train",
        )

    @property
    def train_metrics_(self) -> dict[str, Any]:
        """What training measured (seconds, samples/s, best iteration, run name); empty
        until a trainer records it."""
        return getattr(self, "_train_metrics", {})

    @train_metrics_.setter
    def train_metrics_(self, value: dict[str, Any]) -> None:
        self._train_metrics = dict(value)

    def _check_fitted(self, attr: str) -> None:
        if not hasattr(self, attr):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted.", fix="call fit(X, y) before predicting"
            )
