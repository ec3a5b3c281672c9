"""Recommendation benchmark on MovieLens-100k (read in place from the installed RecBole).

    PYTHONPATH=$PWD .venv/bin/python bench/recsys.py --json /tmp/recsys.json [--driver] [--speed]

Quality (does not depend on load): a global time split 80/10/10 by timestamp; every system
recommends 100 unseen items to each user of the test window (the latest 10 % of the
interactions) and is scored on what the user watched there: NDCG@10, MAP@10, recall@100 with
95 % bootstrap intervals over users, coverage, popularity bias and activity slices.
Systems: ``popular``, ``recent_popular``, ``mf`` (PureSVD), ``item2item``, ``two_tower`` (Ray
Train, FAISS), ``two_stage`` (two-tower + recently-popular candidates, LightGBM lambdarank).
The two-tower model trains through Ray Train on a local Ray unless ``--driver``.

Speed (``--speed``; only meaningful on a quiet machine): the serving graph's p50/p99 at 1 and 8
clients and the Redis feature fetch p99 (``mlsd_ray.recsys.speed``).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("bench.recsys")
HEADLINE = ("ndcg@10", "map@10", "recall@100")


#: Two-stage settings compared on the validation window (``two_stage.select_config``); the test
#: window scores only the winner. Each entry changes the defaults of ``TwoStageConfig``.
VARIANTS: dict[str, dict[str, Any]] = {
    "scores_only": {"pair_features": False},
    "pair_features": {},
    "pair_features+i2i_50": {"retrieve": {"two_tower": 100, "recent_popular": 50, "item2item": 50}},
    "pair_features+recent_100": {"retrieve": {"two_tower": 100, "recent_popular": 100}},
    "pair_features+recent_100+2_windows": {
        "retrieve": {"two_tower": 100, "recent_popular": 100},
        "label_windows": 2,
    },
    "pair_features+recent_100+3_windows": {
        "retrieve": {"two_tower": 100, "recent_popular": 100},
        "label_windows": 3,
    },
    "pair_features+recent_100+3_windows+15_leaves": {
        "retrieve": {"two_tower": 100, "recent_popular": 100},
        "label_windows": 3,
        "ranker": {"num_leaves": 15, "rounds": 300, "min_data_in_leaf": 50},
    },
}


def quality(driver: bool, n_resamples: int, select: bool) -> tuple[dict[str, Any], Any]:
    """Every system's figures on the test window, and the two-stage settings used."""
    from dataclasses import replace

    from mlsd_ray.recsys.data import load_movielens, time_split
    from mlsd_ray.recsys.two_stage import TwoStageConfig, evaluate_systems, select_config

    data = load_movielens()
    train, val, test = time_split(data.interactions)
    cfg = TwoStageConfig(two_tower={"num_workers": 0 if driver else 1})
    if not driver:
        from mlsd_ray.runtime import ensure_ray

        ensure_ray(num_cpus=2)
    selection: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-recsys-") as tmp:
        if select:
            chosen, scores = select_config(train, val, data, cfg, VARIANTS, tmp)
            cfg = replace(cfg, **VARIANTS[chosen])
            selection = {"chosen": chosen, "validation_ndcg@10": scores}
        reports = evaluate_systems(train, val, test, data, cfg, tmp, n_resamples)
    out: dict[str, Any] = {"selection": selection} if selection else {}
    for name, rep in reports.items():
        out[name] = {m: rep[m] for m in HEADLINE}
        out[name]["intervals"] = {m: rep["intervals"][m] for m in HEADLINE}
        out[name].update({m: rep[m] for m in ("coverage@10", "popularity_bias@10", "users")})
        out[name]["slices"] = {
            s: {"users": v["users"], "ndcg@10": v["ndcg@10"]} for s, v in rep["slices"].items()
        }
    base, best = out["popular"]["ndcg@10"], out["two_stage"]["ndcg@10"]
    out["two_stage_vs_popular_ndcg@10"] = best / base - 1 if base else None
    return out, cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--driver", action="store_true", help="train the two-tower in-process")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument(
        "--no-select", action="store_true", help="skip the choice on validation: defaults"
    )
    parser.add_argument("--speed", action="store_true", help="also measure serving latency")
    parser.add_argument("--requests", type=int, default=300, help="requests per speed level")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    scores, cfg = quality(args.driver, args.resamples, not args.no_select)
    result: dict[str, Any] = {"quality": scores}
    if args.speed:
        from mlsd_ray.recsys.speed import measure

        result["speed"] = measure(requests=args.requests, cfg=cfg)
    result["seconds"] = round(time.perf_counter() - started, 1)
    for name, rep in result["quality"].items():
        if isinstance(rep, dict) and "ndcg@10" in rep:
            print(f"{name:15s} " + "  ".join(f"{m} {rep[m]:.4f}" for m in HEADLINE))
    print(f"two_stage vs popular NDCG@10: {result['quality']['two_stage_vs_popular_ndcg@10']:+.1%}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
