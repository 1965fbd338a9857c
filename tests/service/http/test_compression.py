"""Compressed requests and responses (service/http/compression.py): gzip and deflate bodies are
inflated within the body limit (a small gzip that inflates past it is a 413), bad or unknown
encodings are clear 4xx, JSON answers are compressed for clients that accept it and binary ones
never; tritonclient's compression options work unchanged."""

from __future__ import annotations

import gzip
import io
import os
import time
import zlib

import httpx
import numpy as np
import pytest

from service.app import create_app
from tests.service.helpers import FRAMES, H, W, clip, npy
from tests.service.live import live_server

NF, CL = "convlstm2d_next_frame", "convlstm2d_classify"
PREDICT = f"/v1/models/{NF}/predict"


@pytest.fixture(scope="module")
def url(settings):  # max_upload_bytes = 2 MiB
    with live_server(create_app(settings)) as u:
        yield u


@pytest.fixture(scope="module")
def http(url):
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c


def _post(http, body: bytes, encoding: str | None, **params):
    headers = {"content-type": "application/x-npy", "accept-encoding": "identity"}
    if encoding:
        headers["content-encoding"] = encoding
    return http.post(PREDICT, content=body, headers=headers, params={"output": "npy", **params})


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(
    "encoding,pack",
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", _raw_deflate)],
    ids=["gzip", "deflate-zlib", "deflate-raw"],
)
def test_a_compressed_body_answers_as_the_plain_one(http, encoding, pack):
    body = npy(clip(seed=4))
    plain = _post(http, body, None)
    packed = _post(http, pack(body), encoding)
    assert plain.status_code == packed.status_code == 200, packed.text
    assert np.array_equal(np.load(io.BytesIO(plain.content)), np.load(io.BytesIO(packed.content)))


def test_a_small_gzip_that_inflates_past_the_limit_is_a_413_at_once(http):
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))  # 64 KiB that inflate to 64 MiB
    assert len(bomb) < 100_000
    t0 = time.monotonic()
    r = _post(http, bomb, "gzip")
    assert r.status_code == 413, r.text
    assert time.monotonic() - t0 < 5
    assert "FRAMECAST_MAX_UPLOAD_BYTES" in r.json()["message"] or "limit" in r.json()["message"]


def test_bad_and_unknown_encodings_are_clear_4xx(http):
    body = npy(clip(seed=4))
    r = _post(http, b"this is not gzip at all", "gzip")
    assert r.status_code == 400 and "not valid gzip data" in r.json()["message"]
    r = _post(http, gzip.compress(body)[:-40], "gzip")
    assert r.status_code == 400 and "truncated" in r.json()["message"]
    r = _post(http, body, "br")
    assert r.status_code == 415 and "gzip, deflate or identity" in r.json()["message"]
    r = http.post(
        f"/v2/models/{NF}/infer",
        content=b"{not gzip",
        headers={"content-encoding": "gzip", "content-type": "application/json"},
    )
    assert r.status_code == 400 and "not valid gzip data" in r.json()["error"]
    assert http.get("/healthz").status_code == 200


@pytest.mark.parametrize("accept", ["gzip", "deflate"])
def test_json_answers_are_compressed_and_binary_ones_never(url, accept):
    with httpx.Client(base_url=url, timeout=60, headers={"accept-encoding": accept}) as c:
        r = c.get("/v1/models")  # several kB of JSON; httpx inflates it for us
        assert r.headers["content-encoding"] == accept and r.json()["models"]
        r = c.post(
            PREDICT,
            content=npy(clip(seed=1)),
            headers={"content-type": "application/x-npy"},
            params={"output": "npy", "horizon": 5},
        )
        assert r.status_code == 200 and "content-encoding" not in r.headers
    with httpx.Client(base_url=url, timeout=60, headers={"accept-encoding": "identity"}) as c:
        assert "content-encoding" not in c.get("/v1/models").headers


def test_tritonclient_compression_options_work_unchanged(url):
    try:
        import tritonclient.http as triton
    except ModuleNotFoundError:
        if os.environ.get("CI"):
            pytest.fail("tritonclient is not installed: pip install -e '.[dev]'")
        pytest.skip("tritonclient is not installed")
    tc = triton.InferenceServerClient(url=url.removeprefix("http://"), network_timeout=60.0)
    x = clip(seed=2)[None, ..., None].astype(np.float32) / 255.0
    assert x.shape == (1, FRAMES, H, W, 1)
    answers = []
    for req, resp in [(None, None), ("gzip", "gzip"), ("deflate", "deflate"), ("gzip", None)]:
        t = triton.InferInput("frames", list(x.shape), "FP32")
        t.set_data_from_numpy(x, binary_data=False)  # JSON: worth compressing
        out = triton.InferRequestedOutput("next_frame", binary_data=False)
        res = tc.infer(
            NF, [t], outputs=[out],
            request_compression_algorithm=req, response_compression_algorithm=resp,
        )  # fmt: skip
        answers.append(res.as_numpy("next_frame"))
    tc.close()
    for a in answers[1:]:
        np.testing.assert_allclose(a, answers[0], rtol=1e-6, atol=1e-7)
