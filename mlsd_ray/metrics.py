"""Metrics by task category, from scikit-learn wherever it has them; nothing hand-rolled
except what scikit-learn lacks (expected calibration error, MAP@k over groups)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm


def classification_metrics(
    y_true: np.ndarray, p_positive: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """Binary metrics at ``threshold``: precision, recall, F1, accuracy, ROC-AUC, PR-AUC, log
    loss, expected calibration error and the confusion matrix ([[tn, fp], [fn, tp]]). AUCs are
    None when one class is absent."""
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
        "accuracy": float(skm.accuracy_score(y_true, y_pred)) if len(y_true) else None,
        "roc_auc": float(skm.roc_auc_score(y_true, p_positive)) if both else None,
        "pr_auc": float(skm.average_precision_score(y_true, p_positive)) if both else None,
        "log_loss": float(skm.log_loss(y_true, p_positive, labels=[0, 1])) if len(y_true) else None,
        "ece": expected_calibration_error(y_true, p_positive) if len(y_true) else None,
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=[0, 1]).tolist(),
    }


def expected_calibration_error(y_true: np.ndarray, p_positive: np.ndarray, bins: int = 10) -> float:
    """ECE over ``bins`` equal-width probability bins: sum over bins of (bin share) x
    |mean predicted probability - observed positive rate|. The bins are those of
    ``sklearn.calibration.calibration_curve(strategy="uniform")``."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(p_positive, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.searchsorted(edges[1:-1], p)  # the binning of calibration_curve
    count = np.bincount(idx, minlength=bins)
    mean_p = np.bincount(idx, weights=p, minlength=bins)
    mean_y = np.bincount(idx, weights=y, minlength=bins)
    used = count > 0
    gap = np.abs(mean_p[used] - mean_y[used]) / count[used]
    return float(np.sum(gap * count[used]) / len(y))


def multiclass_metrics(
    y_true: np.ndarray, proba: np.ndarray, classes: list[str] | None = None
) -> dict[str, Any]:
    """Multiclass metrics from (n, k) probabilities: accuracy, macro/weighted F1, macro
    precision/recall, one-vs-rest macro ROC-AUC (None unless every class is present), log loss,
    the k x k confusion matrix and per-class precision/recall/F1/support."""
    y = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    k = proba.shape[1]
    labels = list(range(k))
    pred = proba.argmax(axis=1)
    names = classes or [str(i) for i in labels]
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    all_present = len(np.unique(y)) == k
    return {
        "n": len(y),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, average="macro", zero_division=0)),
        "recall": float(skm.recall_score(y, pred, average="macro", zero_division=0)),
        "f1": float(skm.f1_score(y, pred, average="macro", zero_division=0)),
        "f1_weighted": float(skm.f1_score(y, pred, average="weighted", zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"))
        if all_present
        else None,
        "log_loss": float(skm.log_loss(y, proba, labels=labels)),
        "confusion_matrix": skm.confusion_matrix(y, pred, labels=labels).tolist(),
        "per_class": {
            names[i]: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i in labels
        },
    }


def ranking_metrics(
    groups: np.ndarray, relevance: np.ndarray, scores: np.ndarray, k: int = 10
) -> dict[str, Any]:
    """NDCG@k (scikit-learn's ``ndcg_score``), MAP@k and recall@k, averaged over the queries
    in ``groups`` (a user, a session). Queries with no relevant item are skipped for MAP and
    recall (undefined there) and counted in ``queries_without_positives``."""
    frame = pd.DataFrame(
        {"g": np.asarray(groups), "y": np.asarray(relevance, float), "s": np.asarray(scores, float)}
    )
    ndcgs, aps, recalls, skipped = [], [], [], 0
    for _, q in frame.groupby("g", sort=False):
        y, s = q["y"].to_numpy(), q["s"].to_numpy()
        if len(y) > 1:
            ndcgs.append(skm.ndcg_score(y[None, :], s[None, :], k=k))
        elif y.sum() > 0:
            ndcgs.append(1.0)  # one item: it is ranked first
        positives = y > 0
        if not positives.any():
            skipped += 1
            continue
        # Stable order: ties keep their input order, as a served ranking would.
        order = np.argsort(-s, kind="stable")[:k]
        hits = positives[order]
        precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        aps.append(float(np.sum(precision_at * hits) / min(positives.sum(), k)))
        recalls.append(float(hits.sum() / positives.sum()))
    return {
        "queries": int(frame["g"].nunique()),
        "queries_without_positives": skipped,
        "k": k,
        f"ndcg@{k}": float(np.mean(ndcgs)) if ndcgs else None,
        f"map@{k}": float(np.mean(aps)) if aps else None,
        f"recall@{k}": float(np.mean(recalls)) if recalls else None,
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
