"""Plain PNGs through libspng, everything else through Pillow: the same frames either way."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.errors import FrameDecodeError, InvalidInput
from service.media import decode as codecs
from service.media.decode import decode_parts
from service.media.fitting import conform
from service.media.frames import Frame, Limits

pytestmark = pytest.mark.skipif(codecs._spng is None, reason="no libspng wheel here")


def _png(a: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", **kw)
    return buf.getvalue()


def _pillow(data: bytes) -> np.ndarray:
    """What Pillow's path gives for ``data`` (float32 in [0, 1], (H, W, C))."""
    frames = codecs._decode_image(data, "PNG", "x", 0, Limits())
    return frames[0].data


RNG = np.random.default_rng(3)
GREY = RNG.integers(0, 256, (20, 30), dtype=np.uint8)
RGB = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)


@pytest.mark.parametrize("image", [GREY, RGB], ids=["grey", "rgb"])
@pytest.mark.parametrize("opts", [{}, {"optimize": True}, {"compress_level": 0}])
def test_plain_pngs_decode_like_pillow(image, opts):
    data = _png(image, **opts)
    frame = codecs._plain_png(data, "x", 0, Limits())
    assert frame is not None and frame.u8 is not None  # libspng took it
    np.testing.assert_array_equal(frame.data, _pillow(data))  # bit for bit, as float32
    assert frame.data.dtype == np.float32 and frame.source == "file 'x'"


def _palette(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).convert("P").save(buf, format="PNG")
    return buf.getvalue()


def _with_trns(image: np.ndarray) -> bytes:
    img = Image.fromarray(image)
    img.info["transparency"] = 0
    buf = io.BytesIO()
    img.save(buf, format="PNG", transparency=0)
    return buf.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        _png(GREY.astype(np.uint16) * 257),  # 16-bit
        _png(np.dstack([RGB, GREY])),  # RGBA
        _palette(RGB),
        _with_trns(GREY),
    ],
    ids=["16-bit", "rgba", "palette", "trns"],
)
def test_other_pngs_take_pillows_path(data):
    assert codecs._plain_png(data, "x", 0, Limits()) is None
    got = decode_parts([("x", data)])
    np.testing.assert_array_equal(got[0].data, _pillow(data))


def test_apng_keeps_every_frame():
    frames = [Image.fromarray(GREY), Image.fromarray(255 - GREY)]
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:])
    got = decode_parts([("a.png", buf.getvalue())])
    assert len(got) == 2
    np.testing.assert_array_equal(got[1].u8[..., 0], 255 - GREY)


def test_faults_are_named_by_pillows_path():
    data = _png(GREY)
    broken = data[:60] + bytes(40) + data[100:]  # IDAT damaged: libspng alone would decode it
    assert codecs._plain_png(broken, "b.png", 0, Limits()) is None
    with pytest.raises(FrameDecodeError, match=r"frame 0 \(file 'b.png'\)"):
        decode_parts([("b.png", broken)])
    with pytest.raises(FrameDecodeError, match=r"frame 0 \(file 'c.png'\)"):
        decode_parts([("c.png", data[:300])])  # cut short
    with pytest.raises(InvalidInput, match="FRAMECAST_MAX_FRAME_PIXELS"):
        decode_parts([("big.png", data)], Limits(max_frame_pixels=100))
    with pytest.raises(InvalidInput, match="FRAMECAST_MAX_TOTAL_PIXELS"):
        decode_parts([("a.png", data), ("b.png", data)], Limits(max_total_pixels=1000))
    with pytest.raises(InvalidInput, match="FRAMECAST_MAX_FRAMES"):
        decode_parts([("a.png", data), ("b.png", data)], Limits(max_frames=1))


def test_conform_scales_byte_frames_like_each_frame_alone():
    frames = [
        Frame(None, f"f{i}", u8=RNG.integers(0, 256, (8, 8, 1), dtype=np.uint8)) for i in range(3)
    ]
    fast, conv = conform(frames, height=8, width=8, channels=1, resize=False)
    slow = np.stack([f.u8.astype(np.float32) / 255.0 for f in frames])
    np.testing.assert_array_equal(fast, slow)
    assert fast.dtype == np.float32 and conv.resized_from is None
    # mixed with a float frame, and one that needs resizing: the per-frame path, same values
    mixed = frames[:2] + [Frame(np.full((4, 4, 1), 0.5, np.float32), "f")]
    out, conv = conform(mixed, height=8, width=8, channels=1, resize=True)
    np.testing.assert_array_equal(out[:2], slow[:2])
    assert conv.resized_from == [4, 4] and np.allclose(out[2], 0.5)


def test_conform_gathers_views_and_colour_frames_in_order():
    """The bytes.join gather takes non-contiguous views (a .npy slice, a transposed array) and
    RGB frames, and keeps their order."""
    big = RNG.integers(0, 256, (6, 16, 8, 3), dtype=np.uint8)
    frames = [
        Frame(None, "v0", u8=big[0, ::2]),
        Frame(None, "v1", u8=big[1].transpose(1, 0, 2)[:, :8]),
    ]
    frames += [Frame(None, f"c{i}", u8=np.ascontiguousarray(big[i, :8])) for i in (2, 3)]
    assert not frames[0].u8.flags.c_contiguous and not frames[1].u8.flags.c_contiguous
    out, _ = conform(frames, height=8, width=8, channels=3, resize=False)
    want = np.stack([f.u8.astype(np.float32) / 255.0 for f in frames])
    np.testing.assert_array_equal(out, want)
    assert out.shape == (4, 8, 8, 3) and out.dtype == np.float32


def test_ranked_orders_as_a_stable_argsort_of_minus_scores():
    """Python's sort (it keeps the GIL) against numpy's: ties in class order, NaN last."""
    from service.routes.v1.predict import ranked

    pool = np.array([0.0, -0.0, 0.5, 1.0, np.nan, np.inf, -np.inf, 1e-9], np.float32)
    for _ in range(500):
        n = int(RNG.integers(1, 12))
        scores = np.where(RNG.random(n) < 0.5, RNG.choice(pool, n), RNG.random(n)).astype(
            np.float32
        )
        names = [f"c{i}" for i in range(n)]
        got = [d["class_name"] for d in ranked(scores, names)]
        assert got == [names[i] for i in np.argsort(-scores, kind="stable")], scores
