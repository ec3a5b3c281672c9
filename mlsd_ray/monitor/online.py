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
from mlsd_ray.monitor.card import Feedback
from mlsd_ray.monitor.log import ARM, MODEL_VERSION, PROBABILITY, REQUEST_ID, TS
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
    # Feedback wins over a log column of the same name (the log has its own ``label``).
    renamed = f"feedback_{metric.column}"
    col = renamed if renamed in rows.columns else metric.column
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


# -- delayed labels: the join within a window, and metrics per model version and arm -------
LABEL_COL, DELAY_S, STATE = "feedback_label", "label_delay_s", "label_state"
FB_LABEL, FB_TS = "_fb_label", "_fb_ts"  # feedback columns while joining


def join_delayed(
    log: pd.DataFrame, labels: pd.DataFrame, feedback: Feedback, now: pd.Timestamp | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Every logged prediction with its label (if one arrived in time) and the counts.

    ``labels`` has ``key``, ``label``, ``event_ts`` (``feedback.read_feedback_sources``). With
    ``feedback.key == "request_id"`` a label applies to every instance of its request; with an
    entity key, to the latest prediction of that entity at or before the label's time. Each
    prediction ends in one ``label_state``: ``labelled``, ``late`` (the label came after
    ``window_s``), ``pending`` (younger than the window, no label yet) or ``never`` (older,
    no label). Labels whose key matches no prediction are counted as ``unknown_key``;
    repeated labels for one prediction keep the first and count ``duplicate``.
    """
    from mlsd_ray.monitor.feedback import EVENT_TS, KEY, LABEL

    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    window = pd.Timedelta(seconds=feedback.window_s)
    rows = log.copy()
    rows["_row"] = np.arange(len(rows))
    # The log has its own ``label`` (the served decision) and maybe an ``event_ts`` input.
    labels = labels.sort_values(EVENT_TS, kind="stable").rename(
        columns={LABEL: FB_LABEL, EVENT_TS: FB_TS}
    )
    if feedback.key == REQUEST_ID:
        rows[REQUEST_ID] = rows[REQUEST_ID].astype(str)
        known = labels[KEY].isin(set(rows[REQUEST_ID]))
        first = labels[known].drop_duplicates(KEY, keep="first")
        duplicate = int(known.sum() - len(first))
        merged = rows.merge(
            first.rename(columns={KEY: REQUEST_ID}), on=REQUEST_ID, how="left", validate="m:1"
        )
    else:
        if feedback.key not in rows.columns:
            raise DataError(
                f"monitoring.loop.feedback.key {feedback.key!r} is not a column of the "
                f"prediction log (columns: {sorted(rows.columns)}).",
                fix="use request_id, or an entity that is one of the card's inputs",
            )
        rows["_entity"] = rows[feedback.key].astype(str)
        known = labels[KEY].isin(set(rows["_entity"]))
        lab = labels[known].rename(columns={KEY: "_entity"})
        # The prediction each label belongs to: the entity's latest one at or before it.
        matched = pd.merge_asof(
            lab.sort_values(FB_TS),
            rows[["_entity", TS, "_row"]].sort_values(TS),
            left_on=FB_TS,
            right_on=TS,
            by="_entity",
            direction="backward",
        ).dropna(subset=["_row"])
        first = matched.drop_duplicates("_row", keep="first")
        duplicate = int(len(matched) - len(first))
        unmatched = int(known.sum() - len(matched))
        merged = rows.merge(first[["_row", FB_LABEL, FB_TS]], on="_row", how="left")
    delay = (merged[FB_TS] - merged[TS]).dt.total_seconds()
    has = merged[FB_LABEL].notna()
    late = has & (delay > feedback.window_s)
    state = np.where(
        has & ~late,
        "labelled",
        np.where(late, "late", np.where(merged[TS] + window > now, "pending", "never")),
    )
    out = merged.drop(columns=["_row", "_entity"], errors="ignore").rename(
        columns={FB_LABEL: LABEL_COL, FB_TS: "feedback_ts"}
    )
    out[DELAY_S] = delay
    out[STATE] = state
    out.loc[out[STATE] != "labelled", LABEL_COL] = np.nan
    counts = {
        "predictions": len(out),
        "labels": len(labels),
        "unknown_key": int((~known).sum()) + (0 if feedback.key == REQUEST_ID else unmatched),
        "duplicate": duplicate,
        **{s: int((out[STATE] == s).sum()) for s in ("labelled", "late", "pending", "never")},
    }
    return out, counts


def _calibration(p: np.ndarray, y: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error over equal-width bins, plus mean predicted vs observed."""
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    ece = sum(
        abs(p[idx == b].mean() - y[idx == b].mean()) * (idx == b).sum()
        for b in range(bins)
        if (idx == b).any()
    ) / max(len(p), 1)
    return {"ece": float(ece), "mean_predicted": float(p.mean()), "observed_rate": float(y.mean())}


def arm_metrics(rows: pd.DataFrame, threshold: float) -> dict[str, Any]:
    """The online figures of one group of joined predictions (``join_delayed`` output)."""
    from sklearn.metrics import roc_auc_score

    lab = rows[rows[STATE] == "labelled"]
    y = lab[LABEL_COL].to_numpy(dtype=float) >= 0.5
    p = lab[PROBABILITY].to_numpy(dtype=float)
    flag = p >= threshold
    delays = lab[DELAY_S].to_numpy(dtype=float)
    out: dict[str, Any] = {
        "served": len(rows),
        **{s: int((rows[STATE] == s).sum()) for s in ("labelled", "late", "pending", "never")},
        # Clicks: a served row whose click never came counts as no click (once the window ends).
        "ctr": float(y.sum() / max(len(lab) + int((rows[STATE] == "never").sum()), 1))
        if len(rows)
        else None,
        "positive_rate": float(y.mean()) if len(y) else None,
        "caught_share": float(flag[y].mean()) if y.any() else None,
        "precision_of_flags": float(y[flag].mean()) if flag.any() else None,
        "roc_auc": float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None,
        "calibration": _calibration(p, y.astype(float)) if len(y) else None,
        "label_delay_s": {
            "p50": float(np.percentile(delays, 50)),
            "p95": float(np.percentile(delays, 95)),
        }
        if len(delays)
        else None,
    }
    return out


def online_by_arm(joined: pd.DataFrame, threshold: float) -> dict[str, Any]:
    """``arm_metrics`` overall and per (model version, arm)."""
    groups: dict[str, Any] = {}
    arm = joined[ARM] if ARM in joined.columns else pd.Series("champion", index=joined.index)
    for (version, a), part in joined.groupby(
        [joined[MODEL_VERSION].astype(str), arm.fillna("champion")]
    ):
        groups[f"{version}/{a}"] = {
            "model_version": version,
            "arm": a,
            **arm_metrics(part, threshold),
        }
    return {"overall": arm_metrics(joined, threshold), "by_version_arm": groups}
