"""Image inputs without Ray: decoding (Pillow), request checks, the CNN kind on real digits
(scikit-learn's load_digits), and its package round trip."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlsd_ray.data.synthetic import generate_digits
from mlsd_ray.data.verify import check_input, reason_category
from mlsd_ray.errors import CardError
from mlsd_ray.images import ImageError, decode, image_bytes
from mlsd_ray.models.cnn import ImageCNN
from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
from mlsd_ray.predict import InvalidInput, Predictor
from mlsd_ray.spec import InputField, load_card

REPO = Path(__file__).resolve().parents[2]


def png(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, format=fmt)
    return out.getvalue()


def test_decode_bytes_base64_and_data_uri_alike_and_resizes() -> None:
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    raw = png(pixels)
    text = base64.b64encode(raw).decode()
    a = decode(raw, 8, 8)
    assert a.shape == (1, 8, 8) and a.dtype == np.float32
    np.testing.assert_allclose(a[0], pixels / 255.0, atol=1e-6)
    np.testing.assert_array_equal(decode(text, 8, 8), a)
    np.testing.assert_array_equal(decode(f"data:image/png;base64,{text}", 8, 8), a)
    big = decode(png(np.kron(pixels, np.ones((4, 4)))), 8, 8)  # 32x32 resized to the card's 8x8
    assert big.shape == (1, 8, 8) and abs(float(big.mean()) - float(a.mean())) < 0.02
    rgb = decode(png(np.stack([pixels] * 3, axis=-1)), 4, 6, mode="RGB")
    assert rgb.shape == (3, 6, 4)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("not base64 !!", "not valid base64"),
        (base64.b64encode(b"hello, not an image").decode(), "cannot decode"),
        (base64.b64encode(png(np.zeros((8, 8)))[:40]).decode(), "cannot decode"),  # truncated
        ("", "empty image"),
        (3.5, "expected bytes or base64 text"),
    ],
)
def test_undecodable_images_are_refused_with_the_reason(value: object, why: str) -> None:
    with pytest.raises(ImageError, match=why):
        decode(value, 8, 8)


def test_etl_check_quarantines_undecodable_and_keeps_good_text() -> None:
    field = InputField(name="image", type="image")
    good = base64.b64encode(png(np.zeros((8, 8)))).decode()
    assert check_input(good, field) == (good, None)
    value, reason = check_input("bm90IGFuIGltYWdl", field)  # base64 of "not an image"
    assert value is None and reason is not None and "undecodable image in 'image'" in reason
    assert reason_category(reason) == "undecodable_image"
    with pytest.raises(ValueError, match="need `type: image`"):
        InputField(name="x", type="text", image={"width": 4})


def test_digits_card_loads_and_cnn_params_are_checked() -> None:
    card = load_card(REPO / "systems" / "digits.yaml")
    assert card.framing.inputs[0].image is not None and card.framing.inputs[0].image.width == 8
    with pytest.raises(CardError, match=r"params\.chanels: unknown option"):
        ImageCNN(["image"], chanels=[8])


def test_cnn_learns_real_digits_and_round_trips(tmp_path: Path) -> None:
    frame = generate_digits(1797, seed=0)
    assert len(frame) == 1797 and image_bytes(frame["image"][0])[:8] == b"\x89PNG\r\n\x1a\n"
    y = frame["label"].astype(int).to_numpy()
    train, test = frame.iloc[:1400], frame.iloc[1400:]
    params = {"epochs": 12, "num_workers": 0, "n_classes": 10, "channels": [8, 16]}
    model = ImageCNN(["image"], **params).fit(train[["image"]], y[:1400])
    proba = model.predict_proba(test[["image"]])
    assert proba.shape == (397, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float((proba.argmax(axis=1) == y[1400:]).mean())
    assert accuracy > 0.9, accuracy  # a majority guess gets about 0.1

    package = save_package(
        model,
        tmp_path / "cnn",
        ModelManifest(
            name="cnn",
            kind="cnn",
            category="multiclass",
            inputs=[InputSchema(name="image", type="image")],
            classes=[str(i) for i in range(10)],
            params=model.params,
        ),
    )
    assert not list(package.glob("*.pkl")) and (package / "weights.safetensors").is_file()
    json.loads((package / "mlsd_model.json").read_text())  # the manifest is plain JSON
    predictor = Predictor(package)
    instances = test["image"].tolist()[:20]
    got = np.asarray(predictor.predict(instances))  # bare base64 strings
    np.testing.assert_allclose(got, proba[:20], rtol=0, atol=1e-6)
    as_bytes = [{"image": image_bytes(v)} for v in instances[:3]]  # raw bytes too
    np.testing.assert_allclose(predictor.predict(as_bytes), proba[:3], rtol=0, atol=1e-6)
    assert predictor.labels(got)[:5] == [str(i) for i in got.argmax(axis=1)[:5]]
    with pytest.raises(InvalidInput, match=r"instances\[0\].image: cannot decode"):
        predictor.predict([{"image": base64.b64encode(b"GIF89a-junk").decode()}])
