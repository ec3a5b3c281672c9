"""A tabular MLP (optionally a deep-and-cross network) on TabularPreprocessor features.

* `MLPParams`: the typed card options of kind ``mlp`` (``models.<name>.params``);
* `TabularNet`: the ``torch.nn.Module`` (knows nothing of Ray): an MLP, plus ``cross_layers``
  DCN-v2 cross layers in parallel when asked (Wang et al., 2021: ``x_{l+1} = x0 * (W x_l + b)
  + x_l``), concatenated before the output layer;
* `fit_net`: the epoch loop shared by the in-process fit, the Ray Train worker and Tune trials:
  per-epoch training and validation loss, early stopping on the validation loss with patience,
  the best epoch's weights kept;
* `TabularMLP`: the `Model` (preprocessor fit on train only, weights in safetensors, the
  learning curve in ``learning_curve.json``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from typing_extensions import Self

from mlsd_ray.errors import ModelError
from mlsd_ray.features import TabularPreprocessor
from mlsd_ray.models.base import Model
from mlsd_ray.models.losses import TabularLoss, balanced_class_weights
from mlsd_ray.models.params import MLPParams

log = logging.getLogger(__name__)
WEIGHTS = "weights.safetensors"
CURVE = "learning_curve.json"


# The network ---------------------------------------------------------------------------
class CrossLayer(nn.Module):
    """DCN-v2 cross layer: explicit feature interactions of bounded degree."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.linear(x) + x


class TabularNet(nn.Module):
    def __init__(
        self, n_in: int, n_out: int, hidden: list[int], dropout: float, cross_layers: int = 0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_in
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.deep = nn.Sequential(*layers)
        self.cross = nn.ModuleList(CrossLayer(n_in) for _ in range(cross_layers))
        self.head = nn.Linear(width + (n_in if cross_layers else 0), n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.deep(x)
        if len(self.cross):
            c = x
            for layer in self.cross:
                c = layer(x, c)
            out = torch.cat([out, c], dim=1)
        return self.head(out)


def build_net(p: MLPParams, n_in: int) -> TabularNet:
    torch.manual_seed(p.seed)  # the same initial weights on every worker and every rerun
    return TabularNet(n_in, p.n_outputs, p.hidden, p.dropout, p.cross_layers)


def make_loss(p: MLPParams, y_train: np.ndarray) -> TabularLoss:
    weights = None
    if p.class_weight == "balanced" and p.category != "regression":
        weights = balanced_class_weights(y_train, p.n_classes)
    return TabularLoss(p.category, p.loss, p.focal_gamma, weights, p.huber_delta)


# The epoch loop ------------------------------------------------------------------------
@dataclass
class Arrays:
    """Features (float32) and targets (int64 classes or float32 standardised values)."""

    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray


#: on_epoch(record, final, best_state): record = {epoch, train_loss, val_loss, ...}.
EpochHook = Callable[[dict[str, Any], bool, dict[str, torch.Tensor]], None]


def _tensor_y(y: np.ndarray, category: str) -> torch.Tensor:
    return torch.tensor(y, dtype=torch.float32 if category == "regression" else torch.long)


def evaluate_loss(
    net: nn.Module, loss_fn: TabularLoss, X: torch.Tensor, y: torch.Tensor, batch: int = 8192
) -> tuple[float, torch.Tensor]:
    """(mean loss, outputs) in eval mode (no dropout)."""
    net.eval()
    with torch.no_grad():
        outs = [net(X[i : i + batch]) for i in range(0, len(X), batch)]
        out = torch.cat(outs) if outs else torch.zeros(0, 1)
        loss = float(loss_fn(out, y)) if len(X) else math.nan
    net.train()
    return loss, out


def fit_net(
    net: nn.Module,
    loss_fn: TabularLoss,
    data: Arrays,
    p: MLPParams,
    on_epoch: EpochHook | None = None,
    rank: int = 0,
    world: int = 1,
    max_epochs: int | None = None,
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Train ``net`` (a DDP wrapper is fine) for up to ``p.epochs`` epochs; returns the state of
    the epoch with the lowest validation loss (the last epoch without validation rows) and the
    per-epoch history. Every rank sees the whole validation set, so all ranks take the same
    early-stopping decision and report at the same epochs (Ray Train's report is a barrier)."""
    module = getattr(net, "module", net)
    optimizer = torch.optim.AdamW(net.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)
    # Copies: arrays from the object store are read-only, which torch warns about.
    X, y = torch.tensor(data.X), _tensor_y(data.y, p.category)
    X_val, y_val = torch.tensor(data.X_val), _tensor_y(data.y_val, p.category)
    n = (len(X) // world) * world  # equal shards: DDP needs the same number of steps per rank
    best_loss, best_state, waited = math.inf, _state(module), 0
    history: list[dict[str, Any]] = []
    epochs = min(p.epochs, max_epochs or p.epochs)
    net.train()
    for epoch in range(1, epochs + 1):
        started, cpu_started = time.perf_counter(), time.process_time()
        order = np.random.default_rng(p.seed + epoch).permutation(len(X))[:n][rank::world]
        total, seen = 0.0, 0
        for i in range(0, len(order), p.batch_size):
            idx = torch.as_tensor(order[i : i + p.batch_size])
            loss = loss_fn(net(X[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        val_loss, _ = evaluate_loss(module, loss_fn, X_val, y_val)
        record: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": total / max(seen, 1),
            "val_loss": None if math.isnan(val_loss) else val_loss,
            "samples_per_s": seen * world / seconds if seconds > 0 else None,
            # Per CPU-second of this process: the cost of the work, whatever else loads the host.
            "samples_per_cpu_s": seen / cpu_s if cpu_s > 0 else None,
        }
        history.append(record)
        if record["val_loss"] is None or val_loss < best_loss:
            best_loss, best_state, waited = (
                val_loss if record["val_loss"] is not None else best_loss,
                _state(module),
                0,
            )
        else:
            waited += 1
        stop = p.patience > 0 and waited >= p.patience
        record["best_epoch"] = epoch - waited
        final = stop or epoch == epochs
        if on_epoch is not None:
            on_epoch(record, final, best_state)
        if stop:
            log.info("early stop at epoch %d (best %d)", epoch, record["best_epoch"])
            break
    return best_state, history


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# The model -----------------------------------------------------------------------------
class TabularMLP(Model):
    """Kind ``mlp``: see `MLPParams`. ``fit(X, y, X_val, y_val)`` trains in this process (Ray
    Train uses `mlsd_ray.train.mlp`); ``history_`` is the learning curve."""

    kind = "mlp"
    #: Set by the trainer: run name, seconds, epochs run, samples/s.

    def __init__(self, inputs: list[str], **params: Any) -> None:
        super().__init__(inputs, **params)
        self.config = MLPParams.from_params(params)
        self.is_regressor = self.config.category == "regression"

    def make_preprocessor(self) -> TabularPreprocessor:
        p = self.config
        return TabularPreprocessor(
            p.numeric,
            p.categorical,
            p.max_categories,
            encodings=p.encodings,
            crosses=p.crosses,
            hash_buckets=p.hash_buckets,
        )

    def prepare(
        self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame, y_val: np.ndarray
    ) -> Arrays:
        """Fit the preprocessor (and the target scaling) on the train rows only."""
        self.pre_ = self.make_preprocessor().fit(X)
        y = np.asarray(y)
        if self.is_regressor:
            self.target_ = {"mean": float(np.mean(y)), "std": float(np.std(y)) or 1.0}
        return Arrays(
            self.pre_.transform(X).astype(np.float32),
            self._target(y),
            self.pre_.transform(X_val).astype(np.float32),
            self._target(np.asarray(y_val)),
        )

    def _target(self, y: np.ndarray) -> np.ndarray:
        if self.is_regressor:
            return ((y.astype(np.float64) - self.target_["mean"]) / self.target_["std"]).astype(
                np.float32
            )
        return y.astype(np.int64)

    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        X_val: pd.DataFrame | None = None,
        y_val: np.ndarray | None = None,
        on_epoch: EpochHook | None = None,
    ) -> Self:
        if X_val is None or y_val is None:
            X_val, y_val = X.iloc[:0], np.asarray(y)[:0]
        data = self.prepare(X, y, X_val, y_val)
        net = build_net(self.config, data.X.shape[1])
        loss_fn = make_loss(self.config, data.y)
        # Torch's intra-op threads beyond the CPUs we own spin against other processes: on a
        # loaded 2-core host 2 threads ran 30x slower than 1 (see BENCHMARKS.md).
        threads = torch.get_num_threads()
        torch.set_num_threads(self.config.cpus_per_worker)
        try:
            state, history = fit_net(net, loss_fn, data, self.config, on_epoch)
        finally:
            torch.set_num_threads(threads)
        net.load_state_dict(state)
        return self.set_fitted(net, history, reference_loss(loss_fn, data, self.config))

    def set_fitted(  # type: ignore[override]  # each kind's learned state is its own
        self, net: TabularNet, history: list[dict[str, Any]], reference: float | None
    ) -> Self:
        self.net_ = net.eval()
        self.history_ = list(history)
        self.reference_loss_ = reference
        return self

    def _outputs(self, X: pd.DataFrame) -> torch.Tensor:
        self._check_fitted("net_")
        features = torch.as_tensor(self.pre_.transform(X).astype(np.float32))
        with torch.no_grad():
            return self.net_(features)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.is_regressor:
            raise ModelError("This mlp is a regression model.", fix="call predict(X)")
        out = self._outputs(X)
        if self.config.category == "binary":
            p = torch.sigmoid(out.reshape(-1)).numpy().astype(np.float64)
            return np.column_stack([1 - p, p])
        return torch.softmax(out, dim=1).numpy().astype(np.float64)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        if not self.is_regressor:
            return super().predict(X)
        z = self._outputs(X).reshape(-1).numpy().astype(np.float64)
        return z * self.target_["std"] + self.target_["mean"]

    def save(self, path: Path) -> None:
        self._check_fitted("net_")
        (path / "preprocessor.json").write_text(json.dumps(self.pre_.to_dict()))
        state = {k: v.contiguous() for k, v in self.net_.state_dict().items()}
        save_file(state, str(path / WEIGHTS))
        meta = {
            "target": getattr(self, "target_", None),
            "reference_loss": self.reference_loss_,
        }
        (path / "model.json").write_text(json.dumps(meta))
        (path / CURVE).write_text(json.dumps(self.history_, indent=1))

    @classmethod
    def load(cls, path: Path, inputs: list[str], params: dict[str, Any]) -> Self:
        model = cls(inputs, **params)
        meta = json.loads((path / "model.json").read_text())
        model.pre_ = TabularPreprocessor.from_dict(
            json.loads((path / "preprocessor.json").read_text())
        )
        if meta.get("target") is not None:
            model.target_ = meta["target"]
        n_in = len(model.pre_.feature_names_)
        net = TabularNet(
            n_in,
            model.config.n_outputs,
            model.config.hidden,
            model.config.dropout,
            model.config.cross_layers,
        )
        net.load_state_dict(load_file(str(path / WEIGHTS)))
        history = json.loads((path / CURVE).read_text()) if (path / CURVE).is_file() else []
        return model.set_fitted(net, history, meta.get("reference_loss"))


def reference_loss(loss_fn: TabularLoss, data: Arrays, p: MLPParams) -> float:
    """The training loss of the best constant prediction (class priors / the mean): a loss
    near it means the network learned little (underfitting)."""
    y = _tensor_y(data.y, p.category)
    n = len(data.y)
    if p.category == "regression":
        out = torch.zeros(n, 1)  # the standardised target has mean 0
    elif p.category == "binary":
        rate = float(np.clip(np.mean(data.y), 1e-6, 1 - 1e-6))
        out = torch.full((n, 1), math.log(rate / (1 - rate)))
    else:
        prior = np.bincount(data.y, minlength=p.n_classes) / max(n, 1)
        out = torch.log(torch.as_tensor(np.clip(prior, 1e-6, 1), dtype=torch.float32)).repeat(n, 1)
    with torch.no_grad():
        return float(loss_fn(out, y))
