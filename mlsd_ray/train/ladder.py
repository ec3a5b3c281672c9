"""The tabular ladder's Ray plumbing: ensembles fan their member fits out as Ray tasks.

The trainers of the ladder's kinds live in `mlsd_ray.train.trainers` (``fit_gbdt``,
``fit_ensemble``, and ``kind_params``, which fills a rung's params from the card); every rung
is scored on the same validation split as the rest, so the evaluation leaderboard ranks the
whole ladder side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def ray_runner(num_cpus: float = 1) -> Callable[[Callable[..., Any], list[tuple[Any, ...]]], list]:
    """An ensemble runner that makes every job a Ray task. Large arguments shared by jobs (the
    train frame) are put in the object store once, not once per task."""
    import ray

    def run(fn: Callable[..., Any], jobs: list[tuple[Any, ...]]) -> list[Any]:
        task = ray.remote(num_cpus=num_cpus)(fn)
        refs: dict[int, Any] = {}

        def shared(arg: Any) -> Any:
            if isinstance(arg, (pd.DataFrame, np.ndarray)) and len(arg) > 1000:
                if id(arg) not in refs:
                    refs[id(arg)] = ray.put(arg)
                return refs[id(arg)]
            return arg

        pending = [task.remote(*[shared(a) for a in job]) for job in jobs]
        return list(ray.get(pending))

    return run
