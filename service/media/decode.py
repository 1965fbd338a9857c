"""Uploaded files → frames: each part's format recognised by its leading bytes (not by its name
or declared type), every page of an image, a video's chosen frames, an ``.npy``'s array.

:func:`decode_parts` gives a list of :class:`~service.media.frames.Frame`, in upload order, each
``(H, W, C)`` in [0, 1] with C = 1 (grey) or 3 (colour). Every fault raises an error that names the
frame and the file. :mod:`service.media.fitting` then fits them to a model's input. Nothing here
imports Keras; it is plain NumPy and Pillow.
"""

from __future__ import annotations

import binascii
import io
import struct
import zlib

import numpy as np
from PIL import Image

from service.checks import require_finite
from service.errors import FrameDecodeError, InvalidInput, UnsupportedMediaType
from service.media.frames import Frame, Limits, Offload, check_total, frame_label
from service.media.npy import decode_npy
from service.media.video import (
    SUPPORTED_VIDEO,
    VIDEO_FORMATS,
    VideoOptions,
    decode_video,
    sniff_video,
)

# leading bytes -> format name
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x93NUMPY", "NPY"),
)
SUPPORTED = (
    "PNG, APNG, JPEG, BMP, WebP (animated too), GIF, TIFF (multi-page too), .npy; "
    f"videos: {SUPPORTED_VIDEO}"
)
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def sniff(data: bytes) -> str | None:
    """The format of ``data`` from its leading bytes, or None."""
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return sniff_video(data)


# --------------------------------------------------------------------------- decoding


def _image_to_array(img: Image.Image) -> np.ndarray:
    """One Pillow frame → (H, W, C) float32 in [0, 1], C = 1 for grey modes, else 3."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img, dtype=np.float32) / 65535.0
        return np.clip(a, 0.0, 1.0)[..., None]
    if mode == "F":
        a = np.asarray(img, dtype=np.float32)
        require_finite(a, "floating-point image holds NaN or infinite values", ValueError)
        return np.clip(a, 0.0, 1.0)[..., None]
    if mode == "L":  # the common case: no converted copy
        return (np.asarray(img, dtype=np.float32) / 255.0)[..., None]
    if mode in _GREY_MODES:
        return (np.asarray(img.convert("L"), dtype=np.float32) / 255.0)[..., None]
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def _u8_frame(img: Image.Image, source: str) -> Frame | None:
    """An 8-bit grey or RGB Pillow image as a :class:`Frame` that keeps its bytes, else None."""
    if img.mode == "L":
        return Frame(None, source, u8=np.asarray(img)[..., None])
    if img.mode == "RGB":
        return Frame(None, source, u8=np.asarray(img))
    return None


try:  # libspng: a plain PNG in a third of Pillow's time (no wheel on some platforms)
    import pyspng as _spng
except ImportError:  # pragma: no cover - the platforms without a wheel
    _spng = None


_NOT_PLAIN = {b"acTL", b"fcTL", b"tRNS"}  # animation, transparency: Pillow's path
_CHUNK, _CRC = struct.Struct(">I4s"), struct.Struct(">I")  # a chunk's length and type; its CRC
_SIZE = struct.Struct(">II")  # IHDR's width and height


def _plain_chunks(data: bytes) -> bool:
    """Every chunk whole with its CRC right (libspng does not check them, Pillow does), up to
    IEND, and none that makes the image more than one plain frame."""
    view, pos, end = memoryview(data), 8, len(data)
    crc32, unpack = zlib.crc32, _CHUNK.unpack_from
    while pos + 12 <= end:
        size, kind = unpack(data, pos)
        stop = pos + 12 + size
        if stop > end or kind in _NOT_PLAIN:
            return False
        if crc32(view[pos + 4 : stop - 4]) != _CRC.unpack_from(data, stop - 4)[0]:
            return False
        if kind == b"IEND":
            return True
        pos = stop
    return False


def _plain_png(data: bytes, name: str, first: int, limits: Limits) -> Frame | None:
    """An 8-bit grey or RGB, single-frame PNG within the limits, decoded by libspng; None for
    anything else (APNG, palette, alpha, 16-bit, transparency, a frame over a limit, a decoder
    error), which Pillow's path decodes, or refuses with its message."""
    if _spng is None or len(data) < 33 or not data.startswith(b"IHDR", 12) or data[24] != 8:
        return None
    colour = data[25]
    w, h = _SIZE.unpack_from(data, 16)
    if colour not in (0, 2) or not 0 < w * h <= limits.max_frame_pixels:
        return None
    if first >= limits.max_frames or not _plain_chunks(data):
        return None
    used = limits.used_pixels[0]
    check_total(limits, w * h, name)  # counted before it is decoded (Offload: not here)
    try:
        a = _spng.load(data)
    except Exception:  # noqa: BLE001 - a corrupt file: Pillow's path names the fault
        a = None
    if a is None or a.dtype != np.uint8 or a.shape != ((h, w) if colour == 0 else (h, w, 3)):
        limits.used_pixels[0] = used  # Pillow's path counts it again
        return None
    return Frame(None, f"file {name!r}", u8=a[..., None] if colour == 0 else a)


def _decode_image(data: bytes, fmt: str, name: str, first: int, limits: Limits) -> list[Frame]:
    """Every page of one image file, checked page by page before it is decoded: its pixels
    (FRAMECAST_MAX_FRAME_PIXELS; TIFF pages may differ in size), the upload's running pixel total
    and frame count. Pages are walked one ``seek`` at a time and the walk stops at the first page
    over the frame limit, so a GIF of 10,000 frames costs no more than the limit's worth."""
    label = f"file {name!r}"
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:  # Image.MAX_IMAGE_PIXELS is our per-frame limit
        raise InvalidInput(
            f"{frame_label(first, label)}: {e}; at most {limits.max_frame_pixels} pixels per frame "
            "(FRAMECAST_MAX_FRAME_PIXELS)"
        ) from None
    except Image.UnidentifiedImageError:  # its message names a BytesIO object: say it plainly
        raise FrameDecodeError(
            f"{frame_label(first, label)}: not a readable {fmt} image (it starts like one, but its "
            "header does not parse)"
        ) from None
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for bad files
        raise FrameDecodeError(
            f"{frame_label(first, label)}: not a readable {fmt} image ({e})"
        ) from None
    room = limits.max_frames - first  # frames this file may still add
    multi = bool(getattr(img, "is_animated", False))
    frames: list[Frame] = []
    page = 0
    while True:
        source = label + (f" page {page}" if multi else "")
        if page:
            try:
                img.seek(page)
            except EOFError:
                break
            except Exception as e:  # noqa: BLE001 - a corrupt page header
                raise FrameDecodeError(
                    f"{frame_label(first + page, source)}: cannot decode {fmt} data ({e})"
                ) from None
        if page >= room:
            raise InvalidInput(
                f"{label} holds more than {room} frames, bringing the upload over "
                f"{limits.max_frames}; at most {limits.max_frames} frames "
                "(FRAMECAST_MAX_FRAMES)"
            )
        w, h = img.size
        if w * h > limits.max_frame_pixels:
            raise InvalidInput(
                f"{frame_label(first + page, source)} is {w}x{h} = {w * h} pixels; at most "
                f"{limits.max_frame_pixels} per frame (FRAMECAST_MAX_FRAME_PIXELS)"
            )
        check_total(limits, w * h, name)
        try:
            frames.append(_u8_frame(img, source) or Frame(_image_to_array(img), source))
        except Exception as e:  # noqa: BLE001 - truncated/corrupt data surfaces while decoding
            raise FrameDecodeError(
                f"{frame_label(first + page, source)}: cannot decode {fmt} data ({e})"
            ) from None
        if not multi:
            break
        page += 1
    return frames


def decode_parts(
    parts: list[tuple[str, bytes]],
    limits: Limits | None = None,
    *,
    video: VideoOptions | None = None,
) -> list[Frame]:
    """Decode uploaded ``(name, bytes)`` parts, in order, into frames.

    Each part is one image, one multi-frame image (all its pages, in order), one ``.npy``
    array (all its frames) or one video (the frames ``video`` picks: start, stride; every frame
    by default). Raises 415 for an unknown format, 422 for a malformed one.
    """
    limits = limits or Limits()
    frames: list[Frame] = []
    for name, data in parts:
        first = len(frames)
        if not data:
            raise FrameDecodeError(f"{frame_label(first, f'file {name!r}')}: the file is empty")
        fmt = sniff(data)
        if fmt is None:
            raise UnsupportedMediaType(
                f"file {name!r} (frame {first}) is not a supported format (its first bytes are "
                f"{data[:8]!r}); supported: {SUPPORTED}"
            )
        if fmt == "NPY":
            frames.extend(decode_npy(data, name, first, limits))
        elif fmt in VIDEO_FORMATS:
            if limits.inline_pixels is not None:  # a video says its size only once decoding
                raise Offload(name)
            frames.extend(decode_video(data, fmt, name, first, limits, video))
        else:
            plain = _plain_png(data, name, first, limits) if fmt == "PNG" else None
            if plain is not None:
                frames.append(plain)
            else:
                frames.extend(_decode_image(data, fmt, name, first, limits))
    return frames


def b64decode_item(item: str, label: str) -> bytes:
    """Decode one base64 string (a ``data:...;base64,`` prefix is allowed)."""
    if not isinstance(item, str):
        raise FrameDecodeError(f"{label}: expected a base64 string, got {type(item).__name__}")
    s = item.strip()
    if s.startswith("data:"):
        _, _, s = s.partition(",")
    try:
        return binascii.a2b_base64(s, strict_mode=True)  # base64.b64decode(validate=True)'s work
    except (binascii.Error, ValueError) as e:
        raise FrameDecodeError(f"{label}: not valid base64 ({e})") from None


# --------------------------------------------------------------------------- encoding
