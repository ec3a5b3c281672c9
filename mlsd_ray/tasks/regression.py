"""Regression: one value per row; no threshold, no classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from mlsd_ray.tasks.base import PREDICTION, Decision, Task


class RegressionTask(Task):
    name = "regression"
    output_column = PREDICTION
    gate_metrics: ClassVar[tuple[str, ...]] = ("rmse", "mae", "mse", "r2")
    lower_is_better: ClassVar[frozenset[str]] = frozenset({"mse", "mae", "rmse"})

    def n_outputs(self, classes: list[str]) -> int:
        return 1  # one value per row, whatever label.classes says

    def answer(self, model: Any, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict(frame), dtype=np.float64)

    def labels(self, scores: np.ndarray, decision: Decision) -> list[Any]:
        return [float(v) for v in np.asarray(scores)]

    def metrics(self, y: np.ndarray, scores: np.ndarray, decision: Decision) -> dict[str, Any]:
        from mlsd_ray.metrics import regression_metrics

        return regression_metrics(y, scores)

    def headline(self, metrics: dict[str, Any]) -> float | None:
        return None  # no ROC-AUC; the summary's ``validation`` holds the regression metrics

    def evidence(
        self, card: Any, frame: pd.DataFrame, y: np.ndarray, scores: np.ndarray, decision: Decision
    ) -> dict[str, Any]:
        return {"intervals": {}, "slices": []}  # slices watch classification metrics

    def plots(
        self,
        card: Any,
        curves: dict[str, tuple[np.ndarray, np.ndarray]],
        results: dict[str, dict[str, Any]],
        decisions: dict[str, Decision],
        out_dir: Path,
        where: str,
    ) -> tuple[list[Path], dict[str, list[Path]]]:
        from mlsd_ray.plots import regression_plots

        return regression_plots(curves, out_dir, f"{card.name} on {where}"), {}
