"""`mlsd init` on the shared data sets: types, rules, label mapping, split, ladder, validity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlsd_ray.errors import CardError
from mlsd_ray.init_card import write_card
from mlsd_ray.spec import load_card


def _types(card) -> dict[str, str]:
    return {f.name: f.type for f in card.framing.inputs}


def test_online_shoppers_is_a_tabular_binary_card(shared_datasets: Path, tmp_path: Path) -> None:
    out = tmp_path / "shoppers.yaml"
    text, card = write_card(
        str(shared_datasets / "ad_click" / "online_shoppers_dev.csv"), "Revenue", out=out
    )
    assert load_card(out).name == card.name == "shoppers"  # the file on disk loads as is
    types = _types(card)
    assert types["Month"] == types["VisitorType"] == "category"
    assert types["PageValues"] == "float" and types["ProductRelated"] == "int"
    assert card.framing.category == "binary" and card.framing.label.column == "Revenue"
    rules = card.data.rules
    assert "Feb" in rules["Month"].allowed and rules["BounceRates"].min == 0
    assert rules["BounceRates"].max <= 0.2 + 1e-9
    assert [m.kind for m in card.models.candidates] == ["logreg", "xgboost"]
    assert card.models.baseline.kind == "majority"
    assert card.evaluation.gate.metric == "roc_auc" and card.deployment.host == "127.0.0.1"
    assert "# " in text and "TODO" in text  # commented for the person who reads it


def test_sms_spam_is_a_text_card_with_spam_positive(shared_datasets: Path) -> None:
    _, card = write_card(str(shared_datasets / "harmful_content" / "sms_spam.tsv"), "Label")
    assert _types(card) == {"SMS": "text"}
    assert card.framing.label.mapping == {"ham": 0, "spam": 1}
    assert card.framing.label.classes == ["ham", "spam"]
    assert card.models.baseline.kind == "tfidf_logreg"
    assert card.models.candidates[0].kind == "transformer"


def test_davidson_leaves_the_index_out_and_is_multiclass(shared_datasets: Path) -> None:
    text, card = write_card(
        str(shared_datasets / "harmful_content" / "davidson_dev.csv"), "class", rows=3000
    )
    assert _types(card) == {"tweet": "text"}
    assert card.framing.category == "multiclass" and len(card.framing.label.classes) == 3
    assert "# Unnamed: 0: left out, a row index" in text
    binary = yaml.safe_load(text)
    assert binary["framing"]["label"]["mapping"] == {"0": 0, "1": 1, "2": 2}


def test_a_time_column_gives_a_time_split_and_a_leak_is_left_out(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 300
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame(
        {
            "when": pd.date_range("2024-01-01", periods=n, freq="h").astype(str),
            "amount": rng.normal(50, 10, n).round(2),
            "country": rng.choice(["de", "fr", "it"], n),
            "outcome_code": np.where(y == 1, "A", "B"),  # the label, written another way
            "user_id": [f"u{i:05d}" for i in range(n)],
            "churned": np.where(y == 1, "yes", "no"),
        }
    )
    data = tmp_path / "t.csv"
    frame.to_csv(data, index=False)
    text, card = write_card(str(data), "churned")
    assert card.data.split.strategy == "time" and card.data.split.time_column == "when"
    assert _types(card) == {"amount": "float", "country": "category"}
    assert "# outcome_code: left out, predicts the label on its own" in text
    assert "# user_id: left out" in text
    assert card.framing.label.mapping == {"no": 0, "yes": 1}


def test_mistakes_are_named(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("a,b\n1,x\n2,x\n")
    with pytest.raises(CardError, match="fewer than two distinct values"):
        write_card(str(data), "b")
    with pytest.raises(CardError, match="--task 'ranking' is not a task"):
        write_card(str(data), "a", task="ranking")
