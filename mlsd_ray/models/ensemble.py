"""Ensembles of tabular models: bagging and stacking.

Both fit many member models; *how* they run is the ``runner``'s business: a callable
``runner(fn, jobs) -> [fn(*job) for job in jobs]``. The default runs them here one after the
other; the training stage passes a runner that makes each job a Ray task
(`mlsd_ray.train.ladder.ray_runner`), so nothing in this module imports Ray.

Members are saved as sub-packages ``members/NN/`` (``member.json`` with kind and params, plus
the member's own JSON / safetensors / native booster files); the stacking meta-learner's
weights are ``meta.safetensors``. Nothing is pickled.

Bagging params: ``base`` ({kind, params}; default logreg), ``n_estimators`` (10), ``sample``
(``bootstrap``, or ``balanced``: every bag draws as many rows of each class, the minority
with replacement: balanced bagging for class imbalance), ``max_samples`` (1.0: bag size as a
share of the train rows), ``seed``.

Stacking params: ``base`` (a list of {kind, params}; default logreg + xgboost), ``folds`` (5),
``meta_C`` (1.0), ``seed``. Members are fitted on k-1 folds to predict the held-out fold
(out-of-fold predictions), a logistic regression learns to combine those, and every member is
refitted on all the train rows for prediction.

Both take the card-filled ``numeric``, ``categorical`` and ``category`` and hand them to members
that do not set their own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file
from typing_extensions import Self

from mlsd_ray.errors import ModelError
from mlsd_ray.models.base import Model, load_model_class
from mlsd_ray.models.kinds import get_kind

Runner = Callable[[Callable[..., Any], list[tuple[Any, ...]]], list[Any]]
#: What every member inherits from the ensemble unless it sets its own.
INHERITED = ("numeric", "categorical", "category", "max_categories", "encodings")
EPS = 1e-6


def member_kinds() -> list[str]:
    """Kinds that may be members (the kinds table says which)."""
    from mlsd_ray.models.kinds import KINDS

    return [k for k, info in KINDS.items() if info.ensemble_member]


def local_runner(fn: Callable[..., Any], jobs: list[tuple[Any, ...]]) -> list[Any]:
    return [fn(*job) for job in jobs]


def fit_member(
    kind: str, inputs: list[str], params: dict[str, Any], X: pd.DataFrame, y: np.ndarray, rows: Any
) -> Model:
    """Fit one member on ``X.iloc[rows]`` (all rows when ``rows`` is None)."""
    if rows is not None:
        X, y = X.iloc[rows], y[rows]
    return load_model_class(kind)(inputs, **params).fit(X, y)


def member_proba(model: Model, X: pd.DataFrame, category: str) -> np.ndarray:
    if category == "regression":
        return np.asarray(model.predict(X), dtype=np.float64)[:, None]  # type: ignore[attr-defined]
    return model.predict_proba(X)


def _members(spec: Any, key: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Validated member specs with the inherited params filled in."""
    specs = spec if isinstance(spec, list) else [spec]
    out = []
    for i, member in enumerate(specs):
        if not isinstance(member, dict) or "kind" not in member:
            raise ModelError(
                f"{key}[{i}] = {member!r} is not a member spec.",
                fix="write it as {kind: logreg, params: {C: 1.0}}",
            )
        extra = sorted(set(member) - {"kind", "params", "name"})
        if extra:
            raise ModelError(f"{key}[{i}] has unknown key(s) {extra}.", fix="use kind and params")
        kind = member["kind"]
        allowed = member_kinds()
        if kind not in allowed:
            raise ModelError(
                f"{key}[{i}].kind {kind!r} cannot be an ensemble member.",
                fix=f"use one of {allowed}",
            )
        member_params = dict(member.get("params") or {})
        for name in INHERITED:
            # A kind without tabular inputs (majority) takes none of the preprocessing params.
            takes = get_kind(kind).inputs == "tabular"
            if name in params and name not in member_params and takes:
                member_params[name] = params[name]
        out.append({"kind": kind, "params": member_params})
    return out


def _int(params: dict[str, Any], key: str, default: int, low: int) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ModelError(f"{key}={value!r} is invalid.", fix=f"use an integer >= {low}")
    return value


def _save_members(path: Path, members: list[Model], specs: list[dict[str, Any]]) -> None:
    for i, (model, spec) in enumerate(zip(members, specs, strict=True)):
        sub = path / "members" / f"{i:02d}"
        sub.mkdir(parents=True)
        model.save(sub)
        (sub / "member.json").write_text(json.dumps({**spec, "inputs": model.inputs}, indent=2))


def _load_members(path: Path, count: int) -> list[Model]:
    members = []
    for i in range(count):
        sub = path / "members" / f"{i:02d}"
        if not (sub / "member.json").is_file():
            raise ModelError(
                f"Ensemble package at {str(path)!r} lacks member {i} ({sub}/member.json).",
                fix="re-run training; the package is written by `mlsd train`",
            )
        spec = json.loads((sub / "member.json").read_text())
        members.append(load_model_class(spec["kind"]).load(sub, spec["inputs"], spec["params"]))
    return members


class _Ensemble(Model):
    def __init__(self, inputs: list[str], **params: Any) -> None:
        super().__init__(inputs, **params)
        self.category = str(params.get("category", "binary"))
        self.is_regressor = self.category == "regression"
        self.runner: Runner = local_runner

    def with_runner(self, runner: Runner) -> Self:
        self.runner = runner
        return self

    def _n_classes(self, y: np.ndarray) -> int:
        return 1 if self.category == "regression" else max(int(np.max(y)) + 1, 2)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Regression: the predicted values; classification: the most probable class index."""
        if self.category == "regression":
            return self._combine(X)[:, 0]
        return np.argmax(self.predict_proba(X), axis=1)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.category == "regression":
            raise ModelError("A regression ensemble has no class probabilities.", fix="predict(X)")
        return self._combine(X)

    def _combine(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError


class Bagging(_Ensemble):
    """N members on bootstrap (or class-balanced) samples; their probabilities averaged."""

    kind = "bagging"

    def __init__(self, inputs: list[str], **params: Any) -> None:
        super().__init__(inputs, **params)
        self.member_spec = _members(params.get("base", {"kind": "logreg"}), "base", params)[0]
        self.n_estimators = _int(params, "n_estimators", 10, 1)
        self.sample = params.get("sample", "bootstrap")
        if self.sample not in ("bootstrap", "balanced"):
            raise ModelError(f"bagging sample {self.sample!r}.", fix="use bootstrap or balanced")
        self.max_samples = float(params.get("max_samples", 1.0))
        if not 0 < self.max_samples <= 10:
            raise ModelError(f"max_samples={self.max_samples}.", fix="use a share in (0, 10]")

    def bags(self, y: np.ndarray) -> list[np.ndarray]:
        """Row indices of each bag (seeded: the same card gives the same bags)."""
        rng = np.random.default_rng(_int(self.params, "seed", 0, 0))
        size = max(round(self.max_samples * len(y)), 1)
        out = []
        for _ in range(self.n_estimators):
            if self.sample == "balanced" and self.category != "regression":
                classes = np.unique(y)
                per_class = max(size // len(classes), 1)
                rows = np.concatenate(
                    [rng.choice(np.flatnonzero(y == c), per_class, replace=True) for c in classes]
                )
            else:
                rows = rng.integers(0, len(y), size)
            out.append(np.sort(rows))
        return out

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        y = np.asarray(y)
        self.n_classes_ = self._n_classes(y)
        kind, params = self.member_spec["kind"], self.member_spec["params"]
        jobs = [(kind, self.inputs, params, X, y, rows) for rows in self.bags(y)]
        self.members_ = self.runner(fit_member, jobs)
        return self

    def _combine(self, X: pd.DataFrame) -> np.ndarray:
        self._check_fitted("members_")
        outs = []
        for m in self.members_:
            p = member_proba(m, X, self.category)
            if self.category != "regression" and p.shape[1] < self.n_classes_:
                # A bag that missed a class: pad the absent class with probability 0.
                p = np.pad(p, ((0, 0), (0, self.n_classes_ - p.shape[1])))
            outs.append(p)
        return np.mean(outs, axis=0)

    def save(self, path: Path) -> None:
        self._check_fitted("members_")
        _save_members(path, self.members_, [self.member_spec] * len(self.members_))
        info = {"n_members": len(self.members_), "n_classes": self.n_classes_}
        (path / "ensemble.json").write_text(json.dumps(info, indent=2))

    @classmethod
    def load(cls, path: Path, inputs: list[str], params: dict[str, Any]) -> Self:
        model = cls(inputs, **params)
        info = _read_info(path)
        model.members_ = _load_members(path, int(info["n_members"]))
        model.n_classes_ = int(info["n_classes"])
        return model


def _read_info(path: Path) -> dict[str, Any]:
    if not (path / "ensemble.json").is_file():
        raise ModelError(
            f"Ensemble package at {str(path)!r} lacks ensemble.json.",
            fix="re-run training; the package is written by `mlsd train`",
        )
    info: dict[str, Any] = json.loads((path / "ensemble.json").read_text())
    return info


def meta_features(probas: list[np.ndarray], category: str) -> np.ndarray:
    """What the meta-learner sees: binary -> each member's logit of P(1); multiclass -> each
    member's log-probabilities; regression -> each member's prediction."""
    if category == "regression":
        return np.column_stack(probas)
    if category == "binary":
        cols = [np.clip(p[:, 1], EPS, 1 - EPS) for p in probas]
        return np.column_stack([np.log(c / (1 - c)) for c in cols])
    return np.hstack([np.log(np.clip(p, EPS, 1.0)) for p in probas])


class Stacking(_Ensemble):
    """Out-of-fold member predictions -> a logistic-regression (regression: ridge) meta-learner."""

    kind = "stacking"

    def __init__(self, inputs: list[str], **params: Any) -> None:
        super().__init__(inputs, **params)
        default = [{"kind": "logreg"}, {"kind": "xgboost"}]
        self.member_specs = _members(params.get("base", default), "base", params)
        if len(self.member_specs) < 2:
            raise ModelError("stacking needs two or more base models.", fix="list them in base")
        self.folds = _int(params, "folds", 5, 2)
        self.meta_C = float(params.get("meta_C", 1.0))
        if self.meta_C <= 0:
            raise ModelError(f"meta_C={self.meta_C}.", fix="use a positive number (default 1.0)")

    def _fold_rows(self, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        from sklearn.model_selection import KFold, StratifiedKFold

        seed = _int(self.params, "seed", 0, 0)
        if self.category == "regression":
            splitter: Any = KFold(self.folds, shuffle=True, random_state=seed)
        else:
            splitter = StratifiedKFold(self.folds, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(y)), y))

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        y = np.asarray(y)
        self.n_classes_ = self._n_classes(y)
        folds = self._fold_rows(y)
        jobs: list[tuple[Any, ...]] = []
        for spec in self.member_specs:
            jobs += [(spec["kind"], self.inputs, spec["params"], X, y, tr) for tr, _ in folds]
            jobs.append((spec["kind"], self.inputs, spec["params"], X, y, None))  # the refit
        fitted = self.runner(fit_member, jobs)
        width = self.n_classes_ if self.category != "regression" else 1
        oof: list[np.ndarray] = []
        self.members_ = []
        per_member = len(folds) + 1
        for m in range(len(self.member_specs)):
            models = fitted[m * per_member : (m + 1) * per_member]
            pred = np.zeros((len(y), width))
            for model, (_, held_out) in zip(models[:-1], folds, strict=True):
                p = member_proba(model, X.iloc[held_out], self.category)
                pred[held_out, : p.shape[1]] = p
            oof.append(pred)
            self.members_.append(models[-1])
        self.oof_ = meta_features(oof, self.category)
        self.meta_ = self._fit_meta(self.oof_, y)
        return self

    def _fit_meta(self, Z: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        if self.category == "regression":
            from sklearn.linear_model import Ridge

            reg = Ridge(alpha=1.0 / self.meta_C).fit(Z, y)
            return {
                "coef": np.ascontiguousarray(np.atleast_2d(reg.coef_), dtype=np.float64),
                "intercept": np.ascontiguousarray(np.atleast_1d(reg.intercept_), dtype=np.float64),
                "classes": np.zeros(1, np.int64),
            }
        from mlsd_ray.models.simple import _Linear

        return _Linear.fit(Z, y, C=self.meta_C, class_weight=None, seed=0)

    def member_oof(self) -> np.ndarray:
        """Out-of-fold meta features of the last fit (one column per binary member)."""
        self._check_fitted("oof_")
        return self.oof_

    def _combine(self, X: pd.DataFrame) -> np.ndarray:
        self._check_fitted("meta_")
        Z = meta_features([member_proba(m, X, self.category) for m in self.members_], self.category)
        if self.category == "regression":
            return Z @ self.meta_["coef"].T + self.meta_["intercept"]
        from mlsd_ray.models.simple import _Linear

        return _Linear.proba(Z, self.meta_, self.n_classes_)

    def save(self, path: Path) -> None:
        self._check_fitted("meta_")
        _save_members(path, self.members_, self.member_specs)
        save_file(self.meta_, str(path / "meta.safetensors"))
        info = {"n_members": len(self.members_), "n_classes": self.n_classes_}
        (path / "ensemble.json").write_text(json.dumps(info, indent=2))

    @classmethod
    def load(cls, path: Path, inputs: list[str], params: dict[str, Any]) -> Self:
        model = cls(inputs, **params)
        info = _read_info(path)
        model.members_ = _load_members(path, int(info["n_members"]))
        model.n_classes_ = int(info["n_classes"])
        model.meta_ = load_file(str(path / "meta.safetensors"))
        return model
