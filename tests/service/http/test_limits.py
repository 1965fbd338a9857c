"""Unit checks of the limits (no server): JSON depth, per-page image checks, .npy headers."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from service.errors import FrameDecodeError, InvalidInput, PayloadTooLarge
from service.http.limits import check_json, json_depth_exceeds
from service.media.decode import decode_parts
from service.media.frames import Limits
from tests.service.malformed import gif_frames, npy_header_only


@pytest.mark.parametrize(
    "body,depth,too_deep",
    [
        (b"[[[1]]]", 3, False),
        (b"[[[1]]]", 2, True),
        (b'{"a": [{"b": []}]}', 4, False),
        (b'{"a": [{"b": []}]}', 3, True),
        (b'{"s": "[[[[[[[[[["}', 2, False),
        (b'{"s": "\\"[[[[[[\\""}', 2, False),
        (b"[1, 2", 1, False),
        (b"[" * 10**5, 32, True),
        (b"[" * 32, 32, False),
    ],
    ids=lambda v: repr(v)[:40] if isinstance(v, bytes) else str(v),
)
def test_json_depth(body, depth, too_deep):
    assert json_depth_exceeds(body, depth) is too_deep


def _depth(body: bytes) -> int:
    """The deepest nesting of a well-formed JSON text, one character at a time."""
    depth = deepest = 0
    in_string = escaped = False
    for c in body.decode():
        if in_string:
            escaped, in_string = (not escaped and c == "\\"), in_string and (escaped or c != '"')
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def test_json_depth_agrees_with_a_plain_count_on_random_documents():
    """Whichever path answers (the bracket count's early out, or the peeling), the answer is the
    plain count's, for every limit around the document's depth."""
    import json
    import random

    rng = random.Random(7)

    def doc(level: int):
        pick = rng.random()
        if level > 6 or pick < 0.3:
            return rng.choice([1, "x", '["{', "\\", None, 'a"[b'])
        if pick < 0.65:
            return [doc(level + 1) for _ in range(rng.randint(0, 3))]
        return {f"k{i}": doc(level + 1) for i in range(rng.randint(0, 3))}

    for _ in range(300):
        body = json.dumps(doc(0)).encode()
        depth = _depth(body)
        for limit in range(max(0, depth - 2), depth + 3):
            assert json_depth_exceeds(body, limit) is (depth > limit), (body, limit)


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


# --------------------------------------------------------------------------- declared oversize


def _run_limit(
    declared: int, chunks: list[bytes] | None, *, drain_bytes: int, expect=None, idle_s: float = 5.0
) -> tuple[list[dict], int]:
    """BodyLimitMiddleware (limit 10 bytes) on a request declaring ``declared`` bytes whose body
    comes in ``chunks`` (None: never comes); the messages sent and the chunks read."""
    import asyncio

    from service.http.limits import BodyLimitMiddleware

    async def app(scope, receive, send):  # pragma: no cover - never reached
        raise AssertionError("the app ran for an oversize body")

    headers = [(b"content-length", str(declared).encode())]
    if expect:
        headers.append((b"expect", expect))
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    sent: list[dict] = []
    read = [0]

    async def receive():
        if chunks is None:
            await asyncio.sleep(3600)
        i = read[0]
        read[0] += 1
        return {"type": "http.request", "body": chunks[i], "more_body": i + 1 < len(chunks)}

    async def send(message):
        sent.append(message)

    mw = BodyLimitMiddleware(app, max_bytes=10, drain_bytes=drain_bytes, drain_idle_s=idle_s)
    asyncio.run(mw(scope, receive, send))
    return sent, read[0]


def _answer(sent: list[dict]) -> tuple[int, bytes, dict]:
    import json

    start, bodies = sent[0], sent[1:]
    assert start["type"] == "http.response.start" and bodies[-1].get("more_body", False) is False
    body = b"".join(m["body"] for m in bodies)
    return start["status"], body, json.loads(body)


def test_an_oversize_body_within_the_drain_bound_is_answered_then_read_to_its_end():
    """The 413 goes out first (more_body), then the body is read to its end, then the response
    ends (and the server closes a connection with nothing unread: no reset)."""
    sent, read = _run_limit(50, [b"x" * 10] * 5, drain_bytes=100)
    status, _, body = _answer(sent)
    assert status == 413 and "FRAMECAST_MAX_UPLOAD_BYTES" in body["message"]
    assert (b"connection", b"close") in sent[0]["headers"]
    assert sent[1]["more_body"] is True and sent[1]["body"]  # the answer, before the drain
    assert read == 5


def test_an_oversize_body_beyond_the_drain_bound_is_cut_off_unread():
    sent, read = _run_limit(10 + 100 + 1, [b"x" * 111], drain_bytes=100)
    assert _answer(sent)[0] == 413 and len(sent) == 2 and read == 0


def test_no_drain_when_the_client_waits_for_100_continue_or_it_is_off():
    sent, read = _run_limit(50, [b"x" * 50], drain_bytes=100, expect=b"100-continue")
    assert _answer(sent)[0] == 413 and read == 0
    sent, read = _run_limit(50, [b"x" * 50], drain_bytes=0)
    assert _answer(sent)[0] == 413 and read == 0


def test_the_drain_stops_when_the_body_does_not_come():
    t0 = time.monotonic()
    sent, _ = _run_limit(50, None, drain_bytes=100, idle_s=0.05)
    assert _answer(sent)[0] == 413 and time.monotonic() - t0 < 2.0
