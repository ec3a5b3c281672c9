"""Fine-tune a TransformerTextClassifier with Ray Train (or in the driver when num_workers=0).

The loop itself lives in `mlsd_ray.models.transformer.train_loop`; this module feeds it a Ray
Data shard and gives it hooks that validate, checkpoint and report. A checkpoint is a model
package folder plus the optimizer and loop state, so:

* a rerun with the same run name resumes from ``ray.train.get_checkpoint()`` (Ray Train V2
  finds it from ``RunConfig(name, storage_path)``), skipping the batches already trained on;
* the returned model is read from the last checkpoint with the same code that loads packages.

The default run name is ``<card>-<model>-<fingerprint>``, the fingerprint hashing the data and
the settings that change what a step means (not epochs/max_steps/workers). Rerunning on the
same data continues the same run (a finished run returns at once); new data starts a new run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from mlsd_ray.errors import CardError, ModelError
from mlsd_ray.models.amp import Amp
from mlsd_ray.models.transformer import (
    WEIGHTS,
    Batch,
    BestCheckpoint,
    LoopHooks,
    LoopState,
    TextClassifierNet,
    TransformerTextClassifier,
    class_weights,
    device_of,
    evaluate,
    frame_batches,
    load_net,
    make_loss,
    make_optimizer,
    save_net,
    train_loop,
    unwrap,
)
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, ModelSpec
from mlsd_ray.train.metrics import roc_auc
from mlsd_ray.train.recipe import initial_net, make_scheduler, resolve_warm_start, total_steps
from mlsd_ray.train.train_state import restore_train_state, save_train_state
from mlsd_ray.train.watch import watch_steps

log = logging.getLogger(__name__)

LABEL = "label"
LOOP_STATE = "loop_state.json"
#: In a checkpoint: the early-stopping record, and the best validation's weights when they are
#: not the checkpoint's own (a later step's checkpoint keeps the best one it has seen).
BEST_STATE = "best_checkpoint.json"
BEST_WEIGHTS = "best_weights.safetensors"
#: Settings that change what a training step computes; a run name hashes them with the data.
FINGERPRINT_FIELDS = (
    "pretrained",
    "max_length",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "seed",
    "class_weight",
    "dropout",
    "fine_tune",
    "warm_start_from",
    "lr_schedule",
    "warmup_steps",
    "precision",
)


# Parameters and run identity --------------------------------------------------------------
def transformer_params(spec: ModelSpec, card: DesignCard) -> dict[str, Any]:
    """The model's params: TrainerConfig fields, the spec's params, n_classes and text input."""
    text = card.framing.text_input
    if text is None:
        raise CardError(
            f"models.{spec.name}: a transformer needs exactly one input of type text.",
            why=f"framing.inputs are {[(f.name, f.type) for f in card.framing.inputs]}",
            fix="mark the text column `type: text`, or use kind logreg for tabular inputs",
        )
    return {
        **spec.trainer.model_dump(),
        **spec.params,
        "n_classes": len(card.framing.label.classes),
        "text_input": text,
    }


def run_fingerprint(params: dict[str, Any], train: pd.DataFrame, val: pd.DataFrame) -> str:
    """Ten hex digits over the data and the step-defining settings."""
    h = hashlib.sha1()
    for frame in (train, val):
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    h.update(json.dumps({k: params.get(k) for k in FINGERPRINT_FIELDS}, default=str).encode())
    return h.hexdigest()[:10]


# Checkpoints ------------------------------------------------------------------------------
@dataclass
class Run:
    """The live objects of a training process, and what a checkpoint saves of them."""

    model: torch.nn.Module  # the net, DDP-wrapped in a Ray worker
    net: TextClassifierNet
    optimizer: torch.optim.Optimizer
    scheduler: Any
    amp: Amp
    tokenizer: Any
    state: LoopState
    best: BestCheckpoint
    #: A CPU copy of the best validation's weights while they differ from the live ones.
    best_weights: dict[str, torch.Tensor] | None = None


def write_checkpoint(
    path: Path, run: Run, head: dict[str, Any], state: LoopState, metrics: dict[str, Any]
) -> None:
    """A loadable model package plus what resuming needs: the loop state (data position), the
    optimizer, scheduler, GradScaler and RNG states (`train_state`) and the best so far."""
    save_net(path, unwrap(run.net), run.tokenizer, head)
    save_train_state(path, run.optimizer, run.scheduler, run.amp.scaler)
    (path / LOOP_STATE).write_text(json.dumps({**state.to_dict(), "metrics": metrics}, indent=2))
    (path / BEST_STATE).write_text(json.dumps(run.best.to_dict(), indent=2))
    if run.best_weights is not None and run.best.best_step != state.step:
        save_file(run.best_weights, str(path / BEST_WEIGHTS))


def restore_weights(path: Path, net: TextClassifierNet) -> LoopState:
    net.load_state_dict(load_file(str(path / WEIGHTS)))
    return LoopState.from_dict(json.loads((path / LOOP_STATE).read_text()))


def weights_copy(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the weights (safetensors needs contiguous tensors)."""
    return {k: v.detach().cpu().clone().contiguous() for k, v in unwrap(net).state_dict().items()}


def restore_best(
    path: Path, patience: int
) -> tuple[BestCheckpoint, dict[str, torch.Tensor] | None]:
    """The early-stopping record and best weights a checkpoint holds (none before this
    feature: the checkpoint's own weights count as the best)."""
    if not (path / BEST_STATE).is_file():
        return BestCheckpoint(patience), None
    best = BestCheckpoint.from_dict(json.loads((path / BEST_STATE).read_text()), patience)
    weights = load_file(str(path / BEST_WEIGHTS)) if (path / BEST_WEIGHTS).is_file() else None
    return best, weights


def load_selected(path: Path, selection: str) -> tuple[TextClassifierNet, Any]:
    """The net to package from a final checkpoint: the best validation's weights (``best``,
    when a later step holds them aside) or the checkpoint's own (``last``)."""
    net, tokenizer, _ = load_net(path)
    if selection == "best" and (path / BEST_WEIGHTS).is_file():
        net.load_state_dict(load_file(str(path / BEST_WEIGHTS)))
        net.eval()
    return net, tokenizer


# Hooks: validate, checkpoint, publish ------------------------------------------------------
class _CheckpointHooks(LoopHooks):
    """Checkpoint every ``checkpoint_every_steps``; validate every ``eval_every_steps`` (if set)
    and at the end of each epoch, keeping the best validation's weights and deciding early
    stopping (`BestCheckpoint`).

    Subclasses decide where a checkpoint goes (`publish`), whether this process validates, and
    how the ranks agree on stopping (`agree`).
    """

    def __init__(
        self,
        run: Run,
        head: dict[str, Any],
        params: dict[str, Any],
        validation: Callable[[], tuple[list[str], np.ndarray]] | None,
        resumed_from_step: int,
    ) -> None:
        self.run, self.net, self.tokenizer, self.head = run, run.model, run.tokenizer, head
        self.every = int(params.get("checkpoint_every_steps", 50))
        self.eval_every = params.get("eval_every_steps")
        self.keep_best = params.get("checkpoint_selection", "best") == "best"
        self.max_length = int(params.get("max_length", 64))
        self.validation = validation
        self.resumed_from_step = resumed_from_step
        self.last_checkpoint_step = resumed_from_step
        self.last_eval_step = -1
        self.last_val: dict[str, Any] = {}
        self.reports = 0
        self.progress = ProgressLog.from_params(params)

    def after_step(self, state: LoopState, loss: float, last_in_epoch: bool) -> None:
        # The end of an epoch checkpoints anyway (with validation); do not save twice.
        evaluate_now = bool(self.eval_every) and state.step % int(self.eval_every or 1) == 0
        if evaluate_now and not last_in_epoch:
            self._save(state, {"train_loss": loss, **self._validate(state)})
        elif state.step % self.every == 0 and not last_in_epoch:
            self._save(state, {"train_loss": loss})
        saved = state.step == self.last_checkpoint_step
        self.progress.write(state, loss, checkpoint=saved or last_in_epoch)

    def after_epoch(self, state: LoopState, train_loss: float, stats: dict[str, float]) -> None:
        metrics: dict[str, Any] = {"train_loss": train_loss, **stats}
        # An early stop inside the epoch validated at this step already: report that one.
        validated = self.last_val if state.step == self.last_eval_step else self._validate(state)
        metrics.update(validated)
        log.info("epoch end: %s", {**state.to_dict(), **metrics})
        self._save(state, metrics)

    def should_stop(self) -> bool:
        return self.run.best.stopped

    def _validate(self, state: LoopState) -> dict[str, Any]:
        """Score the validation split (where this process validates), update the best and the
        early-stopping decision, and make every rank agree on it."""
        self.last_eval_step = state.step
        metrics: dict[str, Any] = {}
        if self.validation is not None:
            texts, labels = self.validation()
            val_loss, proba = evaluate(self.net, self.tokenizer, texts, labels, self.max_length)
            metrics = {"val_loss": val_loss, "val_roc_auc": roc_auc(labels, proba)}
            self.last_val = metrics
            if self.run.best.update(metrics, state) and self.keep_best:
                self.run.best_weights = weights_copy(self.net)
        self.run.best.stopped = self.agree(self.run.best.stopped)
        if self.run.best.stopped:
            log.info("early stop at step %d: %s", state.step, self.run.best.summary())
        return metrics

    def _save(self, state: LoopState, metrics: dict[str, Any]) -> None:
        metrics = {
            **{k: v for k, v in metrics.items() if v is not None and not _is_nan(v)},
            **state.to_dict(),
            **{k: v for k, v in self.run.best.summary().items() if v is not None},
            "resumed_from_step": self.resumed_from_step,
        }
        new = state.step != self.last_checkpoint_step  # an empty epoch has nothing new to save
        self.publish(metrics, self._writer(state, metrics) if new else None, state)
        self.last_checkpoint_step = state.step
        self.reports += 1

    def _writer(self, state: LoopState, metrics: dict[str, Any]) -> Callable[[Path], None]:
        def write(path: Path) -> None:
            write_checkpoint(path, self.run, self.head, state, metrics)

        return write

    def agree(self, stop: bool) -> bool:
        return stop

    def publish(
        self,
        metrics: dict[str, Any],
        write: Callable[[Path], None] | None,
        state: LoopState,
    ) -> None:
        raise NotImplementedError


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


@dataclass
class ProgressLog:
    """One JSON line per optimizer step (pid, rank, step, loss, checkpoint) appended to
    ``params["progress_file"]`` when set: to watch a run from outside, and for the test that
    kills a worker and counts the steps it re-does."""

    path: Path | None
    rank: int = 0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ProgressLog:
        where = params.get("progress_file")
        return cls(Path(where) if where else None)

    def write(self, state: LoopState, loss: float, checkpoint: bool) -> None:
        if self.path is None:
            return
        line = {"pid": os.getpid(), "rank": self.rank, **state.to_dict(), "loss": loss}
        line["time"] = time.time()
        try:
            # A worker on another node than the driver has no such folder yet: the log is for
            # whoever watches that node, and must never fail training (multi-node test).
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps({**line, "checkpoint": checkpoint}) + "\n")
        except OSError as e:
            log.warning("progress log %s not written: %s", self.path, e)


class _RayHooks(_CheckpointHooks):
    """Every worker reports at the same steps (report is a barrier); rank 0 writes the files."""

    def __init__(self, *args: Any, rank: int, world: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rank = self.progress.rank = rank
        self.world = world

    def agree(self, stop: bool) -> bool:
        """Rank 0 alone validates; its decision goes to every rank, so all stop at one step
        (DDP needs the same steps on every rank, and report is a barrier)."""
        if self.world == 1:
            return stop
        import torch.distributed as dist

        decision = [stop]
        dist.broadcast_object_list(decision, src=0)
        return bool(decision[0])

    def publish(
        self, metrics: dict[str, Any], write: Callable[[Path], None] | None, state: LoopState
    ) -> None:
        import ray.train

        with tempfile.TemporaryDirectory(prefix="mlsd-ckpt-") as tmp:
            checkpoint = None
            if write is not None and self.rank == 0:
                write(Path(tmp))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(
                metrics,
                checkpoint=checkpoint,
                checkpoint_dir_name=f"step_{state.step:08d}" if write is not None else None,
            )


class _LocalHooks(_CheckpointHooks):
    """Driver training: the checkpoint is one folder, replaced atomically."""

    def __init__(self, *args: Any, folder: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.folder = folder
        self.metrics: dict[str, Any] = {}

    def publish(
        self, metrics: dict[str, Any], write: Callable[[Path], None] | None, state: LoopState
    ) -> None:
        self.metrics = metrics
        if write is None:
            return
        tmp = self.folder.with_name(self.folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        write(tmp)
        shutil.rmtree(self.folder, ignore_errors=True)
        tmp.rename(self.folder)


# The worker -------------------------------------------------------------------------------
def _setup(
    params: dict[str, Any],
    checkpoint_dir: Path | None,
    prepare: Callable[[Any], Any],
    device: torch.device | None = None,
) -> Run:
    """Build the net (warm start, pretrained or scratch; frozen or not), load a checkpoint's
    weights, wrap (DDP), then the optimizer, LR scheduler and GradScaler and their states.

    The optimizer is made after ``prepare`` so its state lands on the device of the params;
    RNG states are restored last, so that nothing after them draws random numbers."""
    net, tokenizer = initial_net(params)
    state = restore_weights(checkpoint_dir, net) if checkpoint_dir else LoopState()
    best, best_weights = _restored_best(params, checkpoint_dir, state, net)
    if device is not None:
        net.to(device)
    model = prepare(net)
    optimizer = make_optimizer(
        unwrap(model), float(params["learning_rate"]), float(params["weight_decay"])
    )
    scheduler = make_scheduler(
        optimizer,
        str(params.get("lr_schedule", "constant")),
        int(params.get("warmup_steps", 0)),
        int(params.get("total_steps") or 1),
    )
    amp = Amp.for_device(str(params.get("precision", "fp32")), device_of(model))
    if checkpoint_dir:
        restore_train_state(checkpoint_dir, optimizer, scheduler, amp.scaler)
    return Run(
        model, unwrap(model), optimizer, scheduler, amp, tokenizer, state, best, best_weights
    )


def _restored_best(
    params: dict[str, Any], checkpoint_dir: Path | None, state: LoopState, net: TextClassifierNet
) -> tuple[BestCheckpoint, dict[str, torch.Tensor] | None]:
    """The best so far of a resumed run; a checkpoint written at the best step holds the best
    weights as its own."""
    patience = int(params.get("patience", 0))
    if checkpoint_dir is None:
        return BestCheckpoint(patience), None
    best, weights = restore_best(checkpoint_dir, patience)
    keep = params.get("checkpoint_selection", "best") == "best"
    if keep and weights is None and best.best_score is not None and best.best_step == state.step:
        weights = weights_copy(net)
    return best, weights if keep else None


def _head(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "n_classes": int(params["n_classes"]),
        "dropout": float(params.get("dropout", 0.1)),
        "pooling": "mean",
        "max_length": int(params["max_length"]),
        "text_input": params["text_input"],
    }


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train ``train_loop_per_worker``: one copy per worker, DDP across them."""
    import ray.train
    import ray.train.torch

    params: dict[str, Any] = config["params"]
    torch.set_num_threads(int(params.get("cpus_per_worker", 1)))
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()

    # After a worker failure Ray Train restarts the group and this returns the latest
    # checkpoint the controller registered; on a first start, the previous run's last one.
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            run = _setup(params, Path(folder), ray.train.torch.prepare_model)
        log.info("rank %d resumes from step %d (epoch %d)", rank, run.state.step, run.state.epoch)
    else:
        run = _setup(params, None, ray.train.torch.prepare_model)
    state = run.state
    loss_fn = make_loss(config["class_weights"]).to(device_of(run.net))
    text, batch_size, seed = params["text_input"], int(params["batch_size"]), int(params["seed"])
    shard = ray.train.get_dataset_shard("train")

    def batches(epoch: int) -> Iterator[Batch]:
        for b in shard.iter_batches(
            batch_size=batch_size,
            batch_format="numpy",
            local_shuffle_buffer_size=max(8 * batch_size, 256),
            local_shuffle_seed=seed + epoch,
        ):
            yield [str(t) for t in b[text]], np.asarray(b[LABEL], dtype=np.int64)

    cache: list[tuple[list[str], np.ndarray]] = []

    def validation() -> tuple[list[str], np.ndarray]:
        if not cache:
            texts: list[str] = []
            labels: list[np.ndarray] = []
            for b in ray.train.get_dataset_shard("validation").iter_batches(
                batch_size=1024, batch_format="numpy"
            ):
                texts += [str(t) for t in b[text]]
                labels.append(np.asarray(b[LABEL], dtype=np.int64))
            cache.append((texts, np.concatenate(labels) if labels else np.zeros(0, np.int64)))
        return cache[0]

    hooks = _RayHooks(
        run,
        _head(params),
        params,
        validation if rank == 0 else None,  # rank 0 scores the whole validation set
        state.step,
        rank=rank,
        world=world,
    )
    train_loop(
        run.model,
        run.optimizer,
        loss_fn,
        run.tokenizer,
        batches,
        epochs=int(params["epochs"]),
        max_length=int(params["max_length"]),
        max_steps=params.get("max_steps"),
        state=state,
        hooks=hooks,
        world_size=world,
        scheduler=run.scheduler,
        amp=run.amp,
    )


# The driver -------------------------------------------------------------------------------
def _frames(
    params: dict[str, Any], train_df: pd.DataFrame, val_df: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Only the text and label columns; the training split shuffled once (ETL may sort it)."""
    cols = [params["text_input"], LABEL]
    missing = [c for c in cols if c not in train_df.columns or c not in val_df.columns]
    if missing:
        raise ModelError(
            f"The training splits lack column(s) {missing}.",
            fix="re-run ETL; splits hold the card's inputs and an int64 `label`",
        )
    train = train_df[cols].sample(frac=1.0, random_state=int(params["seed"]))
    train = train.reset_index(drop=True).astype({cols[0]: str, LABEL: "int64"})
    val = val_df[cols].reset_index(drop=True).astype({cols[0]: str, LABEL: "int64"})
    return train, val


def _storage(storage_path: str) -> dict[str, Any]:
    """RunConfig storage arguments; an S3-compatible endpoint needs an explicit filesystem."""
    from mlsd_ray.storage import filesystem, is_remote

    if is_remote(storage_path):
        fs, path = filesystem(storage_path)
        return {"storage_path": path, "storage_filesystem": fs}
    return {"storage_path": storage_path}


def _finished_result(name: str, storage_path: str, params: dict[str, Any]) -> Any | None:
    """The Result of a run that already reached its end, read without starting workers.

    Resuming a finished run through Ray Train would only cost its start-up (15-30 s here)."""
    from ray.train import Result

    where = _storage(storage_path)
    try:
        result = Result.from_path(
            f"{where['storage_path'].rstrip('/')}/{name}", where.get("storage_filesystem")
        )
    except (RuntimeError, FileNotFoundError, OSError):
        return None
    metrics = result.metrics or {}
    if result.checkpoint is None or "step" not in metrics:
        return None
    max_steps = params.get("max_steps")
    done = (
        bool(metrics.get("stopped_early"))
        or int(metrics["epoch"]) >= int(params["epochs"])
        or (max_steps is not None and int(metrics["step"]) >= int(max_steps))
    )
    return result if done else None


def _run_config(name: str, storage_path: str, max_failures: int = 2) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    kwargs = _storage(storage_path)
    return RunConfig(
        name=name,
        # A dead worker (or node) fails the group; Ray Train restarts it up to max_failures
        # times and train_worker resumes from the latest registered checkpoint.
        failure_config=FailureConfig(max_failures=max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=2),
        **kwargs,
    )


def _train_with_ray(
    params: dict[str, Any],
    weights: list[float] | None,
    train: pd.DataFrame,
    val: pd.DataFrame,
    name: str,
    storage_path: str,
) -> tuple[TextClassifierNet, Any, dict[str, Any]]:
    import ray.data
    from ray.train import DataConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    result = _finished_result(name, storage_path, params)
    if result is not None:
        log.info("run %s already finished at step %s; not retraining", name, result.metrics["step"])
    else:
        if params.get("use_gpu"):
            _require_gpus(int(params["num_workers"]))
        result = TorchTrainer(
            train_worker,
            train_loop_config={"params": params, "class_weights": weights},
            scaling_config=ScalingConfig(
                num_workers=int(params["num_workers"]),
                use_gpu=bool(params.get("use_gpu", False)),
                resources_per_worker={"CPU": int(params.get("cpus_per_worker", 1))},
            ),
            run_config=_run_config(name, storage_path, int(params.get("max_failures", 2))),
            datasets={
                "train": ray.data.from_pandas(train),
                "validation": ray.data.from_pandas(val),
            },
            dataset_config=DataConfig(datasets_to_split=["train"]),
        ).fit()
    if result.checkpoint is None:
        raise ModelError(
            f"Ray Train run {name!r} finished without a checkpoint.",
            why="the training split produced no batches, or every report failed",
            fix="check that the train split is not empty and see the worker logs above",
        )
    with result.checkpoint.as_directory() as folder:
        net, tokenizer = load_selected(Path(folder), str(params["checkpoint_selection"]))
    return net, tokenizer, dict(result.metrics or {})


def _train_in_driver(
    params: dict[str, Any],
    weights: list[float] | None,
    train: pd.DataFrame,
    val: pd.DataFrame,
    folder: Path,
) -> tuple[TextClassifierNet, Any, dict[str, Any]]:
    """``num_workers=0``: the same loop and checkpoints, in this process (for debugging)."""
    resume = folder if (folder / LOOP_STATE).is_file() else None
    device = _driver_device(bool(params.get("use_gpu", False)))
    run = _setup(params, resume, lambda m: m, device)
    state = run.state
    text = params["text_input"]
    val_data = (val[text].tolist(), val[LABEL].to_numpy())
    hooks = _LocalHooks(run, _head(params), params, lambda: val_data, state.step, folder=folder)
    train_loop(
        run.net,
        run.optimizer,
        make_loss(weights).to(device),
        run.tokenizer,
        frame_batches(
            train[text].tolist(),
            train[LABEL].to_numpy(),
            int(params["batch_size"]),
            int(params["seed"]),
        ),
        epochs=int(params["epochs"]),
        max_length=int(params["max_length"]),
        max_steps=params.get("max_steps"),
        state=state,
        hooks=hooks,
        scheduler=run.scheduler,
        amp=run.amp,
    )
    if not (folder / LOOP_STATE).is_file():
        raise ModelError("Training produced no checkpoint.", fix="check the train split")
    if hooks.reports == 0:  # nothing left to do: the finished run's metrics
        hooks.metrics = json.loads((folder / LOOP_STATE).read_text())["metrics"]
    final, tokenizer = load_selected(folder, str(params["checkpoint_selection"]))
    return final, tokenizer, hooks.metrics


def _driver_device(use_gpu: bool) -> torch.device:
    if not use_gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ModelError(
            "trainer.use_gpu is true but this process sees no CUDA device.",
            why=f"torch {torch.__version__} reports torch.cuda.is_available() == False",
            fix="set `use_gpu: false`, or run on a machine with a GPU and a CUDA build of torch",
        )
    return torch.device("cuda")


def _require_gpus(workers: int) -> None:
    """Fail fast: Ray Train would otherwise wait for GPUs that the cluster does not have."""
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0))
    if gpus < workers:
        raise ModelError(
            f"trainer.use_gpu is true with {workers} worker(s), but the Ray cluster has "
            f"{gpus:g} GPU(s).",
            fix="set `use_gpu: false`, lower `num_workers`, or add GPU nodes to the cluster",
        )


def train_transformer(
    spec: ModelSpec,
    card: DesignCard,
    train_df: pd.DataFrame,
    val_df: pd.DataFrame,
    out_dir: Path,
    storage_path: str,
    *,
    run_name: str | None = None,
    workdir: Workdir | None = None,
) -> TransformerTextClassifier:
    """Fine-tune ``spec`` on the splits; returns the fitted model read from the last checkpoint.

    ``storage_path`` (local or ``s3://``) holds Ray Train's run folders; ``out_dir`` the driver's
    checkpoint when ``num_workers == 0``. ``model.train_metrics_`` holds the last report
    (step, epoch, train/val loss, val_roc_auc, samples_per_s, resumed_from_step).
    ``workdir`` holds the registry that ``warm_start: champion`` fetches from.
    """
    params = transformer_params(spec, card)
    train, val = _frames(params, train_df, val_df)
    if len(train) == 0:
        raise ModelError(f"models.{spec.name}: the training split is empty.")
    warm = resolve_warm_start(params.get("warm_start"), card, workdir)
    if warm is not None:
        params["warm_start_from"], params["warm_start_dir"] = warm[0], str(warm[1])
    params["total_steps"] = total_steps(params, len(train))
    name = run_name or f"{card.name}-{spec.name}-{run_fingerprint(params, train, val)}"
    weights = class_weights(
        train[LABEL].to_numpy(), int(params["n_classes"]), str(params["class_weight"])
    )
    workers = int(params["num_workers"])
    log.info("training %s (%d rows, %d workers) as run %s", spec.name, len(train), workers, name)
    started = time.perf_counter()
    with watch_steps(params, spec.name, Path(out_dir)):  # a live bar when the CLI watches
        if workers == 0:
            net, tokenizer, metrics = _train_in_driver(
                params, weights, train, val, Path(out_dir) / "checkpoints" / name
            )
        else:
            net, tokenizer, metrics = _train_with_ray(
                params, weights, train, val, name, storage_path
            )
    model = TransformerTextClassifier(card.feature_names, **params).set_fitted(
        net, tokenizer, int(params["n_classes"])
    )
    model.train_metrics_ = {**metrics, "run_name": name}
    log.info(
        "trained %s in %.1f s: %s", spec.name, time.perf_counter() - started, model.train_metrics_
    )
    return model
