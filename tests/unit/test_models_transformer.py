"""The transformer classifier without Ray: a tiny random BERT with the real MiniLM tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mlsd_ray.errors import ModelError, NotFittedError
from mlsd_ray.models.package import InputSchema, ModelManifest, load_package, save_package
from mlsd_ray.models.transformer import (
    LoopHooks,
    LoopState,
    TransformerTextClassifier,
    build_encoder,
    build_net,
    class_weights,
    frame_batches,
    make_loss,
    make_optimizer,
    tokenize,
    train_loop,
)
from mlsd_ray.predict import Predictor
from mlsd_ray.train.metrics import roc_auc

HARMFUL = ["i hate you", "you are awful", "go away idiot", "stupid person", "i will hurt you"]
BENIGN = ["have a nice day", "lovely weather", "thanks for the help", "great game", "see you soon"]
PARAMS = {
    "pretrained": "tiny",
    "max_length": 16,
    "epochs": 3,
    "batch_size": 16,
    "learning_rate": 1e-3,
    "n_classes": 2,
}


def toy(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Trivially separable texts: a harmful or benign phrase plus a random number."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    texts = [f"{(HARMFUL if c else BENIGN)[rng.integers(5)]} {rng.integers(100)}" for c in y]
    return pd.DataFrame({"text": texts}), y.astype(np.int64)


class Recorder(LoopHooks):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.epochs: list[float] = []

    def after_step(self, state: LoopState, loss: float, last_in_epoch: bool) -> None:
        self.losses.append(loss)

    def after_epoch(self, state: LoopState, train_loss: float, stats: dict[str, float]) -> None:
        self.epochs.append(train_loss)


@pytest.fixture(scope="module")
def trained() -> tuple[TransformerTextClassifier, Recorder]:
    X, y = toy(200, 0)
    hooks = Recorder()
    return TransformerTextClassifier(["text"], **PARAMS).fit(X, y, hooks=hooks), hooks


@pytest.fixture(scope="module")
def fitted(trained: tuple[TransformerTextClassifier, Recorder]) -> TransformerTextClassifier:
    return trained[0]


def test_fit_learns_a_separable_toy_set(fitted: TransformerTextClassifier) -> None:
    X, y = toy(100, 1)
    proba = fitted.predict_proba(X)
    assert proba.shape == (100, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    auc = roc_auc(y, proba)
    assert auc is not None and auc > 0.8


def test_loss_goes_down(trained: tuple[TransformerTextClassifier, Recorder]) -> None:
    hooks = trained[1]
    assert len(hooks.epochs) == 3 and len(hooks.losses) == 3 * 13  # 200 rows in batches of 16
    assert hooks.epochs[-1] < hooks.epochs[0]


def test_predict_before_fit_raises() -> None:
    model = TransformerTextClassifier(["text"], **PARAMS)
    with pytest.raises(NotFittedError, match="fit"):
        model.predict_proba(pd.DataFrame({"text": ["hello"]}))
    with pytest.raises(NotFittedError):
        model.save(Path("unused"))


# The save/load round trip (no pickle): tests/unit/test_model_kinds.py.


def test_predictor_serves_a_transformer_package(
    fitted: TransformerTextClassifier, tmp_path: Path
) -> None:
    manifest = ModelManifest(
        name="tiny",
        kind="transformer",
        category="binary",
        inputs=[InputSchema(name="text", type="text")],
        classes=["ok", "harmful"],
        params={**PARAMS, "text_input": "text"},
    )
    save_package(fitted, tmp_path / "pkg", manifest)
    model, _ = load_package(tmp_path / "pkg")
    assert isinstance(model, TransformerTextClassifier)
    predictor = Predictor(tmp_path / "pkg")
    scores = predictor.predict(["i hate you 3", {"text": "have a nice day 4"}, ""])
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
    assert scores[0] > scores[1]


def test_text_input_need_not_be_first(tmp_path: Path) -> None:
    X, y = toy(64, 3)
    X.insert(0, "user_age", 30)
    params = {**PARAMS, "epochs": 1, "text_input": "text"}
    model = TransformerTextClassifier(["user_age", "text"], **params).fit(X, y)
    model.save(tmp_path)
    loaded = TransformerTextClassifier.load(tmp_path, ["user_age", "text"], {})
    assert loaded.text_input == "text"
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_train_loop_resumes_where_it_stopped() -> None:
    """max_steps stops mid-epoch; continuing from the state skips the batches already seen."""
    X, y = toy(100, 4)
    batches = frame_batches(X["text"].tolist(), y, 16, seed=0)  # 7 batches per epoch
    net, tokenizer = build_net("tiny", 2)
    optimizer = make_optimizer(net, 1e-3, 0.01)
    hooks = Recorder()
    run = {"epochs": 2, "max_length": 16, "hooks": hooks}
    state = train_loop(net, optimizer, make_loss(None), tokenizer, batches, max_steps=5, **run)
    assert state == LoopState(epoch=0, step=5, step_in_epoch=5)
    state = train_loop(net, optimizer, make_loss(None), tokenizer, batches, state=state, **run)
    assert state == LoopState(epoch=2, step=14, step_in_epoch=0)
    assert len(hooks.losses) == 14  # 2 epochs x 7 batches, none trained twice


def test_class_weights_balanced() -> None:
    assert class_weights(np.array([0, 0, 0, 1]), 2, "balanced") == pytest.approx([2 / 3, 2.0])
    assert class_weights(np.array([0, 0]), 2, "balanced") == pytest.approx([0.5, 1.0])
    assert class_weights(np.array([0, 1]), 2, "none") is None


def test_tiny_encoder_has_no_pooler() -> None:
    encoder, tokenizer = build_encoder("tiny")
    assert getattr(encoder, "pooler", None) is None
    assert encoder.config.hidden_size == 32 and tokenizer.vocab_size == 30522
    net, _ = build_net("tiny", 3)
    out = net(**tokenize(tokenizer, ["a b c", ""], max_length=8))
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_unknown_pretrained_folder_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a model folder"):
        build_encoder(str(tmp_path / "nope"))
