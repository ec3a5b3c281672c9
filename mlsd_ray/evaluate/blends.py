"""Does a blend beat its best member? For each model of kind ``blend`` (a cross-family ensemble,
`mlsd_ray.models.blend`), the difference in the headline metric between it and its best member
on the evaluated split, with a paired bootstrap interval (the same resamples of the same rows).
"Beats" means the whole interval lies above zero."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlsd_ray.models.kinds import get_kind
from mlsd_ray.spec import DesignCard
from mlsd_ray.tasks.bootstrap import paired_difference


def blend_comparisons(
    card: DesignCard,
    scored: dict[str, tuple[np.ndarray, np.ndarray]],
    thresholds: dict[str, float],
    metric: str = "roc_auc",
    n_resamples: int = 1000,
) -> dict[str, dict[str, Any]]:
    """blend name -> {best_member, blend and member metric, difference, interval, beats}.
    ``scored``: model name -> (labels, scores) of the same rows."""
    out: dict[str, dict[str, Any]] = {}
    for spec in card.models.candidates:
        members = [m for m in spec.params.get("members", []) if m in scored]
        if not get_kind(spec.kind).combines or spec.name not in scored or not members:
            continue
        y, p_blend = scored[spec.name]
        point = {m: _metric(y, scored[m][1], metric) for m in members}
        best = max(point, key=lambda m: point[m])
        diff = paired_difference(
            y,
            p_blend,
            scored[best][1],
            thresholds.get(spec.name, 0.5),
            thresholds.get(best, 0.5),
            metric,
            n_resamples=n_resamples,
        )
        interval = diff["interval"]
        out[spec.name] = {
            "metric": metric,
            "best_member": best,
            "blend": _metric(y, p_blend, metric),
            "best_member_value": point[best],
            "difference": diff["mean"],
            "interval": interval,
            "beats_best_member": bool(interval and interval[0] > 0),
        }
    return out


def _metric(y: np.ndarray, p: np.ndarray, metric: str) -> float:
    from mlsd_ray.metrics import classification_metrics

    return float(classification_metrics(y, p)[metric])


def report_lines(blends: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["", "## Blends against their best member", ""]
    lines += ["| blend | best member | blend | member | difference [95 % CI] | beats |"]
    lines += ["|---|---|---|---|---|---|"]
    for name, b in blends.items():
        ci = "-" if not b["interval"] else f"[{b['interval'][0]:+.4f}, {b['interval'][1]:+.4f}]"
        lines.append(
            f"| {name} | {b['best_member']} | {b['blend']:.4f} | {b['best_member_value']:.4f} | "
            f"{_signed(b['difference'])} {ci} | {'yes' if b['beats_best_member'] else 'no'} |"
        )
    return lines


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"
