"""The decision threshold from the business objective, chosen on the validation split.

Candidates are the distinct scores (``sklearn.metrics.precision_recall_curve`` thresholds); a
row is flagged when ``probability >= threshold``, as the Predictor and the metrics do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_curve

from mlsd_ray.errors import DataError

if TYPE_CHECKING:  # the card's types; the card (spec) imports the tasks
    from mlsd_ray.spec import ThresholdObjective


def threshold_curve(y_true: np.ndarray, p_positive: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and the counts at every candidate threshold (ascending)."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(p_positive, dtype=np.float64)
    _, _, thresholds = precision_recall_curve(y, p)  # the distinct scores, ascending
    # Counts at each threshold from sorted scores: O(n log n), no n x thresholds matrix.
    flagged = len(p) - np.searchsorted(np.sort(p), thresholds, side="left")
    n_pos = int(y.sum())
    tp = n_pos - np.searchsorted(np.sort(p[y == 1]), thresholds, side="left")
    fp = flagged - tp
    fn = n_pos - tp
    tn = len(y) - n_pos - fp
    precision = tp / np.maximum(flagged, 1)
    recall = tp / max(n_pos, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "threshold": thresholds,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def choose_threshold(
    objective: ThresholdObjective,
    y_true: np.ndarray,
    p_positive: np.ndarray,
    default: float = 0.5,
) -> dict[str, Any]:
    """{threshold, rule, achieved: {...}, met: bool} for the card's objective.

    ``max_recall_at_precision``: the highest recall among thresholds whose precision is at
    least ``min_precision`` (ties: the higher threshold, fewer flags); when none reaches it,
    the threshold of the highest precision and ``met: False``.
    """
    y = np.asarray(y_true, dtype=np.int64)
    if objective.rule == "fixed":
        return {"rule": "fixed", "threshold": float(default), "met": True, "achieved": {}}
    if len(y) == 0 or len(np.unique(y)) < 2:
        raise DataError(
            f"Cannot choose a threshold by {objective.rule!r}: the validation split holds "
            f"{len(y)} row(s) of {len(np.unique(y))} class(es).",
            fix="give the split a validation share with both classes, or use rule: fixed",
        )
    c = threshold_curve(y, p_positive)
    met = True
    if objective.rule == "best_f1":
        i = int(np.argmax(c["f1"]))
    elif objective.rule == "max_recall_at_precision":
        ok = np.flatnonzero(c["precision"] >= objective.min_precision)
        if len(ok):
            best = c["recall"][ok].max()
            i = int(ok[c["recall"][ok] == best].max())
        else:
            met = False
            i = int(np.argmax(c["precision"]))
    else:  # expected_value, per prediction
        value = (
            objective.value_tp * c["tp"]
            + objective.value_fp * c["fp"]
            + objective.value_fn * c["fn"]
            + objective.value_tn * c["tn"]
        ) / len(y)
        i = int(np.argmax(value))
    t = float(c["threshold"][i])
    pred = (np.asarray(p_positive) >= t).astype(np.int64)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    achieved = {
        "precision": float(tp / (tp + fp)) if tp + fp else 0.0,
        "recall": float(tp / (tp + fn)) if tp + fn else 0.0,
        "flagged_share": float(pred.mean()),
    }
    if objective.rule == "expected_value":
        achieved["expected_value_per_row"] = float(
            (
                objective.value_tp * tp
                + objective.value_fp * fp
                + objective.value_fn * fn
                + objective.value_tn * tn
            )
            / len(y)
        )
    return {"rule": objective.rule, "threshold": t, "met": met, "achieved": achieved}
