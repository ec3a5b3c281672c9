"""Faster CPU inference paths for the transformer classifier, chosen by ``deployment.inference``.

The trained package is always the same fp32 safetensors; a path only changes how a loaded
model computes its logits, so one registered version can be served any of these ways:

``fp32``  plain torch (the reference; nothing here is used).
``bf16``  torch autocast to bfloat16. Needs a CPU with native bf16 (AVX-512 BF16 or AMX);
          elsewhere autocast emulates bf16 and is slower than fp32, so the model falls back to
          fp32 with a warning (the path in use is reported by ``Predictor.describe``).
``int8``  dynamic int8 quantization of the encoder's ``nn.Linear`` layers but the FFN output
          projections (weights int8 once at load, activations quantized per batch),
          ``torch.ao.quantization.quantize_dynamic``; see `int8_layers`.
``onnx``  ONNX Runtime on a graph exported from the package's weights (dynamic batch and
          sequence axes). The ``.onnx`` file is exported once into a cache folder
          (``$MLSD_ONNX_CACHE``, else the temp folder), named after the weights' hash, and
          read back by onnxruntime: no pickle anywhere; the package is left unchanged.

``auto`` (the card default) is not a path: the evaluation stage measures each path on the
validation split (`mlsd_ray.evaluate.inference_choice`) and records the one to serve in the
package manifest (``metadata.inference_choice.path``); `resolve` reads it back, so Serve, batch
evaluation and the registry's copies all run the recorded path.

`use` attaches a path to a fitted ``TransformerTextClassifier`` (its ``runner_``); the
``Predictor`` calls it when the card asks for a path, so Serve replicas and batch evaluation
run the same code. Texts are scored in chunks sorted by length, which cuts padding when a
batch mixes short and long posts; the order of the answers is the order of the texts.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch

from mlsd_ray.errors import ModelError

log = logging.getLogger(__name__)

Inference = Literal["fp32", "bf16", "int8", "onnx"]
INFERENCE_PATHS: tuple[str, ...] = get_args(Inference)
AUTO = "auto"
#: The manifest metadata key holding evaluation's choice under ``auto``.
CHOICE_KEY = "inference_choice"
CHUNK = 64  # texts per forward pass, as predict_logits
ONNX_OPSET = 17
ONNX_INPUTS = ("input_ids", "attention_mask")
ONNX_CACHE_ENV = "MLSD_ONNX_CACHE"


# Capabilities of this machine -------------------------------------------------------------
def bf16_supported() -> bool:
    """True when this CPU computes bf16 natively (oneDNN's own check: AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private op; absent = no fast bf16
        return False


def int8_supported() -> bool:
    """True when torch has a CPU engine for dynamically quantized Linear layers."""
    return any(e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm"))


def int8_layers(encoder: torch.nn.Module) -> dict[str, Any]:
    """The encoder's Linear layers that int8 quantizes: all but each block's FFN output
    projection, whose input (after GELU) has outliers that per-tensor int8 clips. On the
    fine-tuned MiniLM (Davidson, 300 posts) that cut the largest probability change from 0.36
    to 0.09 and the mean from 0.019 to 0.006; per-channel weights alone only reached 0.22.
    The classifier head is outside the encoder and stays fp32 too."""
    qconfig = torch.ao.quantization.default_dynamic_qconfig
    return {
        name: qconfig
        for name, module in encoder.named_modules()
        if isinstance(module, torch.nn.Linear) and not _ffn_output(name)
    }


def _ffn_output(name: str) -> bool:
    """BERT names the FFN output ``layer.N.output.dense`` (``attention.output.dense`` is the
    attention projection, which is quantized)."""
    return name.endswith("output.dense") and "attention" not in name


# Runners: texts -> logits -------------------------------------------------------------------
class Runner:
    """Scores texts with one path. ``path`` names the path really in use."""

    path: str = "fp32"

    def __init__(self, tokenizer: Any, max_length: int, n_classes: int) -> None:
        self.tokenizer, self.max_length, self.n_classes = tokenizer, max_length, n_classes

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        from mlsd_ray.models.transformer import tokenize

        order = np.argsort([len(t) for t in texts], kind="stable")
        out: list[torch.Tensor] = []
        for i in range(0, len(order), CHUNK):
            idx = order[i : i + CHUNK]
            enc = tokenize(self.tokenizer, [texts[j] for j in idx], self.max_length)
            out.append(self.forward(enc["input_ids"], enc["attention_mask"]).float())
        if not out:
            return torch.zeros((0, self.n_classes))
        logits = torch.cat(out)
        restored = torch.empty_like(logits)
        restored[torch.as_tensor(order)] = logits
        return restored


class TorchRunner(Runner):
    """fp32, bf16 autocast or a dynamically quantized copy of the network."""

    def __init__(
        self, net: torch.nn.Module, tokenizer: Any, max_length: int, path: str = "fp32"
    ) -> None:
        super().__init__(tokenizer, max_length, _n_classes(net))
        self.net, self.path = net.eval(), path

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.path == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.net(input_ids=input_ids, attention_mask=attention_mask)
        return self.net(input_ids=input_ids, attention_mask=attention_mask)


class OnnxRunner(Runner):
    """An onnxruntime session over an exported graph; threads = torch's (Ray sets them)."""

    path = "onnx"

    def __init__(self, onnx_file: Path, tokenizer: Any, max_length: int, n_classes: int) -> None:
        super().__init__(tokenizer, max_length, n_classes)
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.onnx_file = onnx_file
        self.session = ort.InferenceSession(
            str(onnx_file), options, providers=["CPUExecutionProvider"]
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feeds = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        return torch.from_numpy(self.session.run(["logits"], feeds)[0])


def _n_classes(net: torch.nn.Module) -> int:
    head = getattr(net, "head", None)
    return int(head.out_features) if head is not None else 0


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise ModelError(
            "deployment.inference 'onnx' needs onnxruntime, which is not installed.",
            why=str(err),
            fix="pip install onnxruntime (a project dependency), or choose fp32, bf16 or int8",
        ) from err
    return onnxruntime


# ONNX export ------------------------------------------------------------------------------
def export_onnx(net: torch.nn.Module, tokenizer: Any, out: Path, max_length: int = 64) -> Path:
    """Write ``net`` as ONNX to ``out`` (atomically: concurrent replicas may race).

    TorchScript-based exporter (``dynamo=False``): 2.4 s for MiniLM against 6 s for the dynamo
    exporter, whose graph also ran 20% slower in onnxruntime here, and it prints to stdout.
    The example batch is padded on purpose: traced on an all-ones mask, transformers may take
    its no-mask shortcut and the graph would ignore padding for every later batch.
    """
    from mlsd_ray.models.transformer import tokenize

    example = tokenize(tokenizer, ["a short post", "a longer post " * 4], max_length)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".export-", suffix=".onnx")
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings on shape checks that hold here
            torch.onnx.export(
                net.eval(),
                (example["input_ids"], example["attention_mask"]),
                tmp,
                input_names=list(ONNX_INPUTS),
                output_names=["logits"],
                dynamic_axes={**axes, "logits": {0: "batch"}},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("exported ONNX graph to %s", out)
    return out


def onnx_cache() -> Path:
    """Folder of exported graphs: ``$MLSD_ONNX_CACHE``, else ``<temp>/mlsd_onnx``. Outside the
    package on purpose: a package is an artifact (registered, copied, checksummed) and loading
    it must not change it."""
    return Path(os.environ.get(ONNX_CACHE_ENV) or Path(tempfile.gettempdir()) / "mlsd_onnx")


def onnx_file_for(package_dir: Path) -> Path:
    """Where the graph of this package's weights lives: ``model-<sha256[:16]>.onnx`` in the
    cache, so that new weights never meet a stale graph and equal weights share one."""
    from mlsd_ray.models.transformer import WEIGHTS

    digest = hashlib.sha256()
    with open(package_dir / WEIGHTS, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return onnx_cache() / f"model-{digest.hexdigest()[:16]}.onnx"


# Choosing a path --------------------------------------------------------------------------
def check_inference(inference: str) -> None:
    if inference not in (*INFERENCE_PATHS, AUTO):
        raise ModelError(
            f"Unknown inference path {inference!r}.",
            fix=f"set deployment.inference to one of {[AUTO, *INFERENCE_PATHS]}",
        )


def resolve(inference: str | None, metadata: dict[str, Any]) -> str:
    """The path to run for the card's ``inference``: ``auto`` = the path evaluation recorded
    in the manifest, fp32 for a package evaluation has not measured (or a non-transformer)."""
    check_inference(inference or "fp32")
    if inference != AUTO:
        return inference or "fp32"
    recorded = metadata.get(CHOICE_KEY, {}).get("path", "fp32")
    return str(recorded) if recorded in INFERENCE_PATHS else "fp32"


def make_runner(
    net: torch.nn.Module,
    tokenizer: Any,
    max_length: int,
    inference: str,
    package_dir: Path | None = None,
) -> Runner:
    """The runner of ``inference`` for a fitted fp32 ``net`` (which is left unchanged)."""
    check_inference(inference)
    if inference == "bf16" and not bf16_supported():
        log.warning(
            "deployment.inference 'bf16': this CPU has no native bf16 (AVX-512 BF16 or AMX), "
            "where autocast is slower than fp32; serving fp32 instead"
        )
        inference = "fp32"
    if inference == "int8" and not int8_supported():
        log.warning(
            "deployment.inference 'int8': torch has no x86/fbgemm quantized engine here "
            "(engines: %s); serving fp32 instead",
            torch.backends.quantized.supported_engines,
        )
        inference = "fp32"
    if inference == "int8":
        quantized = copy.deepcopy(net)  # ``net`` keeps its fp32 weights
        encoder = quantized.get_submodule("encoder")
        torch.ao.quantization.quantize_dynamic(
            encoder, int8_layers(encoder), dtype=torch.qint8, inplace=True
        )
        return TorchRunner(quantized, tokenizer, max_length, "int8")
    if inference == "onnx":
        _onnxruntime()
        if package_dir is None:
            onnx_file = Path(tempfile.mkdtemp(prefix="mlsd_onnx_")) / "model.onnx"
        else:
            onnx_file = onnx_file_for(package_dir)
        if not onnx_file.is_file():
            export_onnx(net, tokenizer, onnx_file, max_length)
        return OnnxRunner(onnx_file, tokenizer, max_length, _n_classes(net))
    return TorchRunner(net, tokenizer, max_length, inference)


def use(model: Any, inference: str, package_dir: Path | None = None) -> str:
    """Make ``model`` (a loaded model package) score with ``inference``; returns the path in
    use. Only transformer packages have these paths: other kinds are scored as they are."""
    check_inference(inference)
    if inference == "fp32":
        return "fp32"
    from mlsd_ray.models.kinds import KINDS

    kind = KINDS.get(str(getattr(model, "kind", "")))
    if kind is None or not kind.fast_inference:
        # Expected, not a mistake: the card's baseline (or a non-transformer champion) is
        # evaluated and served beside the transformer with the same card.
        log.info(
            "deployment.inference %r applies to transformer models; this %s model is "
            "scored as it is",
            inference,
            getattr(model, "kind", type(model).__name__),
        )
        return "native"
    model._check_fitted("net_")
    runner = make_runner(model.net_, model.tokenizer_, model.max_length, inference, package_dir)
    model.runner_ = runner
    log.info("transformer scores with the %s path", runner.path)
    return runner.path
