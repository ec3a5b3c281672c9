"""The model card: one Markdown page per evaluated candidate, logged to MLflow with its
version. It says what the model is for, what it was trained and tested on, how it was
configured, how well it does (with intervals), where it fails (slices, behavioural tests), how
fast it answers, and shows the curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlsd_ray.models.kinds import KINDS
from mlsd_ray.models.package import read_manifest
from mlsd_ray.spec import DesignCard
from mlsd_ray.tasks.bootstrap import HEADLINE


def _f(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def metric_lines(
    metrics: dict[str, Any], intervals: dict[str, Any], confidence: float
) -> list[str]:
    pct = round(confidence * 100)
    lines = [f"| metric | value | {pct}% bootstrap CI |", "|---|---|---|"]
    for m in (*HEADLINE, "log_loss", "ece"):
        if m not in metrics:
            continue
        ci = intervals.get(m)
        shown = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "n/a"
        lines.append(f"| {m} | {_f(metrics[m])} | {shown} |")
    return lines


def slice_lines(slices: list[dict[str, Any]]) -> list[str]:
    if not slices:
        return ["No slices declared (`evaluation.slices`)."]
    lines = [
        "| slice | rows | metric | value | minimum | flag |",
        "|---|---|---|---|---|---|",
    ]
    for s in slices:
        flag = "**UNDER**" if s["flagged"] else ("too few rows" if s["too_small"] else "ok")
        lines.append(
            f"| {s['slice']} | {s['rows']} | {s['metric']} | {_f(s['value'])} | "
            f"{_f(s['min_value'])} | {flag} |"
        )
    return lines


def behaviour_lines(results: list[dict[str, Any]]) -> list[str]:
    if not results:
        return ["No behavioural tests (`evaluation.behaviour`)."]
    lines = ["| test | type | cases | pass rate | needs | result |", "|---|---|---|---|---|---|"]
    for t in results:
        lines.append(
            f"| {t['name']} | {t['type']} | {t['cases']} | {t['pass_rate']:.2f} | "
            f"{t['min_pass_rate']:.2f} | {'pass' if t['passed'] else '**FAIL**'} |"
        )
    for t in results:
        for f in t["failures"][:2]:
            after = f" -> {f['perturbed']:.3f}" if "perturbed" in f else ""
            lines.append(f"\n- `{t['name']}` failed on {f['text']!r}: {f['score']:.3f}{after}")
    return lines


def _config(spec: Any) -> dict[str, Any]:
    """The card's model spec; the Ray Train settings only for the kinds trained with them."""
    config: dict[str, Any] = spec.model_dump(mode="json")
    if not KINDS[spec.kind].trainer_options:
        config.pop("trainer", None)
    return config


def inference_lines(choice: dict[str, Any] | None) -> list[str]:
    """The CPU path served (``deployment.inference``) and, under ``auto``, every path measured
    on validation: metric, change against fp32, rows/s."""
    if not choice:
        return []
    lines = [f"- **Serving path**: `{choice['path']}` ({choice['reason']})"]
    paths = choice.get("paths") or {}
    if paths:
        metric = choice.get("metric", "metric")
        lines += [
            "",
            f"| path | {metric} (validation) | change vs fp32 | rows/s |",
            "|---|---|---|---|",
        ]
        for path, m in paths.items():
            if m.get("available"):
                row = f"| {path} | {_f(m['metric'])} | {m['change']:+.4f} | {m['rows_per_s']:g} |"
            else:
                row = f"| {path} | unavailable: {m.get('note', '')} | | |"
            lines.append(row)
    return lines


def write_model_card(
    card: DesignCard,
    report: dict[str, Any],
    name: str,
    model_dir: Path,
    path: Path,
    version: str | None = None,
) -> Path:
    manifest = read_manifest(model_dir)
    meta = manifest.metadata
    ext = report["analysis"][name]
    specs = {s.name: s for s in [card.models.baseline, *card.models.candidates]}
    spec = specs.get(name)
    choice = meta.get("threshold_choice", {"rule": "fixed", "threshold": manifest.threshold})
    lat = ext["latency"]
    title = f"# Model card: {card.name} / {name}" + (f" (registry v{version})" if version else "")
    lines = [
        title,
        "",
        f"- **Purpose**: {card.requirements.business_objective}",
        f"- **Task**: {card.framing.ml_objective} Classes: {manifest.classes}.",
        f"- **Model**: kind `{manifest.kind}`, params `{manifest.params}`",
        "- **Training configuration**: " + (f"`{_config(spec)}`" if spec else "n/a"),
        f"- **Trained on**: dataset version `{meta.get('dataset_version')}`, "
        f"`{meta.get('train_uri')}` ({meta.get('rows', {}).get('train')} rows), validated on "
        f"`{meta.get('validation_uri')}` ({meta.get('rows', {}).get('validation')} rows), "
        f"{meta.get('train_seconds')} s, at {meta.get('trained_at')}",
        f"- **Tested on**: `{report['data']}` ({report['metrics'][name]['n']} rows), dataset "
        f"version `{report.get('dataset_version')}`",
        f"- **Decision threshold**: {choice['threshold']:.4f} (rule `{choice['rule']}`"
        + (
            f", on validation: {', '.join(f'{k} {v:.3f}' for k, v in choice['achieved'].items())}"
            if choice.get("achieved")
            else ""
        )
        + (", constraint NOT met" if not choice.get("met", True) else "")
        + ")",
        f"- **Latency** (single replica, one-row requests, {lat['requests']} calls): "
        f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms; budget "
        f"{card.requirements.latency_p99_ms:g} ms (priority: {card.requirements.priority})",
        *inference_lines(report.get("inference", {}).get(name)),
        "",
        "## Test metrics",
        "",
        *metric_lines(
            report["metrics"][name], ext["intervals"], card.evaluation.bootstrap.confidence
        ),
        "",
        "## Slices",
        "",
        *slice_lines(ext["slices"]),
        "",
        "## Behavioural tests",
        "",
        *behaviour_lines(ext.get("behaviour", [])),
        "",
        "## Plots",
        "",
    ]
    for plot in report.get("model_plots", {}).get(name, []) + report.get("shared_plots", []):
        lines.append(f"![{Path(plot).stem}]({Path(plot).name})")
    path.write_text("\n".join(lines) + "\n")
    return path
