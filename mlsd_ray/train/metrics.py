"""The one validation metric the training stage records for every model."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def roc_auc(y: np.ndarray, proba: np.ndarray) -> float | None:
    """Binary: AUC of P(class 1); multiclass: one-vs-rest macro AUC. None when ``y`` holds a
    single class (AUC is undefined), so a tiny validation split does not fail the stage."""
    y = np.asarray(y, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    if len(y) == 0 or len(np.unique(y)) < 2:
        return None
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    if len(np.unique(y)) < proba.shape[1]:
        return None  # ovr AUC needs every class present
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro"))
