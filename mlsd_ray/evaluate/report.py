"""The evaluation report in Markdown: metrics side by side, the gate's rules, the plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLUMNS = ["roc_auc", "pr_auc", "f1", "precision", "recall", "accuracy"]
REGRESSION_COLUMNS = ["rmse", "mae", "mse", "r2"]


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _ranked(scores: dict[str, float], metric: str = "") -> list[tuple[str, float]]:
    """Best first (JSON round trips may sort the keys alphabetically)."""
    from mlsd_ray.spec import LOWER_IS_BETTER

    sign = 1 if metric in LOWER_IS_BETTER else -1
    return sorted(scores.items(), key=lambda kv: sign * kv[1])


def write_markdown(report: dict[str, Any], path: Path) -> Path:
    lines = [
        f"# Evaluation: {report['card']}",
        "",
        f"Data: `{report['data']}`. Candidate put forward: **{report['candidate']}** "
        f"(best {report['gate']['config']['metric']} on validation: "
        + ", ".join(
            f"{k} {v:.4f}"
            for k, v in _ranked(
                report.get("validation_leaderboard", {}), report["gate"]["config"]["metric"]
            )
        )
        + f"); baseline: {report['baseline']}.",
        "",
        "Test split:",
        "",
        "| model | n | " + " | ".join(COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    rows = dict(report["metrics"])
    columns = COLUMNS
    if any("rmse" in m for m in rows.values()):  # a regression report
        columns = REGRESSION_COLUMNS
        lines[-2:] = ["| model | n | " + " | ".join(columns) + " |", "|---|---|" + "---|" * 4]
    if report.get("champion"):
        rows[f"champion v{report['champion']['version']}"] = report["champion"]["metrics"]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['n']} | " + " | ".join(_fmt(m.get(c)) for c in columns) + " |")
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
