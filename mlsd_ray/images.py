"""Image inputs: bytes or base64 text in, a float array of the card's size out (Pillow).

One function decodes for every caller, so ETL (which quarantines what does not decode), the
model (training and prediction) and request checks agree on what an image is. Sources and
splits hold images as base64 text (Parquet and CSV carry it as is); requests may send base64
text in JSON, and the Python ``Predictor`` also takes raw bytes.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np

#: Images larger than this (pixels) are refused before decoding: a small file can declare a
#: huge canvas (a "decompression bomb").
MAX_PIXELS = 4096 * 4096


class ImageError(ValueError):
    """The value is not an image Pillow can decode; the message says why."""


def image_bytes(value: Any) -> bytes:
    """Raw bytes, or base64 text (with or without a ``data:image/...;base64,`` prefix)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("data:") and "," in text:
            text = text.split(",", 1)[1]
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ImageError("not valid base64") from None
    raise ImageError(f"expected bytes or base64 text, got {type(value).__name__}")


def decode(value: Any, width: int, height: int, mode: str = "L") -> np.ndarray:
    """(channels, height, width) float32 in [0, 1]: decoded, converted to ``mode`` ("L" grey
    or "RGB") and resized to the card's size. Raises ``ImageError``."""
    from PIL import Image

    data = image_bytes(value)
    if not data:
        raise ImageError("empty image")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ImageError(f"image of {img.width}x{img.height} pixels is too large")
            img.load()  # decode now: a truncated file fails here, not later
            out = img.convert(mode)
            if out.size != (width, height):
                out = out.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(out, dtype=np.float32) / 255.0
    except ImageError:
        raise
    except Exception as err:  # Pillow raises several types (UnidentifiedImageError, OSError...)
        raise ImageError(f"cannot decode: {type(err).__name__}: {err}") from None
    return pixels[None, :, :] if pixels.ndim == 2 else np.transpose(pixels, (2, 0, 1))


def encode_png(pixels: np.ndarray) -> str:
    """A 2-D uint8 array (grey) or (H, W, 3) (RGB) as base64 PNG text."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
