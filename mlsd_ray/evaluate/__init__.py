"""Offline evaluation: metrics (scikit-learn), plots, reports and the promotion gate."""

from mlsd_ray.evaluate.gate import GateDecision, decide
from mlsd_ray.metrics import classification_metrics

__all__ = ["GateDecision", "classification_metrics", "decide"]
