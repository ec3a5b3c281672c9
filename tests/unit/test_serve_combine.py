"""Ensemble combiners: weighted average and the stacked meta-learner (JSON state)."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_ray.errors import ModelError, NotFittedError
from mlsd_ray.serve.combine import AverageCombiner, StackedCombiner, combiner_from_config


def test_average_is_weighted_and_normalised():
    scores = np.array([[0.2, 0.8], [1.0, 0.0]])
    np.testing.assert_allclose(AverageCombiner().fit(scores).combine(scores), [0.5, 0.5])
    w = AverageCombiner([1, 3]).fit(scores)
    np.testing.assert_allclose(w.combine(scores), [0.65, 0.25])
    with pytest.raises(NotFittedError):
        AverageCombiner().combine(scores)
    with pytest.raises(ModelError):
        AverageCombiner([1, 2, 3]).fit(scores)


def test_stacker_learns_to_trust_the_informative_member(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=400)
    good = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.1, 400), 0.01, 0.99)
    noise = rng.uniform(0.01, 0.99, size=400)
    scores = np.column_stack([noise, good])
    stacker = StackedCombiner().fit(scores, y)
    assert stacker.coef_[1] > 5 * abs(stacker.coef_[0])
    p = stacker.combine(scores)
    assert ((p > 0.5) == y).mean() > 0.95
    loaded = StackedCombiner.load(stacker.save(tmp_path / "s.json"))
    np.testing.assert_allclose(loaded.combine(scores), p)
    config = {"kind": "stacked", "state": stacker.to_json(), "n_members": 2}
    np.testing.assert_allclose(combiner_from_config(config).combine(scores), p)
    with pytest.raises(ModelError, match="one class"):
        StackedCombiner().fit(scores, np.zeros(400))
    with pytest.raises(NotFittedError):
        StackedCombiner().combine(scores)
    with pytest.raises(ModelError):
        stacker.combine(scores[:, :1])  # wrong member count
