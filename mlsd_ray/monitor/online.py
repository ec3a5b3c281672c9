"""Online metrics: served predictions (the prediction log) joined with what happened later.

Feedback arrives after the fact (a moderator's verdict, a click, a watch time) in a file or
table keyed by ``request_id`` (plus ``position``, the instance's index in its request, when a
request carries several instances). The card names the metrics (``evaluation.online_metrics``);
each is computed over all logged rows and per model version, so a new champion's online effect
can be read beside the old one's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd_ray.errors import DataError
from mlsd_ray.monitor.log import MODEL_VERSION, PROBABILITY, REQUEST_ID
from mlsd_ray.spec import OnlineMetric

POSITION = "position"


def read_feedback(uri: str) -> pd.DataFrame:
    """A feedback table from CSV, TSV, Parquet or JSON lines (by extension)."""
    path = Path(uri)
    if not path.exists():
        raise DataError(f"No feedback at {uri!r}.", fix="pass a CSV/Parquet/JSONL file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq") or path.is_dir():
        frame = pd.read_parquet(path)
    elif suffix in (".jsonl", ".json"):
        frame = pd.read_json(path, lines=True)
    else:
        frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    if REQUEST_ID not in frame.columns:
        raise DataError(
            f"Feedback at {uri!r} has no {REQUEST_ID!r} column (columns: {list(frame.columns)}).",
            fix="key each feedback row by the request_id the endpoint answered with",
        )
    frame[REQUEST_ID] = frame[REQUEST_ID].astype(str)
    return frame


def join_feedback(log: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """Every logged row with its feedback columns (NaN where none came back)."""
    log = log.copy()
    log[REQUEST_ID] = log[REQUEST_ID].astype(str)
    log[POSITION] = log.groupby(REQUEST_ID).cumcount()
    keys = [REQUEST_ID, POSITION] if POSITION in feedback.columns else [REQUEST_ID]
    dup = feedback.duplicated(keys)
    if dup.any():
        raise DataError(
            f"Feedback repeats the key {keys} on {int(dup.sum())} row(s), e.g. "
            f"{feedback.loc[dup, keys].iloc[0].tolist()}.",
            fix="keep one feedback row per request (or per request and position)",
        )
    clash = (set(feedback.columns) & set(log.columns)) - set(keys)
    feedback = feedback.rename(columns={c: f"feedback_{c}" for c in clash})
    return log.merge(feedback, on=keys, how="left", validate="many_to_one")


def _one(metric: OnlineMetric, rows: pd.DataFrame, threshold: float) -> dict[str, Any]:
    col = metric.column if metric.column in rows.columns else f"feedback_{metric.column}"
    if col not in rows.columns:
        raise DataError(
            f"evaluation.online_metrics.{metric.name}: feedback has no column {metric.column!r}.",
            fix=f"use one of {sorted(c for c in rows.columns)}",
        )
    values = pd.to_numeric(rows[col], errors="coerce")
    known = values.notna().to_numpy()
    flagged = rows[PROBABILITY].to_numpy(dtype=np.float64) >= threshold
    v = values.to_numpy(dtype=np.float64)
    if metric.kind == "caught_share":
        pos = known & (v == 1)
        n, value = int(pos.sum()), float(flagged[pos].mean()) if pos.any() else None
    elif metric.kind == "precision":
        sel = known & flagged
        n, value = int(sel.sum()), float((v[sel] == 1).mean()) if sel.any() else None
    elif metric.kind == "click_through_rate":
        clicks = np.nan_to_num(v, nan=0.0).clip(0, 1)  # no feedback = no click
        n, value = len(rows), float(clicks.mean()) if len(rows) else None
    else:  # mean
        n, value = int(known.sum()), float(v[known].mean()) if known.any() else None
    return {"value": value, "rows": n}


def online_metrics(
    metrics: list[OnlineMetric],
    log: pd.DataFrame,
    feedback: pd.DataFrame,
    threshold: float,
) -> dict[str, Any]:
    """{served, with_feedback, threshold, metrics: {name: {value, rows, kind, by_version}}}."""
    if log.empty:
        raise DataError("The prediction log is empty.", fix="serve some requests first")
    if not metrics:
        raise DataError(
            "The card names no online metrics.",
            fix="add e.g. evaluation.online_metrics: [{name: caught, kind: caught_share, "
            "column: label}]",
        )
    rows = join_feedback(log, feedback)
    fb_cols = [c for c in rows.columns if c not in log.columns and c != POSITION]
    with_feedback = int(rows[fb_cols].notna().any(axis=1).sum()) if fb_cols else 0
    out: dict[str, Any] = {
        "served": len(rows),
        "with_feedback": with_feedback,
        "threshold": threshold,
        "metrics": {},
    }
    for m in metrics:
        entry = {"kind": m.kind, "column": m.column, **_one(m, rows, threshold)}
        entry["by_version"] = {
            str(v): _one(m, part, threshold) for v, part in rows.groupby(MODEL_VERSION)
        }
        out["metrics"][m.name] = entry
    return out
