"""train_transformer with num_workers=0: the Ray Train code path's loop, hooks and checkpoints,
run in this process (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mlsd_ray.errors import CardError
from mlsd_ray.spec import DesignCard, load_card
from mlsd_ray.train.transformer import (
    LOOP_STATE,
    run_fingerprint,
    train_transformer,
    transformer_params,
)
from tests.toy_data import toy_split as split

REPO = Path(__file__).resolve().parents[2]


def card(*overrides: str) -> DesignCard:
    base = [
        "models.candidates.0.trainer.pretrained=tiny",
        "models.candidates.0.trainer.num_workers=0",
        "models.candidates.0.trainer.max_length=16",
        "models.candidates.0.trainer.learning_rate=0.001",
        "models.candidates.0.trainer.checkpoint_every_steps=2",
    ]
    return load_card(REPO / "systems" / "harmful_content.yaml", overrides=[*base, *overrides])


def test_driver_training_validates_checkpoints_and_resumes(tmp_path: Path) -> None:
    train, val = split(160, 0), split(60, 1)
    first = card("models.candidates.0.trainer.max_steps=3")
    spec = first.models.candidates[0]
    model = train_transformer(spec, first, train, val, tmp_path, str(tmp_path / "runs"))
    m = model.train_metrics_
    assert (m["step"], m["epoch"], m["resumed_from_step"]) == (3, 0, 0)
    assert m["val_roc_auc"] > 0.5 and np.isfinite(m["val_loss"])
    folder = tmp_path / "checkpoints" / m["run_name"]
    assert json.loads((folder / LOOP_STATE).read_text())["step"] == 3

    # Same data and step settings, more steps: the same run continues from step 3.
    more = card("models.candidates.0.trainer.epochs=2")
    model = train_transformer(
        more.models.candidates[0], more, train, val, tmp_path, str(tmp_path / "runs")
    )
    m2 = model.train_metrics_
    assert m2["run_name"] == m["run_name"]
    assert (m2["resumed_from_step"], m2["step"], m2["epoch"]) == (3, 20, 2)  # 10 batches/epoch
    assert model.predict_proba(val).shape == (60, 2)


def test_run_name_follows_data_and_step_settings() -> None:
    c = card()
    params = transformer_params(c.models.candidates[0], c)
    train, val = split(40, 0), split(10, 1)
    fp = run_fingerprint(params, train, val)
    assert fp == run_fingerprint({**params, "max_steps": 9, "num_workers": 2}, train, val)
    assert fp != run_fingerprint({**params, "learning_rate": 0.1}, train, val)
    assert fp != run_fingerprint(params, split(40, 2), val)


def test_params_carry_trainer_fields_and_classes() -> None:
    c = card("models.candidates.0.params={dropout: 0.2}")
    params = transformer_params(c.models.candidates[0], c)
    assert params["n_classes"] == 2 and params["text_input"] == "text"
    assert params["dropout"] == 0.2 and params["pretrained"] == "tiny"
    assert set(c.models.candidates[0].trainer.model_dump()) <= set(params)


def test_a_card_without_text_input_is_refused() -> None:
    c = card("framing.inputs.0.type=string")
    with pytest.raises(CardError, match="exactly one input of type text"):
        transformer_params(c.models.candidates[0], c)


def test_early_stopping_packages_the_best_validation(tmp_path: Path) -> None:
    # Validation labels are the opposite of training's: the more the model learns, the worse it
    # scores there, so validation stops improving and training must stop `patience` later.
    train, val = split(160, 0), split(60, 1)
    val = val.assign(label=1 - val["label"])
    c = card(
        "models.candidates.0.trainer.epochs=3",
        "models.candidates.0.trainer.eval_every_steps=2",
        "models.candidates.0.trainer.patience=2",
    )
    model = train_transformer(c.models.candidates[0], c, train, val, tmp_path, str(tmp_path / "r"))
    m = model.train_metrics_
    assert m["stopped_early"] is True and m["step"] < 30  # 3 epochs would be 30 steps
    assert m["step"] == m["best_step"] + 2 * 2  # two evaluations of two steps without a better one
    assert m["evaluations"] == m["step"] // 2
    # The packaged weights are the best validation's, not the last step's.
    packaged = roc_auc_score(val["label"], model.predict_proba(val)[:, 1])
    assert packaged == pytest.approx(m["best_val_score"], abs=1e-6)
    assert packaged > m["val_roc_auc"]
