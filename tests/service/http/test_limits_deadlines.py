"""The request deadline covers the body (service/http/limits.py), against a live server over raw
sockets: a body that stalls or trickles past the deadline gets a 408 and its connection closed; a
client that leaves mid-body is one INFO line, never a 500 or a traceback; the server goes on
answering."""

from __future__ import annotations

import json
import logging
import socket
import time

import httpx
import pytest

from service.app import create_app
from service.config import Settings
from tests.service.live import connect, live_server, read_answer

NF = "convlstm2d_next_frame"
ROUTES = [f"/v1/models/{NF}/predict", f"/v2/models/{NF}/infer"]  # the hot path, and a route


@pytest.fixture(scope="module")
def url(models_dir):
    settings = Settings(
        models_dir=models_dir, load_mode="blocking", body_idle_timeout_s=0.5, request_timeout_s=2.0
    )
    with live_server(create_app(settings)) as u:
        yield u


def _head(path: str, extra: str) -> bytes:
    kind = "application/json" if path.startswith("/v2/") else "application/x-npy"  # each route's
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\n{extra}\r\n").encode()


def _answer(sock: socket.socket) -> tuple[int, dict, bool]:
    """Status, JSON body, and whether the server then closed the connection."""
    status, _, body = read_answer(sock)
    sock.settimeout(5)
    closed = sock.recv(1) == b""
    return status, json.loads(body), closed


def _healthy(url: str) -> None:
    assert httpx.get(url + "/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize("path", ROUTES)
def test_a_body_shorter_than_declared_gets_408_and_the_connection_closed(url, path):
    with connect(url) as s:
        t0 = time.monotonic()
        s.sendall(_head(path, "Content-Length: 1000\r\n") + b"x" * 10)
        status, body, closed = _answer(s)
    assert status == 408 and closed and time.monotonic() - t0 < 1.9
    text = body.get("message") or body.get("error")
    assert (
        "stalled" in text and "after 10 bytes" in text and "FRAMECAST_BODY_IDLE_TIMEOUT_S" in text
    )
    _healthy(url)


def test_a_body_that_trickles_past_the_deadline_gets_408(url):
    with connect(url) as s:
        t0 = time.monotonic()
        s.sendall(_head(ROUTES[0], "Content-Length: 1000\r\n"))
        answer = None
        for _ in range(40):  # one byte every 0.2 s: never idle for 0.5 s, past 2 s in all
            try:
                s.sendall(b"x")
            except OSError:
                break
            time.sleep(0.2)
            s.setblocking(False)
            try:
                if s.recv(1, socket.MSG_PEEK):
                    break
            except BlockingIOError:
                pass
            finally:
                s.setblocking(True)
        status, body, closed = answer or _answer(s)
    assert status == 408 and closed and 1.9 <= time.monotonic() - t0 < 4.0
    assert (
        "request deadline" in body["message"] and "FRAMECAST_REQUEST_TIMEOUT_S" in body["message"]
    )


def test_a_chunk_that_declares_70_mib_and_sends_1_kib_gets_408(url):
    with connect(url) as s:
        s.sendall(_head(ROUTES[0], "Transfer-Encoding: chunked\r\n") + b"4600000\r\n" + b"x" * 1024)
        status, body, closed = _answer(s)
    assert status == 408 and closed and "after 1024 bytes" in body["message"]


@pytest.mark.parametrize("path", ROUTES)
def test_a_client_that_leaves_mid_body_is_one_info_line_never_a_500(url, path, caplog):
    caplog.set_level(logging.DEBUG)
    with connect(url) as s:
        s.sendall(_head(path, "Content-Length: 1000\r\n") + b"x" * 10)
        time.sleep(0.1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "client disconnected" not in caplog.text:
        time.sleep(0.05)
    gone = [r for r in caplog.records if "client disconnected after 10 bytes" in r.getMessage()]
    assert len(gone) == 1 and gone[0].levelno == logging.INFO, caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in caplog.text and "status=500" not in caplog.text
    assert "status=499" in caplog.text
    _healthy(url)
