"""Classification metrics from scikit-learn; nothing hand-rolled."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm


def classification_metrics(
    y_true: np.ndarray, p_positive: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """Binary metrics at ``threshold``: precision, recall, F1, accuracy, ROC-AUC, PR-AUC and
    the confusion matrix ([[tn, fp], [fn, tp]]). AUCs are None when one class is absent."""
    y_true = np.asarray(y_true, dtype=np.int64)
    p_positive = np.asarray(p_positive, dtype=np.float64)
    y_pred = (p_positive >= threshold).astype(np.int64)
    both = len(np.unique(y_true)) == 2
    return {
        "n": len(y_true),
        "positive_rate": float(y_true.mean()) if len(y_true) else 0.0,
        "threshold": float(threshold),
        "precision": float(skm.precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(skm.recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(skm.f1_score(y_true, y_pred, zero_division=0)),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "roc_auc": float(skm.roc_auc_score(y_true, p_positive)) if both else None,
        "pr_auc": float(skm.average_precision_score(y_true, p_positive)) if both else None,
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=[0, 1]).tolist(),
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """MSE, MAE, RMSE and R2 (None with fewer than two rows), plus n and the target mean."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    mse = float(skm.mean_squared_error(y_true, y_pred)) if len(y_true) else None
    return {
        "n": len(y_true),
        "target_mean": float(y_true.mean()) if len(y_true) else None,
        "mse": mse,
        "mae": float(skm.mean_absolute_error(y_true, y_pred)) if len(y_true) else None,
        "rmse": None if mse is None else float(np.sqrt(mse)),
        "r2": float(skm.r2_score(y_true, y_pred)) if len(y_true) > 1 else None,
    }
