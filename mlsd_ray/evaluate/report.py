"""The evaluation report in Markdown: metrics side by side, the gate's rules, the plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlsd_ray.evaluate.model_card import behaviour_lines, inference_lines, slice_lines

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
    if report.get("calibration"):
        from mlsd_ray.evaluate.calibration import report_lines

        lines += report_lines(report["calibration"])
    if report.get("external"):
        from mlsd_ray.evaluate import external_sets

        lines += external_sets.report_lines(report["external"], report["gate"]["config"]["metric"])
    if report.get("blends"):
        from mlsd_ray.evaluate.blends import report_lines as blend_lines

        lines += blend_lines(report["blends"])
    if report.get("inference"):
        lines += ["", "## Serving path (deployment.inference)", ""]
        for name, choice in report["inference"].items():
            lines += [f"### {name}", "", *inference_lines(choice), ""]
    if report.get("analysis"):
        lines += analysis_sections(report)
    if report.get("promotion"):
        lines += ["", "## Registry", "", report["promotion"]["summary"]]
    lines += ["", "## Plots", ""]
    lines += [f"![{Path(p).stem}]({Path(p).name})" for p in report["plots"]]
    path.write_text("\n".join(lines) + "\n")
    return path


def analysis_sections(report: dict[str, Any]) -> list[str]:
    """Intervals, thresholds, latency, the paired comparison, slices and behavioural tests."""
    analysis = report["analysis"]
    lines = ["", "## Uncertainty, thresholds and latency", ""]
    lines += [
        "| model | threshold | roc_auc 95% CI | f1 CI | recall CI | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]

    def ci(a: dict[str, Any], m: str) -> str:
        v = a["intervals"].get(m)
        return f"[{v[0]:.3f}, {v[1]:.3f}]" if v else "n/a"

    rows = dict(analysis)
    if report.get("champion_analysis"):
        rows[f"champion v{report['champion']['version']}"] = report["champion_analysis"]
    for name, a in rows.items():
        lat = a["latency"]
        lines.append(
            f"| {name} | {a['threshold']:.3f} | {ci(a, 'roc_auc')} | {ci(a, 'f1')} | "
            f"{ci(a, 'recall')} | {lat['p50_ms']:.2f} | {lat['p99_ms']:.2f} |"
        )
    for m, c in (report.get("comparisons") or {}).items():
        if c["interval"]:
            unit = "relative " if c["relative"] else ""
            lines.append(
                f"\nPaired bootstrap, {report['candidate']} - champion, {unit}{m}: "
                f"{c['mean']:+.4f} [{c['interval'][0]:+.4f}, {c['interval'][1]:+.4f}]"
            )
    cand = analysis[report["candidate"]]
    lines += ["", f"## Slices ({report['candidate']})", "", *slice_lines(cand["slices"])]
    if cand.get("behaviour"):
        lines += ["", f"## Behavioural tests ({report['candidate']})", ""]
        lines += behaviour_lines(cand["behaviour"])
    if report.get("model_card"):
        lines += [
            "",
            f"Model card: [{Path(report['model_card']).name}]({Path(report['model_card']).name})",
        ]
    return lines
