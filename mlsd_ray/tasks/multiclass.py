"""Multiclass classification: a probability per class; the answer is the argmax, or per-class
thresholds from the card (``evaluation.class_thresholds``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from mlsd_ray.tasks.base import Decision, Task


def decide(proba: np.ndarray, decision: Decision) -> np.ndarray:
    """Class index per row. Classes with a threshold are checked in label order: the first whose
    probability reaches its threshold wins (a moderation queue flags ``hate`` at 0.3 before
    weighing the rest); rows where none does take the argmax."""
    proba = np.asarray(proba, dtype=np.float64)
    pred = proba.argmax(axis=1) if len(proba) else np.zeros(0, dtype=np.int64)
    taken = np.zeros(len(proba), dtype=bool)
    for i, name in enumerate(decision.classes):
        t = decision.class_thresholds.get(name)
        if t is None:
            continue
        hit = (proba[:, i] >= t) & ~taken
        pred[hit] = i
        taken |= hit
    return pred


class MulticlassTask(Task):
    name = "multiclass"
    #: Macro averages over classes (``f1_weighted`` weighs classes by support).
    gate_metrics: ClassVar[tuple[str, ...]] = (
        "roc_auc",
        "f1",
        "f1_weighted",
        "precision",
        "recall",
        "pr_auc",
        "accuracy",
    )

    def answer(self, model: Any, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict_proba(frame), dtype=np.float64)

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        column = frame[self.output_column]
        return (
            np.stack([np.asarray(v, dtype=np.float64) for v in column])
            if len(column)
            else (np.zeros((0, 0)))
        )

    def labels(self, scores: np.ndarray, decision: Decision) -> list[Any]:
        return [decision.classes[i] for i in decide(np.atleast_2d(scores), decision)]

    def drift_values(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores, dtype=np.float64).max(axis=1)  # the model's confidence

    def metrics(self, y: np.ndarray, scores: np.ndarray, decision: Decision) -> dict[str, Any]:
        from mlsd_ray.metrics import multiclass_metrics

        return multiclass_metrics(y, scores, decision.classes, decide(scores, decision))

    def choose_decision(
        self, card: Any, y: np.ndarray | None, scores: np.ndarray | None
    ) -> dict[str, Any]:
        thresholds = dict(card.evaluation.class_thresholds)
        rule = "class_thresholds" if thresholds else "argmax"
        return {
            "rule": rule,
            "threshold": card.evaluation.threshold,
            "met": True,
            "class_thresholds": thresholds,
        }

    def plots(
        self,
        card: Any,
        curves: dict[str, tuple[np.ndarray, np.ndarray]],
        results: dict[str, dict[str, Any]],
        decisions: dict[str, Decision],
        out_dir: Path,
        where: str,
    ) -> tuple[list[Path], dict[str, list[Path]]]:
        from mlsd_ray.plots import confusion_plot, roc_plot

        classes = card.framing.label.classes
        shared: list[Path] = []
        per_model: dict[str, list[Path]] = {}
        for name, d in decisions.items():
            y, p = curves[name]
            one_vs_rest = {c: ((y == i).astype(int), p[:, i]) for i, c in enumerate(classes)}
            per_model[name] = [
                confusion_plot(
                    results[name]["confusion_matrix"],
                    classes,
                    out_dir / f"confusion_{name}.png",
                    f"{name} ({'thresholds' if d.class_thresholds else 'argmax'})",
                ),
                roc_plot(
                    one_vs_rest, out_dir / f"roc_{name}.png", f"{name}: one-vs-rest ROC on {where}"
                ),
            ]
        first = next(iter(per_model.values()), [])
        shared = first[1:2]  # the first model's ROC heads the report
        return shared, per_model
