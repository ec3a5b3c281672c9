"""Accuracy and speed of each CPU inference path (fp32, bf16, int8, onnx) on Davidson dev.

    PYTHONPATH=$PWD .venv/bin/python bench/inference_accuracy.py --json /tmp/acc.json \
        --model-out /tmp/minilm_davidson

Fine-tunes all-MiniLM-L6-v2 briefly on a training sample of the Davidson tweets (binary:
harmful = class 0 hate or 1 offensive), writes the package (``--model-out``, reusable by
``bench/serve.py --model-dir``), then scores a disjoint evaluation sample with every path
through the ``Predictor`` and reports ROC-AUC, its change against fp32, the largest and mean
probability differences and in-process throughput at batch 32 (each path alone, and the paths
taking turns batch by batch, which is the fair comparison on a shared machine).
``--model-dir`` skips the fine-tuning and measures an existing package instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from mlsd_ray.models.fast_inference import INFERENCE_PATHS
from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
from mlsd_ray.models.transformer import LoopHooks, LoopState, TransformerTextClassifier
from mlsd_ray.predict import Predictor

DAVIDSON = Path("../shared/datasets/harmful_content/davidson_dev.csv")
SPEED_BATCH = 32


def davidson(path: Path, seed: int) -> pd.DataFrame:
    """``text`` and binary ``label`` (hate or offensive = 1), shuffled with ``seed``."""
    raw = pd.read_csv(path)
    frame = pd.DataFrame(
        {"text": raw["tweet"].astype(str), "label": raw["class"].isin([0, 1]).astype(np.int64)}
    )
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


class Progress(LoopHooks):
    def after_step(self, state: LoopState, loss: float, last_in_epoch: bool) -> None:
        if state.step % 10 == 0:
            logging.info("fine-tuning step %d loss %.4f", state.step, loss)


def fine_tune(train: pd.DataFrame, steps: int, out: Path) -> Path:
    params = {
        "pretrained": "minilm",
        "max_length": 64,
        "epochs": 1,
        "max_steps": steps,
        "batch_size": 16,
        "learning_rate": 5e-5,
        "n_classes": 2,
        "text_input": "text",
    }
    t0 = time.perf_counter()
    model = TransformerTextClassifier(["text"], **params).fit(
        train[["text"]], train["label"].to_numpy(), hooks=Progress()
    )
    manifest = ModelManifest(
        name="minilm_davidson",
        kind="transformer",
        category="binary",
        inputs=[InputSchema(name="text", type="text")],
        classes=["ok", "harmful"],
        params=params,
        metadata={"train_rows": len(train), "steps": steps, "seconds": time.perf_counter() - t0},
    )
    return save_package(model, out, manifest)


def speed(predictor: Predictor, texts: list[str], batches: int = 6) -> float:
    """Sequences per second in this process, batches of 32 (after one warm-up batch)."""
    predictor.predict(texts[:SPEED_BATCH])
    t0, n = time.perf_counter(), 0
    for i in range(batches):
        chunk = texts[i * SPEED_BATCH : (i + 1) * SPEED_BATCH]
        predictor.predict(chunk)
        n += len(chunk)
    return n / (time.perf_counter() - t0)


def interleaved_speed(
    predictors: dict[str, Predictor], texts: list[str], rounds: int
) -> dict[str, float]:
    """Sequences per second at batch 32, the paths taking turns batch by batch and the
    median time kept: on a shared machine the load drifts between back-to-back runs, and
    turns expose every path to the same drift."""
    times: dict[str, list[float]] = {name: [] for name in predictors}
    for predictor in predictors.values():
        predictor.predict(texts[:SPEED_BATCH])  # warm-up
    for i in range(rounds):
        chunk = texts[i * SPEED_BATCH : (i + 1) * SPEED_BATCH]
        for name, predictor in predictors.items():
            t0 = time.perf_counter()
            predictor.predict(chunk)
            times[name].append(time.perf_counter() - t0)
    return {name: round(SPEED_BATCH / float(np.median(t)), 1) for name, t in times.items()}


def measure(model_dir: Path, evaluation: pd.DataFrame) -> dict[str, Any]:
    texts, y = evaluation["text"].tolist(), evaluation["label"].to_numpy()
    results: dict[str, Any] = {}
    reference: np.ndarray | None = None
    for path in INFERENCE_PATHS:
        t0 = time.perf_counter()
        predictor = Predictor(model_dir, inference=path)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        p = np.asarray(predictor.predict(texts))
        score_s = time.perf_counter() - t0
        reference = p if reference is None else reference
        results[path] = {
            "inference_in_use": predictor.inference,
            "roc_auc": round(float(roc_auc_score(y, p)), 5),
            "roc_auc_change": round(float(roc_auc_score(y, p) - roc_auc_score(y, reference)), 5),
            "max_abs_prob_diff": float(f"{np.abs(p - reference).max():.3g}"),
            "mean_abs_prob_diff": float(f"{np.abs(p - reference).mean():.3g}"),
            "load_s": round(load_s, 2),
            "scoring_seq_per_s": round(len(texts) / score_s, 1),
            "batch32_seq_per_s": round(speed(predictor, texts), 1),
        }
        logging.info("%s: %s", path, results[path])
    predictors = {path: Predictor(model_dir, inference=path) for path in INFERENCE_PATHS}
    for path, seq_per_s in interleaved_speed(predictors, texts, rounds=10).items():
        results[path]["interleaved_b32_seq_per_s"] = seq_per_s
    fp32 = results["fp32"]["interleaved_b32_seq_per_s"]
    for r in results.values():
        r["speedup_vs_fp32"] = round(r["interleaved_b32_seq_per_s"] / fp32, 2)
    return results


def table(results: dict[str, Any]) -> str:
    head = "| path | ROC-AUC | change | max dp | mean dp | seq/s b32 | interleaved | x fp32 |"
    rows = [head, "|---|---|---|---|---|---|---|---|"]
    for path, r in results.items():
        rows.append(
            f"| {path} | {r['roc_auc']:.4f} | {r['roc_auc_change']:+.4f} | "
            f"{r['max_abs_prob_diff']:.2g} | {r['mean_abs_prob_diff']:.2g} | "
            f"{r['batch32_seq_per_s']:.0f} | {r['interleaved_b32_seq_per_s']:.0f} | "
            f"{r['speedup_vs_fp32']:.2f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DAVIDSON)
    parser.add_argument("--model-dir", type=Path, help="measure this package (no fine-tuning)")
    parser.add_argument("--model-out", type=Path, default=Path("/tmp/mlsd_minilm_davidson"))
    parser.add_argument("--steps", type=int, default=60, help="fine-tuning steps of 16")
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--eval-rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: no OpenMP spinning on a busy box)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not args.data.is_file():
        sys.exit(f"{args.data} not found; run from the repository root next to ../shared")

    frame = davidson(args.data, args.seed)
    train, evaluation = frame.iloc[: args.train_rows], frame.iloc[args.train_rows :]
    evaluation = evaluation.iloc[: args.eval_rows]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    model_dir = args.model_dir or fine_tune(train, args.steps, args.model_out)
    tune_s = time.perf_counter() - t0
    results = measure(model_dir, evaluation)
    out = {
        "model_dir": str(model_dir),
        "fine_tuning": None
        if args.model_dir
        else {"steps": args.steps, "batch_size": 16, "train_rows": len(train), "seconds": tune_s},
        "eval_rows": len(evaluation),
        "eval_positive_share": round(float(evaluation["label"].mean()), 4),
        "paths": results,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "cpus": os.cpu_count(),
        "torch_threads": args.threads,
    }
    print(table(results))
    print(f"load average before {load_before}, after {out['loadavg_after']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
