"""The evaluation report in Markdown: metrics side by side, the gate's rules, the plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLUMNS = ["roc_auc", "pr_auc", "f1", "precision", "recall", "accuracy"]


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _ranked(scores: dict[str, float]) -> list[tuple[str, float]]:
    """Best first (JSON round trips may sort the keys alphabetically)."""
    return sorted(scores.items(), key=lambda kv: -kv[1])


def write_markdown(report: dict[str, Any], path: Path) -> Path:
    lines = [
        f"# Evaluation: {report['card']}",
        "",
        f"Data: `{report['data']}`. Candidate put forward: **{report['candidate']}** "
        f"(best {report['gate']['config']['metric']} on validation: "
        + ", ".join(f"{k} {v:.4f}" for k, v in _ranked(report.get("validation_leaderboard", {})))
        + f"); baseline: {report['baseline']}.",
        "",
        "Test split:",
        "",
        "| model | n | " + " | ".join(COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    rows = dict(report["metrics"])
    if report.get("champion"):
        rows[f"champion v{report['champion']['version']}"] = report["champion"]["metrics"]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['n']} | " + " | ".join(_fmt(m[c]) for c in COLUMNS) + " |")
    gate = report["gate"]
    verdict = "PASSED" if gate["passed"] else "FAILED"
    lines += ["", f"## Promotion gate: {verdict}", ""]
    lines += [
        f"- {'pass' if r['passed'] else 'FAIL'} `{r['rule']}`: {r['detail']}" for r in gate["rules"]
    ]
    if report.get("promotion"):
        lines += ["", "## Registry", "", report["promotion"]["summary"]]
    lines += ["", "## Plots", ""]
    lines += [f"![{Path(p).stem}]({Path(p).name})" for p in report["plots"]]
    path.write_text("\n".join(lines) + "\n")
    return path
