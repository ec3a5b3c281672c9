"""Everything besides the weights that a resumed run needs to continue the same trajectory.

A checkpoint folder holds a model package (weights, config, tokenizer, head) plus::

    loop_state.json          epoch, step, step_in_epoch (the data position) and the metrics
    train_state.safetensors  optimizer tensors (AdamW moments, step counts), torch RNG states
    train_state.json         optimizer param groups, LR scheduler, GradScaler, python and numpy
                             RNG states, and the names of the tensors above

No pickle: tensors go to safetensors, the rest to JSON. Restoring the RNG states matters
because dropout draws from torch's generator: without them a resumed run takes different
dropout masks, and so different steps, from the ones the uninterrupted run would have taken.
The data order needs no RNG: each epoch's shuffle is seeded with ``seed + epoch`` and the first
``step_in_epoch`` batches are skipped on resume.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mlsd_ray.errors import ModelError

TENSORS = "train_state.safetensors"
META = "train_state.json"
LEGACY_OPTIMIZER = "optimizer.pt"  # checkpoints written before train_state existed
FORMAT = 1


# Optimizer state: {"state": {index: {name: tensor | number}}, "param_groups": [...]} ---------
def _split_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, entry in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entry)
    # JSON turned tuples (AdamW's betas) into lists; "params" is the one list to keep.
    groups = [
        {k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
        for g in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


# RNG states ------------------------------------------------------------------------------
def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    meta = {
        "python": [version, list(internal), gauss],
        "numpy": [name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    version, internal, gauss = meta["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# Save / restore --------------------------------------------------------------------------
def save_train_state(
    path: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: Any = None,
    scaler: Any = None,
) -> None:
    """Optimizer, scheduler, GradScaler and RNG states into ``path`` (safetensors + JSON)."""
    opt_tensors, opt_meta = _split_optimizer(optimizer.state_dict())
    rng_tensors, rng_meta = _rng_state()
    save_file({**opt_tensors, **rng_tensors}, str(path / TENSORS))
    meta = {
        "format": FORMAT,
        "optimizer": opt_meta,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_meta,
    }
    (path / META).write_text(json.dumps(meta))


def restore_train_state(
    path: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: Any = None,
    scaler: Any = None,
) -> None:
    """Load what `save_train_state` wrote; call after the optimizer (and scheduler) exist.

    Optimizer tensors are moved to the device of the parameters by ``load_state_dict``."""
    if not (path / META).is_file():
        if (path / LEGACY_OPTIMIZER).is_file():  # optimizer only; RNG and schedule restart
            legacy = torch.load(path / LEGACY_OPTIMIZER, weights_only=True, map_location="cpu")
            optimizer.load_state_dict(legacy)
            return
        raise ModelError(
            f"Checkpoint {str(path)!r} has no {META}.",
            fix="delete the run folder to start the run afresh",
        )
    meta = json.loads((path / META).read_text())
    tensors = load_file(str(path / TENSORS))
    optimizer.load_state_dict(_join_optimizer(tensors, meta["optimizer"]))
    if scheduler is not None and meta.get("scheduler") is not None:
        scheduler.load_state_dict(meta["scheduler"])
    if scaler is not None and meta.get("scaler") is not None:
        scaler.load_state_dict(meta["scaler"])
    _set_rng_state(tensors, meta["rng"])
