"""The selection run's validation scores, kept in a refitted package (``selection_validation.npz``,
numbers only): the refitted model has seen the validation rows, so the evaluation stage chooses
the threshold on these out-of-sample scores instead (see mlsd_ray.train.refit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SCORES = "selection_validation.npz"


def save_scores(folder: Path, y: np.ndarray, p: np.ndarray) -> None:
    np.savez(folder / SCORES, y=np.asarray(y, dtype=np.int64), p=np.asarray(p, np.float64))


def load_scores(folder: Path) -> tuple[np.ndarray, np.ndarray] | None:
    path = Path(folder) / SCORES
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:  # numbers only, never pickle
        return data["y"], data["p"]
