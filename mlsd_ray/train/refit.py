"""Refit on all labelled rows (``models.refit: true``): after a tabular model has been scored,
calibrated and ranked on validation, fit the same configuration again on train + validation
and package that one.

The number of boosting rounds is fixed from the selection run (its early-stopped
``best_iteration``), since no rows are left to stop on. What training recorded about the
selection model stays true of the procedure: the validation metrics, the calibration map and
the validation scores the evaluation stage chooses the threshold on
(``selection_validation.npz`` in the package: the refitted model has seen those rows, so its
own scores there would be optimistic). The mlp, ensembles and text kinds are not refitted.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from mlsd_ray.models.base import Model, load_model_class

log = logging.getLogger(__name__)
LABEL = "label"


def refit(
    kind: str,
    inputs: list[str],
    params: dict[str, Any],
    selected: Any,
    train: pd.DataFrame,
    val: pd.DataFrame,
) -> tuple[Model, dict[str, Any], dict[str, Any]]:
    """(the model fitted on train + validation, its params, what to record)."""
    both = pd.concat([train, val], ignore_index=True)
    fixed, info = selected.refit_params(params)
    info = {"rows": len(both), **info}
    model = load_model_class(kind)(inputs, **fixed)
    model.fit(both[inputs], both[LABEL].to_numpy())
    log.info("refitted %s on %d rows: %s", kind, len(both), info)
    return model, fixed, info
