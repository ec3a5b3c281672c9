"""The training stage's helpers (no Ray): model selection, params from the card, split reading,
the validation metric."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd_ray.data.layout import read_split
from mlsd_ray.errors import CardError, DataError
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from mlsd_ray.train.metrics import roc_auc
from mlsd_ray.train.stage import select_specs, simple_params
from mlsd_ray.train.trainers import Fitted, fit_simple

SYSTEMS = Path(__file__).resolve().parents[2] / "systems"


def test_select_specs_keeps_card_order_and_rejects_unknown_names() -> None:
    card = load_card(SYSTEMS / "harmful_content.yaml")
    assert [s.name for s in select_specs(card, None)] == ["tfidf_logreg", "minilm"]
    assert [s.name for s in select_specs(card, ["minilm"])] == ["minilm"]
    with pytest.raises(CardError, match="No model named"):
        select_specs(card, ["bert"])


def test_logreg_params_come_from_the_card() -> None:
    card = load_card(SYSTEMS / "event_registration.yaml")
    params = simple_params(card.models.candidates[0], card)
    assert params["C"] == 1.0
    assert "PageValues" in params["numeric"] and "Month" in params["categorical"]
    assert len(params["numeric"]) + len(params["categorical"]) == len(card.framing.inputs)


def test_tfidf_reads_the_card_text_input_wherever_it_is_listed() -> None:
    card = load_card(
        SYSTEMS / "harmful_content.yaml",
        overrides=["framing.inputs=[{name: lang, type: category}, {name: text, type: text}]"],
    )
    assert simple_params(card.models.baseline, card)["text_input"] == "text"
    no_text = load_card(
        SYSTEMS / "harmful_content.yaml",
        overrides=["framing.inputs=[{name: lang, type: category}, {name: text, type: string}]"],
    )
    with pytest.raises(CardError, match="needs exactly one input of type text"):
        simple_params(no_text.models.baseline, no_text)


def test_read_split_reads_a_parquet_folder(tmp_path: Path) -> None:
    folder = tmp_path / "train"
    folder.mkdir()
    frame = pd.DataFrame({"text": ["a", "b", "c"], "label": np.array([0, 1, 0], dtype=np.int64)})
    frame.iloc[:2].to_parquet(folder / "part-0.parquet")
    frame.iloc[2:].to_parquet(folder / "part-1.parquet")
    got = read_split(str(folder)).sort_values("text").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, frame)
    with pytest.raises(DataError, match="run the ETL stage"):
        read_split(str(tmp_path / "missing"))


def test_fit_simple_returns_a_typed_fitted(tmp_path: Path) -> None:
    card = load_card(
        SYSTEMS / "harmful_content.yaml", overrides=["models.baseline.params={min_df: 1}"]
    )
    frame = pd.DataFrame(
        {"text": ["bad bad", "good", "bad", "good good"] * 5, "label": [1, 0] * 10}
    )
    fitted = fit_simple(card.models.baseline, card, frame, frame, Workdir(tmp_path))
    assert isinstance(fitted, Fitted) and fitted.seconds >= 0 and fitted.extra == {}
    assert fitted.params == {"min_df": 1, "text_input": "text"}
    p = fitted.model.predict_proba(frame[["text"]])
    assert p.shape == (20, 2) and roc_auc(frame["label"].to_numpy(), p) == 1.0


def test_roc_auc_is_none_when_undefined() -> None:
    p = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert roc_auc(np.array([0, 1]), p) == 1.0
    assert roc_auc(np.array([1, 1]), p) is None
    p3 = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    assert roc_auc(np.array([0, 1, 2]), p3) == 1.0
    assert roc_auc(np.array([0, 1, 1]), p3) is None
