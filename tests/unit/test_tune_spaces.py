"""Every tunable kind has a default search space and metric; untunable kinds are refused."""

from __future__ import annotations

import pytest

from mlsd_ray.errors import CardError
from mlsd_ray.models.gbdt import KNOWN
from mlsd_ray.models.mlp import MLPParams
from mlsd_ray.spec import ModelSpec, Tuning
from mlsd_ray.train.spaces import SPACES, resolve
from mlsd_ray.train.tune import search_space
from mlsd_ray.train.tune_kinds import SIMPLE_TUNABLE


def test_default_spaces_name_real_params() -> None:
    for kind in ("xgboost", "lightgbm"):
        assert set(SPACES[kind]) <= KNOWN
    assert set(SPACES["mlp"]) <= set(MLPParams.model_fields)
    for kind, known in SIMPLE_TUNABLE.items():
        assert set(SPACES[kind]) <= known


@pytest.mark.parametrize(
    ("kind", "category", "metric", "mode"),
    [
        ("xgboost", "binary", "val_roc_auc", "max"),
        ("logreg", "binary", "val_roc_auc", "max"),
        ("xgboost", "regression", "val_loss", "min"),
        ("mlp", "binary", "val_loss", "min"),
    ],
)
def test_resolve_fills_space_metric_and_mode(kind, category, metric, mode) -> None:
    tuning = resolve(Tuning(), kind, category)
    assert (tuning.metric, tuning.mode) == (metric, mode)
    assert tuning.space == SPACES[kind]
    mine = Tuning.model_validate({"space": {"C": {"type": "uniform", "low": 0.1, "high": 1}}})
    assert set(resolve(mine, "logreg", category).space) == {"C"}


def test_untunable_kinds_and_unknown_params_are_refused() -> None:
    with pytest.raises(ValueError, match=r"tuning is supported for kinds .*, not 'stacking'"):
        ModelSpec.model_validate({"name": "s", "kind": "stacking", "tuning": {}})
    ModelSpec.model_validate({"name": "x", "kind": "xgboost", "tuning": {}})
    space = resolve(Tuning(), "logreg", "binary").space
    with pytest.raises(CardError, match="not an logreg option"):
        search_space({**space, "gamma": space["C"]}, "models.lr.tuning", {"C"}, "logreg")
