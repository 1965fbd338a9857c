"""What a stream survives in one server (the in-process store): a retried post, a new model
version (replayed), a snapshot opened elsewhere, the client's own idle timeout, a WebSocket that
closes (on_close), and a hostile client's edges (the open cap under concurrency, WebSocket close
codes once open, a text message that is not UTF-8)."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from service.app import create_app
from tests.service import own_models as om
from tests.service.conftest import CARRY, WINDOW
from tests.service.helpers import FRAMES, H, W
from tests.service.routes.v1.test_streams import (
    NPY,
    _settings,
    frames_of,
    npy,
    open_stream,
    post,
    predict,
    values,
)


@pytest.fixture(scope="module")
def sc(stream_models):
    with TestClient(create_app(_settings(stream_models))) as c:
        yield c


def _raw_post(c, sid, frames, **params):
    return c.post(
        f"/v1/streams/{sid}/frames",
        params={"raw": True, **params},
        content=npy(frames),
        headers=NPY,
    )


# ------------------------------------------------------------------ a retried post


@pytest.mark.parametrize("name", [CARRY, WINDOW])
def test_a_retried_step_is_answered_again_never_applied_twice(sc, name):
    frames = frames_of(FRAMES + 3, seed=31)
    sid = open_stream(sc, name)
    ref = open_stream(sc, name)
    for i in range(FRAMES + 1):
        first = post(sc, sid, frames[i : i + 1], step=i)
        again = _raw_post(sc, sid, frames[i : i + 1], step=i)  # the client timed out: retried
        assert again.status_code == 200, again.text
        assert again.headers["x-stream-retry"] == "answered again"
        assert again.json() == first
        want = post(sc, ref, frames[i : i + 1])
        assert first["step"] == want["step"] == i + 1
    assert sc.get(f"/v1/streams/{sid}").json()["step"] == FRAMES + 1
    got = post(sc, sid, frames[FRAMES + 1 : FRAMES + 2], step=FRAMES + 1)
    want = post(sc, ref, frames[FRAMES + 1 : FRAMES + 2])
    np.testing.assert_allclose(values(got), values(want), atol=1e-6)


def test_a_retry_with_other_frames_or_a_lost_frame_is_a_409(sc):
    frames = frames_of(3, seed=32)
    sid = open_stream(sc, CARRY)
    post(sc, sid, frames[:1], step=0)
    r = _raw_post(sc, sid, frames[1:2], step=0)  # step 0 again, but another frame
    assert r.status_code == 409 and "applied already, with other frames" in r.json()["message"]
    r = _raw_post(sc, sid, frames[1:2], step=2)  # a frame was lost
    assert r.status_code == 409 and "a frame was lost" in r.json()["message"]
    assert sc.get(f"/v1/streams/{sid}").json()["step"] == 1
    post(sc, sid, frames[1:3], step=1)
    r = _raw_post(sc, sid, frames[:1], step=0)  # older than the last post: not a retry
    assert r.status_code == 409 and "sent twice" in r.json()["message"]


# ------------------------------------------------------------------ lifetimes the client picks


def test_idle_timeout_is_the_clients_within_the_bound(stream_models):
    s = _settings(stream_models, stream_max_idle_timeout_s=100)
    with TestClient(create_app(s)) as c:
        now = [1000.0]
        c.app.state.streams.clock = lambda: now[0]
        sid = open_stream(c, CARRY, idle_timeout_s=20)
        info = c.get(f"/v1/streams/{sid}").json()
        assert info["idle_timeout_s"] == 20 and info["expires_in_s"] == 20
        r = c.post(f"/v1/models/{CARRY}/streams", params={"idle_timeout_s": 101})
        assert r.status_code == 422 and "FRAMECAST_STREAM_MAX_IDLE_TIMEOUT_S" in r.text
        r = c.post(f"/v1/models/{CARRY}/streams", params={"idle_timeout_s": 0.0001})
        assert r.status_code == 422 and "FRAMECAST_STREAM_MIN_IDLE_TIMEOUT_S" in r.text  # dead
        other = open_stream(c, CARRY)  # the default, 300 s
        now[0] += 21
        r = _raw_post(c, sid, frames_of(1))
        assert r.status_code == 410 and "expired after 20 s" in r.json()["message"]
        assert post(c, other, frames_of(1))["step"] == 1


def test_websocket_on_close_end_ends_the_stream_and_keep_keeps_it(sc):
    kept = open_stream(sc, CARRY)
    with sc.websocket_connect(f"/v1/streams/{kept}/ws") as ws:
        ws.send_bytes((frames_of(1)[0] * 255).astype(np.uint8).tobytes())
        assert json.loads(ws.receive_text())["step"] == 1
    assert sc.get(f"/v1/streams/{kept}").json()["step"] == 1  # kept for a reconnect
    with sc.websocket_connect(f"/v1/streams/{kept}/ws?on_close=end") as ws:
        ws.send_bytes((frames_of(1)[0] * 255).astype(np.uint8).tobytes())
        assert json.loads(ws.receive_text())["step"] == 2
    r = sc.get(f"/v1/streams/{kept}")
    assert r.status_code == 410 and "on_close=end" in r.json()["message"]


@pytest.mark.parametrize(
    "path,code,words",
    [
        ("/v1/streams/nope/ws", 4404, "no stream"),
        ("/v1/streams/{ended}/ws", 4410, "was deleted"),
        ("/v1/streams/{open}/ws?horizon=x", 4422, "horizon"),
        ("/v1/streams/{open}/ws?on_close=never", 4422, "on_close"),
        ("/v1/streams/{open}/ws?horizon=99", 4422, "FRAMECAST_MAX_HORIZON"),
    ],
)
def test_websocket_refusals_are_close_codes_after_the_handshake(sc, path, code, words):
    ended, live = open_stream(sc, CARRY), open_stream(sc, CARRY)
    sc.delete(f"/v1/streams/{ended}")
    url = path.format(ended=ended, open=live)
    with sc.websocket_connect(url) as ws:  # accepted: a browser can read why
        err = json.loads(ws.receive_text())
        assert words in err["message"] and err["status"] == code - 4000
        with pytest.raises(WebSocketDisconnect) as e:
            ws.receive_text()
    assert e.value.code == code


# ------------------------------------------------------------------ the open cap under load


def test_the_open_cap_holds_when_many_open_at_once(stream_models):
    s = _settings(stream_models, stream_max_per_model=8)
    with TestClient(create_app(s)) as c:
        for _ in range(7):
            open_stream(c, CARRY)
        body = npy(frames_of(2))
        codes: list[int] = []

        def slow():  # a body that trickles in: the opens overlap
            for i in range(0, len(body), 512):
                yield body[i : i + 512]
                time.sleep(0.01)

        def one():
            r = c.post(f"/v1/models/{CARRY}/streams", content=slow(), headers=NPY)
            codes.append(r.status_code)

        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(codes) == [201] + [503] * 9
        open_streams = [x for x in c.get("/v1/streams").json()["streams"] if x["model"] == CARRY]
        assert len(open_streams) == 8


# ------------------------------------------------------------------ a new version mid-stream


@pytest.fixture
def versioned(tmp_path):
    """``nf/1``: a user's carried-state next-frame model (free time axis); ``nf/2`` (kept aside
    until a test moves it in) the same layers with other weights."""
    root = tmp_path / "models"
    first = om.free_sequence_next_frame()
    om.write_folder(root / "nf", "1", first)
    second = om.free_sequence_next_frame()
    second.set_weights([w * 0.7 + 0.01 for w in first.get_weights()])
    om.write_folder(tmp_path / "aside", "2", second)
    return root, tmp_path / "aside" / "2"


def _wait(cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["carry", "window"])
def test_a_new_version_mid_stream_is_replayed_and_answers_as_predict(versioned, mode):
    root, aside = versioned
    s = _settings(root, model_poll_s=0.2, stream_window=4)
    frames = frames_of(9, om.S, seed=33)
    with TestClient(create_app(s)) as c:
        sid = open_stream(c, "nf", past_context=mode)
        for i in range(6):
            a = post(c, sid, frames[i : i + 1])
            assert a["version"] == 1 and a["replayed"] is None
        os.replace(aside, root / "nf" / "2")  # appears whole: polled in, then served
        _wait(lambda: list(c.app.state.runtime.models.versions("nf")) == [2])
        got = post(c, sid, frames[6:7])
        assert got["version"] == 2 and got["step"] == 7
        assert got["replayed"] == {"from_version": 1, "version": 2, "frames": 4}
        want = predict(c, "nf", frames[3:7])  # the new version on the last 4 frames
        np.testing.assert_allclose(values(got), want, atol=2e-5)
        assert got["surprise"] is not None  # the old version's prediction of this frame
        nxt = post(c, sid, frames[7:8])
        assert nxt["replayed"] is None and nxt["version"] == 2


def test_a_flat_model_that_gains_a_version_folder_is_replayed_onto_it(tmp_path):
    """A model served flat (``nf/model.keras``, version 1) gains ``nf/2/`` beside its
    checkpoint, as a user adds a version: polled in, served, and the stream replayed onto it."""
    root = tmp_path / "models"
    first = om.free_sequence_next_frame()
    om.write_folder(root, "nf", first)
    second = om.free_sequence_next_frame()
    second.set_weights([w * 0.7 + 0.01 for w in first.get_weights()])
    om.write_folder(tmp_path / "aside", "2", second)
    s = _settings(root, model_poll_s=0.2, stream_window=4)
    frames = frames_of(8, om.S, seed=35)
    with TestClient(create_app(s)) as c:
        sid = open_stream(c, "nf")
        for i in range(5):
            assert post(c, sid, frames[i : i + 1])["version"] == 1
        os.replace(tmp_path / "aside" / "2", root / "nf" / "2")
        _wait(lambda: list(c.app.state.runtime.models.versions("nf")) == [2])
        got = post(c, sid, frames[5:6])
        assert got["version"] == 2 and got["step"] == 6
        assert got["replayed"] == {"from_version": 1, "version": 2, "frames": 4}
        np.testing.assert_allclose(values(got), predict(c, "nf", frames[2:6]), atol=2e-5)
        listed = {m["name"]: m for m in c.get("/v1/models").json()["models"]}
        assert listed["nf"]["state"] == "ready", listed["nf"]


def test_on_swap_end_ends_the_stream(versioned):
    root, aside = versioned
    s = _settings(root, model_poll_s=0.2, stream_on_swap="end")
    with TestClient(create_app(s)) as c:
        sid = open_stream(c, "nf")
        post(c, sid, frames_of(2, om.S))
        os.replace(aside, root / "nf" / "2")
        _wait(lambda: list(c.app.state.runtime.models.versions("nf")) == [2])
        r = _raw_post(c, sid, frames_of(1, om.S))
        assert r.status_code == 410 and "FRAMECAST_STREAM_ON_SWAP=end" in r.json()["message"]


# ------------------------------------------------------------------ snapshots


def _snapshot(c, sid) -> bytes:
    r = c.get(f"/v1/streams/{sid}/snapshot")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    return r.content


def _restore(c, name, data: bytes, **params):
    return c.post(
        f"/v1/models/{name}/streams",
        params=params,
        files={"snapshot": ("s.npz", data, "application/octet-stream")},
    )


@pytest.mark.parametrize("name,mode", [(CARRY, "carry"), (CARRY, "window"), (WINDOW, "window")])
def test_a_snapshot_opened_on_another_server_continues_the_stream_exactly(
    stream_models, sc, name, mode
):
    frames = frames_of(FRAMES + 4, seed=34)
    sid = open_stream(sc, name, past_context=mode)
    for i in range(FRAMES + 2):
        post(sc, sid, frames[i : i + 1])
    data = _snapshot(sc, sid)
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        meta = json.loads(z["framecast_snapshot"].tobytes())
        assert meta["model"] == name and meta["step"] == FRAMES + 2 and meta["mode"] == mode
    want = post(sc, sid, frames[FRAMES + 2 : FRAMES + 3])  # the uninterrupted stream
    with TestClient(create_app(_settings(stream_models))) as other:
        r = _restore(other, name, data)
        assert r.status_code == 201, r.text
        assert r.json()["restored"] is True and r.json()["step"] == FRAMES + 2
        got = post(other, r.json()["id"], frames[FRAMES + 2 : FRAMES + 3])
    assert got["step"] == want["step"] == FRAMES + 3
    np.testing.assert_allclose(values(got), values(want), atol=1e-6)
    assert got["surprise"] == want["surprise"]


def _edited(data: bytes, compressed: bool = False, **changes) -> bytes:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["framecast_snapshot"].tobytes())
    for k, v in changes.items():
        if k in meta:
            meta[k] = v
        elif v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    arrays["framecast_snapshot"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def test_bad_snapshots_are_clear_4xx(sc):
    sid = open_stream(sc, CARRY)
    post(sc, sid, frames_of(FRAMES + 1, seed=35))
    good = _snapshot(sc, sid)
    nan = np.full((H, W, 1), np.nan, np.float32)
    cases = {
        "another model": (_restore(sc, WINDOW, good), 422, "stream of model 'carry_nf'"),
        "not a zip": (_restore(sc, CARRY, b"hello"), 422, "not an .npz"),
        "wrong state shape": (
            _restore(sc, CARRY, _edited(good, s0=np.zeros((3, 3), np.float32))),
            422,
            "array 's0'",
        ),
        "not finite": (_restore(sc, CARRY, _edited(good, w0=nan)), 422, "not finite"),
        "another frame shape": (
            _restore(sc, CARRY, _edited(good, frame_shape=[8, 8, 1])),
            422,
            "model 'carry_nf' reads 16x16x1",
        ),
        "an extra array": (
            _restore(sc, CARRY, _edited(good, x=np.zeros(3, np.float32))),
            422,
            "unexpected arrays",
        ),
        "a zip bomb": (  # 64 MiB of zeros in a few kilobytes: refused before it is read
            _restore(sc, CARRY, _edited(good, True, w1=np.zeros((4096, 4096), np.float32))),
            413,
            "FRAMECAST_STREAM_MAX_BYTES",
        ),
    }
    for what, (r, status, words) in cases.items():
        assert r.status_code == status, (what, r.text)
        assert words in r.json()["message"], (what, r.json()["message"])
    r = sc.post(
        f"/v1/models/{CARRY}/predict",
        files={"snapshot": ("s.npz", good, "application/octet-stream")},
    )
    assert r.status_code == 422 and "when opening a stream" in r.json()["message"]


# ------------------------------------------------------------------ the memory store's own log


def _ws_text_frame(payload: bytes) -> bytes:
    """A client's masked, final text frame (RFC 6455 5.2), payload under 126 bytes."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def test_a_text_message_that_is_not_utf8_is_closed_1007_with_no_error_logged(sc, caplog):
    """Sent as a raw frame over a real socket (a client library will not send broken UTF-8)."""
    import base64
    import socket

    import httpx

    from tests.service.live import live_server

    caplog.set_level(logging.INFO)
    seen: list[logging.LogRecord] = []  # uvicorn's own logger does not reach caplog's root

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    uvicorn_error, keep = logging.getLogger("uvicorn.error"), Keep(logging.DEBUG)
    settings = sc.app.state.settings
    app = create_app(settings)
    with live_server(app, settings=settings) as url:  # as `framecast serve` serves
        uvicorn_error.addHandler(keep)  # after uvicorn configured its loggers
        sid = httpx.post(f"{url}/v1/models/{CARRY}/streams", timeout=30).json()["id"]
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall(
                (
                    f"GET /v1/streams/{sid}/ws HTTP/1.1\r\nHost: {host}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            assert head.startswith(b"HTTP/1.1 101"), head
            sock.sendall(_ws_text_frame(b'{"frames": ["\xff\xfe"]}'))
            got = head.split(b"\r\n\r\n", 1)[1]
            while len(got) < 4:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                got += chunk
        assert got[0] == 0x88, got  # a close frame ...
        assert int.from_bytes(got[2:4], "big") == 1007  # ... "invalid frame payload data"
        r = httpx.post(f"{url}/v1/streams/{sid}/frames", content=npy(frames_of(1)), headers=NPY)
        assert r.status_code == 200 and r.json()["step"] == 1
    uvicorn_error.removeHandler(keep)
    errors = [r for r in caplog.records + seen if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
    assert any("not UTF-8: closed with 1007" in r.getMessage() for r in seen), seen
