"""The tabular model ladder, measured: ROC-AUC and PR-AUC of every rung on each card's
validation split, after one ETL + training run per card.

    python bench/ladder.py [--cards event_registration,ad_click_ctr] [--workdir DIR] [--json OUT]

Each card runs the pipeline's own stages (``etl`` then ``train``: GBDTs through Ray Train,
ensembles as Ray tasks) in a fresh workdir, and the figures are the validation metrics that
training records in every model's manifest, the same numbers the evaluation stage ranks.
Validation PR-AUC should be read against the positive rate (the PR-AUC of a random ranking),
printed with it. The harmful_content text card's rungs are measured elsewhere (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlsd_ray import pipeline  # noqa: E402
from mlsd_ray.models.package import read_manifest  # noqa: E402
from mlsd_ray.runtime import ensure_ray  # noqa: E402
from mlsd_ray.settings import Workdir  # noqa: E402
from mlsd_ray.spec import load_card  # noqa: E402


def run_card(name: str, root: Path) -> dict[str, Any]:
    card = load_card(REPO / "systems" / f"{name}.yaml")
    workdir = Workdir(root / name)
    started = time.perf_counter()
    etl = pipeline.etl(card, workdir)
    etl_s = time.perf_counter() - started
    started = time.perf_counter()
    summary = pipeline.train(card, workdir)
    train_s = time.perf_counter() - started
    rows = summary["rows"]
    rungs = []
    for model, entry in summary["models"].items():
        meta = read_manifest(entry["dir"]).metadata
        val = meta.get("validation", {})
        rungs.append(
            {
                "model": model,
                "kind": entry["kind"],
                "roc_auc": val.get("roc_auc"),
                "pr_auc": val.get("pr_auc"),
                "train_s": entry["train_seconds"],
            }
        )
    positives = None
    for rung in rungs:  # the majority baseline's PR-AUC is the validation positive rate
        if rung["kind"] == "majority":
            positives = rung["pr_auc"]
    return {
        "card": name,
        "rows": rows,
        "validation_positive_rate": positives,
        "etl_s": round(etl_s, 1),
        "train_s": round(train_s, 1),
        "etl_rows": {k: v for k, v in etl.items() if k in ("rows", "splits", "counts")},
        "rungs": rungs,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cards", default="event_registration,ad_click_ctr")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench_ladder_"))
    ensure_ray(num_cpus=2)
    results = [run_card(name, root) for name in args.cards.split(",")]
    for r in results:
        print(
            f"\n{r['card']}: {r['rows']['train']} train / {r['rows']['validation']} validation "
            f"rows, validation positive rate {fmt(r['validation_positive_rate'])}; "
            f"ETL {r['etl_s']} s, training {r['train_s']} s; loadavg {r['loadavg']}"
        )
        print("| rung | kind | val ROC-AUC | val PR-AUC | fit s |\n|---|---|---|---|---|")
        for g in sorted(r["rungs"], key=lambda g: -(g["roc_auc"] or 0)):
            print(
                f"| {g['model']} | {g['kind']} | {fmt(g['roc_auc'])} | {fmt(g['pr_auc'])} | "
                f"{g['train_s']:.1f} |"
            )
    if args.json:
        meta = {"machine": platform.platform(), "cpus": os.cpu_count()}
        args.json.write_text(json.dumps({"meta": meta, "cards": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
