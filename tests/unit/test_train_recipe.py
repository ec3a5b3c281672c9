"""Training recipe options on the driver path (num_workers=0, no Ray): exact resume of the
trajectory, frozen / scratch fine-tuning, LR schedule, mixed precision, the train-state files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mlsd_ray.errors import CardError, ModelError
from mlsd_ray.models.amp import Amp
from mlsd_ray.models.transformer import WEIGHTS, build_net, make_optimizer
from mlsd_ray.spec import DesignCard, load_card
from mlsd_ray.train import transformer as tt
from mlsd_ray.train.recipe import initial_net, make_scheduler, total_steps, trainable_parameters
from mlsd_ray.train.train_state import META, TENSORS, restore_train_state, save_train_state
from mlsd_ray.train.transformer import LOOP_STATE, train_transformer, transformer_params
from tests.toy_data import toy_split as split

REPO = Path(__file__).resolve().parents[2]
T = "models.candidates.0.trainer"


def card(*overrides: str) -> DesignCard:
    base = [
        f"{T}.pretrained=tiny",
        f"{T}.num_workers=0",
        f"{T}.max_length=16",
        f"{T}.learning_rate=0.001",
        f"{T}.checkpoint_every_steps=2",
    ]
    return load_card(REPO / "systems" / "harmful_content.yaml", overrides=[*base, *overrides])


def train(c: DesignCard, tmp_path: Path, name: str, n: int = 64, seed: int = 0):  # type: ignore[no-untyped-def]
    spec = c.models.candidates[0]
    runs = str(tmp_path / "runs")
    return train_transformer(spec, c, split(n, seed), split(20, 99), tmp_path, runs, run_name=name)


def weights(tmp_path: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(tmp_path / "checkpoints" / name / WEIGHTS))


def test_an_interrupted_run_resumes_the_same_trajectory(tmp_path, monkeypatch) -> None:
    """Crash after the step-4 checkpoint, rerun: the weights at step 8 equal those of a run
    that was never interrupted, bit for bit (dropout RNG, AdamW moments, LR schedule)."""
    c = card(f"{T}.epochs=2", f"{T}.lr_schedule=linear", f"{T}.warmup_steps=2")
    train(c, tmp_path, "straight")  # 64 rows / 16 = 4 steps per epoch, 8 in all

    original = tt._LocalHooks.after_step

    def crash(self, state, loss, last):  # type: ignore[no-untyped-def]
        original(self, state, loss, last)
        if state.step == 5:  # after the step-4 checkpoint, one step lost
            raise RuntimeError("worker died")

    monkeypatch.setattr(tt._LocalHooks, "after_step", crash)
    with pytest.raises(RuntimeError, match="worker died"):
        train(c, tmp_path, "crashed")
    monkeypatch.setattr(tt._LocalHooks, "after_step", original)
    saved = json.loads((tmp_path / "checkpoints" / "crashed" / LOOP_STATE).read_text())
    assert (saved["step"], saved["epoch"], saved["step_in_epoch"]) == (4, 1, 0)

    resumed = train(c, tmp_path, "crashed").train_metrics_
    assert (resumed["resumed_from_step"], resumed["step"]) == (4, 8)
    a, b = weights(tmp_path, "straight"), weights(tmp_path, "crashed")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_train_state_files_round_trip(tmp_path: Path) -> None:
    net, _ = build_net("tiny", 2)
    opt = make_optimizer(net, 1e-3, 0.01)
    sched = make_scheduler(opt, "linear", 2, 10)
    for _ in range(3):
        net(torch.randint(0, 100, (2, 5)), torch.ones(2, 5, dtype=torch.long)).sum().backward()
        opt.step()
        sched.step()
    save_train_state(tmp_path, opt, sched)
    expected = (torch.rand(3), np.random.rand(3), random.random())

    net2, _ = build_net("tiny", 2)
    opt2 = make_optimizer(net2, 1e-3, 0.01)
    sched2 = make_scheduler(opt2, "linear", 2, 10)
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    restore_train_state(tmp_path, opt2, sched2)

    assert (tmp_path / TENSORS).is_file() and (tmp_path / META).is_file()
    assert not list(tmp_path.glob("*.pt"))  # nothing pickled
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for i, entry in s1["state"].items():
        for k, v in entry.items():
            torch.testing.assert_close(s2["state"][i][k], v, rtol=0, atol=0)
    assert sched2.last_epoch == 3 and sched2.get_last_lr() == sched.get_last_lr()
    torch.testing.assert_close(torch.rand(3), expected[0], rtol=0, atol=0)
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]


def test_frozen_trains_the_head_and_leaves_the_encoder(tmp_path: Path) -> None:
    c = card(f"{T}.fine_tune=frozen", f"{T}.max_steps=4", f"{T}.learning_rate=0.01")
    params = transformer_params(c.models.candidates[0], c)
    start, _ = initial_net(params)
    assert trainable_parameters(start) == sum(p.numel() for p in start.head.parameters())

    train(c, tmp_path, "frozen")
    after = weights(tmp_path, "frozen")
    before = {k: v.detach() for k, v in start.state_dict().items()}
    encoder = [k for k in before if k.startswith("encoder.")]
    assert len(encoder) > 10
    for key in encoder:
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0, msg=key)
    assert not torch.equal(after["head.weight"], before["head.weight"])

    full = card(f"{T}.max_steps=4", f"{T}.learning_rate=0.01")  # control: full moves both
    train(full, tmp_path, "full")
    moved = weights(tmp_path, "full")
    assert not torch.equal(moved["encoder.embeddings.word_embeddings.weight"], before[encoder[0]])


def test_scratch_keeps_the_architecture_but_not_the_weights() -> None:
    pretrained, _ = build_net("minilm", 2)
    scratch, _ = build_net("minilm", 2, scratch=True)
    a, b = pretrained.state_dict(), scratch.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    key = "encoder.encoder.layer.0.attention.self.query.weight"
    assert not torch.allclose(a[key], b[key])


def test_linear_schedule_warms_up_then_decays() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, "linear", warmup_steps=2, total_steps=6)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1 / 3, 2 / 3, 1.0, 0.75, 0.5, 0.25])
    assert total_steps({"max_steps": 7, "epochs": 3}, 1000) == 7
    assert total_steps({"epochs": 2, "num_workers": 2, "batch_size": 16}, 100) == 8


def test_bf16_autocast_trains_on_cpu(tmp_path: Path) -> None:
    m = train(card(f"{T}.precision=bf16", f"{T}.max_steps=3"), tmp_path, "bf16").train_metrics_
    assert m["step"] == 3 and np.isfinite(m["train_loss"]) and np.isfinite(m["val_loss"])
    assert all(v.dtype == torch.float32 for v in weights(tmp_path, "bf16").values())


def test_precision_and_gpu_mistakes_are_explained() -> None:
    with pytest.raises(CardError, match="fp16 needs use_gpu"):
        card(f"{T}.precision=fp16")
    with pytest.raises(CardError, match="scratch"):
        card(f"{T}.fine_tune=scratch", f"{T}.warm_start=champion")
    with pytest.raises(ModelError, match="needs a CUDA device"):
        Amp.for_device("fp16", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="sees no CUDA device"):
            tt._driver_device(True)


def test_max_failures_reaches_ray_train() -> None:
    assert tt._run_config("r", "/tmp/x", 5).failure_config.max_failures == 5
    assert card(f"{T}.max_failures=-1").models.candidates[0].trainer.max_failures == -1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_gpu_training_with_mixed_precision(tmp_path: Path, precision: str) -> None:
    c = card(f"{T}.use_gpu=true", f"{T}.precision={precision}", f"{T}.max_steps=4")
    model = train(c, tmp_path, precision)
    m = model.train_metrics_
    assert m["step"] == 4 and np.isfinite(m["train_loss"]) and m["val_roc_auc"] >= 0
    assert model.predict_proba(split(5, 3)).shape == (5, 2)


def test_legacy_checkpoints_restore_the_optimizer_only(tmp_path: Path) -> None:
    """Checkpoints written before train_state existed hold optimizer.pt (read weights_only)."""
    net, _ = build_net("tiny", 2)
    opt = make_optimizer(net, 1e-3, 0.01)
    net(torch.randint(0, 100, (2, 5)), torch.ones(2, 5, dtype=torch.long)).sum().backward()
    opt.step()
    torch.save(opt.state_dict(), tmp_path / "optimizer.pt")
    opt2 = make_optimizer(build_net("tiny", 2)[0], 1e-3, 0.01)
    restore_train_state(tmp_path, opt2)
    assert opt2.state_dict()["state"][0]["step"] == 1
    with pytest.raises(ModelError, match=r"has no train_state\.json"):
        restore_train_state(tmp_path / "nothing", opt2)
