"""``.npy`` uploads: the header read from the bytes (never unpickled), then the frames."""

from __future__ import annotations

import io

import numpy as np

from service.checks import require_unit_range
from service.errors import FrameDecodeError, InvalidInput
from service.media.frames import Frame, Limits, check_total, frame_label


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


def decode_npy(data: bytes, name: str, first: int, limits: Limits) -> list[Frame]:
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
            frame_label(first + i, where + f" index {i}"),
            kind="float",
            hint="send uint8 0-255 or floats 0-1",
        )
    x = np.clip(x, 0.0, 1.0)
    if c == 4:
        x = x[..., :3]  # drop alpha
    return [Frame(np.ascontiguousarray(x[i]), f"{where} index {i}") for i in range(t)]
