"""The delayed-label stage: prediction log + the card's feedback sources -> online figures.

Writes ``reports/online/delayed_metrics.json`` (counts: labelled, late, pending, never,
unknown keys, duplicates, quarantined; metrics overall and per model version and arm) and the
quarantined feedback rows as Parquet with their reasons (``reports/online/quarantine.parquet``).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from mlsd_ray import storage
from mlsd_ray.errors import DataError
from mlsd_ray.monitor.feedback import read_feedback_sources
from mlsd_ray.monitor.log import read_prediction_log
from mlsd_ray.monitor.online import join_delayed, online_by_arm
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard

log = logging.getLogger(__name__)


def champion_threshold(card: DesignCard, workdir: Workdir) -> float:
    """The decision threshold in the champion's package manifest (0.5 without one)."""
    try:
        from mlsd_ray.models.package import read_manifest
        from mlsd_ray.registry import fetch_model

        _, package = fetch_model(card, workdir, card.deployment.alias)
        return float(read_manifest(package).threshold or 0.5)
    except Exception as err:  # no registry yet: the default, said out loud
        log.info("threshold 0.5: the champion's could not be read (%s)", err)
        return 0.5


def collect(
    card: DesignCard,
    workdir: Workdir,
    *,
    now: pd.Timestamp | None = None,
    threshold: float | None = None,
    log_frame: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(joined predictions, report) without writing anything."""
    fb = card.monitoring.loop.feedback
    if not fb.sources:
        raise DataError(
            "The card names no feedback source.",
            fix="add monitoring.loop.feedback.sources (postgres, file or nats)",
        )
    frame = (
        log_frame
        if log_frame is not None
        else read_prediction_log(workdir.prediction_log_uri(card))
    )
    if frame.empty:
        raise DataError(
            f"The prediction log at {workdir.prediction_log_uri(card)!r} is empty.",
            fix="serve the model and send it requests first",
        )
    labels, quarantine = read_feedback_sources(fb)
    joined, counts = join_delayed(frame, labels, fb, now=now)
    counts["quarantined"] = len(quarantine)
    thr = threshold if threshold is not None else champion_threshold(card, workdir)
    report: dict[str, Any] = {
        "card": card.name,
        "threshold": thr,
        "window_s": fb.window_s,
        "counts": counts,
        "quarantine_reasons": quarantine["_reason"].value_counts().to_dict()
        if len(quarantine)
        else {},
        **online_by_arm(joined, thr),
    }
    report["_quarantine"] = quarantine
    return joined, report


def run_delayed(
    card: DesignCard, workdir: Workdir, *, now: pd.Timestamp | None = None
) -> dict[str, Any]:
    """Collect, then write the report and the quarantine; returns the report."""
    _, report = collect(card, workdir, now=now)
    quarantine = report.pop("_quarantine")
    out = storage.join(str(workdir.reports), "online")
    storage.makedirs(out)
    if len(quarantine):
        import pyarrow as pa
        import pyarrow.parquet as pq

        fs, path = storage.filesystem(storage.join(out, "quarantine.parquet"))
        with fs.open_output_stream(path) as f:
            pq.write_table(pa.Table.from_pandas(quarantine.astype(str), preserve_index=False), f)
    storage.write_json(storage.join(out, "delayed_metrics.json"), report)
    c = report["counts"]
    log.info(
        "delayed labels %s: %d predictions, %d labelled, %d late, %d never, %d pending, "
        "%d unknown keys, %d quarantined",
        card.name,
        c["predictions"],
        c["labelled"],
        c["late"],
        c["never"],
        c["pending"],
        c["unknown_key"],
        c["quarantined"],
    )
    return report
