"""Training-step speed of the MiniLM classifier on CPU: fp32 vs bf16 autocast, full vs frozen.

One process, the four settings measured in interleaved rounds (so load from other processes
hits them alike); prints samples/s per setting, ratios against full fp32, and the load average.

    PYTHONPATH=$PWD .venv/bin/python bench/train_precision.py --rounds 3 --steps 4
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from mlsd_ray.models.amp import Amp
from mlsd_ray.models.transformer import make_loss, make_optimizer, train_step
from mlsd_ray.train.recipe import initial_net
from tests.toy_data import toy_split

SETTINGS = [("full", "fp32"), ("full", "bf16"), ("frozen", "fp32"), ("frozen", "bf16")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pretrained", default="minilm")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per setting and round")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = toy_split(args.batch_size * 8, 0)
    # Long enough texts that every batch is padded to max_length tokens.
    texts = [(t + " ") * 40 for t in data["text"]]
    labels = data["label"].to_numpy()
    runs = {}
    for mode, precision in SETTINGS:
        params = {"pretrained": args.pretrained, "n_classes": 2, "fine_tune": mode, "seed": 0}
        net, tok = initial_net(params)
        opt = make_optimizer(net, 5e-5, 0.01)
        runs[(mode, precision)] = (net, tok, opt, Amp.for_device(precision, torch.device("cpu")))
    loss_fn = make_loss(None)
    seconds = {k: 0.0 for k in runs}
    batch = 0

    def step(key: tuple[str, str]) -> None:
        nonlocal batch
        net, tok, opt, amp = runs[key]
        i = (batch % 8) * args.batch_size
        chunk = (texts[i : i + args.batch_size], labels[i : i + args.batch_size])
        train_step(net, opt, loss_fn, tok, chunk, args.max_length, amp=amp)
        batch += 1

    for key in runs:  # warm-up: first-call allocations and oneDNN kernel selection
        step(key)
    for _ in range(args.rounds):
        for key in runs:
            started = time.perf_counter()
            for _ in range(args.steps):
                step(key)
            seconds[key] += time.perf_counter() - started
    samples = args.rounds * args.steps * args.batch_size
    base = samples / seconds[("full", "fp32")]
    out = {
        "load_avg": os.getloadavg(),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "samples_per_setting": samples,
        "samples_per_s": {f"{m}/{p}": round(samples / s, 2) for (m, p), s in seconds.items()},
        "vs_full_fp32": {f"{m}/{p}": round(samples / s / base, 2) for (m, p), s in seconds.items()},
    }
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    assert np.isfinite(base)


if __name__ == "__main__":
    main()
