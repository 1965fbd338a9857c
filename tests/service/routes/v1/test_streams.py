"""Live streams (/v1/models/{name}/streams, /v1/streams/{id}/...): frame by frame equals predict,
surprise, limits, lifetimes, WebSocket and compare streams, on framecast's tiny models and on
models built as users build them."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from models.metrics import mse_per_frame, psnr, ssim
from service.app import create_app
from service.config import Settings
from tests.service import own_models as om
from tests.service.conftest import CARRY, CARRY2, CL, FREE, GROWING, MANY, WINDOW
from tests.service.helpers import FRAMES, H, clip, png


def _settings(root, **kw):
    base = dict(models_dir=root, load_mode="blocking", max_horizon=5, stream_window=5)
    return Settings(**{**base, **kw})


@pytest.fixture(scope="module")
def sc(stream_models):
    with TestClient(create_app(_settings(stream_models))) as c:
        yield c


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


NPY = {"content-type": "application/x-npy"}


def frames_of(n: int, side: int = H, seed: int = 0) -> np.ndarray:
    """(n, side, side, 1) float32 frames in [0, 1) (exact as uint8/255 once through PNG)."""
    return (clip(n, side, side, seed=seed).astype(np.float32) / 255.0)[..., None]


def open_stream(c, name, **params) -> str:
    r = c.post(f"/v1/models/{name}/streams", params=params)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v1/streams/{r.json()['id']}"
    return r.json()["id"]


def post(c, sid, frames: np.ndarray, **params) -> dict:
    r = c.post(
        f"/v1/streams/{sid}/frames",
        params={"raw": True, **params},
        content=npy(frames),
        headers=NPY,
    )
    assert r.status_code == 200, r.text
    return r.json()


def values(answer: dict) -> np.ndarray:
    return np.array([f["values"] for f in answer["frames"]], np.float32)


def predict(c, name, frames: np.ndarray, horizon: int = 1) -> np.ndarray:
    r = c.post(
        f"/v1/models/{name}/predict",
        params={"horizon": horizon, "output": "npy"},
        content=npy(frames),
        headers=NPY,
    )
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content))


SIDE = {FREE: om.S, GROWING: om.S, MANY: om.S}


# ------------------------------------------------------------------ frame by frame = predict


@pytest.mark.parametrize("name", [CARRY, CARRY2, WINDOW, FREE, GROWING, MANY])
@pytest.mark.parametrize("mode", ["carry", "window"])
def test_each_step_within_the_context_equals_predict(sc, name, mode):
    """Fed one frame at a time, every prediction the stream makes while it holds no more frames
    than the model's context equals predict on the same frames sent as one clip."""
    info = sc.get(f"/v1/models/{name}").json()
    carries = info["rollout"] == "carried_state"
    if mode == "carry" and not carries:
        r = sc.post(f"/v1/models/{name}/streams", params={"past_context": "carry"})
        assert r.status_code == 422 and "window" in r.json()["message"]
        return
    sid = open_stream(sc, name, past_context=mode)
    got = sc.get(f"/v1/streams/{sid}").json()
    context = got["context"]
    frames = frames_of(max(context, got["window"] or 0) + 3, SIDE.get(name, H), seed=3)
    for i in range(len(frames)):
        a = post(sc, sid, frames[i : i + 1], step=i)
        assert a["step"] == i + 1 and a["received"] == 1
        if i + 1 < context:
            assert a["frames"] == [] and a["needs"] == context - i - 1
            assert str(context - i - 1) in a["message"]
            continue
        assert a["needs"] == 0 and a["message"] is None
        if mode == "window":  # the last `window` frames, as one clip
            want = predict(sc, name, frames[max(0, i + 1 - got["window"]) : i + 1])
        elif i + 1 <= context or info["input"]["frames"] is None:  # every frame so far
            want = predict(sc, name, frames[: i + 1])
        else:
            continue
        np.testing.assert_allclose(values(a), want, atol=2e-5, err_msg=f"step {i + 1}")
    assert got["mode"] == ("carry" if mode == "carry" else "window")


def test_free_axis_model_predicts_from_the_first_frame(sc):
    sid = open_stream(sc, FREE)
    frames = frames_of(4, om.S, seed=1)
    for i in range(4):
        a = post(sc, sid, frames[i : i + 1])
        np.testing.assert_allclose(values(a), predict(sc, FREE, frames[: i + 1]), atol=2e-5)


@pytest.mark.parametrize("name,mode", [(CARRY, "carry"), (WINDOW, "window"), (CARRY, "window")])
def test_several_frames_in_one_post_equal_one_at_a_time(sc, name, mode):
    frames = frames_of(FRAMES + 3, seed=4)
    one, many = open_stream(sc, name, past_context=mode), open_stream(sc, name, past_context=mode)
    singles = [post(sc, one, frames[i : i + 1]) for i in range(len(frames))]
    a = post(sc, many, frames[:2])
    b = post(sc, many, frames[2:])
    assert b["step"] == len(frames) and b["received"] == len(frames) - 2
    np.testing.assert_allclose(values(b), values(singles[-1]), atol=2e-5)
    surprises = [s for x in singles for s in (x["surprise"] or [])]
    assert a["surprise"] is None  # nothing was predicted before frame 3
    got = b["surprise"]
    assert [s["step"] for s in got] == [s["step"] for s in surprises]
    for x, y in zip(got, surprises):
        assert x["mse_per_frame"] == pytest.approx(y["mse_per_frame"], rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("name", [CARRY, WINDOW])
def test_horizon_rolls_out_as_predict_does(sc, name):
    frames = frames_of(FRAMES, seed=5)
    sid = open_stream(sc, name)
    a = post(sc, sid, frames, horizon=3)
    assert a["horizon"] == 3 and len(a["frames"]) == 3
    np.testing.assert_allclose(values(a), predict(sc, name, frames, horizon=3), atol=2e-5)
    # the rollout does not move the stream's state: the next frame is read from the true frames
    nxt = frames_of(FRAMES + 1, seed=5)[-1:]
    b = post(sc, sid, nxt)
    ref = open_stream(sc, name)
    post(sc, ref, frames)
    np.testing.assert_allclose(values(b), values(post(sc, ref, nxt)), atol=2e-5)


def test_surprise_is_the_error_of_the_prediction_made_for_that_frame(sc):
    frames = frames_of(FRAMES + 2, seed=6)
    sid = open_stream(sc, CARRY)
    first = post(sc, sid, frames[:FRAMES])
    assert first["surprise"] is None
    expected = values(first)[0]
    a = post(sc, sid, frames[FRAMES : FRAMES + 1])
    (s,) = a["surprise"]
    p, t = expected[None], frames[FRAMES][None]
    assert s["step"] == FRAMES + 1
    assert s["mse_per_frame"] == pytest.approx(float(mse_per_frame(p, t)[0]), rel=1e-5)
    assert s["psnr"] == pytest.approx(float(psnr(p, t)[0]), rel=1e-5)
    assert s["ssim"] == pytest.approx(float(ssim(p, t)[0]), rel=1e-5, abs=1e-6)


def test_surprise_peaks_where_the_clip_breaks(sc):
    """A square moving over faint noise, then one white frame: the surprise is highest there
    (an untrained tiny model; the Moving MNIST example with a jumping digit is in
    tests/service/test_real_checkpoints.py)."""
    frames = frames_of(FRAMES + 6, seed=7)
    broken = FRAMES + 3
    frames[broken] = 1.0
    sid = open_stream(sc, CARRY)
    s = [x for i in range(len(frames)) for x in post(sc, sid, frames[i : i + 1])["surprise"] or []]
    worst = max(s, key=lambda x: x["mse_per_frame"])
    assert worst["step"] == broken + 1


def test_png_files_json_and_video_forms_are_taken(sc):
    f = clip(3, seed=8)
    sid = open_stream(sc, CARRY)
    files = [("files", (f"{i}.png", png(x), "image/png")) for i, x in enumerate(f[:2])]
    r = sc.post(f"/v1/streams/{sid}/frames", files=files)
    assert r.status_code == 200 and r.json()["step"] == 2
    import base64

    r = sc.post(
        f"/v1/streams/{sid}/frames", json={"frames": [base64.b64encode(png(f[2])).decode()]}
    )
    assert r.status_code == 200 and r.json()["step"] == 3
    r = sc.post(
        f"/v1/streams/{sid}/frames",
        content=png(clip(1, 32, 32)[0]),
        headers={"content-type": "image/png"},
    )
    assert r.status_code == 200 and r.json()["resized_from"] == [32, 32]


def test_open_with_first_frames(sc):
    frames = frames_of(FRAMES, seed=9)
    r = sc.post(
        f"/v1/models/{CARRY}/streams", params={"raw": True}, content=npy(frames), headers=NPY
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["step"] == FRAMES and body["answer"]["step"] == FRAMES
    np.testing.assert_allclose(values(body["answer"]), predict(sc, CARRY, frames), atol=2e-5)


# ------------------------------------------------------------------ order, limits, lifetimes


def test_step_mismatch_is_a_409_and_changes_nothing(sc):
    sid = open_stream(sc, CARRY)
    post(sc, sid, frames_of(2))
    r = sc.post(
        f"/v1/streams/{sid}/frames", params={"step": 1}, content=npy(frames_of(1)), headers=NPY
    )
    assert r.status_code == 409 and "2 frames" in r.json()["message"]
    r = sc.post(
        f"/v1/streams/{sid}/frames", params={"step": 3}, content=npy(frames_of(1)), headers=NPY
    )
    assert r.status_code == 409 and "lost" in r.json()["message"]
    assert sc.get(f"/v1/streams/{sid}").json()["step"] == 2


def test_concurrent_posts_to_one_stream_are_applied_in_turn(sc):
    sid = open_stream(sc, CARRY)
    steps, errors = [], []

    def one(i):
        try:
            steps.append(post(sc, sid, frames_of(1, seed=i))["step"])
        except AssertionError as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(steps) == list(range(1, 9))
    assert sc.get(f"/v1/streams/{sid}").json()["step"] == 8


def test_bad_requests_are_clear_4xx(sc):
    r = sc.post(f"/v1/models/{CL}/streams")
    assert r.status_code == 422 and "next-frame" in r.json()["message"]
    r = sc.post("/v1/models/nope/streams")
    assert r.status_code == 404
    r = sc.post(f"/v1/models/{CARRY}/streams", params={"past_context": "sideways"})
    assert r.status_code == 422
    sid = open_stream(sc, CARRY)
    r = sc.post(f"/v1/streams/{sid}/frames", content=npy(frames_of(40)), headers=NPY)
    assert r.status_code == 422 and "FRAMECAST_STREAM_MAX_FRAMES" in r.json()["message"]
    r = sc.post(
        f"/v1/streams/{sid}/frames", params={"horizon": 99}, content=npy(frames_of(1)), headers=NPY
    )
    assert r.status_code == 422
    r = sc.post("/v1/streams/unknown/frames", content=npy(frames_of(1)), headers=NPY)
    assert r.status_code == 404 and "POST /v1/models/{name}/streams" in r.json()["message"]
    r = sc.post(
        f"/v1/streams/{sid}/frames", content=b"not a frame", headers={"content-type": "image/png"}
    )
    assert r.status_code in (415, 422)
    assert sc.get(f"/v1/streams/{sid}").json()["step"] == 0  # nothing half-applied


def test_delete_then_410_and_listing(sc):
    sid = open_stream(sc, CARRY)
    assert any(s["id"] == sid for s in sc.get("/v1/streams").json()["streams"])
    r = sc.delete(f"/v1/streams/{sid}")
    assert r.status_code == 200 and r.json()["deleted"] is True
    r = sc.post(f"/v1/streams/{sid}/frames", content=npy(frames_of(1)), headers=NPY)
    assert r.status_code == 410 and "deleted" in r.json()["message"]
    assert "POST /v1/models" in r.json()["message"]
    assert all(s["id"] != sid for s in sc.get("/v1/streams").json()["streams"])


def test_info_reports_memory_and_expiry(sc):
    sid = open_stream(sc, CARRY)
    post(sc, sid, frames_of(2))
    info = sc.get(f"/v1/streams/{sid}").json()
    assert info["model"] == CARRY and info["step"] == 2 and info["needs"] == FRAMES - 2
    assert 0 < info["memory_bytes"] <= info["max_memory_bytes"]
    assert 0 < info["expires_in_s"] <= 300


def test_limits_and_expiry(stream_models):
    s = _settings(
        stream_models, stream_max_per_model=2, stream_max_total=3, stream_idle_timeout_s=60
    )
    with TestClient(create_app(s)) as c:
        now = [1000.0]
        c.app.state.streams.clock = lambda: now[0]
        a, _b = open_stream(c, CARRY), open_stream(c, CARRY)
        r = c.post(f"/v1/models/{CARRY}/streams")
        assert r.status_code == 503 and "FRAMECAST_STREAM_MAX_PER_MODEL" in r.json()["message"]
        assert int(r.headers["retry-after"]) >= 1
        open_stream(c, WINDOW)
        r = c.post(f"/v1/models/{FREE}/streams")
        assert r.status_code == 503 and "FRAMECAST_STREAM_MAX_TOTAL" in r.json()["message"]
        now[0] += 61  # every stream idle past its timeout
        r = c.post(f"/v1/streams/{a}/frames", content=npy(frames_of(1)), headers=NPY)
        assert r.status_code == 410 and "expired" in r.json()["message"]
        assert "POST /v1/models/carry_nf/streams" in r.json()["message"]
        open_stream(c, CARRY)  # room again
    s = _settings(stream_models, stream_max_bytes=1000)
    with TestClient(create_app(s)) as c:
        r = c.post(f"/v1/models/{CARRY}/streams")
        assert r.status_code == 422 and "FRAMECAST_STREAM_MAX_BYTES" in r.json()["message"]


def test_unloading_the_model_ends_its_streams(stream_models):
    with TestClient(create_app(_settings(stream_models))) as c:
        sid = open_stream(c, WINDOW)
        post(c, sid, frames_of(1))
        assert c.post(f"/v2/repository/models/{WINDOW}/unload").status_code == 200
        r = c.post(f"/v1/streams/{sid}/frames", content=npy(frames_of(1)), headers=NPY)
        assert r.status_code == 410 and "unloaded" in r.json()["message"]
        assert c.post(f"/v2/repository/models/{WINDOW}/load").status_code == 200
        r = c.post(f"/v1/streams/{sid}/frames", content=npy(frames_of(1)), headers=NPY)
        assert r.status_code == 410  # a new runner: the old stream does not come back


# ------------------------------------------------------------------ WebSocket


def test_websocket_answers_as_http(sc):
    frames = clip(FRAMES + 1, seed=10)
    ref = open_stream(sc, CARRY)
    want = [
        post(sc, ref, (frames[i : i + 1] / 255.0).astype(np.float32)[..., None])
        for i in range(len(frames))
    ]
    sid = open_stream(sc, CARRY)
    with sc.websocket_connect(f"/v1/streams/{sid}/ws?raw=true") as ws:
        for i, f in enumerate(frames):
            if i % 2:
                ws.send_bytes(png(f))  # a PNG
            else:
                ws.send_bytes(f.tobytes())  # raw uint8, H x W x C
            got = json.loads(ws.receive_text())
            assert got["step"] == i + 1
            if want[i]["frames"]:
                np.testing.assert_allclose(values(got), values(want[i]), atol=2e-5)
        ws.send_bytes(b"\x01\x02\x03")  # neither an image nor whole frames: answered, not closed
        err = json.loads(ws.receive_text())
        assert err["status"] == 422 and "raw frames" in err["message"]
        ws.send_bytes(frames[0].tobytes())
        assert json.loads(ws.receive_text())["step"] == len(frames) + 1


def test_websocket_on_an_ended_stream_closes_with_why(sc):
    sid = open_stream(sc, CARRY)
    sc.delete(f"/v1/streams/{sid}")
    with pytest.raises(WebSocketDisconnect) as e:
        with sc.websocket_connect(f"/v1/streams/{sid}/ws") as ws:
            why = json.loads(ws.receive_text())  # the reason, readable by a browser
            assert why["status"] == 410 and "was deleted" in why["message"]
            ws.receive_text()
    assert e.value.code == 4410


def test_websocket_takes_a_ticket_or_a_header_never_a_url_key(stream_models):
    with TestClient(create_app(_settings(stream_models, api_keys="k1"))) as c:
        h = {"authorization": "Bearer k1"}
        sid = c.post(f"/v1/models/{CARRY}/streams", headers=h).json()["id"]
        with pytest.raises(WebSocketDisconnect) as e:
            with c.websocket_connect(f"/v1/streams/{sid}/ws") as ws:
                ws.receive_text()
        assert e.value.code == 1008 and "/ticket" in e.value.reason
        with pytest.raises(WebSocketDisconnect) as e:  # a key in a URL: refused, saying how
            with c.websocket_connect(f"/v1/streams/{sid}/ws?api_key=k1") as ws:
                ws.receive_text()
        assert e.value.code == 1008 and "POST /v1/streams/{id}/ticket" in e.value.reason
        t = c.post(f"/v1/streams/{sid}/ticket", headers=h)
        assert t.status_code == 200 and t.json()["expires_in_s"] > 0, t.text
        url = f"/v1/streams/{sid}/ws?ticket={t.json()['ticket']}"
        with c.websocket_connect(url) as ws:
            ws.send_bytes(clip(1)[0].tobytes())
            assert json.loads(ws.receive_text())["step"] == 1
        with pytest.raises(WebSocketDisconnect) as e:  # a ticket is good once
            with c.websocket_connect(url) as ws:
                ws.receive_text()
        assert e.value.code == 1008 and "used already" in e.value.reason
        with c.websocket_connect(f"/v1/streams/{sid}/ws", headers=h) as ws:  # a program's way
            ws.send_bytes(clip(1)[0].tobytes())
            assert json.loads(ws.receive_text())["step"] == 2


def test_a_url_key_is_taken_when_the_setting_allows_it(stream_models, caplog):
    key = "sekrit-url-key"
    s = _settings(stream_models, api_keys=key, ws_allow_url_key=True)
    with TestClient(create_app(s)) as c:
        sid = c.post(f"/v1/models/{CARRY}/streams", headers={"authorization": f"Bearer {key}"})
        for _ in range(2):
            with c.websocket_connect(f"/v1/streams/{sid.json()['id']}/ws?api_key={key}") as ws:
                ws.send_bytes(clip(1)[0].tobytes())
                assert "step" in json.loads(ws.receive_text())
    warned = [r for r in caplog.records if "FRAMECAST_WS_ALLOW_URL_KEY" in r.getMessage()]
    assert len(warned) == 1 and key not in caplog.text


# ------------------------------------------------------------------ side by side


def test_compare_stream_puts_models_side_by_side(sc):
    r = sc.post("/v1/compare/streams", params={"models": f"{CARRY},{CARRY2}"})
    assert r.status_code == 201, r.text
    gid = r.json()["id"]
    frames = frames_of(FRAMES + 2, seed=11)
    refs = {n: open_stream(sc, n) for n in (CARRY, CARRY2)}
    for i in range(len(frames)):
        a = post(sc, gid, frames[i : i + 1])
        assert a["step"] == i + 1 and set(a["models"]) == {CARRY, CARRY2}
        for n, ref in refs.items():
            want = post(sc, ref, frames[i : i + 1])
            got = a["models"][n]
            assert got["step"] == i + 1
            if want["frames"]:
                np.testing.assert_allclose(values(got), values(want), atol=2e-5)
    assert a["winners"]["mse_per_frame"] in (CARRY, CARRY2, "tie")
    info = sc.get(f"/v1/streams/{gid}").json()
    assert info["models"] == [CARRY, CARRY2] and info["step"] == len(frames)
    r = sc.post("/v1/compare/streams", params={"models": f"{CARRY},{CL}"})
    assert r.status_code == 422


def test_access_log_names_the_streams_model(sc, caplog):
    """Routes named by a stream's id log the stream's model (a compare stream: its models)."""
    import logging

    caplog.set_level(logging.INFO, logger="framecast.access")
    sid = open_stream(sc, CARRY)
    post(sc, sid, frames_of(1))
    sc.get(f"/v1/streams/{sid}")
    sc.delete(f"/v1/streams/{sid}")
    r = sc.post("/v1/compare/streams", params={"models": f"{CARRY},{WINDOW}"})
    assert r.status_code == 201, r.text
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "framecast.access"]
    mine = [line for line in lines if "/streams" in line]
    assert len(mine) == 5, lines
    for line in mine[:4]:
        assert f"model={CARRY} " in line, line
    assert f"model={CARRY},{WINDOW} " in mine[4], mine[4]
    sc.delete(f"/v1/streams/{r.json()['id']}")
