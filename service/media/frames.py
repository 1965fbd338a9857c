"""The frame types every media module shares: :class:`Frame`, the upload's :class:`Limits` and
the running pixel count (a leaf: it imports no other media module, so decoding, video and
fitting all build on it without a circle)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from service.errors import InvalidInput, PayloadTooLarge


@dataclass
class Limits:
    max_frames: int = 256
    max_frame_pixels: int = 4096 * 4096
    max_total_pixels: int = 64 * 1024 * 1024
    used_pixels: list = field(default_factory=lambda: [0])  # running total of one upload
    deadline: float | None = None  # time.monotonic() by which decoding must be done
    timeout_s: float | None = None  # the setting the deadline came from (for the message)
    inline_pixels: int | None = None  # decoding on the event loop: Offload past this many


class Offload(Exception):
    """The upload declares more pixels than may be decoded on the event loop (or holds a video):
    decode it again in a worker thread (raised before the frame that crossed the line is
    decoded)."""


class Frame:
    """One decoded frame: ``data`` is (H, W, C) float32 in [0, 1], C in {1, 3}; ``source`` names
    it in messages ("file 'a.png'", "file 'clip.gif' page 3", "JSON frames[2]").

    A frame decoded from an 8-bit image keeps its bytes (``u8``, (H, W, C) uint8) and makes
    ``data`` (u8 / 255) only when asked: :func:`~service.media.fitting.conform` scales a whole clip
    of such frames in one operation instead of one per frame."""

    __slots__ = ("_data", "u8", "source")

    def __init__(
        self, data: np.ndarray | None, source: str, *, u8: np.ndarray | None = None
    ) -> None:
        self._data, self.u8, self.source = data, u8, source

    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            assert self.u8 is not None, "a Frame holds data, or u8 to make it from"
            self._data = self.u8.astype(np.float32) / 255.0
        return self._data

    @property
    def shape(self) -> tuple[int, ...]:
        held = self.u8 if self._data is None else self._data
        assert held is not None, "a Frame holds data, or u8 to make it from"
        return held.shape


def check_total(limits: Limits, pixels: int, name: str) -> None:
    """Count one frame's pixels (before it is decoded, where the format says its size first);
    past the total, or past the decoding deadline, the upload is refused."""
    if limits.deadline is not None and time.monotonic() > limits.deadline:
        raise PayloadTooLarge(
            f"decoding the upload took longer than {limits.timeout_s:g} s "
            f"(FRAMECAST_DECODE_TIMEOUT_S), at file {name!r}; send fewer or smaller frames"
        )
    limits.used_pixels[0] += pixels
    if limits.inline_pixels is not None and limits.used_pixels[0] > limits.inline_pixels:
        raise Offload(name)
    if limits.used_pixels[0] > limits.max_total_pixels:
        raise InvalidInput(
            f"file {name!r} brings the upload to {limits.used_pixels[0]} pixels in "
            f"all frames; at most {limits.max_total_pixels} "
            "(FRAMECAST_MAX_TOTAL_PIXELS)"
        )


def frame_label(index: int, source: str) -> str:
    """How a message names one frame: ``frame 3 (file 'clip.gif' page 3)``."""
    return f"frame {index} ({source})"


def scaled(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels (0-255) → float32 in [0, 1]: ``x / 255`` in float32, one numpy division (what
    a model's uint8 entry does in its graph, bit for bit)."""
    return np.divide(pixels, np.float32(255.0), dtype=np.float32)
