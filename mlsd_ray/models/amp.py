"""Mixed precision for a training step: autocast, and loss scaling for fp16.

bf16 keeps fp32's exponent range, so it needs no loss scaling and also runs on CPUs (fast on
those with AVX-512 BF16/AMX). fp16 overflows/underflows gradients without a `GradScaler`, and
is only offered on CUDA. Weights and optimizer state stay fp32 in every mode: autocast only
lowers the precision of the matmuls inside the forward pass.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from mlsd_ray.errors import ModelError

PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


@dataclass
class Amp:
    """How `train_step` runs forward and backward; ``Amp()`` is plain fp32."""

    precision: str = "fp32"
    device_type: str = "cpu"
    scaler: Any = None  # torch.amp.GradScaler for fp16, else None

    @classmethod
    def for_device(cls, precision: str, device: torch.device) -> Amp:
        if precision not in PRECISIONS:
            raise ModelError(
                f"Unknown precision {precision!r}.", fix=f"use one of {sorted(PRECISIONS)}"
            )
        if precision == "fp16" and device.type != "cuda":
            raise ModelError(
                "precision fp16 needs a CUDA device.",
                why=f"training runs on {device}; fp16 autocast without a GPU is slow and "
                "needs loss scaling",
                fix="use `precision: bf16` (works on CPU) or `fp32`, or set `use_gpu: true`",
            )
        scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        return cls(precision, device.type, scaler)

    def autocast(self) -> AbstractContextManager[Any]:
        dtype = PRECISIONS[self.precision]
        return torch.autocast(self.device_type, dtype=dtype, enabled=dtype is not None)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``loss.backward(); optimizer.step()``, through the scaler for fp16 (which skips
        the step when the scaled gradients overflowed, and lowers the scale)."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
