"""Work one upload costs is bounded and kept off the event loop (service/http/uploads.py): a small
APNG of four 4096x4096 pages, posted to a stream or sent over its WebSocket, is decoded in a worker
thread (its header declares 64 M pixels), so the other clients' small requests are answered
meanwhile; and decoding stops at FRAMECAST_DECODE_TIMEOUT_S (413)."""

from __future__ import annotations

import io
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from service.config import Settings
from service.http.uploads import decode_bounded
from service.media.decode import decode_parts
from service.media.frames import Limits, Offload
from tests.service.conftest import CARRY
from tests.service.helpers import H, W
from tests.service.live import served_process

SIDE = 4096


def big_apng(pages: int = 4) -> bytes:
    """``pages`` 4096x4096 RGBA pages, nearly blank (under 100 KB of file; seconds to decode:
    each page is composited and converted)."""
    frames = []
    for i in range(pages):
        a = np.zeros((SIDE, SIDE, 4), np.uint8)
        a[64 * i : 64 * i + 64, :256] = 255  # each page differs (Pillow merges equal ones)
        frames.append(Image.fromarray(a, "RGBA"))
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def small_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((1, H, W, 1), np.uint8))
    return buf.getvalue()


def test_a_file_declaring_many_pixels_leaves_the_loop_before_a_page_is_decoded():
    data = big_apng(2)
    assert len(data) < 100_000  # small in bytes: only its pixels say it is large
    limits = Limits(max_frame_pixels=SIDE * SIDE, max_total_pixels=1 << 30, inline_pixels=1 << 20)
    t0 = time.monotonic()
    with pytest.raises(Offload):
        decode_parts([("big.png", data)], limits)
    assert time.monotonic() - t0 < 0.5  # its header was read, no page decoded (seconds each)
    with pytest.raises(Offload):  # a video says its size only once decoded: off the loop
        decode_parts([("v.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(64))], limits)
    small = Image.fromarray(np.zeros((64, 64), np.uint8))
    buf = io.BytesIO()
    small.save(buf, format="PNG")
    fresh = Limits(inline_pixels=1 << 20)
    frames = decode_parts([("f.png", buf.getvalue())] * 10, fresh)  # the usual: decoded here
    assert len(frames) == 10 and fresh.used_pixels[0] == 10 * 64 * 64


@pytest.fixture(scope="module")
def server(stream_models, tmp_path_factory):
    log = tmp_path_factory.mktemp("bounded") / "server.log"
    with served_process(stream_models, log) as (url, _, proc):
        yield url


def _while(work, url: str, sid: str) -> tuple[float, list[float]]:
    """Run ``work()`` in a thread; meanwhile time small requests of another client (a frame to
    its own stream, and a read); returns work's seconds and the small requests' seconds."""
    spent, done = [0.0], threading.Event()

    def run() -> None:
        t0 = time.monotonic()
        try:
            work()
        finally:
            spent[0] = time.monotonic() - t0
            done.set()

    thread = threading.Thread(target=run)
    times: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as c:
        c.get("/healthz")  # the connection is open before the work starts
        thread.start()
        time.sleep(0.05)
        while not done.is_set():
            t0 = time.monotonic()
            r = c.post(f"/v1/streams/{sid}/frames", content=small_npy(),
                       headers={"content-type": "application/x-npy"})  # fmt: skip
            assert r.status_code == 200, r.text
            assert c.get(f"/v1/streams/{sid}").status_code == 200
            times.append(time.monotonic() - t0)
    thread.join()
    return spent[0], times


def test_a_large_apng_on_a_stream_does_not_stall_other_clients(server):
    data = big_apng()
    with httpx.Client(base_url=server, timeout=120) as c:
        big = c.post(f"/v1/models/{CARRY}/streams").json()["id"]
        other = c.post(f"/v1/models/{CARRY}/streams").json()["id"]

        def post() -> None:
            r = c.post(f"/v1/streams/{big}/frames", content=data,
                       headers={"content-type": "image/png"})  # fmt: skip
            assert r.status_code == 200 and r.json()["received"] == 4, r.text

        spent, times = _while(post, server, other)
    assert len(times) >= 3, f"only {len(times)} small requests during {spent:.2f} s"
    assert max(times) < 1.0, f"a small request took {max(times):.2f} s while the APNG decoded"


def test_a_large_apng_over_a_websocket_does_not_stall_other_clients(server):
    ws_client = pytest.importorskip("websockets.sync.client")
    data = big_apng()
    with httpx.Client(base_url=server, timeout=60) as c:
        big = c.post(f"/v1/models/{CARRY}/streams").json()["id"]
        other = c.post(f"/v1/models/{CARRY}/streams").json()["id"]
    ws_url = server.replace("http://", "ws://") + f"/v1/streams/{big}/ws"

    def send() -> None:
        with ws_client.connect(ws_url, max_size=None) as ws:
            ws.send(data)
            assert '"received": 4' in ws.recv(timeout=120)

    spent, times = _while(send, server, other)
    assert len(times) >= 3, f"only {len(times)} small requests during {spent:.2f} s"
    assert max(times) < 1.0, f"a small request took {max(times):.2f} s while the APNG decoded"


def test_decoding_stops_at_its_deadline(tmp_path):
    import asyncio

    from service.errors import PayloadTooLarge

    settings = Settings(models_dir=tmp_path, decode_timeout_s=0.05)
    data = big_apng(8)
    limits = Limits(max_frames=16, max_frame_pixels=SIDE * SIDE, max_total_pixels=1 << 30)
    t0 = time.monotonic()
    with pytest.raises(PayloadTooLarge, match="FRAMECAST_DECODE_TIMEOUT_S"):
        asyncio.run(decode_bounded([("big.png", data)], limits, settings, len(data)))
    assert time.monotonic() - t0 < 5


def test_the_inline_trial_keeps_every_limit_but_its_own_count(monkeypatch):
    """decode_bounded decodes on the event loop with a copy of the upload's limits that counts on
    its own (and stops at FRAMECAST_INLINE_WORK_PIXELS): every other limit is the upload's, so a
    field added to Limits must be copied there too."""
    import asyncio
    import dataclasses

    import service.http.uploads as uploads

    seen: list[Limits] = []

    def spy(parts, limits, *, video=None):
        seen.append(limits)
        limits.used_pixels[0] += 7
        return []

    monkeypatch.setattr(uploads, "decode_parts", spy)
    limits = Limits(
        max_frames=3, max_frame_pixels=11, max_total_pixels=13, used_pixels=[5], deadline=17.0,
        timeout_s=19.0, inline_pixels=None,
    )  # fmt: skip
    settings = Settings(inline_work_bytes=100, inline_work_pixels=23)
    asyncio.run(decode_bounded([("a.png", b"x")], limits, settings, 1))
    (trial,) = seen
    for f in dataclasses.fields(Limits):
        if f.name not in ("used_pixels", "inline_pixels"):
            assert getattr(trial, f.name) == getattr(limits, f.name), f.name
    assert trial.used_pixels is not limits.used_pixels and trial.inline_pixels == 5 + 23
    assert limits.used_pixels == [5 + 7]  # what the trial counted is the upload's
