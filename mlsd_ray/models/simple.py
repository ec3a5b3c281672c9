"""Baselines and simple models: majority class, TF-IDF + logistic regression, tabular logistic
regression. Learned state is saved as JSON and safetensors (never pickle)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from typing_extensions import Self

from mlsd_ray.features import TabularPreprocessor
from mlsd_ray.models.base import Model


def _softmax_linear(z: np.ndarray) -> np.ndarray:
    """Probabilities from a linear model's decision function (binary or multiclass)."""
    if z.ndim == 1 or z.shape[1] == 1:
        p = 1.0 / (1.0 + np.exp(-z.reshape(-1)))
        return np.column_stack([1 - p, p])
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class _Linear:
    """Logistic-regression weights kept as arrays, so they save without pickle."""

    @staticmethod
    def fit(X: Any, y: np.ndarray, C: float, class_weight: str | None, seed: int) -> dict:
        clf = LogisticRegression(C=C, class_weight=class_weight, max_iter=2000, random_state=seed)
        clf.fit(X, y)
        # C order: safetensors writes the raw buffer, and a multiclass coef_ comes back from
        # scikit-learn in Fortran order (it loaded transposed before this).
        return {
            "coef": np.ascontiguousarray(clf.coef_, dtype=np.float64),
            "intercept": np.ascontiguousarray(clf.intercept_, dtype=np.float64),
            "classes": clf.classes_.astype(np.int64),
        }

    @staticmethod
    def proba(X: Any, w: dict[str, np.ndarray], n_classes: int) -> np.ndarray:
        z = X @ w["coef"].T + w["intercept"]
        p = _softmax_linear(np.asarray(z))
        out = np.zeros((p.shape[0], n_classes))
        out[:, w["classes"]] = p  # classes absent from training keep probability 0
        return out


class MajorityClass(Model):
    """Predicts the training class frequencies for every row: the floor any model must beat."""

    kind = "majority"

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=2).astype(np.float64)
        self.prior_ = counts / counts.sum()
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self._check_fitted("prior_")
        return np.tile(self.prior_, (len(X), 1))

    def save(self, path: Path) -> None:
        (path / "prior.json").write_text(json.dumps(self.prior_.tolist()))

    @classmethod
    def load(cls, path: Path, inputs: list[str], params: dict[str, Any]) -> Self:
        model = cls(inputs, **params)
        model.prior_ = np.asarray(json.loads((path / "prior.json").read_text()))
        return model


class TfidfLogReg(Model):
    """Word (1,2)-gram TF-IDF and a class-weighted logistic regression on one text input.

    params: ``max_features`` (50000), ``ngram_max`` (2), ``min_df`` (2), ``C`` (4.0),
    ``class_weight`` ("balanced" or None), ``seed``, ``text_input`` (the card's text input).
    """

    kind = "tfidf_logreg"

    @property
    def text_input(self) -> str:
        """The card's text input (filled by the trainer); the first input in older packages."""
        return str(self.params.get("text_input") or self.inputs[0])

    def _vectorizer_args(self) -> dict[str, Any]:
        return {
            "lowercase": True,
            "sublinear_tf": True,
            "strip_accents": "unicode",
            "ngram_range": (1, int(self.params.get("ngram_max", 2))),
        }

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        texts = X[self.text_input].astype(str).tolist()
        vec = TfidfVectorizer(
            max_features=int(self.params.get("max_features", 50_000)),
            min_df=int(self.params.get("min_df", 2)),
            **self._vectorizer_args(),
        )
        features = vec.fit_transform(texts)
        self.n_classes_ = max(int(np.max(y)) + 1, 2)
        self.vocabulary_ = {t: int(i) for t, i in vec.vocabulary_.items()}
        self.idf_ = vec.idf_.astype(np.float64)
        self.weights_ = _Linear.fit(
            features,
            np.asarray(y),
            C=float(self.params.get("C", 4.0)),
            class_weight=self.params.get("class_weight", "balanced"),
            seed=int(self.params.get("seed", 0)),
        )
        self._vec = vec
        return self

    def _vectorizer(self) -> TfidfVectorizer:
        if not hasattr(self, "_vec"):
            vec = TfidfVectorizer(vocabulary=self.vocabulary_, **self._vectorizer_args())
            vec.idf_ = self.idf_
            self._vec = vec
        return self._vec

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self._check_fitted("weights_")
        features = self._vectorizer().transform(X[self.text_input].astype(str).tolist())
        return _Linear.proba(features, self.weights_, self.n_classes_)

    def save(self, path: Path) -> None:
        (path / "vocabulary.json").write_text(json.dumps(self.vocabulary_))
        save_file({"idf": self.idf_, **self.weights_}, str(path / "weights.safetensors"))
        (path / "model.json").write_text(json.dumps({"n_classes": self.n_classes_}))

    @classmethod
    def load(cls, path: Path, inputs: list[str], params: dict[str, Any]) -> Self:
        model = cls(inputs, **params)
        arrays = load_file(str(path / "weights.safetensors"))
        model.vocabulary_ = json.loads((path / "vocabulary.json").read_text())
        model.idf_ = arrays.pop("idf")
        model.weights_ = arrays
        model.n_classes_ = json.loads((path / "model.json").read_text())["n_classes"]
        return model


class TabularLogReg(Model):
    """Standardised numerics + encoded categories, then logistic regression.

    params: ``numeric`` and ``categorical`` column lists (filled from the card by the trainer),
    ``C`` (1.0), ``class_weight`` ("balanced"), ``max_categories`` (50), ``seed``, and the
    categorical encodings of :class:`~mlsd_ray.features.TabularPreprocessor`: ``encodings``
    (column -> onehot | ordinal | hashing; onehot when absent), ``crosses`` (lists of two or
    more categorical columns) and ``hash_buckets`` (32).
    """

    kind = "logreg"

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        self.pre_ = TabularPreprocessor.from_params(self.params).fit(X)
        self.n_classes_ = max(int(np.max(y)) + 1, 2)
        self.weights_ = _Linear.fit(
            self.pre_.transform(X),
            np.asarray(y),
            C=float(self.params.get("C", 1.0)),
            class_weight=self.params.get("class_weight", "balanced"),
            seed=int(self.params.get("seed", 0)),
        )
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self._check_fitted("weights_")
        return _Linear.proba(self.pre_.transform(X), self.weights_, self.n_classes_)

    def save(self, path: Path) -> None:
        (path / "preprocessor.json").write_text(json.dumps(self.pre_.to_dict()))
        save_file(self.weights_, str(path / "weights.safetensors"))
        (path / "model.json").write_text(json.dumps({"n_classes": self.n_classes_}))

    @classmethod
    def load(cls, path: Path, inputs: list[str], params: dict[str, Any]) -> Self:
        model = cls(inputs, **params)
        model.pre_ = TabularPreprocessor.from_dict(
            json.loads((path / "preprocessor.json").read_text())
        )
        model.weights_ = load_file(str(path / "weights.safetensors"))
        model.n_classes_ = json.loads((path / "model.json").read_text())["n_classes"]
        return model
