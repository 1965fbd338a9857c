"""Frames → bytes: uint8, PNG (one frame or a strip), animated GIF, ``.npy``."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats → uint8; NaN and -inf → 0, +inf → 255 (two ufuncs: np.nan_to_num costs
    more in Python overhead than the arithmetic on a 64×64 frame)."""
    return np.rint(np.minimum(np.fmax(x, 0.0), 1.0) * 255.0).astype(np.uint8)


def _pil(frame: np.ndarray) -> Image.Image:
    """(H, W, C) float [0,1] → Pillow image (L or RGB)."""
    u = to_uint8(frame)
    if u.shape[-1] == 1:
        return Image.fromarray(u[..., 0], mode="L")
    return Image.fromarray(u[..., :3], mode="RGB")


def png_bytes(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    _pil(frame).save(buf, format="PNG")
    return buf.getvalue()


def png_b64(frame: np.ndarray) -> str:
    return base64.b64encode(png_bytes(frame)).decode("ascii")


def strip_png(frames: np.ndarray, gap: int = 2) -> bytes:
    """(T, H, W, C) → one PNG, frames left to right with a ``gap``-pixel black gutter."""
    t, h, w, c = frames.shape
    canvas = np.zeros((h, t * w + (t - 1) * gap, c), np.float32)
    for i in range(t):
        canvas[:, i * (w + gap) : i * (w + gap) + w] = frames[i]
    return png_bytes(canvas)


def gif_bytes(frames: np.ndarray, duration_ms: int = 200) -> bytes:
    """(T, H, W, C) → an animated GIF that loops (Pillow merges identical consecutive frames)."""
    images = [_pil(f).convert("RGB") if f.shape[-1] == 3 else _pil(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=duration_ms,
        loop=0,
        disposal=1,
    )
    return buf.getvalue()


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()
