"""The impression/click join on hand-made events, called in-process (what each Ray task does)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from mlsd_ray.data.events import KIND, attribute, classify
from mlsd_ray.spec import Source

SOURCE = Source(
    uri="logs.jsonl", events={"key": ["user", "item"], "window_s": 60, "time_column": "ts"}
)
COLUMNS = ["event", "ts", "user", "item", "price"]


def events(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["_source"] = "logs.jsonl"
    frame["_row"] = range(1, len(frame) + 1)
    frame["_reason"] = None
    frame["_raw"] = None
    return frame


def join(frame: pd.DataFrame) -> pd.DataFrame:
    tagged = classify(frame, SOURCE, COLUMNS).to_pandas()
    good = tagged[tagged[KIND].notna()]
    out = attribute(good, SOURCE, COLUMNS, "clicked").to_pandas()
    return out.sort_values("_row").reset_index(drop=True)


def test_click_within_window_makes_the_latest_impression_positive() -> None:
    frame = events(
        [
            ("impression", "100", "u1", "i1", "9.5"),  # 1: clicked at 130 -> positive
            ("click", "130", "u1", "i1", None),
            ("impression", "200", "u1", "i1", "9.5"),  # 3: superseded by row 4
            ("impression", "210", "u1", "i1", "9.5"),  # 4: click at 230 is credited here
            ("click", "230", "u1", "i1", None),
            ("impression", "300", "u2", "i1", "1.0"),  # 6: click 61 s later: too late
            ("click", "361", "u2", "i1", None),
            ("impression", "400", "u3", "i2", "2.0"),  # 8: click of another item: no
            ("click", "401", "u3", "i9", None),  # orphan
            ("click", "499", "u4", "i4", None),  # 10: click before its impression: orphan
            ("impression", "500", "u4", "i4", "3.0"),
            ("impression", "600", "u5", "i5", "3.0"),  # 12: exact same time counts
            ("click", "600", "u5", "i5", None),
        ]
    )
    out = join(frame)
    assert out["_row"].tolist() == [1, 3, 4, 6, 8, 11, 12]
    assert out["clicked"].tolist() == ["1", "0", "1", "0", "0", "0", "1"]
    assert out["_credited"].sum() == 3  # of 6 clicks; 3 are orphans
    assert out["price"].tolist()[:2] == ["9.5", "9.5"]


def test_bad_events_get_reasons() -> None:
    frame = events(
        [
            ("impression", "2019-11-24 00:00:17+00:00", "u1", "i1", "1"),
            ("view", "100", "u1", "i1", None),
            (None, "100", "u1", "i1", None),
            ("click", "100", None, "i1", None),
            ("click", "later", "u1", "i1", None),
        ]
    )
    tagged = classify(frame, SOURCE, COLUMNS)
    assert isinstance(tagged, pa.Table)
    assert tagged["_reason"].to_pylist() == [
        None,
        "event: type 'view' in 'event' is neither 'impression' nor 'click'",
        "event: type missing in 'event' is neither 'impression' nor 'click'",
        "event: missing key ['user']",
        "event: cannot parse time 'later' in 'ts'",
    ]
    assert tagged[KIND].to_pylist() == ["impression", None, None, None, None]
