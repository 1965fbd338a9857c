"""Fitting uploaded frames to a model's input: channels, size, and how (stretch, pad, crop).

:func:`conform` turns decoded frames into the model's ``(T, H, W, C)`` and says what it changed
(:class:`Conversion`): the original size when it resized, the original channels when it converted
colour (ITU-R 601 luminance for a grey model, as Pillow's ``L``; grey repeated for an RGB model).
Colour frames that hold greys only (a GIF of a grey clip decodes so) lose nothing when turned to
grey: that is not reported as a conversion.
Sizes are fitted one of three ways (``fit``):

- ``stretch``: resize to H×W whatever the aspect ratio (a circle may become an ellipse);
- ``pad``: keep the aspect ratio, fit inside H×W, black bars around (letterbox);
- ``crop``: keep the aspect ratio, cover H×W, cut the overflow equally from both sides.

Plain NumPy and Pillow; no Keras.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
from PIL import Image

from service.errors import FrameSizeError, InvalidInput
from service.media.frames import scaled

if TYPE_CHECKING:
    from service.media.frames import Frame

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's convert("L")
FitMode = Literal["stretch", "pad", "crop"]  # how a frame of another size is fitted
FITS: tuple[str, ...] = get_args(FitMode)


@dataclass
class Conversion:
    """What fitting changed, for the answer: each field None when nothing of the kind changed."""

    resized_from: list[int] | None = None  # [height, width] of the first resized frame
    channels_from: int | None = None  # the upload's channels when converted (not grey RGB → grey)
    fit: str | None = None  # how sizes were fitted, when any frame was resized

    def merge(self, other: Conversion) -> Conversion:
        return Conversion(
            self.resized_from or other.resized_from,
            self.channels_from or other.channels_from,
            self.fit or other.fit,
        )


def grey(x: np.ndarray) -> bool:
    """Whether colour frames ``(..., 3)`` hold greys only (R = G = B everywhere, as a GIF of a
    grey clip decodes): turned to grey they lose nothing, so that is no conversion to report."""
    return x.shape[-1] == 3 and bool(
        np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 1], x[..., 2])
    )


def to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """(..., C) with C in {1, 3} → (..., channels)."""
    c = x.shape[-1]
    if c == channels:
        return x
    if channels == 1:
        return (x[..., :3] @ LUMA)[..., None].astype(np.float32)
    if c == 1:
        return np.repeat(x, channels, axis=-1)
    raise InvalidInput(f"cannot convert {c} channels to {channels}")


def _bilinear(x: np.ndarray, height: int, width: int) -> np.ndarray:
    chans = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(x[..., k]), mode="F").resize(
                (width, height), Image.Resampling.BILINEAR
            )
        )
        for k in range(x.shape[-1])
    ]
    return np.clip(np.stack(chans, axis=-1), 0.0, 1.0).astype(np.float32)


def resize_frame(x: np.ndarray, height: int, width: int, fit: str = "stretch") -> np.ndarray:
    """(h, w, C) float → (height, width, C), bilinear (Pillow, per channel), fitted by ``fit``."""
    h0, w0 = x.shape[:2]
    if (h0, w0) == (height, width):
        return x
    if fit == "stretch":
        return _bilinear(x, height, width)
    scale = (min if fit == "pad" else max)(height / h0, width / w0)
    h1, w1 = max(1, round(h0 * scale)), max(1, round(w0 * scale))
    y = _bilinear(x, h1, w1)
    if fit == "pad":
        out = np.zeros((height, width, x.shape[-1]), np.float32)
        top, left = (height - h1) // 2, (width - w1) // 2
        out[top : top + h1, left : left + w1] = y
        return out
    top, left = (h1 - height) // 2, (w1 - width) // 2
    return np.ascontiguousarray(y[top : top + height, left : left + width])


def conform(
    frames: list[Frame],
    *,
    height: int,
    width: int,
    channels: int,
    resize: bool,
    model: str = "the model",
    offset: int = 0,
    fit: str = "stretch",
    scale: bool = True,
) -> tuple[np.ndarray, Conversion]:
    """Frames → (``(T, height, width, channels)`` float32, what changed); ``offset`` numbers the
    frames in messages. With ``scale=False``, 8-bit frames that need no fitting come back as
    they are, uint8 (0-255), for a model that scales them itself."""
    if fit not in FITS:
        raise InvalidInput(f"fit={fit!r}: choose one of {', '.join(FITS)}")
    if not frames:
        return np.zeros((0, height, width, channels), np.float32), Conversion()
    want = (height, width, channels)
    if all(f.shape == want for f in frames):  # the common case: nothing to fit
        if all(f.u8 is not None for f in frames):  # one scaling for the clip, as Frame.data does
            # gathered by one bytes.join, which holds the GIL: numpy gives it up for every
            # frame's copy, and under load the model's worker is waiting to take it each time
            raw = b"".join([np.ascontiguousarray(f.u8).data for f in frames])
            clip = np.frombuffer(raw, np.uint8).reshape((len(frames),) + want)
            if not scale:
                return clip, Conversion()
            return scaled(clip), Conversion()
        return np.stack([f.data for f in frames]).astype(np.float32, copy=False), Conversion()
    if not resize:
        h0, w0 = frames[0].shape[:2]
        for i, f in enumerate(frames):
            h, w = f.shape[:2]
            if (h, w) != (h0, w0):
                raise FrameSizeError(
                    f"frame {offset + i} ({f.source}) is {w}x{h} (width x height) "
                    f"but frame {offset} is {w0}x{h0}; "
                    "all frames must share one size (or send resize=true)"
                )
        if (h0, w0) != (height, width):
            raise FrameSizeError(
                f"frames are {w0}x{h0} (width x height) but {model} takes {width}x{height}; "
                "send frames of that size or resize=true"
            )
    conv = Conversion()
    out = np.empty((len(frames), height, width, channels), np.float32)
    for i, f in enumerate(frames):
        h, w, c = f.data.shape
        if (h, w) != (height, width) and conv.resized_from is None:
            conv.resized_from, conv.fit = [h, w], fit
        if c != channels and conv.channels_from is None and not (channels == 1 and grey(f.data)):
            conv.channels_from = c
        out[i] = to_channels(resize_frame(f.data, height, width, fit), channels)
    return out, conv
