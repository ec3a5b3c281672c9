"""Choosing the calibration the card asks for (``models.calibration``) on the validation split.

``method: auto`` picks among none, platt and isotonic by out-of-fold log loss on validation
(5 stratified folds: each map is fitted on four fifths of the validation rows and scored on the
fifth, so isotonic's flexibility cannot flatter itself), then refits the winner on all
validation rows. The report records log loss and ECE of each option, out of fold.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from mlsd_ray.errors import ModelError
from mlsd_ray.models.calibration import METHODS, Calibrator
from mlsd_ray.models.kinds import get_kind
from mlsd_ray.spec import DesignCard, ModelSpec

log = logging.getLogger(__name__)
CHOICES = ("none", "auto", *METHODS)


def _out_of_fold(method: str, p: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    if method == "none":
        return p
    out = np.empty_like(p)
    for fit_idx, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(p, y):
        out[held] = Calibrator.fit(method, p[fit_idx], y[fit_idx]).apply(p[held])
    return out


def choose(
    method: str, p: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0
) -> tuple[Calibrator | None, dict[str, Any]]:
    """(the calibrator the card asks for, fitted on all of (p, y), or None; the report).
    ``auto`` takes the lowest out-of-fold log loss, which may be no map at all."""
    from sklearn.metrics import log_loss

    from mlsd_ray.metrics import expected_calibration_error as ece

    if method not in CHOICES:
        raise ModelError(f"Unknown calibration method {method!r}.", fix=f"use one of {CHOICES}")
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.int64)
    if method == "none":
        return None, {}
    if len(np.unique(y)) < 2 or np.bincount(y).min() < folds:
        return None, {"requested": method, "chosen": "none", "why": "too few rows of a class"}
    candidates = ["none", *METHODS] if method == "auto" else ["none", method]
    scores: dict[str, dict[str, float]] = {}
    for m in candidates:
        q = _out_of_fold(m, p, y, folds, seed)
        scores[m] = {"log_loss": float(log_loss(y, q, labels=[0, 1])), "ece": ece(y, q)}
    best = min(candidates, key=lambda m: scores[m]["log_loss"]) if method == "auto" else method
    report = {
        "requested": method,
        "chosen": best,
        "out_of_fold": scores,
        "ece_before": scores["none"]["ece"],
        "ece_after": scores[best]["ece"],
    }
    log.info("calibration: %s", report)
    if best == "none":
        return None, report
    calibrator = Calibrator.fit(best, p, y)
    calibrator.report = report
    return calibrator, report


def calibrate_validation(
    card: DesignCard,
    spec: ModelSpec,
    p_val: np.ndarray,
    val: pd.DataFrame,
    extra: dict[str, Any],
) -> tuple[Calibrator | None, np.ndarray, dict[str, Any]]:
    """(calibrator or None, the validation probabilities it gives, extra metadata with the
    calibration report) for one binary model of the training stage. Kinds of one constant
    score (the majority baseline) have nothing to calibrate."""
    settings = card.models.calibration
    if settings.method == "none" or not get_kind(spec.kind).calibrate:
        return None, p_val, extra
    calibrator, report = choose(settings.method, p_val, val["label"].to_numpy(), settings.folds)
    extra = {**extra, "calibration": report}
    return calibrator, (calibrator.apply(p_val) if calibrator else p_val), extra
