"""Column profile: partial states per block, merged, equal pandas; anomaly rules."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlsd_ray.data import profile as P
from mlsd_ray.spec import Data


def blocks_profile(frame: pd.DataFrame, kinds: dict[str, str], size: int, seed: int = 0) -> dict:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    states = [P.block_state(table.slice(i, size), kinds) for i in range(0, len(frame), size)]
    random.Random(seed).shuffle(states)  # merge order must not matter
    return P.finalize(P.merge_all(states), len(frame))


def assert_numeric_equals_pandas(stats: dict, s: pd.Series) -> None:
    assert stats["count"] == s.count() and stats["nulls"] == s.isna().sum()
    assert stats["distinct"] == s.nunique()
    assert stats["min"] == s.min() and stats["max"] == s.max()
    assert stats["mean"] == pytest.approx(s.mean(), rel=1e-12)
    assert stats["std"] == pytest.approx(s.std(), rel=1e-9)
    expected = s.quantile(list(P.QUANTILES)).to_numpy()
    got = [stats["quantiles"][f"p{round(q * 100):02d}"] for q in P.QUANTILES]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def assert_top_equals_pandas(stats: dict, s: pd.Series, k: int = P.TOP) -> None:
    counts = s.value_counts()
    expected = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:k]
    assert [tuple(x) for x in stats["top"]] == [(str(a), int(b)) for a, b in expected]


@pytest.fixture(scope="module")
def shoppers(shared_datasets: Path) -> pd.DataFrame:
    frame = pd.read_csv(shared_datasets / "ad_click" / "online_shoppers_dev.csv")
    frame["Month"] = frame["Month"].astype(object)
    frame["VisitorType"] = frame["VisitorType"].astype(object)
    frame.loc[frame.index % 7 == 0, "ExitRates"] = np.nan  # nulls too
    frame.loc[frame.index % 11 == 0, "Month"] = None
    return frame


def test_profile_of_real_tabular_data_equals_pandas(shoppers: pd.DataFrame) -> None:
    numeric = ["Administrative_Duration", "ProductRelated", "BounceRates", "ExitRates"]
    kinds = {c: "numeric" for c in numeric} | {"Month": "category", "VisitorType": "category"}
    profile = blocks_profile(shoppers[list(kinds)], kinds, size=777)
    assert profile["rows"] == len(shoppers)
    for c in numeric:
        assert profile["columns"][c]["exact"]
        assert_numeric_equals_pandas(profile["columns"][c], shoppers[c])
    for c in ("Month", "VisitorType"):
        stats, s = profile["columns"][c], shoppers[c]
        assert (stats["count"], stats["nulls"], stats["distinct"]) == (
            s.count(),
            s.isna().sum(),
            s.nunique(),
        )
        assert_top_equals_pandas(stats, s)
    exits = profile["columns"]["ExitRates"]
    assert exits["null_rate"] == pytest.approx(shoppers["ExitRates"].isna().mean())
    assert sum(exits["histogram"]["counts"]) == pytest.approx(shoppers["ExitRates"].count())


def test_text_profile_equals_pandas(shared_datasets: Path) -> None:
    with (shared_datasets / "harmful_content" / "davidson_dev.csv").open(newline="") as f:
        texts = [r["tweet"] for r in csv.DictReader(f)][:1500]
    frame = pd.DataFrame({"text": texts + texts[:40] + [None] * 3})
    stats = blocks_profile(frame, {"text": "text"}, size=200)["columns"]["text"]
    s = frame["text"]
    assert (stats["count"], stats["nulls"], stats["distinct"]) == (
        s.count(),
        s.isna().sum(),
        s.nunique(),
    )
    lengths = s.dropna().str.strip().str.len().astype(float)
    assert_numeric_equals_pandas(stats["length"], lengths)


def test_block_layout_does_not_change_the_profile(shoppers: pd.DataFrame) -> None:
    kinds = {"PageValues": "numeric", "Month": "category", "Weekend": "category"}
    frame = shoppers[list(kinds)].astype({"Weekend": object})
    a = blocks_profile(frame, kinds, size=100, seed=1)
    b = blocks_profile(frame, kinds, size=5000, seed=2)
    for name in kinds:
        for key in ("count", "nulls", "distinct", "min", "max", "quantiles", "top"):
            assert a["columns"][name].get(key) == b["columns"][name].get(key)
        if "mean" in a["columns"][name]:
            assert a["columns"][name]["mean"] == pytest.approx(b["columns"][name]["mean"])


def test_high_cardinality_falls_back_to_sample_and_sketch() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(10, 2, size=60_000)
    frame = pd.DataFrame({"x": values, "_source": "f.csv", "_row": np.arange(1, len(values) + 1)})
    stats = blocks_profile(frame, {"x": "numeric"}, size=7_000)["columns"]["x"]
    assert not stats["exact"]
    assert stats["count"] == 60_000 and stats["min"] == values.min()
    assert stats["mean"] == pytest.approx(values.mean(), rel=1e-12)  # exact moments
    assert stats["distinct"] == pytest.approx(60_000, rel=0.1)  # k-minimum-values estimate
    assert stats["quantiles"]["p50"] == pytest.approx(np.median(values), abs=0.15)


def test_time_and_label_kinds() -> None:
    stamps = pd.to_datetime(["2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z", None], utc=True)
    table = pa.table({"ts": pa.array(stamps, pa.timestamp("us", tz="UTC")), "label": [0, 1, 1]})
    profile = P.finalize(P.block_state(table, {"ts": "time", "label": "category"}), 3)
    ts = profile["columns"]["ts"]
    assert ts["min_time"] == "2024-01-01T00:00:00+00:00" and ts["nulls"] == 1
    assert profile["columns"]["label"]["top"] == [["1", 2], ["0", 1]]


def states(frame: pd.DataFrame, kinds: dict[str, str]) -> dict:
    return P.block_state(pa.Table.from_pandas(frame, preserve_index=False), kinds)


def test_anomaly_rules_fire_with_the_card_action() -> None:
    rng = np.random.default_rng(1)
    kinds = {"x": "numeric", "c": "category"}
    ref_frame = pd.DataFrame({"x": rng.normal(0, 1, 2000), "c": rng.choice(["a", "b"], 2000)})
    reference = P.finalize(states(ref_frame, kinds), 2000)
    same = pd.DataFrame({"x": rng.normal(0, 1, 2000), "c": rng.choice(["a", "b"], 2000)})
    assert P.anomalies(states(same, kinds), reference, Data.Checks()) == []

    shifted = pd.DataFrame(
        {
            "x": np.r_[rng.normal(1.5, 1, 1800), [np.nan] * 400],
            "c": rng.choice(["a", "b", "zz"], 2200, p=[0.2, 0.2, 0.6]).astype(object),
        }
    )
    checks = Data.Checks(psi="fail", new_category="warn", null_rate="warn", out_of_range="off")
    found = {
        (f["rule"], f["column"]): f for f in P.anomalies(states(shifted, kinds), reference, checks)
    }
    assert set(found) == {("psi", "x"), ("null_rate", "x"), ("new_category", "c"), ("psi", "c")}
    assert found[("psi", "x")]["action"] == "fail" and found[("psi", "x")]["value"] > 0.25
    assert found[("null_rate", "x")]["value"] == pytest.approx(400 / 2200)
    assert "'zz'" in found[("new_category", "c")]["message"]

    wide = pd.DataFrame({"x": np.r_[rng.normal(0, 1, 1990), [50.0] * 10], "c": ["a"] * 2000})
    checks = Data.Checks(out_of_range="fail", max_out_of_range_share=0.001, psi="off")
    found = P.anomalies(states(wide, kinds), reference, checks)
    assert [(f["rule"], f["action"]) for f in found] == [("out_of_range", "fail")]
    assert found[0]["value"] == pytest.approx(10 / 2000, abs=1e-3)
