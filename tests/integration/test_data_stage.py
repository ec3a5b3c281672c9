"""The data stage end to end on Ray: manifest and content hash, profile equal to pandas, data
report, anomaly checks against the previous run, time and group splits, the impression/click
join on the real Open Bandit click log, de-duplication and the leakage check."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlsd_ray.data.etl import SPLITS, dataset_version, read_split, run_etl
from mlsd_ray.errors import DataError
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, card_from_dict, load_card
from mlsd_ray.storage import read_json

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SHOPPERS_CARD = ROOT / "systems" / "event_registration.yaml"


def all_rows(card: DesignCard, workdir: Workdir) -> pd.DataFrame:
    return pd.concat([read_split(card, workdir, s) for s in SPLITS], ignore_index=True)


@pytest.fixture(scope="module")
def shoppers_csv(shared_datasets: Path, tmp_path_factory) -> Path:
    frame = pd.read_csv(shared_datasets / "ad_click" / "online_shoppers_dev.csv")
    path = tmp_path_factory.mktemp("shoppers") / "shoppers.csv"
    frame.sample(3000, random_state=1).to_csv(path, index=False)
    return path


def test_manifest_profile_report_and_anomalies(
    ray_cluster, shoppers_csv: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(shoppers_csv.read_bytes())
    overrides = [
        f"data.sources.0.uri={source}",
        "data.rules={BounceRates: {min: 0, max: 0.19}}",
        "data.checks={out_of_range: fail, max_out_of_range_share: 0.01}",
    ]
    card = load_card(SHOPPERS_CARD, overrides=overrides)
    workdir = Workdir(tmp_path / "work")
    summary = run_etl(card, workdir)

    # rows in = rows out + quarantined; the rule quarantined what pandas says it should
    raw = pd.read_csv(shoppers_csv)
    broken = int((raw["BounceRates"] > 0.19).sum())
    assert broken > 0
    assert summary.quarantine_by_reason == {"out_of_range": broken}
    assert summary.rows_in == 3000 == summary.rows_ok + summary.rows_quarantined

    # manifest next to the splits, with the content hash the summary reports
    manifest = read_json(summary.manifest)
    assert summary.manifest == f"{workdir.data_uri(card)}/manifest.json"
    assert manifest["content_hash"] == summary.content_hash and len(summary.content_hash) == 64
    assert manifest["dataset_version"] == summary.dataset_version == summary.content_hash[:12]
    assert dataset_version(card, workdir) == summary.dataset_version
    assert manifest["rows"]["in"] == 3000 and manifest["rows"]["written"] == summary.rows_written
    assert manifest["sources"][0]["files"][0]["rows"] == 3000
    assert manifest["code_version"]["data_code_sha256"]
    assert manifest["created_at"].endswith("+00:00")
    assert [f["name"] for f in manifest["schema"]["splits"]][-3:] == ["label", "_source", "_row"]
    assert read_json(str(workdir.summary_path("etl")))["dataset_version"] == summary.dataset_version

    # the profile (Ray Data, merged over blocks) equals pandas on the rows written
    rows = all_rows(card, workdir)
    profile = read_json(summary.profile)["columns"]
    for column in ("ProductRelated_Duration", "ExitRates", "BounceRates", "Administrative"):
        stats, s = profile[column], rows[column].astype(float)
        assert (stats["count"], stats["nulls"], stats["distinct"]) == (
            s.count(),
            0,
            s.nunique(),
        )
        assert (stats["min"], stats["max"]) == (s.min(), s.max())
        assert stats["mean"] == pytest.approx(s.mean(), rel=1e-12)
        assert stats["quantiles"]["p50"] == pytest.approx(s.median(), rel=1e-12)
        assert stats["quantiles"]["p95"] == pytest.approx(s.quantile(0.95), rel=1e-12)
    month = dict(rows["Month"].value_counts())
    assert {k: v for k, v in profile["Month"]["top"]} == dict(
        sorted(month.items(), key=lambda kv: -kv[1])[:10]
    )
    assert profile["BounceRates"]["max"] <= 0.19

    # the data report with its histograms
    report = Path(summary.report or "")
    assert report == workdir.reports / "data" / "data_report.md"
    text = report.read_text()
    assert summary.dataset_version in text and "out_of_range" in text
    pngs = sorted((workdir.reports / "data").glob("hist_*.png"))
    assert len(pngs) == len(profile) and f"]({pngs[0].name})" in text

    # same data again: same version, and no anomaly against the previous profile
    quiet = load_card(SHOPPERS_CARD, overrides=[*overrides, "data.report=false"])
    again = run_etl(quiet, workdir)
    assert again.dataset_version == summary.dataset_version and again.anomalies == []
    assert again.reference_profile.endswith("profile.json")

    # a change in the data: a new version, and a failing check keeps the old outputs
    shifted = raw.copy()
    shifted.loc[shifted.index[:200], "PageValues"] *= 50
    shifted.to_csv(source, index=False)
    with pytest.raises(DataError, match=r"'PageValues': .* outside the reference range"):
        run_etl(card, workdir)
    assert dataset_version(card, workdir) == summary.dataset_version
    assert "**fail** `out_of_range`: 'PageValues'" in report.read_text()  # why, for people
    relaxed = load_card(
        SHOPPERS_CARD,
        overrides=[*overrides[:2], "data.checks.reference=none", "data.report=false"],
    )
    changed = run_etl(relaxed, workdir)
    assert changed.dataset_version != summary.dataset_version and changed.anomalies == []


def obp_log(shared_datasets: Path) -> pd.DataFrame:
    frame = pd.read_csv(shared_datasets / "ad_click" / "obp_bts_all.csv", index_col=0)
    users = frame[[f"user_feature_{i}" for i in range(4)]].agg("-".join, axis=1)
    frame["user"] = "u" + pd.util.hash_array(users.to_numpy(dtype=object)).astype(str)
    return frame


def obp_card(uri: str, output: str, source: dict[str, Any], split: dict[str, Any]) -> DesignCard:
    return card_from_dict(
        {
            "name": "ad_clicks",
            "requirements": {"business_objective": "rank ads"},
            "framing": {
                "ml_objective": "p(click)",
                "inputs": [
                    {"name": "item_id", "type": "category"},
                    {"name": "position", "type": "category"},
                    {"name": "propensity_score", "type": "float"},
                    {"name": "user_feature_0", "type": "category"},
                ],
                "label": {
                    "column": "clicked",
                    "mapping": {"0": 0, "1": 1},
                    "classes": ["no_click", "click"],
                },
            },
            "data": {"sources": [{"uri": uri, **source}], "output_uri": output, "split": split},
            "models": {
                "baseline": {"name": "b", "kind": "majority"},
                "candidates": [{"name": "c", "kind": "logreg"}],
            },
        }
    )


def test_click_log_to_labels_with_a_time_split(
    ray_cluster, shared_datasets: Path, tmp_path: Path
) -> None:
    """The real log (10,000 impressions, 42 clicks) becomes events: each click 2 s after its
    impression, plus clicks that must not count (too late, unknown key) and broken events."""
    log = obp_log(shared_datasets)
    times = pd.to_datetime(log["timestamp"])
    keep = ["timestamp", "item_id", "position", "propensity_score", "user_feature_0", "user"]
    events = [{"event": "impression", **r} for r in log[keep].to_dict("records")]
    for _, row in log[log["click"] == 1].iterrows():
        at = (pd.Timestamp(row["timestamp"]) + pd.Timedelta(seconds=2)).isoformat()
        events.append(
            {"event": "click", "timestamp": at, "user": row["user"], "item_id": row["item_id"]}
        )
    singles = log.groupby(["user", "item_id"]).filter(lambda g: len(g) == 1)
    late = singles[singles["click"] == 0].head(20)
    for _, row in late.iterrows():  # 61 s after: outside the 60 s window
        at = (pd.Timestamp(row["timestamp"]) + pd.Timedelta(seconds=61)).isoformat()
        events.append(
            {"event": "click", "timestamp": at, "user": row["user"], "item_id": row["item_id"]}
        )
    events.append({"event": "click", "timestamp": 1574553617, "user": "ghost", "item_id": 1})
    events += [
        {"event": "view", "timestamp": 1574553617, "user": "u", "item_id": 1},
        {"event": "impression", "timestamp": "not a time", "user": "u", "item_id": 2},
        {"event": "impression", "timestamp": 1574553617, "item_id": 3},
    ]
    random.Random(0).shuffle(events)
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + "{broken json\n")
    card = obp_card(
        str(path),
        str(tmp_path / "out"),
        {"events": {"key": ["user", "item_id"], "window_s": 60, "type_column": "event"}},
        {
            "strategy": "time",
            "time_column": "timestamp",
            "train": 0.8,
            "validation": 0.1,
            "test": 0.1,
        },
    )
    workdir = Workdir(tmp_path)
    summary = run_etl(card, workdir)

    stats = summary.events[str(path)]
    assert stats == {
        "events_in": 10000 + 42 + 20 + 1 + 3 + 1,
        "impressions": 10000,
        "clicks": 42 + 20 + 1,
        "clicks_credited": 42,
        "clicks_orphan": 21,
        "positives": 42,
        "quarantined": 4,
    }
    assert summary.rows_in == 10004 and summary.rows_ok == 10000 and summary.rows_quarantined == 4
    assert set(summary.quarantine_by_reason) == {"bad_event", "unparseable_row"}

    rows = all_rows(card, workdir)
    key = list(zip(rows["item_id"], rows["timestamp"].map(lambda t: t.isoformat()), strict=True))
    truth = dict(
        zip(
            zip(log["item_id"].astype(str), times.map(lambda t: t.isoformat()), strict=True),
            log["click"],
            strict=True,
        )
    )
    assert [truth[k] for k in key] == rows["label"].tolist()  # every label as the log says

    train, test = (read_split(card, workdir, s) for s in ("train", "test"))
    assert train["timestamp"].max() <= test["timestamp"].min()
    assert summary.rows_per_split == {"train": 8000, "validation": 1000, "test": 1000}
    assert summary.class_weights["click"] > 50


def test_group_split_dedup_and_leakage(ray_cluster, shared_datasets: Path, tmp_path: Path) -> None:
    log = obp_log(shared_datasets)
    frame = log[["user", "item_id", "position", "propensity_score", "user_feature_0", "click"]]
    frame = frame.rename(columns={"click": "clicked"})
    path = tmp_path / "clicks.csv"
    pd.concat([frame, frame.head(25)]).to_csv(path, index=False)  # 25 exact repeats
    split = {"strategy": "group", "group_column": "user", "leakage": "fail", "seed": 4}
    card = obp_card(str(path), str(tmp_path / "out"), {}, split)
    workdir = Workdir(tmp_path)
    with pytest.raises(DataError, match=r"Leakage: \d+ inputs values are in more than one split"):
        run_etl(card, workdir)

    raw = card.model_dump(mode="json")
    raw["data"]["unique_key"] = ["item_id", "position", "propensity_score", "user_feature_0"]
    raw["data"]["split"]["leakage"] = "warn"
    raw["data"]["balance"] = "down"
    card = card_from_dict(raw)
    summary = run_etl(card, workdir)
    keys = frame.drop(columns=["user", "clicked"]).astype(str)
    repeats = int(keys.duplicated().sum()) + 25
    assert summary.quarantine_by_reason == {"duplicate_key": repeats}
    assert summary.rows_ok == 10000 + 25 - repeats
    assert summary.leakage["rows"] == 0
    users = {s: set(read_split(card, workdir, s)["user"]) for s in SPLITS}
    assert not (users["train"] & users["test"] or users["train"] & users["validation"])
    assert not users["validation"] & users["test"]
    train = read_split(card, workdir, "train")
    assert train["label"].value_counts().tolist() == [summary.label_counts["train"]["click"]] * 2
    assert summary.rows_written["train"] == len(train) < summary.rows_per_split["train"]
    assert summary.class_weights == {"no_click": 1.0, "click": 1.0}
    quarantine = read_split(card, workdir, "quarantine")
    assert quarantine["_reason"].str.startswith("duplicate key").all()
    assert np.isin(quarantine["_row"], np.arange(1, 10026)).all()
