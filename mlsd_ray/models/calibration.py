"""Probability calibration of a binary model, fitted on the validation split and shipped in the
package as ``calibration.json`` (plain numbers, no pickle).

Two maps, both scikit-learn's (the two that ``sklearn.calibration`` offers):

- ``platt``: logistic regression on the logit of the model's probability (Platt scaling);
  stored as slope and intercept.
- ``isotonic``: ``IsotonicRegression(out_of_bounds="clip")``; stored as its thresholds, and
  applied by the same linear interpolation scikit-learn's ``predict`` does.

The training stage chooses and fits it (`mlsd_ray.train.calibrate`); `Predictor.predict_frame`
applies it, so evaluation, batch prediction and serving all see the calibrated probability.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlsd_ray.errors import ModelError

FILE = "calibration.json"
METHODS = ("platt", "isotonic")
_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass
class Calibrator:
    """A fitted map from the model's P(positive) to a calibrated one."""

    method: str
    #: platt: {"slope", "intercept"}; isotonic: {"x", "y"} (the fitted thresholds)
    state: dict[str, Any] = field(default_factory=dict)
    #: how it was chosen, log losses and ECE before/after (out of fold on validation)
    report: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, method: str, p: np.ndarray, y: np.ndarray) -> Calibrator:
        if method not in METHODS:
            raise ModelError(f"Unknown calibration method {method!r}.", fix=f"use one of {METHODS}")
        p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.int64)
        if method == "platt":
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1e6).fit(_logit(p)[:, None], y)
            state = {"slope": float(lr.coef_[0, 0]), "intercept": float(lr.intercept_[0])}
        else:
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
            state = {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
        return cls(method, state)

    def apply(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.method == "platt":
            z = self.state["slope"] * _logit(p) + self.state["intercept"]
            return 1.0 / (1.0 + np.exp(-z))
        # IsotonicRegression.predict with out_of_bounds="clip" is this interpolation.
        return np.interp(p, self.state["x"], self.state["y"])

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / FILE
        path.write_text(json.dumps(self.__dict__, indent=1))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> Calibrator | None:
        """The package's calibrator, or None when it ships none."""
        path = Path(folder) / FILE
        if not path.is_file():
            return None
        d = json.loads(path.read_text())
        if d.get("method") not in METHODS:
            raise ModelError(
                f"{path}: unknown calibration method {d.get('method')!r}.",
                fix="re-run training; the file is written by `mlsd train`",
            )
        return cls(d["method"], d["state"], d.get("report", {}))
