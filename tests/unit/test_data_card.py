"""Card fields of the data stage: database sources, event logs, split strategies, rules, checks."""

from __future__ import annotations

from typing import Any

import pytest

from mlsd_ray.errors import CardError
from mlsd_ray.spec import DesignCard, card_from_dict


def raw(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "t",
        "requirements": {"business_objective": "test"},
        "framing": {
            "ml_objective": "test",
            "inputs": [{"name": "text", "type": "text"}, {"name": "age", "type": "float"}],
            "label": {"column": "label"},
        },
        "data": data,
        "models": {
            "baseline": {"name": "b", "kind": "majority"},
            "candidates": [{"name": "c", "kind": "logreg"}],
        },
    }


def card(data: dict[str, Any]) -> DesignCard:
    return card_from_dict(raw(data))


PG = "postgresql://postgres@127.0.0.1:5432/test"


def test_existing_cards_stay_valid_with_defaults() -> None:
    c = card({"sources": [{"uri": "x.csv"}]})
    assert c.data.split.strategy == "random" and c.data.split.leakage == "warn"
    assert c.data.rules == {} and c.data.unique_key == [] and c.data.balance == "none"
    assert c.data.checks.reference == "previous" and c.data.report is True
    assert c.data.sources[0].encoding == "utf-8" and c.data.sources[0].events is None


def test_database_source_needs_table_or_query() -> None:
    c = card({"sources": [{"uri": PG, "table": "public.posts", "order_by": ["id"]}]})
    assert c.data.sources[0].is_database
    with pytest.raises(CardError, match="no file format"):
        _ = c.data.sources[0].resolved_format
    assert card({"sources": [{"uri": PG, "query": "SELECT 1"}]}).data.sources[0].query
    for bad, message in [
        ({"uri": PG}, "exactly one of `table` or `query`"),
        ({"uri": PG, "table": "a", "query": "SELECT 1"}, "exactly one"),
        ({"uri": PG, "query": "SELECT 1", "order_by": ["id"]}, "(?i)put ORDER BY in the query"),
        ({"uri": PG, "table": "a", "format": "csv"}, "has no `format`"),
        ({"uri": "x.csv", "table": "a"}, "apply to database sources"),
    ]:
        with pytest.raises(CardError, match=message):
            card({"sources": [bad]})


def test_events_block() -> None:
    events = {"key": ["user_id", "item_id"], "window_s": 600}
    c = card({"sources": [{"uri": "logs/", "format": "json", "events": events}]})
    ev = c.data.sources[0].events
    assert ev is not None and (ev.type_column, ev.impression, ev.click) == (
        "event",
        "impression",
        "click",
    )
    with pytest.raises(CardError, match=r"events\.window_s"):
        card({"sources": [{"uri": "l.jsonl", "events": {"key": ["k"], "window_s": 0}}]})
    with pytest.raises(CardError, match=r"events\.key"):
        card({"sources": [{"uri": "l.jsonl", "events": {"key": [], "window_s": 1}}]})
    with pytest.raises(CardError, match=r"events\.windw_s: unknown key"):
        card({"sources": [{"uri": "l.jsonl", "events": {"key": ["k"], "windw_s": 1}}]})


def test_split_strategies_need_their_column() -> None:
    src = [{"uri": "x.csv"}]
    assert card({"sources": src, "split": {"strategy": "time", "time_column": "ts"}})
    with pytest.raises(CardError, match="strategy `time` needs `time_column`"):
        card({"sources": src, "split": {"strategy": "time"}})
    with pytest.raises(CardError, match="strategy `group` needs `group_column`"):
        card({"sources": src, "split": {"strategy": "group"}})
    with pytest.raises(CardError, match=r"data\.split\.strategy"):
        card({"sources": src, "split": {"strategy": "shuffle"}})


def test_rules_and_checks() -> None:
    c = card(
        {
            "sources": [{"uri": "x.csv"}],
            "rules": {"age": {"min": 0, "max": 120}, "text": {"max_length": 280}},
            "checks": {"psi": "fail", "psi_threshold": 0.2, "reference": "none"},
            "balance": "down",
        }
    )
    assert c.data.rules["age"].max == 120 and c.data.checks.psi == "fail"
    with pytest.raises(CardError, match=r"min \(5.0\) exceeds max \(1.0\)"):
        card({"sources": [{"uri": "x.csv"}], "rules": {"age": {"min": 5, "max": 1}}})
    with pytest.raises(CardError, match=r"data\.checks\.psi: got 'maybe'"):
        card({"sources": [{"uri": "x.csv"}], "checks": {"psi": "maybe"}})


def test_database_passwords_are_masked() -> None:
    from mlsd_ray.data.database import lineage_uri, redact
    from mlsd_ray.data.etl import _data_card
    from mlsd_ray.data.sources import describe

    uri = "postgresql://app:s3cret@db.internal:5433/shop"
    assert redact(uri) == "postgresql://app:***@db.internal:5433/shop"
    assert redact(PG) == PG
    c = card({"sources": [{"uri": uri, "table": "orders"}]})
    assert describe(c.data.sources[0]) == "postgresql://app:***@db.internal:5433/shop#table=orders"
    query = card({"sources": [{"uri": uri, "query": "SELECT 1"}]}).data.sources[0]
    assert lineage_uri(query).startswith("postgresql://app:***@db.internal:5433/shop#query=")
    assert "s3cret" not in str(_data_card(c))
