"""Unit checks of the limits (no server): JSON depth, per-page image checks, .npy headers."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from service.codecs import Limits, decode_parts
from service.errors import FrameDecodeError, InvalidInput, PayloadTooLarge
from service.limits import check_json, json_depth_exceeds
from tests.service.malformed import gif_frames, npy_header_only


@pytest.mark.parametrize("body,depth,too_deep", [
    (b"[[[1]]]", 3, False), (b"[[[1]]]", 2, True), (b'{"a": [{"b": []}]}', 4, False),
    (b'{"a": [{"b": []}]}', 3, True), (b'{"s": "[[[[[[[[[["}', 2, False),
    (b'{"s": "\\"[[[[[[\\""}', 2, False), (b"[1, 2", 1, False), (b"[" * 10**5, 32, True),
    (b"[" * 32, 32, False),
], ids=lambda v: repr(v)[:40] if isinstance(v, bytes) else str(v))
def test_json_depth(body, depth, too_deep):
    assert json_depth_exceeds(body, depth) is too_deep


def test_check_json_counts_values_before_parsing():
    with pytest.raises(PayloadTooLarge, match="FRAMECAST_MAX_JSON_ITEMS"):
        check_json(b"[" + b"0," * 100 + b"0]", max_depth=8, max_items=50)
    with pytest.raises(InvalidInput, match="FRAMECAST_MAX_JSON_DEPTH"):
        check_json(b"[" * 40 + b"]" * 40, max_depth=32, max_items=50)
    check_json(b'{"frames": ["AA=="]}', max_depth=8, max_items=50)


def test_a_gif_of_10000_frames_is_refused_after_the_limit_not_after_10000():
    t0 = time.perf_counter()
    with pytest.raises(InvalidInput, match="more than 64 frames"):
        decode_parts([("many.gif", gif_frames(10_000))], Limits(max_frames=64))
    assert time.perf_counter() - t0 < 2.0


def test_every_tiff_page_is_checked_before_it_is_decoded():
    buf = io.BytesIO()
    small = Image.fromarray(np.zeros((16, 16), np.uint8))
    big = Image.fromarray(np.zeros((64, 64), np.uint8))
    small.save(buf, format="TIFF", save_all=True, append_images=[big])
    with pytest.raises(InvalidInput, match=r"page 1.*64x64.*FRAMECAST_MAX_FRAME_PIXELS"):
        decode_parts([("pages.tif", buf.getvalue())], Limits(max_frame_pixels=1000))
    frames = decode_parts([("pages.tif", buf.getvalue())], Limits())
    assert [f.data.shape for f in frames] == [(16, 16, 1), (64, 64, 1)]


def test_an_npy_header_claiming_more_than_it_holds_allocates_nothing():
    with pytest.raises(FrameDecodeError, match="declares shape"):
        decode_parts([("big.npy", npy_header_only((10**6, 10**6, 10**6)))], Limits())
