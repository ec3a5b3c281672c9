"""Continual learning: a new transformer warm-starts from the registry's champion (a real MLflow
sqlite store in a tmp workdir) and continues training on new data (driver path, no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mlsd_ray.errors import CardError, RegistryError
from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
from mlsd_ray.registry import log_and_register, set_alias
from mlsd_ray.settings import Workdir
from mlsd_ray.train.recipe import initial_net, resolve_warm_start
from mlsd_ray.train.transformer import transformer_params
from tests.toy_data import toy_split as split
from tests.unit.test_train_recipe import T, card, train, weights


@pytest.fixture(autouse=True)
def _own_tracking_store(monkeypatch):  # type: ignore[no-untyped-def]
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI, which Workdir.tracking_uri then
    prefers: without this, a second workdir in the same process would reuse the first store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _register_champion(tmp_path: Path, workdir: Workdir) -> Path:
    first = card(f"{T}.max_steps=12", f"{T}.checkpoint_every_steps=50")
    champion = train(first, tmp_path / "old", "champion", n=200, seed=0)
    package = save_package(
        champion,
        workdir.model_dir("minilm"),
        ModelManifest(
            name="minilm",
            kind="transformer",
            category="binary",
            inputs=[InputSchema(name="text", type="text")],
            classes=["ok", "harmful"],
            params={"pretrained": "tiny"},
        ),
    )
    info = log_and_register(first, workdir, "minilm", package, {"pretrained": "tiny"}, {})
    set_alias(first, workdir, "champion", info.version)
    return package


def _first_loss(progress: Path) -> float:
    return float(json.loads(progress.read_text().splitlines()[0])["loss"])


def test_warm_start_from_the_champion_continues_its_training(tmp_path: Path) -> None:
    workdir = Workdir(tmp_path / "work")
    package = _register_champion(tmp_path, workdir)
    warm_log, cold_log = tmp_path / "warm.jsonl", tmp_path / "cold.jsonl"
    warm_card = card(
        f"{T}.warm_start=champion",
        f"{T}.max_steps=3",
        f"models.candidates.0.params={{progress_file: {warm_log}}}",
    )
    spec = warm_card.models.candidates[0]

    # The starting weights are the champion's, fetched through the registry.
    identity, folder = resolve_warm_start("champion", warm_card, workdir) or ("", Path())
    assert identity == f"{warm_card.registered_model_name}@champion=v1"
    assert folder.is_relative_to(workdir.root / "registry_cache")
    params = {**transformer_params(spec, warm_card), "warm_start_dir": str(folder)}
    start, _ = initial_net(params)
    champion = load_file(str(package / "model.safetensors"))
    assert start.state_dict().keys() == champion.keys()
    for key, value in start.state_dict().items():
        torch.testing.assert_close(value, champion[key], rtol=0, atol=0, msg=key)

    # Training continues on new data from there.
    new_data, val = split(64, 7), split(20, 99)
    runs = str(tmp_path / "runs")
    model = train_transformer_(spec, warm_card, new_data, val, tmp_path / "new", runs, workdir)
    m = model.train_metrics_
    assert m["step"] == 3 and model.params["warm_start_from"] == identity
    trained = weights(tmp_path / "new", m["run_name"])
    assert not torch.equal(trained["head.weight"], champion["head.weight"])

    # Control: the same run without warm start starts from scratch-level loss, in another run.
    cold_card = card(
        f"{T}.max_steps=3", f"models.candidates.0.params={{progress_file: {cold_log}}}"
    )
    cold = train_transformer_(
        cold_card.models.candidates[0], cold_card, new_data, val, tmp_path / "new", runs, workdir
    )
    assert cold.train_metrics_["run_name"] != m["run_name"]
    assert _first_loss(warm_log) < _first_loss(cold_log) - 0.05


def train_transformer_(spec, c, train_df, val_df, out, runs, workdir):  # type: ignore[no-untyped-def]
    from mlsd_ray.train.transformer import train_transformer

    return train_transformer(spec, c, train_df, val_df, out, runs, workdir=workdir)


def test_warm_start_mistakes_are_explained(tmp_path: Path) -> None:
    workdir = Workdir(tmp_path / "work")
    c = card(f"{T}.warm_start=champion")
    with pytest.raises(RegistryError, match="no version with alias 'champion'"):
        resolve_warm_start("champion", c, workdir)
    with pytest.raises(CardError, match="needs the registry"):
        resolve_warm_start("champion", c, None)
    tabular = tmp_path / "tfidf"
    tabular.mkdir()
    (tabular / "mlsd_model.json").write_text(json.dumps({"kind": "tfidf_logreg"}))
    with pytest.raises(CardError, match="tfidf_logreg model, not a transformer"):
        resolve_warm_start(str(tabular), c, workdir)
    with pytest.raises(CardError, match="not a transformer package"):
        resolve_warm_start(str(tmp_path), c, workdir)
