"""Tabular losses against values computed by hand (math module formulas), and their effect."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlsd_ray.errors import CardError
from mlsd_ray.models.losses import (
    TabularLoss,
    balanced_class_weights,
    binary_focal_loss,
    focal_loss,
)


def _sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


# Two rows: logit 0 with label 1 (p_t = 0.5), logit 2 with label 0 (p_t = 1 - sigmoid(2)).
LOGITS, TARGET = torch.tensor([0.0, 2.0]), torch.tensor([1, 0])
PT = [0.5, 1 - _sig(2.0)]


def test_binary_cross_entropy_by_hand() -> None:
    expected = (-math.log(PT[0]) - math.log(PT[1])) / 2  # 1.410038
    assert float(binary_focal_loss(LOGITS, TARGET)) == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(1.410038, rel=1e-5)


def test_binary_focal_by_hand() -> None:
    expected = sum(-((1 - p) ** 2) * math.log(p) for p in PT) / 2  # 0.911682
    assert float(binary_focal_loss(LOGITS, TARGET, gamma=2.0)) == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.911682, rel=1e-5)


def test_binary_class_weights_by_hand() -> None:
    # Weight 1 for class 0, 3 for class 1: row 0 (label 1) counts three times.
    w = torch.tensor([1.0, 3.0])
    expected = (3 * -math.log(PT[0]) + 1 * -math.log(PT[1])) / (3 + 1)  # 1.051592
    assert float(binary_focal_loss(LOGITS, TARGET, weight=w)) == pytest.approx(expected, rel=1e-6)


def test_multiclass_focal_and_cross_entropy_by_hand() -> None:
    logits, target = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([0])
    p0 = math.exp(1) / (math.exp(1) + math.exp(2) + math.exp(3))  # 0.090031
    assert float(focal_loss(logits, target)) == pytest.approx(-math.log(p0), rel=1e-6)
    focal = -((1 - p0) ** 2) * math.log(p0)  # 1.993590
    assert float(focal_loss(logits, target, gamma=2.0)) == pytest.approx(focal, rel=1e-6)


def test_gamma_zero_equals_torch_weighted_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(50, 4, generator=g), torch.randint(0, 4, (50,), generator=g)
    w = torch.tensor([0.5, 1.0, 2.0, 4.0])
    assert float(focal_loss(logits, target, 0.0, w)) == pytest.approx(
        float(F.cross_entropy(logits, target, weight=w)), rel=1e-6
    )


def test_focal_down_weights_easy_rows_in_the_gradient() -> None:
    """An easy row (p_t 0.98) pulls far less than a hard one (p_t 0.2) under focal loss."""

    def grads(gamma: float) -> np.ndarray:
        z = torch.tensor([math.log(0.98 / 0.02), math.log(0.2 / 0.8)], requires_grad=True)
        binary_focal_loss(z, torch.tensor([1, 1]), gamma).backward()
        assert z.grad is not None
        return z.grad.abs().numpy()

    ce, focal = grads(0.0), grads(2.0)
    assert ce[0] / ce[1] == pytest.approx(0.02 / 0.8, rel=1e-4)  # BCE gradient is p - 1
    assert focal[0] / focal[1] < 0.01 * ce[0] / ce[1]


def test_balanced_weights_and_regression_losses() -> None:
    assert balanced_class_weights(np.array([0, 0, 0, 1]), 2) == [pytest.approx(4 / 6), 2.0]
    assert balanced_class_weights(np.array([0, 0]), 3)[1:] == [1.0, 1.0]  # absent classes
    out, y = torch.tensor([[0.0], [3.0]]), torch.tensor([1.0, 0.0])
    assert float(TabularLoss("regression")(out, y)) == pytest.approx((1 + 9) / 2)
    # Huber (delta 1): 0.5 * 1^2 for the small error, 1 * (3 - 0.5) for the large one.
    assert float(TabularLoss("regression", "huber")(out, y)) == pytest.approx((0.5 + 2.5) / 2)


def test_loss_that_does_not_fit_the_category_names_the_option() -> None:
    with pytest.raises(CardError, match=r"params\.loss 'mse' does not fit category 'binary'"):
        TabularLoss("binary", "mse")
    with pytest.raises(CardError, match="class_weight applies to classification"):
        TabularLoss("regression", class_weights=[1.0, 2.0])
