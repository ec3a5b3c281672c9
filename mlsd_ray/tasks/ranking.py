"""Ranking (recommendation): scores are per user and item, not per row, so the row-level parts of
the task contract do not apply. The ranking stages (mlsd_ray.recsys) retrieve, rank and evaluate
per user (NDCG@k, MAP@k, recall@k, coverage); this entry gives the card its gate metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from mlsd_ray.tasks.base import Decision, Task


def _per_user() -> NotImplementedError:
    return NotImplementedError(
        "ranking is scored per user by mlsd_ray.recsys (retrieve, rank, top k), not row by row"
    )


class RankingTask(Task):
    name = "ranking"
    output_column = "score"
    gate_metrics = ("ndcg@10", "map@10", "recall@10", "recall@100", "coverage@10")
    own_stages: ClassVar[dict[str, str]] = {
        "etl": "mlsd_ray.recsys.stage:etl_ranking",
        "train": "mlsd_ray.recsys.stage:train_ranking",
        "evaluate": "mlsd_ray.recsys.stage:evaluate_ranking",
        "register_markdown": "mlsd_ray.recsys.stage:write_markdown",
        "serve_tune": "mlsd_ray.recsys.stage:tune_ranking",
    }

    def answer(self, model: Any, frame: pd.DataFrame) -> np.ndarray:
        raise _per_user()

    def labels(self, scores: np.ndarray, decision: Decision) -> list[Any]:
        raise _per_user()

    def metrics(self, y: np.ndarray, scores: np.ndarray, decision: Decision) -> dict[str, Any]:
        raise _per_user()

    def headline(self, metrics: dict[str, Any]) -> float | None:
        value = metrics.get("ndcg@10")
        return None if value is None else float(value)

    def plots(
        self,
        card: Any,
        curves: dict[str, tuple[np.ndarray, np.ndarray]],
        results: dict[str, dict[str, Any]],
        decisions: dict[str, Decision],
        out_dir: Path,
        where: str,
    ) -> tuple[list[Path], dict[str, list[Path]]]:
        raise _per_user()
