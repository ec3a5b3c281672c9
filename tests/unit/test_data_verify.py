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
    regression = framing.get("category") == "regression"  # kinds declare the tasks they do
    return card_from_dict(
        {
            "name": "t",
            "requirements": {"business_objective": "test"},
            "framing": {"ml_objective": "test", "inputs": inputs, "label": label, **framing},
            "data": {"sources": [{"uri": "x.csv"}]},
            "models": {
                "baseline": {"name": "b", "kind": "mean" if regression else "majority"},
                "candidates": [{"name": "c", "kind": "ridge" if regression else "logreg"}],
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


# Card rules, carried split columns ---------------------------------------------------------
def with_data(card: DesignCard, **data: Any) -> DesignCard:
    raw = card.model_dump(mode="json")
    raw["data"].update(data)
    return card_from_dict(raw)


def test_rules_quarantine_out_of_range_and_unknown_categories() -> None:
    card = with_data(
        TABULAR_CARD,
        rules={"Age": {"min": 0, "max": 120}, "Month": {"allowed": ["Jan", "Feb"]}},
    )
    frame = batch(
        Age=["30", "-1", "130.5", "40", "50"],
        Visits=["1"] * 5,
        Weekend=["true"] * 5,
        Month=["Jan", "Jan", "Feb", "Mar", " Feb "],
        Note=[None] * 5,
        Revenue=["1"] * 5,
    )
    assert reasons(frame, card) == [
        "'Age': value '-1.0' below min 0",
        "'Age': value '130.5' above max 120",
        "'Month': 'Mar' not in allowed values",
    ]
    assert [reason_category(r) for r in reasons(frame, card)] == [
        "out_of_range",
        "out_of_range",
        "not_allowed",
    ]
    assert verify_batch(frame, card).good["Month"].tolist() == ["Jan", "Feb"]


def test_max_length_rule_on_text() -> None:
    card = with_data(TEXT_CARD, rules={"text": {"max_length": 5}})
    frame = batch(text=["short", "  ok  ", "too long"], **{"class": ["0", "1", "2"]})
    assert reasons(frame, card) == ["text in 'text' longer than 5 characters"]
    assert reason_category(reasons(frame, card)[0]) == "long_text"


def test_rules_must_fit_the_inputs() -> None:
    from mlsd_ray.data.verify import check_rules

    for rules, message in [
        ({"Nope": {"min": 1}}, r"data\.rules\.Nope: 'Nope' is not an input"),
        ({"Month": {"min": 1}}, "min/max apply to int and float"),
        ({"Age": {"allowed": ["1"]}}, "allowed applies to category and string"),
        ({"Age": {"max_length": 3}}, "max_length applies to text and string"),
    ]:
        with pytest.raises(CardError, match=message):
            check_rules(with_data(TABULAR_CARD, rules=rules))
    with pytest.raises(CardError, match=r"data\.unique_key"):
        check_rules(with_data(TABULAR_CARD, unique_key=["id"]))


def test_split_time_and_group_columns_are_carried_and_checked() -> None:
    import pyarrow as pa

    from mlsd_ray.data.verify import good_schema

    card = with_data(
        TEXT_CARD, split={"strategy": "time", "time_column": "ts", "group_column": "user"}
    )
    schema = good_schema(card)
    assert schema.names == ["text", "ts", "user", "label", "_source", "_row"]
    assert schema.field("ts").type == pa.timestamp("us", tz="UTC")
    frame = batch(
        text=["a", "b", "c", "d", "e"],
        ts=["2019-11-24 00:00:17.004101+00:00", "1574553617", "yesterday", None, "2019-11-24"],
        user=["u1", "u2", "u3", "u4", " "],
        **{"class": ["0"] * 5},
    )
    result = verify_batch(frame, card)
    assert result.quarantined["_reason"].tolist() == [
        "'ts': cannot parse time 'yesterday'",
        "missing value in 'ts'",
        "missing value in 'user'",
    ]
    assert reason_category(result.quarantined["_reason"][0]) == "bad_time"
    good = good_rows(frame, card)
    assert good.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    stamps = [t.isoformat() for t in good["ts"].to_pylist()]
    assert stamps == ["2019-11-24T00:00:17.004101+00:00", "2019-11-24T00:00:17+00:00"]


def test_parse_times() -> None:
    from mlsd_ray.data.verify import parse_times

    nanos, ok = parse_times(["1970-01-01T00:00:01Z", "2.5", "", None, "2024-13-01", "nan"])
    assert ok.tolist() == [True, True, False, False, False, False]
    assert nanos[:2].tolist() == [1_000_000_000, 2_500_000_000]


def test_vectorised_checks_agree_with_the_per_cell_rules(monkeypatch) -> None:
    """The Arrow fast path must give the same rows, values and reasons as the per-cell rules
    (which fall back for any column they cannot handle)."""
    import random

    import pyarrow as pa

    from mlsd_ray.data import verify as V

    cells = [
        *("1", " 2.5 ", "1e3", "3.0", "-0", "+2", "007", ".5", "5.", "1_000", "abc", ""),
        *("  ", None, "inf", "nan", "-1e400", "9223372036854775808", "12", "0x10", "Jan"),
        *("Feb", " Mar ", "true", "No", "\u0663", "\uff11\uff12", "1,5", "\t4\n"),
    ]
    rng = random.Random(0)
    card = with_data(
        TABULAR_CARD,
        rules={"Age": {"min": -5, "max": 1000}, "Month": {"allowed": ["Jan", "Feb", "12"]}},
    )
    for trial in range(40):
        n = 25
        pick = [rng.choice(cells) for _ in range(5 * n)]
        # half the trials use only clean numbers, so that the fast path really runs
        numbers = ["1", "2.5", " 3 ", "", None, "12", "-4", "1e2"]
        if trial % 2:
            pick[: 2 * n] = [rng.choice(numbers) for _ in range(2 * n)]
        frame = batch(
            Age=pick[:n],
            Visits=pick[n : 2 * n],
            Weekend=[rng.choice(["true", "0", "x", None]) for _ in range(n)],
            Month=pick[2 * n : 3 * n],
            Note=pick[3 * n : 4 * n],
            Revenue=[rng.choice(["0", "1", "True", "2", None]) for _ in range(n)],
        )
        if trial % 4 == 3:  # Ray Data hands map_batches Arrow-backed columns
            inputs = ["Age", "Visits", "Weekend", "Month", "Note", "Revenue"]
            frame[inputs] = frame[inputs].astype(pd.ArrowDtype(pa.string()))
        monkeypatch.setattr(V, "FAST", True)
        fast = verify_batch(frame, card)
        fast_table = V.good_rows(frame, card)
        monkeypatch.setattr(V, "FAST", False)
        slow = verify_batch(frame, card)
        pd.testing.assert_frame_equal(fast.good, slow.good)
        pd.testing.assert_frame_equal(fast.quarantined, slow.quarantined)
        slow_table = V.good_rows(frame, card)
        assert fast_table.equals(slow_table)
        both = V.verify_rows(frame, card, list(frame.columns[:6]))
        assert V.split_part(both, "good").equals(slow_table)
        assert V.split_part(both, "bad").num_rows == len(slow.quarantined)
        assert isinstance(both, pa.Table)
        # the ETL hands verify_rows Arrow tables: same good rows and quarantine as pandas
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        assert V.verify_rows(arrow, card, list(frame.columns[:6])).equals(both)


@pytest.mark.parametrize(
    ("label", "cells"),
    [
        ({"column": "y", "mapping": {"0": 0, "1": 1, "yes": 1}}, ["1", " 0 ", "1.0", "yes", "2"]),
        ({"column": "y", "mapping": {"0": 0, "1": 1}}, ["", None, "\u00a01", "0.0", "x"]),
        ({"column": "y", "classes": ["a", "b", "c"]}, ["0", " 2", "3", "-1", "1", "2.0"]),
        ({"column": "y", "classes": ["a", "b"]}, ["0", "1", "1", "x"]),
    ],
)
def test_vectorised_labels_agree_with_check_label(monkeypatch, label, cells) -> None:
    """Labels are looked up by Arrow compute; cells it cannot place fall back to check_label."""
    import pyarrow as pa

    from mlsd_ray.data import verify as V

    category = "multiclass" if len(label.get("classes", "ab")) > 2 else "binary"
    card = make_card([{"name": "x", "type": "float"}], label, category=category)
    frame = batch(x=["1"] * len(cells), y=cells)
    monkeypatch.setattr(V, "FAST", False)
    slow = V.verify_rows(frame, card, ["x", "y"])
    monkeypatch.setattr(V, "FAST", True)
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    assert V.verify_rows(arrow, card, ["x", "y"]).equals(slow)
    assert V.verify_rows(frame, card, ["x", "y"]).equals(slow)


def test_regression_labels_cast_by_arrow_or_per_cell() -> None:
    import pyarrow as pa

    from mlsd_ray.data import verify as V

    card = make_card([{"name": "x", "type": "float"}], {"column": "y"}, category="regression")
    cases = ((["1.5", " 2", "1e3"], [1.5, 2.0, 1000.0]), (["1_0", "inf", "3"], [10.0, 3.0]))
    for cells, good in cases:
        arrow = pa.Table.from_pandas(batch(x=["1"] * len(cells), y=cells), preserve_index=False)
        out = V.split_part(V.verify_rows(arrow, card, ["x", "y"]), "good")
        assert out["label"].to_pylist() == good
