"""The training stage on the shared local Ray: Ray tasks for simple models, Ray Train
(TorchTrainer, one worker) for the transformer, packages that the Predictor loads."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mlsd_ray.data.layout import read_split
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, load_card
from mlsd_ray.train.stage import train_models
from mlsd_ray.train.transformer import train_transformer
from tests.toy_data import toy_split as split

pytestmark = pytest.mark.integration

CARD = Path(__file__).resolve().parents[2] / "systems" / "harmful_content.yaml"


def tiny_card(*overrides: str) -> DesignCard:
    trainer = "models.candidates.0.trainer"
    return load_card(
        CARD,
        overrides=[
            f"{trainer}.pretrained=tiny",
            f"{trainer}.num_workers=1",
            f"{trainer}.cpus_per_worker=1",
            f"{trainer}.max_length=16",
            f"{trainer}.learning_rate=0.001",
            *overrides,
        ],
    )


def write_splits(card: DesignCard, workdir: Workdir, n_train: int = 200) -> None:
    for name, frame in (("train", split(n_train, 0)), ("validation", split(60, 1))):
        folder = Path(workdir.split_uri(card, name))
        folder.mkdir(parents=True)
        frame.to_parquet(folder / "part-00000.parquet", index=False)


def test_train_models_packages_baseline_and_transformer(ray_cluster, tmp_path: Path) -> None:
    card = tiny_card()
    workdir = Workdir(tmp_path)
    write_splits(card, workdir)

    summary = train_models(card, workdir)

    assert json.loads(workdir.summary_path("train").read_text()) == json.loads(json.dumps(summary))
    assert set(summary["models"]) == {"tfidf_logreg", "minilm"}
    for name, entry in summary["models"].items():
        assert entry["rows"] == {"train": 200, "validation": 60}
        assert entry["validation_roc_auc"] > 0.8, name
        predictor = Predictor(entry["dir"])
        scores = predictor.predict(["i hate you 5", {"text": "have a nice day 7"}])
        assert scores[0] > scores[1], name
        meta = predictor.manifest.metadata
        assert meta["card"] == "harmful_content" and meta["rows"]["train"] == 200
        assert meta["train_uri"].endswith("/data/train") and "trained_at" in meta
    transformer = Predictor(summary["models"]["minilm"]["dir"]).manifest
    assert transformer.kind == "transformer" and transformer.classes == ["ok", "harmful"]
    assert transformer.params["pretrained"] == "tiny" and transformer.params["n_classes"] == 2
    assert transformer.metadata["step"] == 13  # one epoch of 200 rows in batches of 16


def test_ray_train_resumes_from_the_last_checkpoint(ray_cluster, tmp_path: Path) -> None:
    train, val = split(160, 2), split(40, 3)
    storage = str(tmp_path / "runs")
    first = tiny_card(
        "models.candidates.0.trainer.max_steps=3",
        "models.candidates.0.trainer.checkpoint_every_steps=1",
    )
    spec = first.models.candidates[0]
    m1 = train_transformer(spec, first, train, val, tmp_path, storage).train_metrics_
    assert (m1["step"], m1["resumed_from_step"]) == (3, 0)

    # A rerun with the same run name (same data and step settings) continues from step 3.
    second = tiny_card(
        "models.candidates.0.trainer.max_steps=5",
        "models.candidates.0.trainer.checkpoint_every_steps=1",
    )
    model = train_transformer(second.models.candidates[0], second, train, val, tmp_path, storage)
    m2 = model.train_metrics_
    assert m2["run_name"] == m1["run_name"]
    assert (m2["resumed_from_step"], m2["step"]) == (3, 5)
    assert "val_roc_auc" in m2 and model.predict_proba(val).shape == (40, 2)
    kept = sorted(p.name for p in (Path(storage) / m1["run_name"]).glob("step_*"))
    assert kept == ["step_00000004", "step_00000005"]  # CheckpointConfig(num_to_keep=2)


@pytest.mark.slow
def test_real_minilm_fine_tunes_a_few_steps(ray_cluster, tmp_path: Path) -> None:
    trainer = "models.candidates.0.trainer"
    card = load_card(
        CARD,
        overrides=[
            f"{trainer}.max_steps=5",
            f"{trainer}.batch_size=8",
            f"{trainer}.num_workers=1",
            f"{trainer}.cpus_per_worker=1",
        ],
    )
    workdir = Workdir(tmp_path)
    write_splits(card, workdir, n_train=80)

    summary = train_models(card, workdir, only=["minilm"])

    entry = summary["models"]["minilm"]
    assert set(summary["models"]) == {"minilm"}
    predictor = Predictor(entry["dir"])
    assert predictor.manifest.metadata["step"] == 5
    assert predictor.manifest.params["pretrained"] == "minilm"
    scores = predictor.predict(["i will hurt you 1", "see you soon 2"])
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert (Path(entry["dir"]) / "model.safetensors").stat().st_size > 80_000_000


def test_read_split_from_s3(s3_server: str, s3_bucket: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    frame = split(10, 4)
    with fs.open(f"{s3_bucket}/train-stage/train/part-0.parquet", "wb") as f:
        frame.to_parquet(f, index=False)
    pd.testing.assert_frame_equal(read_split(f"s3://{s3_bucket}/train-stage/train"), frame)
