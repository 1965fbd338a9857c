"""Helpers for the service tests: clips and encoders."""

from __future__ import annotations

import importlib
import io
import os
from types import ModuleType

import numpy as np
from PIL import Image

FRAMES, H, W = 4, 16, 16


def clip(t=FRAMES, h=H, w=W, seed=0) -> np.ndarray:
    """(t, h, w) uint8 frames: a bright square moving right over faint noise."""
    rng = np.random.default_rng(seed)
    out = (rng.random((t, h, w)) * 40).astype(np.uint8)
    for i in range(t):
        x = (2 + 2 * i) % (w - 4)
        out[i, 5:9, x : x + 4] = 255
    return out


def png(frame: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(frame)
    if mode:
        img = img.convert(mode)
    img.save(buf, format="PNG")
    return buf.getvalue()


def encode(frames: np.ndarray, fmt: str, **kw) -> bytes:
    """(t, h, w) uint8 → one multi-frame file of ``fmt`` (GIF, PNG (APNG), WEBP, TIFF)."""
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    if len(images) == 1:
        images[0].save(buf, format=fmt, **kw)
    else:
        images[0].save(buf, format=fmt, save_all=True, append_images=images[1:], **kw)
    return buf.getvalue()


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def files(frames: np.ndarray, name="files"):
    return [(name, (f"f{i}.png", png(f), "image/png")) for i, f in enumerate(frames)]


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def require(module: str, package: str) -> ModuleType:
    """Import ``module`` (a test tool of the dev extra): skipped on a bare machine, a failure in
    CI (``CI`` set), where it must be."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        import pytest

        message = f"{e.name} is not installed: pip install -e '.[dev]' ({package})"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)
