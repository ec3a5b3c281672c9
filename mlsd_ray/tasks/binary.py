"""Binary classification: P(positive) per row, a threshold chosen for the business objective."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from mlsd_ray.tasks.base import Decision, Task


class BinaryTask(Task):
    name = "binary"
    gate_metrics: ClassVar[tuple[str, ...]] = (
        "roc_auc",
        "pr_auc",
        "precision",
        "recall",
        "f1",
        "accuracy",
    )
    uses_threshold = True
    has_intervals = True
    calibrates = True

    def answer(self, model: Any, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict_proba(frame))[:, 1]

    def labels(self, scores: np.ndarray, decision: Decision) -> list[Any]:
        neg, pos = decision.classes[0], decision.classes[1]
        return [pos if s >= decision.threshold else neg for s in np.asarray(scores)]

    def metrics(self, y: np.ndarray, scores: np.ndarray, decision: Decision) -> dict[str, Any]:
        from mlsd_ray.metrics import classification_metrics

        return classification_metrics(y, scores, decision.threshold)

    def choose_decision(
        self, card: Any, y: np.ndarray | None, scores: np.ndarray | None
    ) -> dict[str, Any]:
        from mlsd_ray.tasks.threshold import choose_threshold

        objective = card.evaluation.threshold_objective
        if objective.rule == "fixed" or y is None or scores is None:
            return choose_threshold(objective, np.zeros(0), np.zeros(0), card.evaluation.threshold)
        choice = choose_threshold(objective, y, scores, card.evaluation.threshold)
        choice["split"] = "validation"
        return choice

    def evidence(
        self, card: Any, frame: pd.DataFrame, y: np.ndarray, scores: np.ndarray, decision: Decision
    ) -> dict[str, Any]:
        from mlsd_ray.tasks.bootstrap import confidence_intervals
        from mlsd_ray.tasks.slices import slice_metrics

        boot = card.evaluation.bootstrap
        t = decision.threshold
        return {
            "intervals": confidence_intervals(
                y, scores, t, boot.n_resamples, boot.confidence, boot.seed
            ),
            "slices": slice_metrics(card.evaluation.slices, frame, y, scores, t),
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
        from mlsd_ray.plots import (
            calibration_plot,
            confusion_plot,
            pr_plot,
            roc_plot,
            threshold_plot,
        )
        from mlsd_ray.tasks.threshold import threshold_curve

        shared = [
            roc_plot(curves, out_dir / "roc.png", f"{card.name}: ROC on {where}"),
            pr_plot(curves, out_dir / "pr.png", f"{card.name}: precision-recall on {where}"),
            calibration_plot(curves, out_dir / "calibration.png", f"{card.name}: calibration"),
        ]
        per_model: dict[str, list[Path]] = {}
        for name, d in decisions.items():
            y, p = curves[name]
            per_model[name] = [
                confusion_plot(
                    results[name]["confusion_matrix"],
                    d.classes,
                    out_dir / f"confusion_{name}.png",
                    f"{name} @ {d.threshold:.3f}",
                ),
                threshold_plot(
                    threshold_curve(y, p) if len(np.unique(y)) == 2 else None,  # one class: none
                    d.threshold,
                    out_dir / f"threshold_{name}.png",
                    f"{name}: threshold",
                ),
            ]
        return shared, per_model
