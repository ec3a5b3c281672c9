"""GBDT training throughput: Ray Train (XGBoostTrainer / LightGBMTrainer) against the native
libraries on the same data and the same threads, in one run.

    python bench/gbdt.py [--rows 200000] [--rounds 30] [--threads 2] [--json OUT]

Data: the real Online Shoppers rows (``../shared/datasets/ad_click/online_shoppers_dev.csv``),
resampled with replacement (seed 0) to ``--rows``, preprocessed once with the card's tabular
preprocessor (10 numerics, 7 one-hot categoricals). Every side boosts ``--rounds`` trees of
depth 6 (binary logistic, ``scale_pos_weight`` balanced, no early stopping) with ``--threads``
threads:

* native: ``xgboost.train`` / ``lightgbm.train`` in this process on the transformed matrix,
  once before and once after the Ray Train run, the faster kept (the machine is shared);
* Ray Train: `mlsd_ray.train.gbdt.train_gbdt` with one worker of ``--threads`` CPUs; ``wall_s``
  is the whole call (preprocessing, Ray Data, worker start-up, checkpoint), ``boost_s`` the
  boosting inside the worker. No validation set, so no per-round report to the controller.

rows/s = train rows / seconds. Ray starts before the first measurement (its start-up is left out).
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

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlsd_ray.features import TabularPreprocessor  # noqa: E402
from mlsd_ray.models.gbdt import check_params, lgb_params, pos_weight, xgb_params  # noqa: E402
from mlsd_ray.spec import load_card  # noqa: E402
from mlsd_ray.train.ladder import ladder_params  # noqa: E402

DATA = REPO.parent / "shared" / "datasets" / "ad_click" / "online_shoppers_dev.csv"
CARD = REPO / "systems" / "event_registration.yaml"


def load(rows: int) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    card = load_card(CARD)
    raw = pd.read_csv(DATA)
    frame = pd.DataFrame()
    for field in card.framing.inputs:
        col = raw[field.name]
        frame[field.name] = col.astype("float64") if field.type == "float" else col.astype(str)
    frame["label"] = raw["Revenue"].astype(str).str.lower().isin(["1", "true"]).astype("int64")
    frame = frame.sample(rows, replace=True, random_state=0).reset_index(drop=True)
    spec = next(s for s in card.models.candidates if s.kind == "xgboost")
    params = {k: v for k, v in ladder_params(spec, card).items() if k in ("numeric", "categorical")}
    return frame, card.feature_names, params


def native(kind: str, Xt: np.ndarray, y: np.ndarray, settings: dict[str, Any]) -> float:
    """Boosting seconds, timed as the Ray Train worker times them: from after the DMatrix is
    built (xgboost) / from the lazy lgb.Dataset (LightGBM, whose binning happens in train)."""
    spw = pos_weight(settings, y)
    if kind == "xgboost":
        import xgboost as xgb

        dtrain = xgb.DMatrix(Xt, label=y)
        started = time.perf_counter()
        xgb.train(xgb_params(settings, 2, spw), dtrain, settings["rounds"])
    else:
        started = time.perf_counter()
        import lightgbm as lgb

        lgb.train(lgb_params(settings, 2, spw), lgb.Dataset(Xt, label=y), settings["rounds"])
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

    import ray

    from mlsd_ray.train.gbdt import train_gbdt

    frame, inputs, columns = load(args.rows)
    params = {
        **columns,
        "n_estimators": args.rounds,
        "max_depth": 6,
        "learning_rate": 0.1,
        "n_threads": args.threads,
        "early_stopping_rounds": 0,
    }
    settings = check_params(params)
    started = time.perf_counter()
    pre = TabularPreprocessor.from_params(params).fit(frame[inputs])
    Xt = pre.transform(frame[inputs]).astype(np.float32)
    prep_s = time.perf_counter() - started
    y = frame["label"].to_numpy()

    t0 = time.perf_counter()
    ray.init(num_cpus=max(args.threads, 2), include_dashboard=False, log_to_driver=False)
    ray_start_s = time.perf_counter() - t0
    results: list[dict[str, Any]] = []
    storage = tempfile.mkdtemp(prefix="bench_gbdt_")
    for kind in ("xgboost", "lightgbm"):
        # Native before and after Ray Train, the faster kept: other helpers' load comes and goes.
        native_s = native(kind, Xt, y, settings)
        t = time.perf_counter()
        model = train_gbdt(
            kind,
            inputs,
            params,
            frame,
            None,
            num_workers=1,
            cpus_per_worker=args.threads,
            name=f"bench-{kind}",
            storage_path=storage,
        )
        wall_s = time.perf_counter() - t
        native_after_s = native(kind, Xt, y, settings)
        native_s = min(native_s, native_after_s)
        boost_s = float(model.train_metrics_["boost_s"])
        row = {
            "library": kind,
            "rows": args.rows,
            "rounds": args.rounds,
            "threads": args.threads,
            "native_s": round(native_s, 2),
            "native_rows_per_s": round(args.rows / native_s),
            "ray_boost_s": round(boost_s, 2),
            "ray_boost_rows_per_s": round(args.rows / boost_s),
            "ray_wall_s": round(wall_s, 2),
            "ray_wall_rows_per_s": round(args.rows / wall_s),
            "boost_ratio_ray_over_native": round(boost_s / native_s, 2),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    ray.shutdown()

    print(f"\nrows {args.rows}, rounds {args.rounds}, threads {args.threads}; preprocessing "
          f"{prep_s:.1f} s, ray.init {ray_start_s:.1f} s; loadavg {os.getloadavg()}")  # fmt: skip
    print("| library | native rows/s (s) | Ray Train boosting rows/s (s) | Ray Train whole call "
          "rows/s (s) | boosting Ray/native |")  # fmt: skip
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['library']} | {r['native_rows_per_s']:,} ({r['native_s']}) | "
            f"{r['ray_boost_rows_per_s']:,} ({r['ray_boost_s']}) | "
            f"{r['ray_wall_rows_per_s']:,} ({r['ray_wall_s']}) | "
            f"{r['boost_ratio_ray_over_native']} |"
        )
    if args.json:
        meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "prep_s": prep_s}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
