"""The table of tasks: adding a task is one module and one line in `TASKS`.

A task owns what depends on the kind of answer: the output column and the predictor's answer
shape, its metrics, plots, threshold logic, gate metrics and slices, and the value whose drift
monitoring watches. The stages call the task and do not branch on ``framing.category``.
"""

from __future__ import annotations

from mlsd_ray.tasks.base import Decision, Task
from mlsd_ray.tasks.binary import BinaryTask
from mlsd_ray.tasks.multiclass import MulticlassTask
from mlsd_ray.tasks.ranking import RankingTask
from mlsd_ray.tasks.regression import RegressionTask

TASKS: dict[str, Task] = {
    "binary": BinaryTask(),
    "multiclass": MulticlassTask(),
    "regression": RegressionTask(),
    "ranking": RankingTask(),
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def get_task(name: str) -> Task:
    if name not in TASKS:
        from mlsd_ray.errors import CardError

        raise CardError(f"Unknown task {name!r}.", fix=f"use one of {list(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "TASK_NAMES", "Decision", "Task", "get_task"]
