"""Ensemble combiners: several members' probabilities -> one probability per instance.

* ``AverageCombiner``: a (weighted) mean; needs no fitting.
* ``StackedCombiner``: a logistic meta-learner over the members' logits, fitted on held-out
  predictions (the validation split), so a stronger member earns a larger weight. Its state
  is a few floats in JSON, never pickle.

Both follow the scikit-learn contract (``fit`` returns self, learned state ends in ``_``) and
know nothing of Ray. Binary tasks only: members answer P(positive) per row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlsd_ray.errors import ModelError, NotFittedError

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _check(scores: np.ndarray, n_members: int | None) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2:
        raise ModelError(f"member scores must be 2-D (rows x members), got shape {scores.shape}")
    if n_members is not None and scores.shape[1] != n_members:
        raise ModelError(f"expected scores of {n_members} members, got {scores.shape[1]}")
    return scores


class AverageCombiner:
    def __init__(self, weights: list[float] | None = None) -> None:
        self.weights = weights

    def fit(self, scores: np.ndarray, y: np.ndarray | None = None) -> AverageCombiner:
        scores = _check(scores, None)
        w = np.ones(scores.shape[1]) if self.weights is None else np.asarray(self.weights, float)
        if w.shape != (scores.shape[1],) or w.min() < 0 or w.sum() <= 0:
            raise ModelError(f"weights {self.weights} do not fit {scores.shape[1]} members")
        self.weights_ = w / w.sum()
        return self

    def combine(self, scores: np.ndarray) -> np.ndarray:
        if not hasattr(self, "weights_"):
            raise NotFittedError("AverageCombiner.combine called before fit")
        return _check(scores, len(self.weights_)) @ self.weights_


class StackedCombiner:
    """``P = sigmoid(b + sum_k w_k * logit(p_k))`` fitted by logistic regression."""

    def __init__(self, c: float = 1.0) -> None:
        self.c = c

    def fit(self, scores: np.ndarray, y: np.ndarray) -> StackedCombiner:
        from sklearn.linear_model import LogisticRegression

        scores = _check(scores, None)
        y = np.asarray(y)
        if len(np.unique(y)) < 2:
            raise ModelError(
                "cannot fit the stacked combiner: the held-out labels have one class only",
                fix="use combiner: average, or a validation split with both classes",
            )
        lr = LogisticRegression(C=self.c).fit(_logit(scores), y)
        self.coef_ = lr.coef_.ravel().astype(float)
        self.intercept_ = float(lr.intercept_[0])
        return self

    def combine(self, scores: np.ndarray) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise NotFittedError("StackedCombiner.combine called before fit")
        z = _logit(_check(scores, len(self.coef_))) @ self.coef_ + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

    def to_json(self) -> dict[str, Any]:
        if not hasattr(self, "coef_"):
            raise NotFittedError("StackedCombiner.to_json called before fit")
        return {
            "kind": "stacked",
            "c": self.c,
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2))
        return path

    @classmethod
    def from_json(cls, state: dict[str, Any]) -> StackedCombiner:
        if state.get("kind") != "stacked" or "coef" not in state:
            raise ModelError(f"not a stacked combiner state: keys {sorted(state)}")
        out = cls(c=float(state.get("c", 1.0)))
        out.coef_ = np.asarray(state["coef"], dtype=float)
        out.intercept_ = float(state["intercept"])
        return out

    @classmethod
    def load(cls, path: str | Path) -> StackedCombiner:
        return cls.from_json(json.loads(Path(path).read_text()))


Combiner = AverageCombiner | StackedCombiner


def combiner_from_config(config: dict[str, Any]) -> Combiner:
    """The combiner a ``Combiner`` deployment was bound with (plain JSON, see app.py)."""
    if config["kind"] == "stacked":
        return StackedCombiner.from_json(config["state"])
    return AverageCombiner(config.get("weights")).fit(np.zeros((1, config["n_members"])))
