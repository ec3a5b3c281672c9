"""Imputation inside the model's preprocessing (median + indicator, or NaN for the GBDTs) and the
data report's missing-value section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd_ray.data.missing import missing_by_column, report_lines
from mlsd_ray.features import TabularPreprocessor
from mlsd_ray.spec import load_card

CARD = Path(__file__).resolve().parents[2] / "systems" / "event_registration.yaml"


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": [1.0, 2.0, None, 10.0, 3.0],
            "z": [1.0, 2.0, 3.0, 4.0, 5.0],
            "c": ["a", "b", "a", "b", None],
        }
    )


def test_blank_numeric_gets_median_and_indicator() -> None:
    pre = TabularPreprocessor(["x", "z"], ["c"]).fit(frame())
    assert pre.imputed_ == {"x": 2.5}  # median of 1, 2, 10, 3 (the mean would be 4)
    assert pre.feature_names_[:3] == ["x", "z", "x#missing"]
    Z = pre.transform(pd.DataFrame({"x": [None, 5.0], "z": [None, 1.0], "c": ["a", None]}))
    assert Z[0, 0] == pytest.approx((2.5 - pre.mean_["x"]) / pre.scale_["x"])
    assert Z[0, 1] == pytest.approx(0.0)  # no blank in training: mean-filled, no indicator
    assert Z[:, 2].tolist() == [1.0, 0.0]
    again = TabularPreprocessor.from_dict(pre.to_dict())
    np.testing.assert_array_equal(again.transform(frame()), pre.transform(frame()))


def test_keep_nan_leaves_missing_numbers_for_the_trees() -> None:
    pre = TabularPreprocessor(["x"], [], keep_nan=True).fit(frame())
    Z = pre.transform(pd.DataFrame({"x": [None, 2.0]}))
    assert np.isnan(Z[0, 0]) and np.isfinite(Z[1, 0]) and Z.shape == (2, 1)
    assert TabularPreprocessor.from_dict(pre.to_dict()).keep_nan


def test_missing_by_column_suggests_required_false() -> None:
    # event_registration's inputs: Administrative (float) and Month required, PageValues not.
    card = load_card(CARD, overrides=["framing.inputs.8.required=false"])
    reasons = ["missing value in 'Administrative'"] * 5 + ["missing value in 'Month'"] * 60
    reasons.append("label 'q' not in mapping")
    profile = {"columns": {"PageValues": {"nulls": 7}, "Administrative": {"nulls": 0}}}
    out = missing_by_column(card, reasons, profile, rows_in=100)
    assert set(out) == {"Administrative", "PageValues", "Month"}
    a = out["Administrative"]
    assert a["missing_rate"] == 0.05 and "`Administrative` `required: false`" in a["suggestion"]
    assert out["PageValues"] == {
        "required": False,
        "missing_rows": 7,
        "missing_rate": 0.07,
        "action": "imputed by the model",
        "suggestion": "",
    }
    assert "dropping" in out["Month"]["suggestion"]
    assert "| Month | yes | 60 | 60.00% |" in "\n".join(report_lines(out))
