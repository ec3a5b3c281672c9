"""The data report: Markdown with one histogram PNG per column, under ``reports/data``.

What ETL read and kept (rows in, ok, quarantined by reason, per split, dataset version),
leakage and anomaly findings, then a table of column statistics and a picture per column:
a histogram for numbers and times, the most frequent values for categories, the length
histogram for texts. matplotlib runs on the Agg backend (no display needed).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from mlsd_ray import plots
from mlsd_ray.spec import DesignCard

log = logging.getLogger(__name__)

MAX_PLOTS = 40  # pictures beyond this many columns are left out (the table keeps them all)
REPORT = "data_report.md"


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80] or "column"


def _table(profile: dict[str, Any]) -> list[str]:
    lines = [
        "| column | kind | count | nulls | distinct | min | max | mean | p50 | top / length |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in profile["columns"].items():
        if c["kind"] == "text":
            length = c["length"]
            extra = f"length {_fmt(length.get('min'))}-{_fmt(length.get('max'))}"
            extra += f", mean {_fmt(length.get('mean'))}"
            row = [name, "text", c["count"], c["nulls"], c["distinct"], "", "", "", "", extra]
        elif c["kind"] == "category":
            top = ", ".join(f"{k} ({v})" for k, v in c["top"][:3])
            row = [name, "category", c["count"], c["nulls"], c["distinct"], "", "", "", "", top]
        else:
            q = c.get("quantiles") or {}
            lo, hi = c.get("min_time", c.get("min")), c.get("max_time", c.get("max"))
            row = [name, c["kind"], c["count"], c["nulls"], c["distinct"], lo, hi]
            row += [c.get("mean"), q.get("p50"), "" if c.get("exact", True) else "sampled"]
        cells = [_fmt(v).replace("|", "\\|").replace("\n", " ") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_report(
    card: DesignCard, summary: dict[str, Any], profile: dict[str, Any], out_dir: Path
) -> Path:
    """Write ``data_report.md`` and its PNGs into ``out_dir``; returns the Markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("hist_*.png"):
        old.unlink()
    lines = [
        f"# Data report: {card.name}",
        "",
        f"Dataset version **{summary.get('dataset_version') or 'not written'}** "
        f"(content hash `{summary.get('content_hash', '')[:16]}...`).",
        "",
        "| rows in | ok | quarantined | " + " | ".join(summary["rows_per_split"]) + " |",
        "|---|---|---|" + "---|" * len(summary["rows_per_split"]),
        f"| {summary['rows_in']} | {summary['rows_ok']} | {summary['rows_quarantined']} | "
        + " | ".join(
            str(summary.get("rows_written", {}).get(s, n))
            for s, n in summary["rows_per_split"].items()
        )
        + " |",
        "",
        f"Split: {summary.get('split_strategy', 'random')}"
        f"{', stratified' if summary.get('stratified') else ''}, seed {summary['seed']}; "
        f"balance: {summary.get('balance', 'none')}; class weights (train): "
        f"{summary.get('class_weights') or 'n/a'}.",
        "",
        "Sources: " + ", ".join(f"`{s}`" for s in summary["sources"]),
    ]
    if summary.get("events"):
        lines += ["", "## Event logs", ""]
        lines += [f"- `{uri}`: {counts}" for uri, counts in summary["events"].items()]
    lines += ["", "## Quarantine", ""]
    if summary["quarantine_by_reason"]:
        lines += ["| reason | rows | example |", "|---|---|---|"]
        for reason, n in sorted(summary["quarantine_by_reason"].items()):
            example = summary["quarantine_examples"].get(reason, "").replace("|", "\\|")
            lines.append(f"| {reason} | {n} | {example[:120]} |")
    else:
        lines.append("No row was quarantined.")
    lines += ["", "## Labels per split", ""]
    for split, counts in summary["label_counts"].items():
        lines.append(f"- {split}: {counts or 'n/a'}")
    leak = summary.get("leakage") or {}
    lines += ["", "## Leakage", ""]
    if not leak:
        lines.append("Not checked (data.split.leakage: off).")
    elif leak["rows"]:
        lines.append(
            f"**{leak['values_in_several_splits']}** {leak['compared']} values are in more than "
            f"one split ({leak['rows']} rows; pairs {leak['pairs']}). Examples: "
            f"{leak['examples']}"
        )
    else:
        lines.append(f"No {leak['compared']} value is in two splits.")
    lines += ["", "## Anomalies", "", f"Reference: {summary.get('reference_profile') or 'none'}."]
    lines += [""]
    if summary.get("anomalies"):
        lines += [
            f"- **{a['action']}** `{a['rule']}`: {a['message']}" for a in summary["anomalies"]
        ]
    else:
        lines.append("No finding.")
    from mlsd_ray.data.missing import report_lines

    lines += ["", *report_lines(summary.get("missing_by_column") or {})]
    lines += ["", "## Columns", "", *_table(profile), "", "## Histograms", ""]
    for i, (name, stats) in enumerate(profile["columns"].items()):
        if i >= MAX_PLOTS:
            lines.append(f"({len(profile['columns']) - MAX_PLOTS} more columns not drawn.)")
            break
        png = plots.plot_column(name, stats, out_dir / f"hist_{i:03d}_{_safe(name)}.png")
        if png is not None:
            lines.append(f"![{name}]({png.name})")
    path = out_dir / REPORT
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log.info("data report: %s", path)
    return path
