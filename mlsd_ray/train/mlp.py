"""Train a TabularMLP with Ray Train's ``TorchTrainer`` (or in the driver when num_workers=0).

The driver fits the preprocessor on the train split only, turns both splits into float32
matrices and puts them in the object store once; each worker reads them and trains on its
shard of the rows (``rows[rank::world]``, DDP when world > 1) with the same `fit_net` loop as
the in-process fit. Tabular splits of this size fit in every worker, and slicing an array per
batch costs nothing next to converting Ray Data batches (see BENCHMARKS.md "Deep tabular
models"). Every epoch is reported (train/val loss, validation metric); the last report carries
a checkpoint holding the best epoch's weights (safetensors) and the history.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from mlsd_ray.errors import ModelError
from mlsd_ray.models.mlp import (
    WEIGHTS,
    Arrays,
    MLPParams,
    TabularMLP,
    build_net,
    fit_net,
    make_loss,
    reference_loss,
)

if TYPE_CHECKING:
    from mlsd_ray.models.cnn import CNNParams

log = logging.getLogger(__name__)
LABEL = "label"
HISTORY = "history.json"


def epoch_reporter(
    rank: int, prefix: str
) -> Callable[[dict[str, Any], bool, dict[str, torch.Tensor]], None]:
    """``fit_net``'s per-epoch callback for a Ray Train worker: every epoch's figures go to
    Ray Train; the last report carries rank 0's checkpoint of the best epoch's weights
    (safetensors) and the history, the files `run_trainer` reads back."""
    import ray.train

    history: list[dict[str, Any]] = []

    def on_epoch(record: dict[str, Any], final: bool, best: dict[str, torch.Tensor]) -> None:
        history.append(record)
        metrics = {k: v for k, v in record.items() if v is not None}
        if not final:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            checkpoint = None
            if rank == 0:
                save_file({k: v.contiguous() for k, v in best.items()}, str(Path(tmp) / WEIGHTS))
                (Path(tmp) / HISTORY).write_text(json.dumps(history))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)

    return on_epoch


def train_worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: one copy per worker."""
    import ray
    import ray.train
    import ray.train.torch

    p = MLPParams.model_validate(config["params"])
    torch.set_num_threads(p.cpus_per_worker)
    data: Arrays = ray.get(config["data"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    net = build_net(p, data.X.shape[1])
    model = ray.train.torch.prepare_model(net) if world > 1 else net
    loss_fn = make_loss(p, data.y)
    on_epoch = epoch_reporter(rank, "mlsd-mlp-")

    fit_net(model, loss_fn, data, p, on_epoch, rank=rank, world=world)


def storage_args(storage_path: str) -> dict[str, Any]:
    """RunConfig storage arguments; an S3-compatible endpoint needs an explicit filesystem."""
    from mlsd_ray.storage import ray_storage

    return ray_storage(storage_path)


def run_trainer(
    p: MLPParams | CNNParams,
    data: Arrays,
    name: str,
    storage_path: str,
    worker: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]], dict[str, Any]]:
    """(best weights, history, last metrics) from a TorchTrainer run of ``worker`` (the mlp's
    ``train_worker`` by default; the cnn brings its own, with the same checkpoint files)."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    result = TorchTrainer(
        worker or train_worker,
        train_loop_config={"params": p.model_dump(), "data": ray.put(data)},
        scaling_config=ScalingConfig(
            num_workers=p.num_workers, resources_per_worker={"CPU": p.cpus_per_worker}
        ),
        run_config=RunConfig(name=name, **storage_args(storage_path)),
    ).fit()
    if result.checkpoint is None:
        raise ModelError(
            f"Ray Train run {name!r} finished without a checkpoint.",
            why="the training split produced no batches, or the worker failed",
            fix="check that the train split is not empty and see the worker logs above",
        )
    with result.checkpoint.as_directory() as folder:
        state = load_file(str(Path(folder) / WEIGHTS))
        history = json.loads((Path(folder) / HISTORY).read_text())
    return state, history, dict(result.metrics or {})


def train_mlp(
    inputs: list[str],
    params: dict[str, Any],
    train: pd.DataFrame,
    val: pd.DataFrame,
    storage_path: str,
    name: str,
) -> TabularMLP:
    """Fit a TabularMLP on the splits (``label`` column); Ray Train unless num_workers=0.
    ``model.train_metrics_`` holds seconds, samples/s and the run name."""
    if len(train) == 0:
        raise ModelError(f"{name}: the training split is empty.", fix="check the ETL report")
    model = TabularMLP(inputs, **params)
    p = model.config
    started = time.perf_counter()
    if p.num_workers == 0:
        model.fit(train[inputs], train[LABEL].to_numpy(), val[inputs], val[LABEL].to_numpy())
        metrics: dict[str, Any] = {}
    else:
        data = model.prepare(
            train[inputs], train[LABEL].to_numpy(), val[inputs], val[LABEL].to_numpy()
        )
        state, history, metrics = run_trainer(p, data, name, storage_path)
        net = build_net(p, data.X.shape[1])
        net.load_state_dict(state)
        model.set_fitted(net, history, reference_loss(make_loss(p, data.y), data, p))
    rates = [r["samples_per_s"] for r in model.history_ if r.get("samples_per_s")]
    model.train_metrics_ = {
        "run_name": name,
        "seconds": round(time.perf_counter() - started, 3),
        "epochs_run": len(model.history_),
        "samples_per_s": float(np.median(rates)) if rates else None,
        **{k: metrics[k] for k in ("best_epoch",) if k in metrics},
    }
    log.info("trained mlp %s: %s", name, model.train_metrics_)
    return model
