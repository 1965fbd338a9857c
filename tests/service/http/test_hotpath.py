"""The hot path (service/http/hotpath.py) answers exactly what the full app answers.

Every request below goes to two apps over the same models, one with FRAMECAST_HOT_PATH on and
one with it off, and the answers must match: status, body (less the measured times), and the
headers a client reads. Then the cases it must hand to the full app, and its bookkeeping (log
line, metrics) for the requests it answers itself.
"""

from __future__ import annotations

import base64
import json
import logging

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.errors import InvalidInput
from service.http.hotpath import query_values
from tests.service.helpers import clip, files, npy, png

TIMES = {"latency_ms", "inference_ms"}  # measured: differ from one call to the next


@pytest.fixture(scope="module")
def pair(models_dir):
    common = dict(
        models_dir=models_dir, load_mode="blocking", max_horizon=5, max_upload_bytes=200_000
    )
    with (
        TestClient(create_app(Settings(**common))) as hot,
        TestClient(create_app(Settings(**common, hot_path=False))) as full,
    ):
        yield hot, full


def _json_body(frames) -> dict:
    return {"frames": [base64.b64encode(png(f)).decode() for f in frames]}


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _same(hot, full, method: str, url: str, **kw) -> None:
    a, b = hot.request(method, url, **kw), full.request(method, url, **kw)
    assert a.status_code == b.status_code, (url, a.text, b.text)
    for h in ("content-type", "x-model", "x-batch-size", "retry-after", "www-authenticate"):
        assert a.headers.get(h) == b.headers.get(h), (url, h)
    assert ("server-timing" in a.headers) == ("server-timing" in b.headers)
    if a.headers["content-type"].startswith("application/json"):
        assert _strip(a.json()) == _strip(b.json()), url
    else:
        assert a.content == b.content, url


CLASSIFY = "/v1/models/conv2d_lstm_classify/classify"
PREDICT = "/v1/models/convlstm2d_next_frame/predict"


@pytest.mark.parametrize(
    "url",
    [
        CLASSIFY,
        CLASSIFY + "?top_k=2",
        CLASSIFY + "?top_k=2&resize=false&fit=pad",
        CLASSIFY + "?top_k=0",  # FastAPI's 422
        CLASSIFY + "?top_k=1001",
        CLASSIFY + "?top_k=%202",  # a value pydantic reads (" 2"): the full app reads it
        CLASSIFY + "?top_k=two",
        CLASSIFY + "?fit=zoom",
        CLASSIFY + "?resize=maybe",
        CLASSIFY + "?resize=YES&unknown=1",
        CLASSIFY + "?top_k=1&top_k=2",  # repeated: the last one, as FastAPI reads it
        PREDICT,
        PREDICT + "?horizon=3",
        PREDICT + "?horizon=6",  # over FRAMECAST_MAX_HORIZON: the route's 422
        PREDICT + "?horizon=0",
        PREDICT + "?horizon=2&raw=true",
        PREDICT + "?output=npy&horizon=2",
        PREDICT + "?output=png",
        PREDICT + "?output=gif",
        PREDICT + "?output=bmp",
        "/v1/models/convlstm2d_next_frame/classify",  # wrong task
        "/v1/models/conv2d_lstm_classify/predict",
        "/v1/models/nope/classify",  # unknown model
        "/v1/models/conv2d_lstm_classify/classify/",  # not a route
        "/v1/models//classify",
    ],
)
def test_same_answer_for_json_uploads(pair, url):
    _same(*pair, "POST", url, json=_json_body(clip()))


@pytest.mark.parametrize("url", [CLASSIFY, PREDICT + "?horizon=2"])
def test_same_answer_for_every_upload_form_and_fault(pair, url):
    frames = clip()
    hot, full = pair
    _same(hot, full, "POST", url, files=files(frames))  # multipart
    _same(
        hot, full, "POST", url, content=npy(frames), headers={"content-type": "application/x-npy"}
    )
    _same(hot, full, "POST", url, json=_json_body(frames[:2]))  # too few frames
    _same(hot, full, "POST", url, json={"frames": ["not base64!"]})
    _same(
        hot, full, "POST", url, json={"frames": [base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()]}
    )
    _same(hot, full, "POST", url, content=b"{", headers={"content-type": "application/json"})
    _same(hot, full, "POST", url, content=b"x", headers={"content-type": "text/plain"})
    _same(hot, full, "POST", url, content=b"", headers={"content-type": "image/png"})
    _same(hot, full, "POST", url, content=b"\0" * 300_000, headers={"content-type": "image/png"})
    big = clip(h=64, w=64)
    _same(hot, full, "POST", url + ("&" if "?" in url else "?") + "fit=crop", json=_json_body(big))


def test_other_methods_and_routes_are_untouched(pair):
    hot, full = pair
    _same(hot, full, "GET", CLASSIFY)  # 405
    assert hot.get("/v1/models").json().keys() == full.get("/v1/models").json().keys()
    _same(hot, full, "POST", "/v1/compare/classify", json=_json_body(clip()))


@pytest.mark.parametrize(
    "query,expected",
    [
        (b"", {"top_k": 3, "resize": True, "fit": "stretch", "version": None}),
        (
            b"top_k=7&fit=crop&resize=Off",
            {"top_k": 7, "resize": False, "fit": "crop", "version": None},
        ),
        (b"start=3&stride=2", {"top_k": 3, "resize": True, "fit": "stretch", "version": None}),
        (b"version=canary", {"top_k": 3, "resize": True, "fit": "stretch", "version": "canary"}),
        (b"version=", None),  # empty: the full app reads it
        (b"top_k=1&top_k=2", None),
        (b"top_k=+2", None),
        (b"top_k=", None),
        (b"top_k=1001", None),
        (b"top_k=%EF%BC%91", None),  # a full-width digit: str.isdigit says yes, we say no
        (b"resize=t", None),  # pydantic says True; the full app answers it
    ],
)
def test_query_values(query, expected):
    assert query_values("classify", query) == expected


def test_hot_requests_are_logged_and_counted(pair, caplog):
    hot, _ = pair
    with caplog.at_level(logging.INFO, logger="framecast.access"):
        r = hot.post(CLASSIFY, json=_json_body(clip()), headers={"x-request-id": "abc-123"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc-123"
    line = [rec.getMessage() for rec in caplog.records if "abc-123" in rec.getMessage()]
    assert (
        line and "POST /v1/models/{name}/classify model=conv2d_lstm_classify status=200" in line[0]
    )
    text = hot.get("/metrics").text
    want = (
        'framecast_requests_total{route="/v1/models/{name}/classify",'
        'model="conv2d_lstm_classify",status="200"}'
    )
    assert want in text
    assert (
        'framecast_request_phase_seconds_count{model="conv2d_lstm_classify",phase="decode"}' in text
    )


def test_body_limit_and_api_keys_still_apply(models_dir):
    s = Settings(models_dir=models_dir, load_mode="blocking", max_upload_bytes=5000, api_keys="k1")
    with TestClient(create_app(s)) as c:
        body = json.dumps(_json_body(clip())).encode()
        assert c.post(CLASSIFY, content=body).status_code == 401
        ok = c.post(
            CLASSIFY,
            content=body,
            headers={"authorization": "Bearer k1", "content-type": "application/json"},
        )
        assert ok.status_code == 200
        big = c.post(
            CLASSIFY,
            content=body + b" " * 6000,
            headers={"authorization": "Bearer k1", "content-type": "application/json"},
        )
        assert big.status_code == 413 and big.json()["error"] == "payload_too_large"


def test_request_ids_are_unique_per_process(monkeypatch):
    from service.http import logs

    ids = {logs.new_request_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    before = logs.new_request_id()[:16]
    monkeypatch.setattr(logs, "_prefix", [-1, ""])  # as in a freshly forked worker
    assert logs.new_request_id()[:16] != before


def test_histogram_buckets_count_values_up_to_each_bound():
    from service.telemetry import LATENCY_BUCKETS, Metrics

    m = Metrics()
    values = [0.0, 0.005, 0.0051, 0.1, 0.7, 30.0, 31.0] + list(LATENCY_BUCKETS)
    for v in values:
        m.observe_request("/r", "m", 200, v)
    counts = m.latency.cumulative(("/r", "m"))
    assert counts == [sum(v <= b for v in values) for b in LATENCY_BUCKETS] + [len(values)]
    line = 'framecast_request_duration_seconds_bucket{route="/r",model="m",le="0.005"} 3'
    assert line in m.render()


def _multipart_corpus() -> list[tuple[bytes, str]]:
    from tests.service import malformed

    ok = "multipart/form-data; boundary=b0"

    def mp(parts, boundary="b0", tail=b"--\r\n"):
        out = b""
        for disp, ctype, data in parts:
            out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode()
            out += (f"Content-Type: {ctype}\r\n" if ctype else "").encode() + b"\r\n"
            out += data + b"\r\n"
        return out + f"--{boundary}".encode() + tail

    f = png(clip()[0])
    cases = [
        (mp([('form-data; name="files"; filename="a.png"', "image/png", f)] * 3), ok),
        (mp([('form-data; name="files"; filename=""', "image/png", f)]), ok),  # empty filename
        (
            mp(
                [('form-data; name="x"', "", b"field")]
                + [('form-data; name="truth"; filename="t.png"', "image/png", f)]
            ),
            ok,
        ),
        (
            mp(
                [
                    (
                        'form-data; name="files"; filename="caf\xc3\xa9.png"'.encode(
                            "latin-1"
                        ).decode("latin-1"),
                        "image/png",
                        f,
                    )
                ]
            ),
            ok,
        ),
        (mp([('form-data; filename="a.png"', "image/png", f)]), ok),  # no name
        (mp([("attachment", "image/png", f)]), ok),
        (mp([('form-data; name="files"; filename="a.png"', "image/png", f)], tail=b""), ok),  # cut
        (
            mp([('form-data; name="files"; filename="a.png"', "image/png", f)]),
            ok + "; charset=latin-1",
        ),
        (
            mp([('form-data; name="files"; filename="a.png"', "image/png", f)] * 5),
            ok,
        ),  # > max_files
        (b"garbage", ok),
        (b"", ok),
        (
            mp([('form-data; name="files"; filename="a.png"', "image/png", f)]),
            "multipart/form-data",
        ),
    ]
    one = [('form-data; name="files"; filename="a.png"', "image/png", f)]
    plain = mp(one * 2)
    head = b'--b0\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
    cases += [  # the edges of what the fast split calls plain
        (b"preamble\r\n" + plain, ok),
        (mp(one, tail=b"--\r\nepilogue"), ok),
        (plain.replace(b"--b0\r\n", b"--b0  \r\n", 1), ok),  # transport padding
        (mp([(one[0][0], "image/png", f + b"\r\n--b0X" + f)]), ok),  # a near-delimiter
        (plain.replace(b"Content-Type: image/png", b"Content-Type image/png", 1), ok),
        (plain.replace(b"Content-Type: image/png", b"X-A: 1\r\n  folded", 1), ok),
        (
            plain.replace(
                b'Content-Disposition: form-data; name="files"; filename="a.png"',
                (b"content-disposition:form-data;name=files;filename=b.png"),
            ),
            ok,
        ),
        (
            plain.replace(b"Content-Type: image/png", b'Content-Disposition: form-data; name="x"'),
            ok,
        ),
        (plain.replace(b"Content-Type: image/png", b"\r\n".join([b"X-A: 1"] * 8), 1), ok),
        (mp([("", "image/png", f)]).replace(b"Content-Disposition: \r\n", b""), ok),
        (mp(one, boundary="b" * 300), "multipart/form-data; boundary=" + "b" * 300),
        (plain.replace(b"\r\n", b"\n"), ok),
        (head + b"Content-Type: image/png\r\n\r\n" + f + b"\r\n--b0--", ok),
    ]
    cases += [
        (c.body, c.ctype)
        for c in malformed.corpus()
        if (c.ctype or "").startswith("multipart/") and c.body is not None
    ]
    return cases


def _split_agrees_with_form(body: bytes, ctype: str) -> object:
    """split_multipart's answer, checked against form()'s: the same parts, or None."""
    import asyncio

    from starlette.requests import Request

    from service.http.uploads import form_parts, split_multipart

    settings = Settings(max_files=4, max_upload_bytes=1 << 20)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "query_string": b"",
        "app": None,  # as in a served request: form() then answers faults as HTTP 400s
        "headers": [(b"content-type", ctype.encode("latin-1"))],
    }
    request = Request(scope)
    fast = split_multipart(request, body, settings)

    try:
        expected = asyncio.run(form_parts(request, body, settings))
    except InvalidInput:  # form() refuses it: the fast split must not accept it
        assert fast is None
        return None
    assert fast is None or fast == expected
    return fast


@pytest.mark.parametrize("case", range(len(_multipart_corpus())))
def test_multipart_split_matches_starlettes_form(case):
    """split_multipart gives form()'s file parts exactly, or None (then form() reads it)."""
    body, ctype = _multipart_corpus()[case]
    fast = _split_agrees_with_form(body, ctype)
    if case < 4 or case == 18:  # the plain ones (and a header spelled tersely): taken
        assert fast is not None


def test_multipart_split_agrees_with_form_on_mutated_bodies():
    """Bytes deleted, inserted or changed around the delimiters and headers of a plain body:
    wherever the fast split answers, form() answers the same."""
    import random

    ok = "multipart/form-data; boundary=b0"
    parts = [("files", "a.png", b"\x89PNG\r\n--b\r\n\r\nab"), ("truth", "t.png", b"xyz")]
    plain = (
        b"".join(
            b'--b0\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\n'
            b"Content-Type: image/png\r\n\r\n%s\r\n" % (n.encode(), fn.encode(), d)
            for n, fn, d in parts
        )
        + b"--b0--\r\n"
    )
    assert _split_agrees_with_form(plain, ok) is not None
    rng = random.Random(17)
    alphabet = b'\r\n-b0:; "=xa'
    taken = 0
    for _ in range(1500):
        body = bytearray(plain)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(body))
            op = rng.randrange(3)
            if op == 0:
                del body[i]
            elif op == 1:
                body.insert(i, rng.choice(alphabet))
            else:
                body[i] = rng.choice(alphabet)
        taken += _split_agrees_with_form(bytes(body), ok) is not None
    assert 0 < taken < 1500  # some mutants stay plain, the rest go to form()


@pytest.mark.parametrize(
    "disposition",
    [
        b'form-data; name="files"; filename="C:\\\\dir\\\\a.png"',  # a Windows path, escaped
        b'form-data; name="files"; filename="a\\"b.png"',  # an escaped quote
        b"form-data; name=\"files\"; filename*=UTF-8''caf%C3%A9.png",
        b'form-data;name="files";filename="a.png"',
        b'form-data; Name="files"; filename="a.png"',
        b'form-data; name="files"; filename="a.png"; size=3',
        b"form-data; name=files; filename=a.png",
        b'form-data; name="files"; filename=""',
        b'form-data; name=""; filename="a.png"',
    ],
)
def test_dispositions_off_the_common_form_agree_with_form(disposition):
    body = (
        b"--b0\r\nContent-Disposition: " + disposition + b"\r\nContent-Type: image/png\r\n\r\n"
        b"\x89PNG\r\n--b0--\r\n"
    )
    _split_agrees_with_form(body, "multipart/form-data; boundary=b0")


def test_mutated_dispositions_agree_with_form():
    """The common Content-Disposition is read by a strict pattern, every other by
    python-multipart: 600 mutants of it, the same answer as form() wherever the split answers."""
    import random

    rng = random.Random(5)
    alphabet = b"\"\\;= abfilenm*'-:\t,."
    base = b'form-data; name="files"; filename="a.png"'
    taken = 0
    for _ in range(600):
        d = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            i, op = rng.randrange(len(d) + 1), rng.randrange(3)
            if op == 0 and i < len(d):
                del d[i]
            elif op == 1:
                d.insert(i, rng.choice(alphabet))
            elif i < len(d):
                d[i] = rng.choice(alphabet)
        body = b"--b0\r\nContent-Disposition: " + bytes(d) + b"\r\n\r\nxy\r\n--b0--\r\n"
        taken += _split_agrees_with_form(body, "multipart/form-data; boundary=b0") is not None
    assert 0 < taken < 600


def test_the_hot_paths_table_must_match_the_routes_declarations(monkeypatch):
    """One table of query parameters (service/routes/params.py): the routes declare from it, the
    hot path reads by it, and a table that drifts from a route's signature stops the start."""
    from service.http.hotpath import route_table
    from service.routes import params

    assert set(route_table()) == {"classify", "predict"}
    extra = params.Param("stride", 1, low=1)
    monkeypatch.setitem(params.ROUTES, "predict", (*params.ROUTES["predict"], extra))
    with pytest.raises(RuntimeError, match="does not match"):
        route_table()


@pytest.mark.parametrize(
    ("param", "raw", "value"),
    [
        ("RESIZE", "Off", False),
        ("RESIZE", "maybe", None),
        ("HORIZON", "3", 3),
        ("HORIZON", "0", None),
        ("HORIZON", "-1", None),
        ("TOP_K", "1001", None),
        ("FIT", "pad", "pad"),
        ("FIT", "PAD", None),
    ],
)
def test_a_param_reads_a_raw_value_or_declines(param, raw, value):
    from service.routes import params

    assert getattr(params, param).read(raw) == value
