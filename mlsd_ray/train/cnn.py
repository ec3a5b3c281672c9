"""Train an ImageCNN (kind ``cnn``) with Ray Train's ``TorchTrainer``, or in the driver when
``num_workers: 0``.

Wired as the ``mlp`` kind is (`train.mlp`, `train.deep`): the driver decodes and resizes the
images of both splits once (`ImageCNN.prepare`, Pillow), puts the arrays in the object store,
and each worker trains its shard of the rows (DDP when world > 1) with the shared epoch loop.
Every epoch is reported; the last report carries a checkpoint with the best epoch's weights
(safetensors) and the history. Small images (the card's size) fit in every worker.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import torch

from mlsd_ray.errors import CardError, ModelError
from mlsd_ray.models.cnn import CNNParams, ImageCNN, build_cnn
from mlsd_ray.models.mlp import Arrays, fit_net, make_loss, reference_loss
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, ModelSpec
from mlsd_ray.train.metrics import roc_auc
from mlsd_ray.train.mlp import epoch_reporter, run_trainer

log = logging.getLogger(__name__)
LABEL = "label"


def cnn_params(spec: ModelSpec, card: DesignCard) -> dict[str, Any]:
    """The spec's params with the image size, mode and task filled from the card, validated
    (errors name the card key)."""
    images = [f for f in card.framing.inputs if f.type == "image"]
    if len(images) != 1 or len(card.framing.inputs) != 1:
        raise CardError(
            f"models.{spec.name}: kind cnn needs exactly one input, of type image; the card "
            f"has {[(f.name, f.type) for f in card.framing.inputs]}.",
            fix="list one input with `type: image` in framing.inputs",
        )
    opts = images[0].image
    assert opts is not None  # the card fills the defaults for type: image
    params = {
        **spec.params,
        "width": opts.width,
        "height": opts.height,
        "mode": opts.mode,
        "category": card.framing.category,
        "n_classes": len(card.framing.label.classes),
    }
    CNNParams.from_params(params, where=f"models.{spec.name}.params")
    return params


def train_worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: one copy per worker."""
    import ray
    import ray.train
    import ray.train.torch

    p = CNNParams.model_validate(config["params"])
    loop = p.loop()
    torch.set_num_threads(p.cpus_per_worker)
    data: Arrays = ray.get(config["data"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    net = build_cnn(p)
    model = ray.train.torch.prepare_model(net) if world > 1 else net
    on_epoch = epoch_reporter(rank, "mlsd-cnn-")

    fit_net(model, make_loss(loop, data.y), data, loop, on_epoch, rank=rank, world=world)


def train_cnn(
    inputs: list[str],
    params: dict[str, Any],
    train: pd.DataFrame,
    val: pd.DataFrame,
    storage_path: str,
    name: str,
) -> ImageCNN:
    """Fit an ImageCNN on the splits (``label`` column); Ray Train unless num_workers=0."""
    if len(train) == 0:
        raise ModelError(f"{name}: the training split is empty.", fix="check the ETL report")
    model = ImageCNN(inputs, **params)
    p = model.config
    started = time.perf_counter()
    y, y_val = train[LABEL].to_numpy(), val[LABEL].to_numpy()
    if p.num_workers == 0:
        model.fit(train[inputs], y, val[inputs], y_val)
    else:
        data = model.prepare(train[inputs], y, val[inputs], y_val)
        state, history, _ = run_trainer(p, data, name, storage_path, worker=train_worker)
        net = build_cnn(p)
        net.load_state_dict(state)
        model.set_fitted(net, history, reference_loss(make_loss(p.loop(), data.y), data, p.loop()))
    rates = [r["samples_per_s"] for r in model.history_ if r.get("samples_per_s")]
    model.train_metrics_ = {
        "run_name": name,
        "seconds": round(time.perf_counter() - started, 3),
        "epochs_run": len(model.history_),
        "samples_per_s": float(np.median(rates)) if rates else None,
    }
    log.info("trained cnn %s: %s", name, model.train_metrics_)
    return model


def fit_cnn(
    spec: ModelSpec, card: DesignCard, train: pd.DataFrame, val: pd.DataFrame, workdir: Workdir
) -> tuple[ImageCNN, dict[str, Any], float, float | None, dict[str, Any]]:
    """What the training stage records per model: (model, params, seconds, validation AUC,
    extra metadata)."""
    from mlsd_ray.train.curves import write_curve

    inputs = card.feature_names
    params = cnn_params(spec, card)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    started = time.perf_counter()
    model = train_cnn(
        inputs,
        params,
        train,
        val,
        workdir.ray_results_uri,
        f"{card.name}-{spec.name}-{stamp}",
    )
    seconds = time.perf_counter() - started
    curve = write_curve(
        model.history_, workdir.reports / "training", spec.name, model.reference_loss_
    )
    extra: dict[str, Any] = {"learning_curve": curve}
    extra.update({k: v for k, v in model.train_metrics_.items() if k != "seconds"})
    auc = roc_auc(val[LABEL].to_numpy(), model.predict_proba(val[inputs])) if len(val) else None
    return model, params, seconds, auc, extra
