"""Uploads → ``(time, height, width, channels)`` float32 arrays in [0, 1]; arrays → PNG/GIF/NPY.

Decoding goes in two steps:

1. :func:`decode_parts` turns uploaded byte strings (image files, one multi-frame file, an
   ``.npy``, a video: :mod:`service.video`) into a list of frames, each ``(H, W, C)`` float32
   in [0, 1] with C = 1 (grey) or 3 (colour), in upload order. The format is recognised by its
   leading bytes, not by the file name or the declared content type. Every fault raises an error
   that names the frame and the file.
2. :func:`service.fitting.conform` fits those frames to a model's input spec (channels, size).

Nothing here imports Keras; it is plain NumPy and Pillow.
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from service.checks import require_finite, require_unit_range
from service.errors import FrameDecodeError, InvalidInput, UnsupportedMediaType
from service.fitting import LUMA, conform, resize_frame, to_channels  # noqa: F401 (re-exported)
from service.video import SUPPORTED_VIDEO, VIDEO_FORMATS, VideoOptions, decode_video, sniff_video

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


@dataclass
class Limits:
    max_frames: int = 256
    max_frame_pixels: int = 4096 * 4096
    max_total_pixels: int = 64 * 1024 * 1024
    used_pixels: list = field(default_factory=lambda: [0])  # running total of one upload


class Frame:
    """One decoded frame: ``data`` is (H, W, C) float32 in [0, 1], C in {1, 3}; ``source`` names
    it in messages ("file 'a.png'", "file 'clip.gif' page 3", "JSON frames[2]").

    A frame decoded from an 8-bit image keeps its bytes (``u8``, (H, W, C) uint8) and makes
    ``data`` (u8 / 255) only when asked: :func:`~service.fitting.conform` scales a whole clip
    of such frames in one operation instead of one per frame."""

    __slots__ = ("_data", "u8", "source")

    def __init__(
        self, data: np.ndarray | None, source: str, *, u8: np.ndarray | None = None
    ) -> None:
        self._data, self.u8, self.source = data, u8, source

    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            self._data = self.u8.astype(np.float32) / 255.0
        return self._data

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.u8 if self._data is None else self._data).shape


def sniff(data: bytes) -> str | None:
    """The format of ``data`` from its leading bytes, or None."""
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return sniff_video(data)


def _where(index: int, source: str) -> str:
    return f"frame {index} ({source})"


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
    if _spng is None or len(data) < 33 or data[12:16] != b"IHDR" or data[24] != 8:
        return None
    colour = data[25]
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if colour not in (0, 2) or not 0 < w * h <= limits.max_frame_pixels:
        return None
    if first >= limits.max_frames or not _plain_chunks(data):
        return None
    try:
        a = _spng.load(data)
    except Exception:  # noqa: BLE001 - a corrupt file: Pillow's path names the fault
        return None
    if a.dtype != np.uint8 or a.shape != ((h, w) if colour == 0 else (h, w, 3)):
        return None
    check_total(limits, w * h, name)
    return Frame(None, f"file {name!r}", u8=a[..., None] if colour == 0 else a)


def check_total(limits: Limits, pixels: int, name: str) -> None:
    limits.used_pixels[0] += pixels
    if limits.used_pixels[0] > limits.max_total_pixels:
        raise InvalidInput(
            f"file {name!r} brings the upload to {limits.used_pixels[0]} pixels in "
            f"all frames; at most {limits.max_total_pixels} "
            "(FRAMECAST_MAX_TOTAL_PIXELS)"
        )


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
            f"{_where(first, label)}: {e}; at most {limits.max_frame_pixels} pixels per frame "
            "(FRAMECAST_MAX_FRAME_PIXELS)"
        ) from None
    except Image.UnidentifiedImageError:  # its message names a BytesIO object: say it plainly
        raise FrameDecodeError(
            f"{_where(first, label)}: not a readable {fmt} image (it starts like one, but its "
            "header does not parse)"
        ) from None
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for bad files
        raise FrameDecodeError(
            f"{_where(first, label)}: not a readable {fmt} image ({e})"
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
                    f"{_where(first + page, source)}: cannot decode {fmt} data ({e})"
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
                f"{_where(first + page, source)} is {w}x{h} = {w * h} pixels; at most "
                f"{limits.max_frame_pixels} per frame (FRAMECAST_MAX_FRAME_PIXELS)"
            )
        check_total(limits, w * h, name)
        try:
            frames.append(_u8_frame(img, source) or Frame(_image_to_array(img), source))
        except Exception as e:  # noqa: BLE001 - truncated/corrupt data surfaces while decoding
            raise FrameDecodeError(
                f"{_where(first + page, source)}: cannot decode {fmt} data ({e})"
            ) from None
        if not multi:
            break
        page += 1
    return frames


def _npy_header(data: bytes, where: str) -> tuple[tuple, np.dtype, bool, int]:
    """The shape, dtype, order and data offset an .npy declares, read (by numpy's own header
    reader) before any array memory is allocated: ``np.load`` allocates the declared size
    first, so a 20-byte file may not claim gigabytes."""
    fp = io.BytesIO(data)
    try:
        major, _ = np.lib.format.read_magic(fp)
        read = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read(fp, max_header_size=10000)
    except Exception as e:  # noqa: BLE001 - a malformed header, of whatever kind
        raise FrameDecodeError(
            f"{where}: not a readable .npy array ({e}); send a (T,H,W) or "
            "(T,H,W,C) numeric array saved by numpy.save"
        ) from None
    if dtype.hasobject:
        raise FrameDecodeError(
            f"{where}: not a readable .npy array: dtype {dtype} holds Python "
            "objects, and .npy uploads are never unpickled: send uint8 (0-255) or float (0-1)"
        )
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if need > len(data) - fp.tell():
        raise FrameDecodeError(
            f"{where}: the header declares shape {shape} of {dtype} "
            f"({need} bytes) but the file holds {len(data) - fp.tell()} bytes "
            "of data (truncated?)"
        )
    return tuple(shape), dtype, bool(fortran), fp.tell()


def _decode_npy(data: bytes, name: str, first: int, limits: Limits) -> list[Frame]:
    where = f"file {name!r}"
    shape, dtype, fortran, offset = _npy_header(data, where)
    if len(shape) not in (3, 4):
        raise FrameDecodeError(f"{where}: array has shape {shape}; expected (T,H,W) or (T,H,W,C)")
    if dtype != np.uint8 and not (dtype.fields is None and np.issubdtype(dtype, np.floating)):
        raise FrameDecodeError(
            f"{where}: dtype {dtype} is not supported; send uint8 (0-255) or float (0-1)"
        )
    # the data as np.load reads it from a buffer (a view of the upload's bytes, no copy yet)
    count = int(np.prod(shape, dtype=np.int64))
    a = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    a = a.reshape(shape[::-1]).transpose() if fortran else a.reshape(shape)
    if a.ndim == 3:
        a = a[..., None]
    t, h, w, c = a.shape
    if t < 1 or h < 1 or w < 1:
        raise FrameDecodeError(f"{where}: array of shape {a.shape} holds no frames/pixels")
    if c not in (1, 3, 4):
        raise FrameDecodeError(
            f"{where}: array has {c} channels (shape {a.shape}); expected 1, 3 or 4"
        )
    if h * w > limits.max_frame_pixels:
        raise InvalidInput(
            f"{where}: frames are {w}x{h} = {w * h} pixels; at most "
            f"{limits.max_frame_pixels} per frame (FRAMECAST_MAX_FRAME_PIXELS)"
        )
    if first + t > limits.max_frames:
        raise InvalidInput(
            f"{where} holds {t} frames, bringing the upload to {first + t}; "
            f"at most {limits.max_frames} (FRAMECAST_MAX_FRAMES)"
        )
    check_total(limits, t * h * w, name)
    if a.dtype == np.uint8:  # kept as bytes: the clip is scaled once (Frame.u8, conform)
        u8 = a[..., :3] if c == 4 else a
        return [Frame(None, f"{where} index {i}", u8=u8[i]) for i in range(t)]
    x = a.astype(np.float32)
    for i in range(t):
        require_unit_range(
            x[i],
            _where(first + i, where + f" index {i}"),
            kind="float",
            hint="send uint8 0-255 or floats 0-1",
        )
    x = np.clip(x, 0.0, 1.0)
    if c == 4:
        x = x[..., :3]  # drop alpha
    return [Frame(np.ascontiguousarray(x[i]), f"{where} index {i}") for i in range(t)]


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
            raise FrameDecodeError(f"{_where(first, f'file {name!r}')}: the file is empty")
        fmt = sniff(data)
        if fmt is None:
            raise UnsupportedMediaType(
                f"file {name!r} (frame {first}) is not a supported format (its first bytes are "
                f"{data[:8]!r}); supported: {SUPPORTED}"
            )
        if fmt == "NPY":
            frames.extend(_decode_npy(data, name, first, limits))
        elif fmt in VIDEO_FORMATS:
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
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise FrameDecodeError(f"{label}: not valid base64 ({e})") from None


# --------------------------------------------------------------------------- encoding


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
