"""Out-of-domain evaluation sets (``evaluation.external``), scored beside the test split.

Each set is read like a card source (its own ``rename`` and, when its labels are spelled
differently, its own ``label_mapping``), verified (bad rows are left out and counted), and
scored by every trained model and the champion with the same ``Predictor`` path as the test
split, at each model's own threshold. A set with ``max_regression`` adds a gate rule: the
candidate's gate metric there may trail the champion's by at most that much.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from mlsd_ray.errors import DataError
from mlsd_ray.metrics import classification_metrics
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, ExternalSet, Source
from mlsd_ray.tasks.bootstrap import confidence_intervals

log = logging.getLogger(__name__)


def read_external(card: DesignCard, ext: ExternalSet, workdir: Workdir) -> tuple[Any, int]:
    """(the set's verified rows as a materialized Ray Dataset, rows read)."""
    from mlsd_ray.data.sources import read_source
    from mlsd_ray.data.verify import good_rows

    if ext.label_mapping:
        card = card.model_copy(deep=True)
        card.framing.label.mapping = dict(ext.label_mapping)
    source = Source(uri=ext.uri, format=ext.format, rename=ext.rename)
    raw = read_source(source, card, workdir.root / "staging" / f"external_{ext.name}")
    good = raw.map_batches(partial(good_rows, card=card), batch_format="pandas").materialize()
    rows_in, rows_ok = raw.count(), good.count()
    if rows_ok == 0:
        raise DataError(
            f"evaluation.external {ext.name!r}: no usable row in {ext.uri!r} ({rows_in} read).",
            fix="give the set the card's input and label columns (rename) and its label spelling "
            "(label_mapping)",
        )
    return good, rows_in


def score_external(
    card: DesignCard,
    workdir: Workdir,
    models: dict[str, tuple[Path, str | None, float]],
    score: Callable[..., tuple[Any, Any]],
) -> dict[str, dict[str, Any]]:
    """set name -> {rows_in, rows_ok, models: {name: metrics with ``intervals``}} for
    ``models``: name -> (package folder, registry version or None, threshold). ``score`` is
    the evaluation stage's (dataset, package, version, inference) -> (labels, scores)."""
    out: dict[str, dict[str, Any]] = {}
    for ext in card.evaluation.external:
        ds, rows_in = read_external(card, ext, workdir)
        scored: dict[str, Any] = {}
        for name, (folder, version, threshold) in models.items():
            y, p = score(ds, folder, version, card.deployment.inference)
            metrics = classification_metrics(y, p, threshold)
            metrics["intervals"] = confidence_intervals(
                y, p, threshold, card.evaluation.bootstrap.n_resamples
            )
            scored[name] = metrics
        out[ext.name] = {"uri": ext.uri, "rows_in": rows_in, "rows_ok": len(y), "models": scored}
        log.info("external set %s: %s", ext.name, {n: m["roc_auc"] for n, m in scored.items()})
    return out


def gate_rules(
    card: DesignCard, external: dict[str, dict[str, Any]], candidate: str, champion: str | None
) -> list[dict[str, Any]]:
    """One gate rule per set with ``max_regression``, when there is a champion to compare."""
    metric = card.evaluation.gate.metric
    rules = []
    for ext in card.evaluation.external:
        if ext.max_regression is None or champion is None:
            continue
        scored = external[ext.name]["models"]
        ours, theirs = scored[candidate].get(metric), scored[champion].get(metric)
        ok = ours is not None and theirs is not None and ours >= theirs - ext.max_regression
        rules.append(
            {
                "rule": f"external:{ext.name}",
                "passed": bool(ok),
                "detail": f"{metric} on {ext.name}: candidate {ours} vs {champion} {theirs} "
                f"(may trail by at most {ext.max_regression})",
            }
        )
    return rules


def report_lines(external: dict[str, dict[str, Any]], metric: str) -> list[str]:
    lines = []
    for name, result in external.items():
        lines += [
            "",
            f"## External set: {name}",
            "",
            f"`{result['uri']}`: {result['rows_ok']} usable of {result['rows_in']} rows.",
            "",
            f"| model | {metric} | 95 % interval | pr_auc | recall | precision |",
            "|---|---|---|---|---|---|",
        ]
        for model, m in result["models"].items():
            ci = m["intervals"].get(metric) if m.get("intervals") else None
            interval = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
            value = m.get(metric)
            lines.append(
                f"| {model} | {'' if value is None else f'{value:.4f}'} | {interval} | "
                f"{m['pr_auc'] or 0:.4f} | {m['recall']:.4f} | {m['precision']:.4f} |"
            )
    return lines
