"""A small convolutional network for one ``image`` input (kind ``cnn``).

* `CNNParams`: the typed card options (``models.<name>.params``); the trainer fills the image
  size and mode from the card's input and the task from the framing;
* `SmallCNN`: ``conv(3x3) -> ReLU -> max-pool`` per entry of ``channels``, then a linear head
  (knows nothing of Ray);
* `ImageCNN`: the `Model`. Images arrive as base64 text or bytes and are decoded and resized by
  `mlsd_ray.images.decode`, the same function ETL uses to quarantine what does not decode.
  Weights in safetensors, the learning curve in ``learning_curve.json``.

The epoch loop is the tabular MLP's (`fit_net`: early stopping on validation loss, best epoch
kept): it only needs a network and arrays, whatever their shape.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors.torch import load_file, save_file
from torch import nn
from typing_extensions import Self

from mlsd_ray.errors import CardError, ModelError
from mlsd_ray.images import ImageError, decode
from mlsd_ray.models.base import Model
from mlsd_ray.models.mlp import (
    Arrays,
    EpochHook,
    MLPParams,
    fit_net,
    make_loss,
    reference_loss,
)

log = logging.getLogger(__name__)
WEIGHTS = "weights.safetensors"
CURVE = "learning_curve.json"


class CNNParams(BaseModel):
    """Options of kind ``cnn``. Example::

    params: {channels: [16, 32], dropout: 0.1, epochs: 15, batch_size: 64}
    """

    model_config = ConfigDict(extra="forbid")
    #: Output channels of each conv block (each block halves the image while it is >= 2).
    channels: list[int] = Field(default_factory=lambda: [16, 32], min_length=1, max_length=6)
    dropout: float = Field(0.1, ge=0, lt=1)
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    #: Stop after this many epochs without a lower validation loss; 0 = never stop early.
    patience: int = Field(4, ge=0)
    class_weight: Literal["none", "balanced"] = "none"
    seed: int = 0
    #: Ray Train workers (DDP when > 1); 0 = train in the driver process.
    num_workers: int = Field(1, ge=0)
    cpus_per_worker: int = Field(1, ge=1)
    # Filled by the trainer from the card.
    width: int = Field(8, ge=1)
    height: int = Field(8, ge=1)
    mode: Literal["L", "RGB"] = "L"
    category: Literal["binary", "multiclass"] = "multiclass"
    n_classes: int = Field(2, ge=2)

    @classmethod
    def from_params(cls, params: dict[str, Any], where: str = "params") -> CNNParams:
        """Validate with errors that name the card key, e.g. ``models.cnn.params.dropout``."""
        try:
            return cls.model_validate(params)
        except ValidationError as err:
            lines = []
            for e in err.errors():
                key = ".".join(str(p) for p in e["loc"])
                if e["type"] == "extra_forbidden":
                    lines.append(
                        f"{where}.{key}: unknown option; known: {sorted(cls.model_fields)}"
                    )
                else:
                    lines.append(f"{where}.{key}: got {e.get('input')!r}; {e['msg'].lower()}")
            raise CardError("Invalid cnn options:\n  " + "\n  ".join(lines)) from None

    @property
    def in_channels(self) -> int:
        return 1 if self.mode == "L" else 3

    @property
    def n_outputs(self) -> int:
        return 1 if self.category == "binary" else self.n_classes

    def loop(self) -> MLPParams:
        """The options the shared epoch loop and loss read, as the loop's own type."""
        return MLPParams(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            patience=self.patience,
            class_weight=self.class_weight,
            seed=self.seed,
            num_workers=self.num_workers,
            cpus_per_worker=self.cpus_per_worker,
            category=self.category,
            n_classes=self.n_classes,
        )


class SmallCNN(nn.Module):
    def __init__(self, p: CNNParams) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, h, w = p.in_channels, p.height, p.width
        for c_out in p.channels:
            layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU()]
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(p.dropout), nn.Linear(c_in * h * w, p.n_outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_cnn(p: CNNParams) -> SmallCNN:
    torch.manual_seed(p.seed)  # the same initial weights on every worker and every rerun
    return SmallCNN(p)


class ImageCNN(Model):
    """Kind ``cnn``: see `CNNParams`. One input, an ``image`` column."""

    kind = "cnn"
    #: Set by the trainer: run name, seconds, epochs run, samples/s.
    train_metrics_: dict[str, Any]

    def __init__(self, inputs: list[str], **params: Any) -> None:
        super().__init__(inputs, **params)
        if len(self.inputs) != 1:
            raise CardError(
                f"Kind cnn takes exactly one image input; got {self.inputs}.",
                fix="list a single input of type image in framing.inputs",
            )
        self.config = CNNParams.from_params(params)

    def images(self, X: pd.DataFrame) -> np.ndarray:
        """(n, channels, height, width) float32; a value that does not decode is an error
        naming its row (ETL and request checks refuse such values before they get here)."""
        p = self.config
        out = np.zeros((len(X), p.in_channels, p.height, p.width), dtype=np.float32)
        for i, value in enumerate(X[self.inputs[0]].tolist()):
            try:
                out[i] = decode(value, p.width, p.height, p.mode)
            except ImageError as err:
                raise ModelError(f"Row {i}: {err}.", fix="send PNG/JPEG bytes or base64") from None
        return out

    def prepare(
        self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame, y_val: np.ndarray
    ) -> Arrays:
        return Arrays(
            self.images(X),
            np.asarray(y).astype(np.int64),
            self.images(X_val),
            np.asarray(y_val).astype(np.int64),
        )

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
        net, loop = build_cnn(self.config), self.config.loop()
        loss_fn = make_loss(loop, data.y)
        threads = torch.get_num_threads()  # own CPUs only (see the tabular MLP)
        torch.set_num_threads(self.config.cpus_per_worker)
        try:
            state, history = fit_net(net, loss_fn, data, loop, on_epoch)
        finally:
            torch.set_num_threads(threads)
        net.load_state_dict(state)
        return self.set_fitted(net, history, reference_loss(loss_fn, data, loop))

    def set_fitted(
        self, net: SmallCNN, history: list[dict[str, Any]], reference: float | None
    ) -> Self:
        self.net_ = net.eval()
        self.history_ = list(history)
        self.reference_loss_ = reference
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self._check_fitted("net_")
        with torch.no_grad():
            out = self.net_(torch.as_tensor(self.images(X)))
        if self.config.category == "binary":
            p = torch.sigmoid(out.reshape(-1)).numpy().astype(np.float64)
            return np.column_stack([1 - p, p])
        return torch.softmax(out, dim=1).numpy().astype(np.float64)

    def save(self, path: Path) -> None:
        self._check_fitted("net_")
        state = {k: v.contiguous() for k, v in self.net_.state_dict().items()}
        save_file(state, str(path / WEIGHTS))
        (path / "model.json").write_text(json.dumps({"reference_loss": self.reference_loss_}))
        (path / CURVE).write_text(json.dumps(self.history_, indent=1))

    @classmethod
    def load(cls, path: Path, inputs: list[str], params: dict[str, Any]) -> Self:
        model = cls(inputs, **params)
        meta = json.loads((path / "model.json").read_text())
        net = SmallCNN(model.config)
        net.load_state_dict(load_file(str(path / WEIGHTS)))
        history = json.loads((path / CURVE).read_text()) if (path / CURVE).is_file() else []
        return model.set_fitted(net, history, meta.get("reference_loss"))
