"""How a transformer run starts and steps: initial weights, what is trained, LR schedule.

* ``fine_tune``: ``full`` trains every weight of the pretrained encoder and the head;
  ``frozen`` trains the head only on top of the pretrained encoder (fast, few examples);
  ``scratch`` trains the same architecture from randomly initialised weights (the baseline
  that shows what pretraining is worth).
* ``warm_start``: continual learning. Start from the weights of a trained package, the
  registry's ``champion`` (or ``challenger``) or a package folder, and train on new data;
  the architecture and tokenizer come from that package, not from ``pretrained``. Workers
  read the package from the driver's path (the workdir's registry cache), so on a multi-node
  cluster the workdir must be on a shared filesystem.
* ``lr_schedule``: ``constant`` or ``linear`` (warmup then linear decay to 0, the BERT recipe).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mlsd_ray.errors import CardError, ModelError
from mlsd_ray.models.transformer import TextClassifierNet, build_net, load_net

if TYPE_CHECKING:
    from mlsd_ray.settings import Workdir
    from mlsd_ray.spec import DesignCard

log = logging.getLogger(__name__)

ALIASES = ("champion", "challenger")


# Initial weights ---------------------------------------------------------------------------
def initial_net(params: dict[str, Any]) -> tuple[TextClassifierNet, Any]:
    """The network a fresh run starts from (warm start, pretrained or scratch), frozen or not.

    The torch seed is set first, so every worker builds the same head and dropout stream."""
    n_classes, dropout = int(params["n_classes"]), float(params.get("dropout", 0.1))
    seed, mode = int(params.get("seed", 0)), str(params.get("fine_tune", "full"))
    source = params.get("warm_start_dir")
    if source:
        torch.manual_seed(seed)
        net, tokenizer, head = load_net(Path(source))
        if int(head["n_classes"]) != n_classes:
            raise ModelError(
                f"Cannot warm-start from {source}: it predicts {head['n_classes']} classes, "
                f"the card has {n_classes}.",
                fix="warm-start from a model of the same label set, or drop `warm_start`",
            )
        if float(head.get("dropout", dropout)) != dropout:
            net.dropout.p = dropout
    else:
        net, tokenizer = build_net(
            str(params["pretrained"]), n_classes, dropout, seed, scratch=mode == "scratch"
        )
    if mode == "frozen":
        freeze_encoder(net)
    net.train()
    return net, tokenizer


def freeze_encoder(net: TextClassifierNet) -> None:
    """Only the head learns: the encoder's weights get no gradients and no optimizer state."""
    for p in net.encoder.parameters():
        p.requires_grad_(False)


def trainable_parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


# Warm start --------------------------------------------------------------------------------
def resolve_warm_start(
    warm_start: str | None, card: DesignCard, workdir: Workdir | None
) -> tuple[str, Path] | None:
    """(identity, local package folder) of ``warm_start``, or None when it is not set.

    The identity names the exact weights (registry version or the weights' digest): it goes
    into the run fingerprint, so warm-starting from a newer champion starts a new run.
    """
    if not warm_start:
        return None
    if warm_start in ALIASES:
        if workdir is None:
            raise CardError(
                f"trainer.warm_start: {warm_start!r} needs the registry of a workdir.",
                fix="train through `mlsd train` / train_models, or give a package path",
            )
        from mlsd_ray.registry import fetch_model

        version, folder = fetch_model(card, workdir, warm_start)
        identity = f"{card.registered_model_name}@{warm_start}=v{version}"
    else:
        folder = Path(workdir.resolve(warm_start) if workdir else warm_start)
        identity = ""
    _check_package(folder, warm_start)
    if not identity:
        identity = f"{folder}#{_digest(folder / 'model.safetensors')}"
    log.info("warm start from %s (%s)", identity, folder)
    return identity, folder


def _check_package(folder: Path, warm_start: str) -> None:
    manifest = folder / "mlsd_model.json"
    if manifest.is_file():
        kind = json.loads(manifest.read_text()).get("kind")
        if kind != "transformer":
            raise CardError(
                f"trainer.warm_start: {warm_start!r} is a {kind} model, not a transformer.",
                why="warm start copies the weights of the same kind of network",
                fix="promote a transformer to that alias, or give a transformer package path",
            )
    missing = [
        f for f in ("model.safetensors", "head.json", "config.json") if not (folder / f).is_file()
    ]
    if missing:
        raise CardError(
            f"trainer.warm_start: {str(folder)!r} is not a transformer package "
            f"(missing {missing}).",
            fix="give the folder of a trained transformer (models/<name>/) or `champion`",
        )


def _digest(path: Path) -> str:
    h = hashlib.sha1()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


# LR schedule -------------------------------------------------------------------------------
def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """LR factor per step: linear warmup over ``warmup_steps``, then constant or linear decay
    to 0 at ``total_steps``. A plain function (not a lambda object), so the scheduler's
    state_dict is JSON: last_epoch, base_lrs, _last_lr."""
    warmup, total = max(0, int(warmup_steps)), max(1, int(total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if schedule == "linear":
            return max(0.0, (total - step) / max(1, total - warmup))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def total_steps(params: dict[str, Any], train_rows: int) -> int:
    """Optimizer steps of the whole run: max_steps, else epochs x batches per worker."""
    if params.get("max_steps"):
        return int(params["max_steps"])
    per_worker = -(-train_rows // max(1, int(params.get("num_workers", 1))))
    return int(params["epochs"]) * -(-per_worker // int(params["batch_size"]))
