"""Connections are bounded below ASGI (service/http/connections.py), against a live server over
raw sockets: request headers that trickle or never come are answered 408 or closed within the
header timeout, a connection past the cap is answered 503 at once, a keep-alive connection carries
at most so many requests and is closed when idle, and a normal client is served meanwhile."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import httpx
import pytest

from service.app import create_app
from service.config import Settings
from tests.service.live import connect, live_server, read_answer

HEADER_TIMEOUT_S = 1.0


def _server(models_dir, **limits):
    settings = Settings(models_dir=models_dir, **limits)
    return live_server(create_app(settings), settings=settings)


@pytest.fixture(scope="module")
def url(models_dir):
    with _server(
        models_dir,
        header_timeout_s=HEADER_TIMEOUT_S,
        keep_alive_timeout_s=0.5,
        keep_alive_max_requests=3,
    ) as u:
        yield u


def _closed(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def _trickle(sock: socket.socket, stop: threading.Event, every: float = 0.2) -> None:
    """Send the request line, then one header line every ``every`` s, never the blank line."""
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        i = 0
        while not stop.wait(every):
            sock.sendall(f"X-Slow-{i}: y\r\n".encode())
            i += 1
    except OSError:  # closed by the server: what we want
        pass


def test_headers_that_trickle_get_408_and_the_connection_closed(url, caplog):
    caplog.set_level(logging.INFO, logger="framecast")
    stop = threading.Event()
    # the clock starts before the connection: the server's (in this process) starts when it
    # accepts, which can run before this thread is back from connect()
    t0 = time.monotonic()
    with connect(url) as s:
        sender = threading.Thread(target=_trickle, args=(s, stop), daemon=True)
        sender.start()
        status, headers, body = read_answer(s)
        waited = time.monotonic() - t0
        closed = _closed(s, 5)
        stop.set()
        sender.join(5)
    assert status == 408 and headers["connection"] == "close" and closed
    assert HEADER_TIMEOUT_S <= waited < HEADER_TIMEOUT_S + 1.0, waited
    answer = json.loads(body)
    assert answer["error"] == "request_timeout"
    assert (
        "FRAMECAST_HEADER_TIMEOUT_S" in answer["message"] and "bytes received" in answer["message"]
    )
    lines = [
        r.getMessage() for r in caplog.records if "request headers not complete" in r.getMessage()
    ]
    assert len(lines) == 1 and "127.0.0.1" in lines[0]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_a_connection_that_sends_nothing_is_closed_quietly(url):
    with connect(url) as s:
        t0 = time.monotonic()
        assert _closed(s, HEADER_TIMEOUT_S + 2.0)
        assert time.monotonic() - t0 >= HEADER_TIMEOUT_S * 0.9


def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(url):
    with connect(url) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(s)[0] == 200
        t0 = time.monotonic()
        assert _closed(s, 3.0)
        assert 0.4 <= time.monotonic() - t0 < 2.0  # keep_alive_timeout_s=0.5


def test_a_later_request_on_a_kept_alive_connection_has_its_own_header_timeout(url):
    with connect(url) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(s)[0] == 200
        s.sendall(b"GET /healthz HTTP/1.1\r\n")  # the next request starts, its head never ends
        t0 = time.monotonic()
        status, _, _ = read_answer(s)
        assert status == 408 and HEADER_TIMEOUT_S * 0.9 <= time.monotonic() - t0 < 3.0


def test_a_keep_alive_connection_carries_at_most_the_limit(url):
    with connect(url) as s:
        answers = []
        for _ in range(3):
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, _ = read_answer(s)
            answers.append((status, headers.get("connection")))
        assert answers == [(200, None), (200, None), (200, "close")]
        assert _closed(s, 3.0)


def test_a_normal_client_is_served_while_slow_connections_are_held(url):
    stop = threading.Event()
    slow = [connect(url) for _ in range(40)]
    senders = [threading.Thread(target=_trickle, args=(s, stop, 0.3), daemon=True) for s in slow]
    for t in senders:
        t.start()
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            times = []
            for _ in range(10):
                t0 = time.monotonic()
                assert client.get("/healthz").status_code == 200
                times.append(time.monotonic() - t0)
        assert max(times) < 0.5, times
        # and every slow one was answered 408 or closed by the header timeout
        deadline = time.monotonic() + HEADER_TIMEOUT_S + 3
        for s in slow:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            data = b""
            try:
                while chunk := s.recv(65536):
                    data += chunk
            except ConnectionResetError:
                pass
            assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:80]
    finally:
        stop.set()
        for s in slow:
            s.close()
    metrics = httpx.get(url + "/metrics", timeout=10).text
    line = next(ln for ln in metrics.splitlines() if 'reason="header_timeout"' in ln)
    assert float(line.split()[-1]) >= 40


def test_a_connection_past_the_cap_is_answered_503_at_once(models_dir, caplog):
    caplog.set_level(logging.INFO, logger="framecast")
    with _server(models_dir, max_connections=4, header_timeout_s=30.0) as url:
        held = [connect(url) for _ in range(4)]
        time.sleep(0.2)  # the server has accepted them
        with connect(url) as extra:
            t0 = time.monotonic()
            status, headers, body = read_answer(extra)
            assert time.monotonic() - t0 < 0.5
            assert _closed(extra, 3.0)
        assert status == 503 and headers["retry-after"] == "1"
        answer = json.loads(body)
        assert (
            answer["error"] == "too_many_connections"
            and "FRAMECAST_MAX_CONNECTIONS" in (answer["message"])
        )
        held.pop().close()
        time.sleep(0.2)  # the server has seen it go
        with connect(url) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(s)[0] == 200
        for s in held:
            s.close()
    refusals = [r for r in caplog.records if "refused 1 connection" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING


def test_a_408_under_v2_has_the_v2_body(url):
    with connect(url) as s:  # the request line, then headers that never end
        s.sendall(b"POST /v2/models/x/infer HTTP/1.1\r\nHost: x\r\nX-Slow: y\r\n")
        status, _, body = read_answer(s)
    assert status == 408
    answer = json.loads(body)
    assert set(answer) == {"error"} and "FRAMECAST_HEADER_TIMEOUT_S" in answer["error"]


def test_a_refused_connection_is_answered_in_the_protocol_of_its_path(models_dir):
    with _server(models_dir, max_connections=2) as url:
        held = [connect(url) for _ in range(2)]
        time.sleep(0.2)  # the server has accepted them
        with connect(url) as extra:
            extra.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = read_answer(extra)
        assert status == 503 and headers["retry-after"] == "1"
        answer = json.loads(body)
        assert set(answer) == {"error"} and "FRAMECAST_MAX_CONNECTIONS" in answer["error"]
        with connect(url) as extra:
            extra.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
            assert json.loads(read_answer(extra)[2])["error"] == "too_many_connections"
        for s in held:
            s.close()


# ---------------------------------------------------------------- WebSockets: a cap of their own


def test_idle_websockets_at_their_cap_leave_http_served(stream_models):
    ws_client = pytest.importorskip("websockets.sync.client")
    settings = Settings(
        models_dir=stream_models, load_mode="blocking", max_connections=3, ws_max_connections=3
    )
    with live_server(create_app(settings), settings=settings) as url:
        sid = httpx.post(f"{url}/v1/models/carry_nf/streams", timeout=30).json()["id"]
        ws_url = url.replace("http://", "ws://") + f"/v1/streams/{sid}/ws"
        idle = [ws_client.connect(ws_url) for _ in range(3)]  # at the cap, sending nothing
        try:
            for _ in range(6):  # each on a new connection: HTTP's own cap is untouched
                r = httpx.get(f"{url}/v1/streams/{sid}", timeout=10)
                assert r.status_code == 200, r.text
            with httpx.Client(base_url=url, timeout=10) as a, httpx.Client(base_url=url) as b:
                assert a.get("/healthz").status_code == b.get("/readyz").status_code == 200
            with pytest.raises(Exception) as e:  # one socket more: 503, saying which cap
                ws_client.connect(ws_url)
            assert e.value.response.status_code == 503
            assert b"FRAMECAST_WS_MAX_CONNECTIONS" in e.value.response.body
            idle.pop().close()
            deadline = time.monotonic() + 10
            while True:  # room again once the server saw it close
                try:
                    idle.append(ws_client.connect(ws_url))
                    break
                except Exception:
                    assert time.monotonic() < deadline, "no room after a socket closed"
                    time.sleep(0.1)
        finally:
            for ws in idle:
                ws.close()


def test_an_idle_websocket_is_closed_after_its_timeout(stream_models):
    from fastapi.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    settings = Settings(
        models_dir=stream_models, load_mode="blocking", ws_idle_timeout_s=0.5, ws_check_s=0.2
    )
    with TestClient(create_app(settings)) as c:
        sid = c.post("/v1/models/carry_nf/streams").json()["id"]
        with c.websocket_connect(f"/v1/streams/{sid}/ws") as ws:
            t0 = time.monotonic()
            why = json.loads(ws.receive_text())
            assert why["status"] == 408 and "FRAMECAST_WS_IDLE_TIMEOUT_S" in why["message"]
            assert 0.4 < time.monotonic() - t0 < 5
            with pytest.raises(WebSocketDisconnect) as e:
                ws.receive_text()
            assert e.value.code == 4408
        assert c.get(f"/v1/streams/{sid}").status_code == 200  # the stream stays


def test_a_websocket_is_closed_when_its_stream_ends(stream_models):
    from fastapi.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    settings = Settings(models_dir=stream_models, load_mode="blocking", ws_check_s=0.2)
    with TestClient(create_app(settings)) as c:
        sid = c.post("/v1/models/carry_nf/streams").json()["id"]
        with c.websocket_connect(f"/v1/streams/{sid}/ws") as ws:
            assert c.delete(f"/v1/streams/{sid}").status_code == 200
            t0 = time.monotonic()
            why = json.loads(ws.receive_text())
            assert why["status"] == 410 and "was deleted" in why["message"]
            assert time.monotonic() - t0 < 5
            with pytest.raises(WebSocketDisconnect) as e:
                ws.receive_text()
            assert e.value.code == 4410
        sid = c.post("/v1/models/carry_nf/streams", params={"idle_timeout_s": 0.5}).json()["id"]
        with c.websocket_connect(f"/v1/streams/{sid}/ws") as ws:  # its stream expires
            why = json.loads(ws.receive_text())
            assert why["status"] == 410 and "expired" in why["message"]
