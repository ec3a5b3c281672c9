"""Batch evaluation throughput: Ray Data batch inference against one process, in one run.

    python bench/evaluate.py [--rows 1000000] [--files 8] [--batch-size 4096] [--json OUT]

Data: the real Online Shoppers rows (``../shared/datasets/ad_click/online_shoppers_dev.csv``),
resampled with replacement (seed 0) to ``--rows`` and written as ``--files`` Parquet files, so
that both sides read the same bytes. Model: the card's tabular logistic regression
(``systems/event_registration.yaml``), trained once on the original rows and saved as a model
package.

Both sides score every row with the same ``Predictor`` class and then compute the test metrics
(``classification_metrics``) on all of them:

* Ray Data: ``read_parquet`` -> ``map_batches(Predictor, fn_constructor_args=(package,),
  concurrency=N)`` (the callable class: the model is loaded once per actor) -> the label and
  probability columns back in the driver;
* single process: ``pyarrow`` reads each file, the same ``Predictor.__call__`` runs on slices
  of ``--batch-size`` rows in a plain loop.

Ray starts before timing (its start-up is reported apart). rows/s = rows / wall seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlsd_ray.metrics import classification_metrics  # noqa: E402
from mlsd_ray.models.package import InputSchema, ModelManifest, save_package  # noqa: E402
from mlsd_ray.models.simple import TabularLogReg  # noqa: E402
from mlsd_ray.predict import PROBABILITY, Predictor  # noqa: E402
from mlsd_ray.spec import DesignCard, load_card  # noqa: E402
from mlsd_ray.train.stage import simple_params  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets" / "ad_click" / "online_shoppers_dev.csv"
CARD = ROOT / "systems" / "event_registration.yaml"


def load_rows(card: DesignCard) -> pd.DataFrame:
    frame = pd.read_csv(DATA)
    frame["label"] = frame["Revenue"].astype(str).map(card.framing.label.mapping).astype(np.int64)
    for f in card.framing.inputs:
        if f.type == "category":
            frame[f.name] = frame[f.name].astype(str).str.strip()
        else:
            frame[f.name] = frame[f.name].astype(np.float64)
    return frame[[*card.feature_names, "label"]]


def build_package(card: DesignCard, rows: pd.DataFrame, where: Path) -> Path:
    spec = card.models.candidates[0]
    params = simple_params(spec, card)
    model = TabularLogReg(card.feature_names, **params).fit(
        rows[card.feature_names], rows["label"].to_numpy()
    )
    manifest = ModelManifest(
        name=spec.name,
        kind=spec.kind,
        category="binary",
        inputs=[InputSchema(name=f.name, type=f.type) for f in card.framing.inputs],
        classes=card.framing.label.classes,
        params=params,
    )
    return save_package(model, where / "model", manifest)


def write_data(rows: pd.DataFrame, n: int, files: int, where: Path) -> Path:
    big = rows.sample(n, replace=True, random_state=0).reset_index(drop=True)
    out = where / "data"
    out.mkdir()
    for i, part in enumerate(np.array_split(np.arange(n), files)):
        pq.write_table(
            pa_table(big.iloc[part]), out / f"part-{i:03d}.parquet", row_group_size=50_000
        )
    return out


def pa_table(frame: pd.DataFrame) -> Any:
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


def run_ray(data: Path, package: Path, batch_size: int, concurrency: int) -> dict[str, Any]:
    import ray

    t0 = time.perf_counter()
    # Logical CPUs: the Predictor actors must leave a CPU for listing and reading, or a 2-CPU
    # cluster deadlocks with both CPUs held by actors waiting for blocks nobody can read.
    ds = ray.data.read_parquet(str(data), ray_remote_args={"num_cpus": 0.25})
    scored = ds.map_batches(
        Predictor,
        fn_constructor_args=(str(package),),
        batch_format="pandas",
        batch_size=batch_size,
        concurrency=concurrency,
        num_cpus=0.5,
    )
    frame = scored.select_columns(["label", PROBABILITY]).to_pandas()
    scored_s = time.perf_counter() - t0
    metrics = classification_metrics(frame["label"].to_numpy(), frame[PROBABILITY].to_numpy())
    return {"seconds": time.perf_counter() - t0, "scoring_s": scored_s, "metrics": metrics}


def run_single(data: Path, package: Path, batch_size: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    predictor = Predictor(package)
    labels, probs = [], []
    for file in sorted(data.glob("*.parquet")):
        frame = pq.read_table(file).to_pandas()
        for start in range(0, len(frame), batch_size):
            out = predictor(frame.iloc[start : start + batch_size])
            labels.append(out["label"].to_numpy())
            probs.append(out[PROBABILITY].to_numpy())
    scored_s = time.perf_counter() - t0
    metrics = classification_metrics(np.concatenate(labels), np.concatenate(probs))
    return {"seconds": time.perf_counter() - t0, "scoring_s": scored_s, "metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--concurrency", type=int, default=2, help="Ray Data Predictor actors")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not DATA.is_file():
        sys.exit(f"data not found: {DATA}")
    import ray

    card = load_card(CARD)
    tmp = Path(tempfile.mkdtemp(prefix="mlsd-bench-eval-"))
    try:
        rows = load_rows(card)
        package = build_package(card, rows, tmp)
        data = write_data(rows, args.rows, args.files, tmp)
        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        ray_start_s = time.perf_counter() - t0
        load_before = os.getloadavg()
        print(f"data ready ({args.rows} rows); single process...", file=sys.stderr)
        single = run_single(data, package, args.batch_size)
        print(f"single: {single['seconds']:.1f} s; Ray Data...", file=sys.stderr)
        ray_side = run_ray(data, package, args.batch_size, args.concurrency)
        load_after = os.getloadavg()
        same = abs(single["metrics"]["roc_auc"] - ray_side["metrics"]["roc_auc"]) < 1e-9
        result = {
            "rows": args.rows,
            "files": args.files,
            "batch_size": args.batch_size,
            "concurrency": args.concurrency,
            "model": "logreg (systems/event_registration.yaml)",
            "ray_start_s": round(ray_start_s, 2),
            "single": {
                "seconds": round(single["seconds"], 2),
                "rows_per_s": round(args.rows / single["seconds"]),
            },
            "ray_data": {
                "seconds": round(ray_side["seconds"], 2),
                "rows_per_s": round(args.rows / ray_side["seconds"]),
            },
            "speedup": round(single["seconds"] / ray_side["seconds"], 2),
            "same_metrics": same,
            "roc_auc": round(single["metrics"]["roc_auc"], 4),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "ray": ray.__version__,
        }
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
