"""The faster CPU inference paths (bf16, int8, ONNX) against fp32, on a tiny trained BERT.

Tolerances are on probabilities of a 2-class softmax (so |dp| <= |dlogit| / 4); measured
gaps on this model in brackets, each tolerance leaves room for another seed or CPU:
* onnx: the same fp32 arithmetic in another engine, only summation order differs (1e-7) -> 1e-5.
* bf16: 8-bit mantissa, 0.4% relative error per rounding, through 2 layers (1.2e-3) -> 0.02.
* int8: int8 weights (1/255 of each tensor's range) and activations per batch (2e-4) -> 0.01.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import torch

from mlsd_ray.errors import CardError, ModelError
from mlsd_ray.models import fast_inference
from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
from mlsd_ray.models.simple import TfidfLogReg
from mlsd_ray.models.transformer import TransformerTextClassifier
from mlsd_ray.predict import Predictor
from mlsd_ray.spec import load_card
from tests.toy_data import toy_split

REPO = Path(__file__).resolve().parents[2]
PARAMS = {
    "pretrained": "tiny",
    "max_length": 24,
    "epochs": 2,
    "batch_size": 16,
    "learning_rate": 1e-3,
    "n_classes": 2,
}
TOLERANCE = {"onnx": 1e-5, "bf16": 0.02, "int8": 0.01}


def manifest(kind: str = "transformer") -> ModelManifest:
    return ModelManifest(
        name="tiny",
        kind=kind,
        category="binary",
        inputs=[InputSchema(name="text", type="text")],
        classes=["ok", "harmful"],
        params={**PARAMS, "text_input": "text"} if kind == "transformer" else {},
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: on a shared 2-core machine two OpenMP threads spin against other
    processes and made this module's training 20x slower (23 s against 1.3 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Exported graphs go to a folder of this module (the default is the temp folder)."""
    folder = tmp_path_factory.mktemp("onnx_cache")
    before = os.environ.get(fast_inference.ONNX_CACHE_ENV)
    os.environ[fast_inference.ONNX_CACHE_ENV] = str(folder)
    yield folder
    if before is None:
        del os.environ[fast_inference.ONNX_CACHE_ENV]
    else:
        os.environ[fast_inference.ONNX_CACHE_ENV] = before


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    train = toy_split(160, 0)
    model = TransformerTextClassifier(["text"], **PARAMS).fit(train[["text"]], train["label"])
    return save_package(model, tmp_path_factory.mktemp("pkg") / "tiny", manifest())


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """More than one chunk of 64, with lengths from 1 to ~60 tokens, in a mixed order."""
    base = toy_split(150, 1)["text"].tolist()
    return [t + " and more" * (i % 7) * 3 if i % 3 else t for i, t in enumerate(base)]


@pytest.fixture(scope="module")
def reference(package: Path, texts: list[str]) -> np.ndarray:
    return np.asarray(Predictor(package).predict(texts))


@pytest.mark.parametrize("path", ["onnx", "bf16", "int8"])
def test_each_path_stays_close_to_fp32(
    package: Path, texts: list[str], reference: np.ndarray, path: str
) -> None:
    if path == "bf16" and not fast_inference.bf16_supported():
        pytest.skip("this CPU has no native bf16; the fallback is tested below")
    predictor = Predictor(package, inference=path)
    assert predictor.describe()["inference"] == path
    scores = np.asarray(predictor.predict(texts))
    gap = float(np.abs(scores - reference).max())
    assert gap <= TOLERANCE[path], f"{path}: max |p - p_fp32| = {gap:.2e}"
    assert np.ptp(reference) > 0.5  # a trained model: the comparison is not of constants
    # Same ranking, up to near-ties: the order of the answers is the order of the texts.
    assert np.corrcoef(scores, reference)[0, 1] > 0.99


def test_onnx_round_trip_is_loaded_without_pickle(
    package: Path,
    texts: list[str],
    reference: np.ndarray,
    onnx_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle must not be used to load a model")

    for name in ("load", "loads"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    package_files = sorted(p.name for p in package.rglob("*"))
    predictor = Predictor(package, inference="onnx")
    files = list(onnx_cache.glob("model-*.onnx"))
    assert len(files) == 1
    assert files[0] == fast_inference.onnx_file_for(package)
    assert sorted(p.name for p in package.rglob("*")) == package_files  # package unchanged
    graph = onnx.load(str(files[0])).graph
    onnx.checker.check_model(str(files[0]))
    dims = {i.name: [d.dim_param for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims == {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}
    # A batch of one and an unpadded batch differ in shape from the export example.
    assert predictor.predict(texts[:1]) == pytest.approx(reference[:1].tolist(), abs=1e-5)
    same_length = ["great game 1", "great game 2", "great game 3"]
    fp32 = Predictor(package).predict(same_length)
    assert predictor.predict(same_length) == pytest.approx(fp32, abs=1e-5)

    # A second load reuses the graph of these weights instead of exporting again.
    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("exported twice")

    monkeypatch.setattr(fast_inference, "export_onnx", no_export)
    again = Predictor(package, inference="onnx")
    assert again.predict(texts[:3]) == pytest.approx(reference[:3].tolist(), abs=1e-5)


def test_int8_quantizes_the_encoder_but_its_ffn_outputs(package: Path) -> None:
    predictor = Predictor(package, inference="int8")
    net = predictor.model.runner_.net

    def quantized(module: torch.nn.Module) -> list[str]:
        dynamic = torch.ao.nn.quantized.dynamic.Linear
        return [n for n, m in module.named_modules() if isinstance(m, dynamic)]

    names = quantized(net)
    assert names and all(n.startswith("encoder.") for n in names)
    # 2 blocks x (query, key, value, attention output, intermediate); not the FFN output.
    assert len(names) == 2 * 5
    assert not [n for n in names if n.endswith("output.dense") and "attention" not in n]
    assert type(net.head) is torch.nn.Linear  # the head stays fp32
    assert quantized(predictor.model.net_) == []  # the package's network is left as it was


def test_card_option_selects_the_path(package: Path) -> None:
    card = load_card(REPO / "systems" / "harmful_content.yaml")
    assert card.deployment.inference == "auto"
    card = load_card(
        REPO / "systems" / "harmful_content.yaml", overrides=["deployment.inference=int8"]
    )
    assert card.deployment.inference == "int8"
    predictor = Predictor(package, inference=card.deployment.inference)
    assert predictor.describe()["inference"] == "int8"
    assert predictor.model.runner_.path == "int8"


def test_card_rejects_unknown_paths_and_cards_without_a_transformer(tmp_path: Path) -> None:
    card = REPO / "systems" / "harmful_content.yaml"
    with pytest.raises(CardError, match=r"deployment\.inference"):
        load_card(card, overrides=["deployment.inference=fp16"])
    with pytest.raises(CardError, match="applies to transformer models"):
        load_card(
            card,
            overrides=["deployment.inference=onnx", "models.candidates.0={name: lr, kind: logreg}"],
        )


def test_unknown_path_given_to_the_predictor_is_a_clear_error(package: Path) -> None:
    with pytest.raises(ModelError, match="one of"):
        Predictor(package, inference="fp8")


def test_bf16_falls_back_to_fp32_with_a_warning_without_cpu_support(
    package: Path,
    texts: list[str],
    reference: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(fast_inference, "bf16_supported", lambda: False)
    with caplog.at_level(logging.WARNING, logger=fast_inference.__name__):
        predictor = Predictor(package, inference="bf16")
    assert predictor.describe()["inference"] == "fp32"
    assert "no native bf16" in caplog.text
    np.testing.assert_allclose(predictor.predict(texts), reference, atol=1e-6)


def test_other_model_kinds_are_scored_as_they_are(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train = toy_split(60, 2)
    model = TfidfLogReg(["text"]).fit(train[["text"]], train["label"].to_numpy())
    save_package(model, tmp_path / "tfidf", manifest("tfidf_logreg"))
    with caplog.at_level(logging.INFO, logger=fast_inference.__name__):
        predictor = Predictor(tmp_path / "tfidf", inference="int8")
    assert predictor.describe()["inference"] == "native"
    assert "applies to transformer models" in caplog.text
    texts = train["text"].tolist()[:5]
    assert predictor.predict(texts) == Predictor(tmp_path / "tfidf").predict(texts)


def test_empty_input_gives_empty_logits(package: Path) -> None:
    predictor = Predictor(package, inference="int8")
    assert predictor.model.runner_([]).shape == (0, 2)
    assert predictor.model.predict_proba(pd.DataFrame({"text": []})).shape == (0, 2)


# deployment.inference: auto ---------------------------------------------------------------
def measured(**paths: tuple[float, float]) -> dict[str, dict[str, object]]:
    """(change, rows/s) per path, fp32 first; a path given as None is unavailable."""
    out: dict[str, dict[str, object]] = {
        "fp32": {"available": True, "change": 0.0, "rows_per_s": 100.0, "metric": 0.9}
    }
    for path, value in paths.items():
        if value is None:
            out[path] = {"available": False, "note": "runs as fp32 here"}
        else:
            out[path] = {
                "available": True,
                "change": value[0],
                "rows_per_s": value[1],
                "metric": 0.9 + value[0],
            }
    return out


def test_auto_picks_the_fastest_path_within_the_tolerance() -> None:
    from mlsd_ray.evaluate.inference_choice import pick

    paths = measured(onnx=(0.0, 180.0), int8=(-0.004, 250.0), bf16=(-0.02, 400.0))
    choice = pick(paths, "roc_auc", 0.005)
    assert choice["path"] == "int8"  # bf16 is faster but changes ROC-AUC by 0.02
    assert "2.50x" in choice["reason"] and "-0.0040" in choice["reason"]
    assert pick(paths, "roc_auc", 0.05)["path"] == "bf16"
    assert choice["paths"] == paths  # every path's change is kept for the reports


def test_auto_falls_back_to_fp32_and_says_why() -> None:
    from mlsd_ray.evaluate.inference_choice import pick

    none_within = pick(
        measured(onnx=(0.01, 180.0), int8=(-0.03, 250.0), bf16=None), "roc_auc", 0.005
    )
    assert none_within["path"] == "fp32"
    assert "no fast path within ±0.005 roc_auc" in none_within["reason"]
    assert "onnx +0.0100" in none_within["reason"] and "bf16 unavailable" in none_within["reason"]
    slower = pick(measured(onnx=(0.0, 90.0), int8=None, bf16=None), "roc_auc", 0.005)
    assert slower["path"] == "fp32" and "no faster than fp32" in slower["reason"]


def test_auto_measures_records_and_serves_the_choice(package: Path, tmp_path: Path) -> None:
    """On the tiny BERT: every path measured on a validation split, the choice written into
    the manifest, and a Predictor asked for ``auto`` runs the recorded path."""
    import shutil

    from mlsd_ray.evaluate.inference_choice import choose_inference
    from mlsd_ray.models.package import read_manifest

    pkg = Path(shutil.copytree(package, tmp_path / "pkg"))
    split = tmp_path / "validation"
    split.mkdir()
    toy_split(120, 7).to_parquet(split / "part-0.parquet")
    card = load_card(
        REPO / "systems" / "harmful_content.yaml", overrides=["deployment.num_cpus_per_replica=1"]
    )
    assert card.deployment.inference == "auto"
    assert Predictor(pkg, inference="auto").describe()["inference"] == "fp32"  # not yet measured
    choice = choose_inference(card, pkg, str(split))
    paths = choice["paths"]
    assert set(paths) == {"fp32", "onnx", "int8", "bf16"}
    assert paths["onnx"]["available"] and abs(paths["onnx"]["change"]) < 1e-3
    assert all(m["rows_per_s"] > 0 for m in paths.values() if m["available"])
    assert choice["path"] in {"fp32", "onnx", "int8", "bf16"} and choice["reason"]
    assert read_manifest(pkg).metadata["inference_choice"]["path"] == choice["path"]
    assert Predictor(pkg, inference="auto").describe()["inference"] == choice["path"]
    # The card's tolerance decides: zero admits only paths whose metric did not move at all.
    strict = load_card(
        REPO / "systems" / "harmful_content.yaml",
        overrides=["deployment.inference_max_metric_change=0"],
    )
    strict_choice = choose_inference(strict, pkg, str(split))
    for path, m in strict_choice["paths"].items():
        if path == strict_choice["path"] and path != "fp32":
            assert m["change"] == 0.0
    # A path set by the card is not measured and the manifest keeps the last measurement.
    fixed = load_card(
        REPO / "systems" / "harmful_content.yaml", overrides=["deployment.inference=int8"]
    )
    assert choose_inference(fixed, pkg, str(split)) == {
        "path": "int8",
        "reason": "set by the card (deployment.inference)",
    }


def test_auto_is_fp32_for_other_kinds_without_error(tmp_path: Path) -> None:
    from mlsd_ray.evaluate.inference_choice import choose_inference
    from mlsd_ray.models.package import read_manifest

    card = load_card(REPO / "systems" / "ad_click_ctr.yaml")
    assert card.deployment.inference == "auto"  # the default on a card without a transformer
    train = toy_split(60, 2)
    model = TfidfLogReg(["text"]).fit(train[["text"]], train["label"].to_numpy())
    save_package(model, tmp_path / "tfidf", manifest("tfidf_logreg"))
    choice = choose_inference(card, tmp_path / "tfidf", "unused: nothing is measured")
    assert choice["path"] == "fp32" and "one CPU path" in choice["reason"]
    assert read_manifest(tmp_path / "tfidf").metadata["inference_choice"]["path"] == "fp32"
    assert Predictor(tmp_path / "tfidf", inference="auto").describe()["inference"] == "fp32"


def test_replica_threads_follow_num_cpus() -> None:
    card = REPO / "systems" / "harmful_content.yaml"
    for cpus, threads in (("0.5", 1), ("1", 1), ("2", 2), ("3.5", 3)):
        loaded = load_card(card, overrides=[f"deployment.num_cpus_per_replica={cpus}"])
        assert loaded.deployment.replica_threads == threads
        # ... and reach the replica (BatchedModel.reconfigure sets torch's, which ONNX copies).
        from mlsd_ray.serve.app import model_user_config

        config = model_user_config(loaded, "1", REPO / "no-package")
        assert config["threads"] == threads and config["inference"] == "auto"
