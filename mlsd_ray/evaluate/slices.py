"""Slices declared in the card: which test rows each selects, their metrics, and a flag for
slices whose watched metric falls under its minimum."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from mlsd_ray.errors import CardError
from mlsd_ray.metrics import classification_metrics
from mlsd_ray.spec import Slice


def slice_masks(spec: Slice, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Slice name -> boolean row mask (several names for an ``each_value`` slice)."""
    if spec.column not in frame.columns:
        raise CardError(
            f"evaluation.slices.{spec.name}: column {spec.column!r} is not in the evaluated data.",
            fix=f"use one of {sorted(c for c in frame.columns if not c.startswith('_'))}",
        )
    col = frame[spec.column]
    if spec.equals is not None:
        wanted = {str(v).strip() for v in spec.equals}
        return {spec.name: col.astype(str).str.strip().isin(wanted).to_numpy()}
    if spec.pattern is not None:
        rx = re.compile(spec.pattern, re.IGNORECASE)
        return {spec.name: col.astype(str).map(lambda s: bool(rx.search(s))).to_numpy(bool)}
    if spec.length_min is not None or spec.length_max is not None:
        length = col.astype(str).str.strip().str.len().to_numpy()
        lo = spec.length_min if spec.length_min is not None else -np.inf
        hi = spec.length_max if spec.length_max is not None else np.inf
        return {spec.name: (length >= lo) & (length <= hi)}
    if spec.each_value:
        values = col.astype(str).str.strip()
        return {f"{spec.name}={v}": (values == v).to_numpy() for v in sorted(values.unique())}
    numbers = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    lo = spec.min if spec.min is not None else -np.inf
    hi = spec.max if spec.max is not None else np.inf
    with np.errstate(invalid="ignore"):
        return {spec.name: (numbers >= lo) & (numbers <= hi)}


def slice_metrics(
    specs: list[Slice],
    frame: pd.DataFrame,
    y_true: np.ndarray,
    p_positive: np.ndarray,
    threshold: float,
) -> list[dict[str, Any]]:
    """One entry per slice: rows, metrics at ``threshold``, and ``flagged`` when the slice's
    metric is under its ``min_value`` on at least ``min_rows`` rows."""
    y = np.asarray(y_true)
    p = np.asarray(p_positive)
    out = []
    for spec in specs:
        for name, mask in slice_masks(spec, frame).items():
            n = int(mask.sum())
            m = classification_metrics(y[mask], p[mask], threshold) if n else None
            value = m.get(spec.metric) if m else None
            flagged = (
                spec.min_value is not None
                and n >= spec.min_rows
                and (value is None or value < spec.min_value)
            )
            out.append(
                {
                    "slice": name,
                    "rows": n,
                    "metric": spec.metric,
                    "value": value,
                    "min_value": spec.min_value,
                    "flagged": bool(flagged),
                    "too_small": n < spec.min_rows,
                    "metrics": m,
                }
            )
    return out
