"""The monitor stage: compare what the served model saw with what it was trained on.

Reads the prediction log written by serving and the training split, computes the drift
report (see ``drift.py``) and writes it to ``<workdir>/reports/monitor`` as JSON, Markdown
and one PNG per drifting feature, plus ``monitor_summary.json`` for scripts.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd_ray import storage
from mlsd_ray.errors import DataError, MlsdError
from mlsd_ray.monitor.drift import PROBABILITY, drift_report
from mlsd_ray.monitor.log import MODEL_VERSION, TS, read_prediction_log
from mlsd_ray.plots import plot_feature
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard

log = logging.getLogger(__name__)

#: Reference rows scored for the reference distribution of the scores (enough for 10-bin PSI,
#: and a transformer on CPU scores them in seconds).
MAX_REFERENCE_SCORES = 1000


def read_reference(card: DesignCard, workdir: Workdir) -> pd.DataFrame:
    """The training split (Parquet file or folder): the card's inputs (and ``label``)."""
    uri = workdir.split_uri(card, "train")
    if not storage.exists(uri):
        raise DataError(
            f"No training reference at {uri!r}.",
            why="the monitor compares served inputs with the training split, which ETL writes",
            fix="run `mlsd etl CARD` (or `mlsd run CARD`) with the same --workdir first",
        )
    from mlsd_ray.data.layout import read_table  # Hive partition columns come back typed

    return read_table(uri, columns=[*card.feature_names, "label"]).to_pandas()


def reference_scores(
    card: DesignCard,
    workdir: Workdir,
    reference: pd.DataFrame,
    model_dir: str | Path | None = None,
    max_rows: int = MAX_REFERENCE_SCORES,
) -> tuple[np.ndarray | None, str | None, str]:
    """Score a sample of the reference with the model that served: (scores, version, note).

    Scores are comparable only with predictions of the same version, so the caller keeps
    the log rows of that version. The model is the package at ``model_dir`` or, without
    one, the registry's ``card.deployment.alias``; on failure prediction drift is skipped.
    """
    from mlsd_ray.predict import Predictor

    try:
        if model_dir is None:
            from mlsd_ray.registry import fetch_model

            version, package = fetch_model(card, workdir, card.deployment.alias)
            predictor = Predictor(package, version=version)
        else:
            predictor = Predictor(model_dir)
        sample = reference.sample(n=min(max_rows, len(reference)), random_state=0)
        scores = predictor.predict_frame(sample[predictor.manifest.input_names])
    except (MlsdError, ImportError, OSError, KeyError, ValueError) as err:
        return None, None, f"prediction drift skipped: could not score the reference ({err})"
    if scores.ndim > 1:  # multiclass: the probability of the top class, as the log keeps
        scores = scores.max(axis=1)
    return scores, str(predictor.version), f"reference scored by model version {predictor.version}"


def run_monitor(
    card: DesignCard,
    workdir: Workdir,
    *,
    model_dir: str | Path | None = None,
    score_reference: bool = True,
) -> dict[str, Any]:
    """Drift report of the prediction log against the training split; returns the summary.

    Raises DataError when the log is empty (nothing has been served and flushed yet).
    """
    t0 = time.perf_counter()
    log_uri = workdir.prediction_log_uri(card)
    current = read_prediction_log(log_uri)
    if current.empty:
        raise DataError(
            f"The prediction log at {log_uri!r} is empty.",
            why="no prediction has been served and flushed there yet; the log is written by "
            "the model deployment every monitoring.flush_every_n records or "
            "flush_every_s seconds, and when it shuts down",
            fix="serve the model (`mlsd serve CARD`), send it requests, and run the monitor "
            "with the same --workdir",
        )
    reference = read_reference(card, workdir)

    ref_scores: np.ndarray | None = None
    cur_scores: Sequence[float] | None = None
    note = "prediction drift skipped: score_reference=False"
    if score_reference and PROBABILITY in current.columns:
        ref_scores, version, note = reference_scores(card, workdir, reference, model_dir)
        if ref_scores is not None:
            same = current[current[MODEL_VERSION].astype(str) == version]
            if same.empty:
                ref_scores = None
                note = f"prediction drift skipped: no logged predictions of model version {version}"
            else:
                cur_scores = same[PROBABILITY].to_numpy(dtype=float)
    report = drift_report(card, workdir, reference, current, ref_scores, cur_scores)
    report.update(
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        prediction_log=log_uri,
        reference=workdir.split_uri(card, "train"),
        prediction_drift=note,
        model_versions={str(k): int(v) for k, v in current[MODEL_VERSION].value_counts().items()}
        if MODEL_VERSION in current.columns
        else {},
        window=_window(current),
    )

    out = workdir.reports / "monitor"
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("drift_*.png"):
        stale.unlink()
    plots = {}
    for name in report["drifting"]:
        plots[name] = str(
            plot_feature(name, report["features"][name], out / f"drift_{_slug(name)}.png")
        )
    report["plots"] = plots
    json_path = out / "drift_report.json"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md_path = out / "drift_report.md"
    md_path.write_text(to_markdown(report))

    summary = {
        "card": card.name,
        "status": report["status"],
        "n_reference": report["n_reference"],
        "n_current": report["n_current"],
        "drifting": report["drifting"],
        "features": {
            n: {k: f.get(k) for k in ("status", "psi", "ks_pvalue")}
            for n, f in report["features"].items()
        },
        "prediction_drift": note,
        "report_json": str(json_path),
        "report_md": str(md_path),
        "plots": plots,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    storage.write_json(str(workdir.summary_path("monitor")), summary)
    log.info(
        "monitor %s: %s (%d served rows vs %d reference rows; drifting: %s)",
        card.name,
        report["status"],
        report["n_current"],
        report["n_reference"],
        ", ".join(report["drifting"]) or "none",
    )
    return summary


def _window(current: pd.DataFrame) -> dict[str, str | None]:
    if TS not in current.columns or current.empty:
        return {"start": None, "end": None}
    return {"start": str(current[TS].min()), "end": str(current[TS].max())}


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1e-3 and x != 0 else f"{x:.3f}"
    return str(x)


def to_markdown(report: dict[str, Any]) -> str:
    """A human-readable page: overall status, one table row per feature, the pictures."""
    t = report["thresholds"]
    lines = [
        f"# Drift report: {report['card']}",
        "",
        f"**Status: {report['status']}** - {report['n_current']} served predictions "
        f"vs {report['n_reference']} training rows "
        f"({report.get('window', {}).get('start')} to {report.get('window', {}).get('end')}).",
        "",
        f"Thresholds: warn at PSI >= {t['psi_warn']}, alert at PSI >= {t['psi_alert']} "
        f"or KS p < {t['ks_pvalue_alert']}; {t['bins']} quantile bins.",
        "",
        f"Model versions in the log: {report.get('model_versions', {})}. "
        f"{report.get('prediction_drift', '')}.",
        "",
        "| feature | kind | status | PSI | KS p | reference | current |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, f in report["features"].items():
        ref, cur = f.get("reference", {}), f.get("current", {})
        lines.append(
            f"| {name} | {f['kind']} | {f['status']} | {_fmt(f.get('psi'))} | "
            f"{_fmt(f.get('ks_pvalue'))} | {_describe(ref)} | "
            f"{_describe(cur) or f.get('why', '')} |"
        )
    if report.get("plots"):
        lines += ["", "## Drifting features", ""]
        for name, path in report["plots"].items():
            lines += [f"### {name}", "", f"![{name}]({Path(path).name})", ""]
    return "\n".join(lines) + "\n"


def _describe(side: dict[str, Any]) -> str:
    for key in ("share", "mean"):
        if key in side:
            return f"{key} {_fmt(side[key])}"
    if "unseen_share" in side:
        return f"unseen {_fmt(side['unseen_share'])}"
    if "categories" in side:
        return f"{side['categories']} categories"
    return ""
