"""Every case of the malformed corpus (tests/service/malformed.py, 90+ requests) gets its 4xx and a
message from a live server, which then answers a valid request correctly."""

from __future__ import annotations

import os
import socket

import httpx
import numpy as np
import pytest

from service.app import create_app
from service.config import Settings
from tests.service import malformed
from tests.service.helpers import clip, npy
from tests.service.live import live_server

CASES = malformed.corpus()


@pytest.fixture(scope="module")
def server(models_dir):
    settings = Settings(models_dir=models_dir, load_mode="blocking", **malformed.CORPUS_SETTINGS)
    with live_server(create_app(settings)) as url:
        with httpx.Client(base_url=url, timeout=60) as http:
            ref = http.post(
                malformed.PREDICT,
                content=npy(clip()),
                params={"output": "npy", "horizon": 2},
                headers={"content-type": "application/x-npy"},
            )
            assert ref.status_code == 200, ref.text
            yield url, http, ref.content


def valid_answer_is_right(http, reference: bytes) -> None:
    r = http.post(
        malformed.PREDICT,
        content=npy(clip()),
        params={"output": "npy", "horizon": 2},
        headers={"content-type": "application/x-npy"},
    )
    assert r.status_code == 200, r.text
    got = np.load(__import__("io").BytesIO(r.content))
    want = np.load(__import__("io").BytesIO(reference))
    np.testing.assert_allclose(got, want, atol=1e-5)


def _chunks(data: bytes, size: int = 64 * 1024):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_input_gets_its_4xx_and_a_message(server, case):
    url, http, reference = server
    if os.path.exists(malformed.Boom.marker):
        os.remove(malformed.Boom.marker)
    content = _chunks(case.body) if case.chunked and case.body is not None else case.body
    r = http.request(
        case.method, case.path, content=content, params=case.params, headers=case.request_headers()
    )
    assert r.status_code == case.status, (case.name, r.status_code, r.text[:500])
    body = r.json()
    message = body.get("message") if case.path.startswith("/v1") else body.get("error")
    assert isinstance(message, str) and len(message) > 10, body
    assert case.says in message, (case.says, message)
    assert r.headers.get("x-request-id")
    assert not os.path.exists(malformed.Boom.marker), "an uploaded pickle was unpickled"
    valid_answer_is_right(http, reference)


def test_a_declared_oversize_body_is_refused_before_it_is_sent(server):
    """Headers claiming 3 MiB (the limit is 2 MiB) and no body: 413 at once, nothing read."""
    url, http, reference = server
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            f"POST {malformed.PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            f"Content-Length: {3 << 20}\r\n\r\n".encode()
        )
        chunks = []
        while True:  # the server answers and closes the connection; read all of it
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        reply = b"".join(chunks).decode("latin-1")
    assert reply.startswith("HTTP/1.1 413"), reply
    assert "FRAMECAST_MAX_UPLOAD_BYTES" in reply
    valid_answer_is_right(http, reference)
