"""The monitor stage end to end on local files (no Ray): log + reference -> report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd_ray.errors import DataError, RegistryError
from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
from mlsd_ray.models.simple import TfidfLogReg
from mlsd_ray.monitor.log import PredictionLogger
from mlsd_ray.monitor.stage import run_monitor
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from tests.conftest import REPO

WORDS = np.array(
    ["the", "a", "game", "photo", "idiot", "nice", "day", "you", "are", "great", "stupid", "trash"]
)


def _posts(rng: np.random.Generator, n: int, lo: int, hi: int, suffix: str = "") -> list[str]:
    return [" ".join(rng.choice(WORDS, size=rng.integers(lo, hi))) + suffix for _ in range(n)]


@pytest.fixture
def setup(tmp_path: Path):
    card = load_card(REPO / "systems" / "harmful_content.yaml")
    workdir = Workdir.of(tmp_path / "work")
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"text": _posts(rng, 1000, 3, 12)})
    train["label"] = train["text"].str.contains("idiot|stupid").astype(int)
    split = Path(workdir.split_uri(card, "train"))
    split.mkdir(parents=True)
    train.iloc[:500].to_parquet(split / "part-0.parquet")
    train.iloc[500:].to_parquet(split / "part-1.parquet")
    model = TfidfLogReg(["text"], min_df=1).fit(train[["text"]], train["label"].to_numpy())
    package = save_package(
        model,
        tmp_path / "pkg",
        ModelManifest(
            name="tfidf",
            kind="tfidf_logreg",
            category="binary",
            inputs=[InputSchema(name="text", type="text")],
            classes=["ok", "harmful"],
            metadata={"version": "5"},
        ),
    )
    return card, workdir, rng, package


def _serve_offline(card, workdir, package, texts: list[str], version: str = "5") -> None:
    """What the model deployment does per request: predict, then log."""
    predictor = Predictor(package)
    with PredictionLogger(workdir.prediction_log_uri(card), 100, 600, {"text": "text"}) as log:
        for i in range(0, len(texts), 10):
            chunk = texts[i : i + 10]
            frame = predictor.to_frame(chunk)
            log.log(f"r{i}", frame, predictor.predict_frame(frame), version)


def test_empty_log_is_a_clear_error(setup):
    card, workdir, _, _ = setup
    with pytest.raises(DataError, match=r"prediction log .* is empty") as err:
        run_monitor(card, workdir)
    assert "mlsd serve" in str(err.value)


def test_missing_reference_is_a_clear_error(setup, tmp_path):
    card, _, rng, package = setup
    other = Workdir.of(tmp_path / "elsewhere")
    _serve_offline(card, other, package, _posts(rng, 20, 3, 12))
    with pytest.raises(DataError, match="No training reference"):
        run_monitor(card, other, model_dir=package)


def test_no_drift_on_traffic_like_training(setup):
    card, workdir, rng, package = setup
    _serve_offline(card, workdir, package, _posts(rng, 600, 3, 12))
    summary = run_monitor(card, workdir, model_dir=package)
    assert summary["status"] == "ok", summary["features"]
    assert summary["drifting"] == [] and summary["plots"] == {}
    assert summary["n_reference"] == 1000 and summary["n_current"] == 600
    assert summary["features"]["probability"]["status"] == "ok"
    assert "version 5" in summary["prediction_drift"]


def test_drift_report_files(setup):
    card, workdir, rng, package = setup
    texts = _posts(rng, 300, 3, 12) + _posts(rng, 300, 25, 40, suffix=" @you www.spam.example")
    _serve_offline(card, workdir, package, texts)
    summary = run_monitor(card, workdir, model_dir=package)
    assert summary["status"] == "alert"
    for name in ("text.char_length", "text.word_count", "text.url_share", "text.mention_share"):
        assert summary["features"][name]["status"] == "alert", name
        assert Path(summary["plots"][name]).read_bytes()[:4] == b"\x89PNG"
    out = workdir.reports / "monitor"
    report = json.loads((out / "drift_report.json").read_text())
    assert report["model_versions"] == {"5": 600}
    assert report["window"]["start"] <= report["window"]["end"]
    assert report["features"]["text.char_length"]["current"]["mean"] > 100
    md = (out / "drift_report.md").read_text()
    assert "**Status: alert**" in md and "| text.char_length | numeric | alert |" in md
    assert "![text.url_share](drift_text.url_share.png)" in md
    on_disk = json.loads(workdir.summary_path("monitor").read_text())
    assert on_disk["report_md"] == summary["report_md"] == str(out / "drift_report.md")

    # A second run with no drift removes the stale pictures.
    for f in Path(workdir.prediction_log_uri(card)).rglob("*.parquet"):
        f.unlink()
    _serve_offline(card, workdir, package, _posts(rng, 400, 3, 12))
    assert run_monitor(card, workdir, model_dir=package)["plots"] == {}
    assert not list(out.glob("drift_*.png"))


def test_prediction_drift_needs_the_same_version(setup):
    card, workdir, rng, package = setup
    _serve_offline(card, workdir, package, _posts(rng, 100, 3, 12), version="4")
    summary = run_monitor(card, workdir, model_dir=package)
    assert "probability" not in summary["features"]
    assert "no logged predictions of model version 5" in summary["prediction_drift"]
    assert "probability" not in run_monitor(card, workdir, score_reference=False)["features"]


def test_registry_failure_skips_prediction_drift(setup, monkeypatch):
    registry = pytest.importorskip("mlsd_ray.registry")
    card, workdir, rng, package = setup

    def no_model(card, workdir, alias):
        raise RegistryError(f"no version with alias {alias!r}")

    monkeypatch.setattr(registry, "fetch_model", no_model)
    _serve_offline(card, workdir, package, _posts(rng, 100, 3, 12))
    summary = run_monitor(card, workdir)
    assert "could not score the reference" in summary["prediction_drift"]
    assert "text.char_length" in summary["features"]
