"""Cross-family ensembles (kind ``blend``): other candidates of the card, by name, combined.

Unlike ``bagging`` and ``stacking`` (which fit tabular members themselves), a blend's members
are packages the training stage has already made: TF-IDF and a transformer on a text card, a
GBDT and an mlp on a tabular one. Each member answers with its own package's calibrated
P(positive); the blend combines them:

- ``method: stacking``: a logistic regression on the members' logits;
- ``method: weighted``: a weighted mean of the members' probabilities, the weights (>= 0,
  summing to 1) minimising log loss.

**What the combiner learns from.** Members are trained on the train split (refitted kinds:
their selection run's scores, see `mlsd_ray.train.refit`), so their validation scores are out
of sample; the combiner is fitted on those. Its own validation figure must be out of sample
too, or the ladder would rank an in-sample blend against out-of-sample members: so the
combiner is *cross-fitted* on validation (k folds: fit on k-1, score the held-out fold), and
the final combiner is fitted on all validation rows. Cross-fitting the members themselves on
train would mean training every member (the transformer included) k more times.

Package: ``blend.json`` (member names, method, the combiner's weights) and ``members/NN/``, a
verbatim copy of each member's package (its own calibration included). Nothing is pickled;
the existing `Predictor` loads it like any package. Binary tasks only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from typing_extensions import Self

from mlsd_ray.errors import ModelError
from mlsd_ray.models.base import Model
from mlsd_ray.models.calibration import Calibrator
from mlsd_ray.models.package import load_package

INFO = "blend.json"
EPS = 1e-6


def member_folder(i: int) -> str:
    """Where member ``i``'s package lies inside a blend package (also read by Serve's graph)."""
    return f"members/{i:02d}"


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


class Member:
    """One member package: its model and calibration, answering P(positive)."""

    def __init__(self, name: str, folder: Path) -> None:
        self.name, self.folder = name, Path(folder)
        self.model, self.manifest = load_package(self.folder)
        self.calibrator = Calibrator.load(self.folder)
        if self.manifest.category != "binary":
            raise ModelError(
                f"Blend member {name!r} is a {self.manifest.category} model.",
                fix="blend binary candidates only",
            )

    def proba(self, X: pd.DataFrame) -> np.ndarray:
        p = np.asarray(self.model.predict_proba(X))[:, 1]
        return self.calibrator.apply(p) if self.calibrator is not None else p


def fit_combiner(method: str, P: np.ndarray, y: np.ndarray, C: float) -> dict[str, Any]:
    """The combiner's weights from member probabilities ``P`` (rows x members)."""
    if method == "stacking":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=C).fit(logit(P), y)
        return {"coef": lr.coef_[0].tolist(), "intercept": float(lr.intercept_[0])}
    from scipy.optimize import minimize
    from scipy.special import softmax

    def loss(z: np.ndarray) -> float:
        p = np.clip(P @ softmax(z), EPS, 1 - EPS)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    best = minimize(loss, np.zeros(P.shape[1]), method="Nelder-Mead")
    return {"weights": softmax(best.x).tolist()}


def combine(method: str, state: dict[str, Any], P: np.ndarray) -> np.ndarray:
    """The blend's P(positive) from its members' ``P`` (rows x members): the one place of this
    math (the package's ``predict_proba`` and Serve's ``Combiner`` both call it)."""
    if method == "stacking":
        z = logit(P) @ np.asarray(state["coef"]) + float(state["intercept"])
        return 1.0 / (1.0 + np.exp(-z))
    return np.asarray(P @ np.asarray(state["weights"]), dtype=np.float64)


class Blend(Model):
    """params: ``members`` (candidate names, two or more), ``method`` (stacking | weighted),
    ``folds`` (5: the cross-fit on validation), ``meta_C`` (1.0), ``seed`` (0)."""

    kind = "blend"

    def __init__(self, inputs: list[str], **params: Any) -> None:
        super().__init__(inputs, **params)
        self.names: list[str] = list(params.get("members") or [])
        self.method = str(params.get("method", "stacking"))
        self.members_: list[Member] = []

    def with_members(self, folders: dict[str, Path]) -> Self:
        """Attach the members' packages (the training stage's, by candidate name)."""
        missing = [n for n in self.names if n not in folders]
        if missing:
            raise ModelError(
                f"Blend members {missing} have no package in this training run.",
                fix="train them in the same run (do not leave them out with --only)",
            )
        self.members_ = [Member(n, folders[n]) for n in self.names]
        return self

    def member_proba(self, X: pd.DataFrame) -> np.ndarray:
        if not self.members_:
            raise ModelError("The blend has no members attached.", fix="call with_members first")
        return np.column_stack([m.proba(X) for m in self.members_])

    def fit(self, X: pd.DataFrame, y: np.ndarray, member_scores: np.ndarray | None = None) -> Self:
        """Fit the combiner on validation rows ``X`` (or the members' recorded out-of-sample
        ``member_scores`` of them); ``oof_`` holds its cross-fitted scores of those rows."""
        from sklearn.model_selection import StratifiedKFold

        P = self.member_proba(X) if member_scores is None else np.asarray(member_scores)
        y = np.asarray(y, dtype=np.int64)
        C, folds = float(self.params.get("meta_C", 1.0)), int(self.params.get("folds", 5))
        seed = int(self.params.get("seed", 0))
        self.oof_ = np.zeros(len(y))
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(P, y)
        for fit_rows, held_out in splits:
            state = fit_combiner(self.method, P[fit_rows], y[fit_rows], C)
            self.oof_[held_out] = combine(self.method, state, P[held_out])
        self.state_ = fit_combiner(self.method, P, y, C)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self._check_fitted("state_")
        p = combine(self.method, self.state_, self.member_proba(X))
        return np.column_stack([1 - p, p])

    def save(self, path: Path) -> None:
        self._check_fitted("state_")
        for i, member in enumerate(self.members_):
            shutil.copytree(member.folder, Path(path) / member_folder(i))
        info = {"members": self.names, "method": self.method, "combiner": self.state_}
        (Path(path) / INFO).write_text(json.dumps(info, indent=2))

    @classmethod
    def load(cls, path: Path, inputs: list[str], params: dict[str, Any]) -> Self:
        if not (Path(path) / INFO).is_file():
            raise ModelError(
                f"Blend package at {str(path)!r} lacks {INFO}.",
                fix="re-run training; the package is written by `mlsd train`",
            )
        info = json.loads((Path(path) / INFO).read_text())
        model = cls(inputs, **{**params, "members": info["members"], "method": info["method"]})
        folders = {n: Path(path) / member_folder(i) for i, n in enumerate(info["members"])}
        model.with_members(folders).state_ = info["combiner"]
        return model
