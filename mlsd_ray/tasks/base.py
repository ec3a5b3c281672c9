"""The task contract. Heavy imports (scikit-learn, matplotlib) happen inside the methods: the
card loader imports this package for the task names and gate metrics."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

PROBABILITY = "probability"
PREDICTION = "prediction"


@dataclass
class Decision:
    """How scores become answers: the binary threshold, or per-class thresholds (multiclass;
    empty = argmax), with the class names."""

    classes: list[str]
    threshold: float = 0.5
    class_thresholds: dict[str, float] = field(default_factory=dict)


class Task(ABC):
    name: ClassVar[str]
    #: The column scores land in (Ray Data batch inference, evaluation frames).
    output_column: ClassVar[str] = PROBABILITY
    #: Metrics a gate may use; the first is the default gate metric.
    gate_metrics: ClassVar[tuple[str, ...]]
    lower_is_better: ClassVar[frozenset[str]] = frozenset()
    #: The threshold objective (evaluation.threshold_objective) applies.
    uses_threshold: ClassVar[bool] = False
    #: Paired bootstrap intervals of the gate metric exist for this task.
    has_intervals: ClassVar[bool] = False
    #: Scores are probabilities that a calibration map (fitted on validation) can correct.
    calibrates: ClassVar[bool] = False
    #: Stages this task runs in its own way, ``stage -> "module:function"`` (imported on use,
    #: as they sit above this layer); the pipeline runs these instead of its row-level ones.
    own_stages: ClassVar[dict[str, str]] = {}

    def n_outputs(self, classes: list[str]) -> int:
        """Width of a network's output layer for a card with these classes."""
        return len(classes)

    # -- answers --------------------------------------------------------------------------
    @abstractmethod
    def answer(self, model: Any, frame: pd.DataFrame) -> np.ndarray:
        """The predictor's scores for ``frame`` (one row per input row)."""

    @abstractmethod
    def labels(self, scores: np.ndarray, decision: Decision) -> list[Any]:
        """The answer per row: a class name (classifiers) or the value (regression)."""

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        """The scores of a scored frame, as one array."""
        return frame[self.output_column].to_numpy(dtype=np.float64)

    def drift_values(self, scores: np.ndarray) -> np.ndarray:
        """One number per prediction whose distribution monitoring compares over time."""
        return np.asarray(scores, dtype=np.float64)

    # -- metrics ----------------------------------------------------------------------------
    @abstractmethod
    def metrics(self, y: np.ndarray, scores: np.ndarray, decision: Decision) -> dict[str, Any]: ...

    def headline(self, metrics: dict[str, Any]) -> float | None:
        """The number the train summary logs per model (validation ROC-AUC for classifiers)."""
        value = metrics.get("roc_auc")
        return None if value is None else float(value)

    def better_first(self, metric: str) -> int:
        """Sort sign: leaderboards list the best model first."""
        return 1 if metric in self.lower_is_better else -1

    def choose_decision(
        self, card: Any, y: np.ndarray | None, scores: np.ndarray | None
    ) -> dict[str, Any]:
        """The decision rule from the card (binary: chosen on validation by the objective)."""
        return {"rule": "fixed", "threshold": card.evaluation.threshold, "met": True}

    def evidence(
        self, card: Any, frame: pd.DataFrame, y: np.ndarray, scores: np.ndarray, decision: Decision
    ) -> dict[str, Any]:
        """Intervals and slice metrics of one scored model."""
        from mlsd_ray.tasks.slices import slice_metrics

        slices = slice_metrics(
            card.evaluation.slices,
            frame,
            y,
            scores,
            decision.threshold,
            self._slice_measure(decision),
        )
        return {"intervals": {}, "slices": slices}

    def _slice_measure(self, decision: Decision) -> Any:
        return lambda y, s: self.metrics(y, s, decision)

    # -- plots ------------------------------------------------------------------------------
    @abstractmethod
    def plots(
        self,
        card: Any,
        curves: dict[str, tuple[np.ndarray, np.ndarray]],
        results: dict[str, dict[str, Any]],
        decisions: dict[str, Decision],
        out_dir: Path,
        where: str,
    ) -> tuple[list[Path], dict[str, list[Path]]]:
        """(shared plots, plots per model); the first shared plot heads the report."""
