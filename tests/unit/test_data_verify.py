"""Row verification on hand-made pandas batches: one test per reason, plus the typed output."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from mlsd_ray.data.verify import (
    good_rows,
    quarantined_rows,
    reason_category,
    verify_batch,
)
from mlsd_ray.errors import CardError
from mlsd_ray.spec import DesignCard, card_from_dict


def make_card(inputs: list[dict[str, Any]], label: dict[str, Any], **framing: Any) -> DesignCard:
    return card_from_dict(
        {
            "name": "t",
            "requirements": {"business_objective": "test"},
            "framing": {"ml_objective": "test", "inputs": inputs, "label": label, **framing},
            "data": {"sources": [{"uri": "x.csv"}]},
            "models": {
                "baseline": {"name": "b", "kind": "majority"},
                "candidates": [{"name": "c", "kind": "logreg"}],
            },
        }
    )


TEXT_CARD = make_card(
    [{"name": "text", "type": "text"}],
    {"column": "class", "mapping": {"0": 1, "1": 1, "2": 0}, "classes": ["ok", "harmful"]},
)
TABULAR_CARD = make_card(
    [
        {"name": "Age", "type": "float"},
        {"name": "Visits", "type": "int"},
        {"name": "Weekend", "type": "bool"},
        {"name": "Month", "type": "category"},
        {"name": "Note", "type": "string", "required": False},
    ],
    {"column": "Revenue", "mapping": {"0": 0, "1": 1, "False": 0, "True": 1}},
)


def batch(**columns: list[Any]) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    frame = pd.DataFrame(columns)
    frame["_source"] = ["s3://b/x.csv"] * n
    frame["_row"] = list(range(1, n + 1))
    return frame


def reasons(frame: pd.DataFrame, card: DesignCard) -> list[str]:
    return verify_batch(frame, card).quarantined["_reason"].tolist()


def test_good_text_rows_are_typed_and_keep_lineage() -> None:
    out = verify_batch(batch(text=[" hi there ", "fine"], **{"class": ["2", "0"]}), TEXT_CARD)
    assert out.quarantined.empty
    assert out.good["text"].tolist() == [" hi there ", "fine"]  # text is kept as written
    assert out.good["label"].tolist() == [0, 1]
    assert str(out.good["label"].dtype) == "int64"
    assert out.good["_source"].tolist() == ["s3://b/x.csv"] * 2
    assert out.good["_row"].tolist() == [1, 2]


def test_label_not_in_mapping() -> None:
    got = reasons(batch(text=["hello"], **{"class": ["7"]}), TEXT_CARD)
    assert got == ["label '7' not in mapping ['0', '1', '2']"]
    assert reason_category(got[0]) == "bad_label"


def test_float_label_matches_its_int_form() -> None:
    out = verify_batch(batch(text=["a", "b"], **{"class": ["1.0", " 2 "]}), TEXT_CARD)
    assert out.good["label"].tolist() == [1, 0]
    assert reasons(batch(text=["a"], **{"class": ["1.5"]}), TEXT_CARD) == [
        "label '1.5' not in mapping ['0', '1', '2']"
    ]


def test_missing_label() -> None:
    got = reasons(batch(text=["a", "b"], **{"class": [None, "  "]}), TEXT_CARD)
    assert got == ["missing label in 'class'"] * 2
    assert reason_category(got[0]) == "missing_label"


def test_empty_and_short_text() -> None:
    got = reasons(batch(text=["", "   \n", None], **{"class": ["0"] * 3}), TEXT_CARD)
    assert got == ["empty text in 'text'", "empty text in 'text'", "missing value in 'text'"]
    assert [reason_category(r) for r in got] == ["empty_text", "empty_text", "missing_value"]
    card = make_card([{"name": "text", "type": "text", "min_length": 5}], {"column": "y"})
    got = reasons(batch(text=[" abc ", "abcde"], y=["0", "1"]), card)
    assert got == ["text in 'text' shorter than 5 characters"]
    assert reason_category(got[0]) == "short_text"


def test_unparseable_rows_keep_their_reason_and_raw_text() -> None:
    frame = batch(text=[None], **{"class": [None]})
    frame["_reason"] = ["unparseable row: expected 7 fields, got 9"]
    frame["_raw"] = ["1,2,3,4,5,6,7,8,9"]
    bad = verify_batch(frame, TEXT_CARD).quarantined
    assert bad["_reason"].tolist() == ["unparseable row: expected 7 fields, got 9"]
    assert bad["_raw"].tolist() == ["1,2,3,4,5,6,7,8,9"]
    assert reason_category(bad["_reason"][0]) == "unparseable_row"


def tabular(**overrides: list[Any]) -> pd.DataFrame:
    row: dict[str, list[Any]] = {
        "Age": ["31.5"],
        "Visits": ["3"],
        "Weekend": ["True"],
        "Month": ["Feb"],
        "Note": ["x"],
        "Revenue": ["1"],
    }
    return batch(**(row | overrides))


def test_tabular_types_are_cast() -> None:
    frame = batch(
        Age=["31.5", "1e2"],
        Visits=["3", "4.0"],
        Weekend=["True", "0"],
        Month=["Feb", " Mar "],
        Note=["x", None],
        Revenue=["True", "0"],
    )
    good = verify_batch(frame, TABULAR_CARD).good
    assert good["Age"].tolist() == [31.5, 100.0] and str(good["Age"].dtype) == "float64"
    assert good["Visits"].tolist() == [3, 4] and str(good["Visits"].dtype) == "int64"
    assert good["Weekend"].tolist() == [True, False] and str(good["Weekend"].dtype) == "bool"
    assert good["Month"].tolist() == ["Feb", "Mar"]
    assert good["Note"][0] == "x" and pd.isna(good["Note"][1])  # optional: null is fine
    assert good["label"].tolist() == [1, 0]


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("Age", "abc", "'Age': cannot cast 'abc' to float"),
        ("Age", "inf", "'Age': cannot cast 'inf' to float"),
        ("Visits", "3.5", "'Visits': cannot cast '3.5' to int"),
        ("Visits", "99999999999999999999", "'Visits': cannot cast '99999999999999999999' to int"),
        ("Weekend", "maybe", "'Weekend': cannot cast 'maybe' to bool"),
        ("Age", " ", "missing value in 'Age'"),
        ("Month", None, "missing value in 'Month'"),
    ],
)
def test_cast_and_missing_reasons(column: str, value: Any, reason: str) -> None:
    got = reasons(tabular(**{column: [value]}), TABULAR_CARD)
    assert got == [reason]
    assert reason_category(reason) == ("cast_error" if "cast" in reason else "missing_value")


def test_missing_column_is_missing_values() -> None:
    frame = tabular().drop(columns=["Month", "Note"])
    assert reasons(frame, TABULAR_CARD) == ["missing value in 'Month'"]


def test_first_failing_check_wins_and_original_strings_are_kept() -> None:
    frame = tabular(Age=["abc"], Revenue=["7"])
    bad = verify_batch(frame, TABULAR_CARD).quarantined
    assert bad["_reason"].tolist() == ["'Age': cannot cast 'abc' to float"]
    assert bad[["Age", "Revenue", "Month"]].iloc[0].tolist() == ["abc", "7", "Feb"]
    assert list(bad.columns[-4:]) == ["_reason", "_source", "_row", "_raw"]


def test_empty_mapping_takes_class_indices_and_regression_takes_numbers() -> None:
    card = make_card(
        [{"name": "x", "type": "float"}],
        {"column": "y", "classes": ["a", "b", "c"]},
        category="multiclass",
    )
    out = verify_batch(batch(x=["1", "2", "3"], y=["2", "3", "b"]), card)
    assert out.good["label"].tolist() == [2]
    assert out.quarantined["_reason"].tolist() == [
        "label '3' is not a class index 0..2",
        "label 'b' is not a class index 0..2",
    ]
    card = make_card(
        [{"name": "x", "type": "float"}],
        {"column": "y", "classes": ["target"]},
        category="regression",
    )
    out = verify_batch(batch(x=["1", "2"], y=["2.5", "n/a"]), card)
    assert out.good["label"].tolist() == [2.5] and str(out.good["label"].dtype) == "float64"
    assert out.quarantined["_reason"].tolist() == ["label 'n/a' is not a number"]


def test_map_batches_adapters_have_fixed_schemas() -> None:
    frame = batch(text=["ok text", ""], **{"class": ["0", "1"]})
    good = good_rows(frame, TEXT_CARD)
    assert good.schema.names == ["text", "label", "_source", "_row"]
    assert good.num_rows == 1
    bad = quarantined_rows(frame, TEXT_CARD, columns=["extra", "text", "class"])
    assert bad.schema.names == ["extra", "text", "class", "_reason", "_source", "_row", "_raw"]
    assert bad.column("extra").to_pylist() == [None]
    assert bad.column("_reason").to_pylist() == ["empty text in 'text'"]
    empty = good_rows(frame.iloc[:0], TEXT_CARD)
    assert empty.num_rows == 0 and empty.schema == good.schema


def test_an_input_named_label_is_refused() -> None:
    card = make_card([{"name": "label", "type": "text"}], {"column": "y"})
    with pytest.raises(CardError, match="label"):
        verify_batch(batch(label=["a"], y=["0"]), card)
