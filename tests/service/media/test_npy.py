""".npy uploads read from the upload's bytes (numpy's header reader, then a view of the data):
the same frames ``np.load`` gives, for every layout numpy.save writes."""

from __future__ import annotations

import io

import numpy as np
import pytest

from service.errors import FrameDecodeError
from service.media.decode import decode_parts
from service.media.fitting import conform
from service.media.frames import Limits

RNG = np.random.default_rng(11)
U8 = RNG.integers(0, 256, (4, 6, 5, 1), dtype=np.uint8)
RGBA = RNG.integers(0, 256, (3, 6, 5, 4), dtype=np.uint8)
FLOATS = RNG.random((4, 6, 5, 3))


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _reference(a: np.ndarray) -> np.ndarray:
    """What the frames must hold: np.load's array, scaled to [0, 1], alpha dropped."""
    a = np.load(io.BytesIO(_npy(a)), allow_pickle=False)
    a = a[..., None] if a.ndim == 3 else a
    x = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    return x[..., :3] if x.shape[-1] == 4 else x


@pytest.mark.parametrize(
    "array",
    [
        U8,
        U8[..., 0],  # (T, H, W)
        RGBA,
        np.asfortranarray(RGBA),  # saved with fortran_order: True
        FLOATS.astype(">f8"),  # big-endian
        FLOATS.astype(np.float16),
        np.asfortranarray(FLOATS.astype(np.float32)),
    ],
    ids=["u8", "u8-3d", "rgba", "rgba-fortran", "f8-big-endian", "f2", "f4-fortran"],
)
def test_npy_frames_equal_np_load(array):
    frames = decode_parts([("clip.npy", _npy(array))])
    want = _reference(array)
    assert len(frames) == len(want)
    for frame, ref in zip(frames, want):
        np.testing.assert_array_equal(frame.data, ref)
    h, w, c = want.shape[1:]
    x, _ = conform(frames, height=h, width=w, channels=c, resize=False)
    np.testing.assert_array_equal(x, want)


def test_uint8_frames_keep_their_bytes_until_the_clip_is_scaled():
    frames = decode_parts([("clip.npy", _npy(U8))])
    assert all(f.u8 is not None for f in frames)
    assert frames[0]._data is None  # nothing scaled per frame


@pytest.mark.parametrize(
    "array, says",
    [
        (np.zeros((2, 4, 4), dtype=np.dtype(("u1", (2,)))), "channels"),  # saved as (2, 4, 4, 2)
        (np.zeros((2, 4, 4), dtype=[("a", "f4")]), "dtype"),
        (np.zeros((2, 4, 4), np.int16), "dtype"),
        (np.zeros((4, 4), np.uint8), "shape"),
    ],
    ids=["subarray", "structured-float", "int16", "2-d"],
)
def test_unsupported_arrays_are_named(array, says):
    with pytest.raises(FrameDecodeError, match=says):
        decode_parts([("clip.npy", _npy(array))], Limits())
