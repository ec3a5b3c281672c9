"""Training losses for tabular networks, by task category.

* binary: binary cross-entropy on one logit; ``focal`` adds the factor ``(1 - p_t) ** gamma``
  that down-weights easy rows (Lin et al., 2017);
* multiclass: cross-entropy on ``k`` logits, or its focal form;
* regression: mean squared error or Huber (quadratic within ``delta``, linear outside).

Class weights multiply each row's loss by the weight of its class, and the batch loss is the
weighted mean (``sum(w_i * l_i) / sum(w_i)``), as ``torch.nn.functional.cross_entropy(weight=)``
reduces: with ``gamma=0`` the focal loss equals the weighted cross-entropy exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlsd_ray.errors import CardError

LOSSES = ("auto", "cross_entropy", "focal", "mse", "huber")


def balanced_class_weights(y: np.ndarray, n_classes: int) -> list[float]:
    """``n / (k * n_c)`` per class (scikit-learn's "balanced"); absent classes get 1.0."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    n = counts.sum()
    return [float(n / (n_classes * c)) if c > 0 else 1.0 for c in counts]


def _weighted_mean(loss: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None):  # type: ignore[no-untyped-def]
    if weight is None:
        return loss.mean()
    w = weight[target]
    return (loss * w).sum() / w.sum()


def binary_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 0.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """``logits`` (n,), ``target`` (n,) of 0/1. gamma=0 is binary cross-entropy."""
    target = target.long()
    log_p = F.logsigmoid(logits)  # log P(class 1), numerically stable
    log_q = F.logsigmoid(-logits)  # log P(class 0)
    log_pt = torch.where(target == 1, log_p, log_q)
    loss = -log_pt if gamma == 0 else -((1 - log_pt.exp()) ** gamma) * log_pt
    return _weighted_mean(loss, target, weight)


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 0.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """``logits`` (n, k), ``target`` (n,) class indices. gamma=0 is cross-entropy."""
    target = target.long()
    log_pt = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    loss = -log_pt if gamma == 0 else -((1 - log_pt.exp()) ** gamma) * log_pt
    return _weighted_mean(loss, target, weight)


class TabularLoss(nn.Module):
    """The loss of one task: ``forward(outputs, target)`` -> scalar (weighted mean)."""

    def __init__(
        self,
        category: str,
        loss: str = "auto",
        gamma: float = 2.0,
        class_weights: Sequence[float] | None = None,
        huber_delta: float = 1.0,
    ) -> None:
        super().__init__()
        regression = category == "regression"
        if loss == "auto":
            loss = "mse" if regression else "cross_entropy"
        allowed = ("mse", "huber") if regression else ("cross_entropy", "focal")
        if loss not in allowed:
            raise CardError(
                f"params.loss {loss!r} does not fit category {category!r}.",
                fix=f"use one of {list(allowed)} (or auto)",
            )
        if regression and class_weights is not None:
            raise CardError("params.class_weight applies to classification, not regression.")
        self.category, self.loss = category, loss
        self.gamma = gamma if loss == "focal" else 0.0
        self.huber_delta = huber_delta
        weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.weight: torch.Tensor | None
        self.register_buffer("weight", weight)

    def forward(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.category == "regression":
            out = outputs.reshape(-1)
            if self.loss == "huber":
                return F.huber_loss(out, target.float(), delta=self.huber_delta)
            return F.mse_loss(out, target.float())
        if self.category == "binary":
            return binary_focal_loss(outputs.reshape(-1), target, self.gamma, self.weight)
        return focal_loss(outputs, target, self.gamma, self.weight)
