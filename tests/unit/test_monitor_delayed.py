"""Delayed labels: one shape for every source, quarantine, the windowed join, arm metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd_ray.monitor.card import Feedback
from mlsd_ray.monitor.feedback import normalise, parse_times, read_files
from mlsd_ray.monitor.online import join_delayed, online_by_arm

T0 = pd.Timestamp("2026-01-01T00:00:00Z")


def _log(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "ts": [T0 + pd.Timedelta(minutes=i) for i in range(n)],
            "model_version": ["1", "1", "1", "2", "2", "2"][:n],
            "arm": ["champion"] * 3 + ["canary"] * 3,
            "session": [f"s{i % 3}" for i in range(n)],
            "probability": [0.9, 0.2, 0.7, 0.1, 0.8, 0.6][:n],
        }
    )


def test_normalise_quarantines_with_reasons():
    raw = pd.DataFrame(
        [
            {"request_id": "r0", "label": 1, "ts": "2026-01-01T00:10:00Z"},
            {"request_id": "", "label": 1, "ts": "2026-01-01T00:10:00Z"},
            {"request_id": "r1", "label": "yes", "ts": "2026-01-01T00:10:00Z"},
            {"request_id": "r2", "label": 0, "ts": "tomorrow-ish"},
            {"raw": "{not json"},
            {"request_id": "r3", "label": "0", "ts": 1767225600},  # epoch seconds
        ]
    )
    good, bad = normalise(raw, Feedback(), "test")
    assert good["key"].tolist() == ["r0", "r3"] and good["label"].tolist() == [1.0, 0.0]
    assert good["event_ts"].iloc[1] == pd.Timestamp("2026-01-01T00:00:00Z")
    assert bad["_reason"].tolist() == [
        "no 'request_id'",
        "'label' is missing or not a number",
        "'ts' is missing or not a time",
        "not a JSON object",
    ]
    assert "{not json" in bad["raw"].iloc[3] and "tomorrow-ish" in bad["raw"].iloc[2]


def test_parse_times_mixed():
    out = parse_times(pd.Series(["2026-01-01T01:00:00+01:00", 0, None, "x"]))
    assert out.iloc[0] == T0 and out.iloc[1] == pd.Timestamp(0, tz="UTC")
    assert out.iloc[2:].isna().all()
    typed = pd.Series(pd.to_datetime(["2026-01-01T00:00:00Z"]))  # a timestamptz column
    assert parse_times(typed).iloc[0] == T0


def test_json_lines_file_with_a_broken_line(tmp_path: Path):
    path = tmp_path / "fb.jsonl"
    path.write_text(json.dumps({"request_id": "r0", "label": 1, "ts": 5}) + "\n{oops\n\n")
    raw = read_files(str(tmp_path))
    good, bad = normalise(raw, Feedback(), "f")
    assert len(good) == 1 and bad["_reason"].tolist() == ["not a JSON object"]


def _labels(rows: list[tuple[str, float, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "key": [k for k, _, _ in rows],
            "label": [v for _, v, _ in rows],
            "event_ts": [T0 + pd.Timedelta(minutes=m) for _, _, m in rows],
        }
    )


def test_join_by_request_id_counts_late_never_unknown_and_duplicates():
    fb = Feedback(window_s=3600)
    labels = _labels(
        [
            ("r0", 1, 30),  # 30 min after: labelled
            ("r0", 0, 40),  # a second verdict: duplicate, the first wins
            ("r1", 0, 200),  # 199 min after its prediction: late
            ("r3", 0, 10),
            ("r4", 1, 20),
            ("nobody", 1, 5),  # unknown request id
        ]
    )
    now = T0 + pd.Timedelta(minutes=64)  # r5 (at 5 min) is 59 min old: still pending
    joined, counts = join_delayed(_log(), labels, fb, now=now)
    assert joined["label_state"].tolist() == [
        "labelled",
        "late",
        "never",
        "labelled",
        "labelled",
        "pending",
    ]
    assert counts == {
        "predictions": 6,
        "labels": 6,
        "unknown_key": 1,
        "duplicate": 1,
        "labelled": 3,
        "late": 1,
        "pending": 1,
        "never": 1,
    }
    assert joined["feedback_label"].iloc[0] == 1.0 and np.isnan(joined["feedback_label"].iloc[1])
    assert joined["label_delay_s"].iloc[0] == 30 * 60


def test_join_by_entity_takes_the_latest_prediction_before_the_label():
    fb = Feedback(key="session", window_s=3600)
    # s1's predictions are r1 (1 min) and r4 (4 min); a label at 3 min belongs to r1.
    joined, counts = join_delayed(_log(), _labels([("s1", 1, 3), ("s9", 0, 3)]), fb, now=T0)
    assert joined.loc[joined["feedback_label"].notna(), "request_id"].tolist() == ["r1"]
    assert counts["unknown_key"] == 1 and counts["labelled"] == 1


def test_metrics_per_version_and_arm():
    labels = _labels([(f"r{i}", y, 10 + i) for i, y in enumerate([1, 0, 0, 0, 1, 1])])
    joined, _ = join_delayed(_log(), labels, Feedback(), now=T0)
    out = online_by_arm(joined, threshold=0.5)
    champion, canary = out["by_version_arm"]["1/champion"], out["by_version_arm"]["2/canary"]
    # Champion: p = .9 .2 .7, y = 1 0 0 -> flags r0, r2; caught 1/1, precision 1/2.
    assert champion["caught_share"] == 1.0 and champion["precision_of_flags"] == 0.5
    assert champion["roc_auc"] == 1.0 and champion["labelled"] == 3
    # Canary: p = .1 .8 .6, y = 0 1 1 -> everything right.
    assert canary["precision_of_flags"] == 1.0 and canary["ctr"] == pytest.approx(2 / 3)
    assert canary["label_delay_s"] == {"p50": 600.0, "p95": 600.0}  # each label 10 min later
    cal = out["overall"]["calibration"]
    assert cal["observed_rate"] == 0.5 and cal["mean_predicted"] == pytest.approx(3.3 / 6)
