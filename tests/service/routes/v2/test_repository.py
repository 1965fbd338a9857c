"""The live model repository: Triton's repository extension (index, load, unload) spoken to by
``tritonclient``, and folder polling; swaps happen under concurrent requests, none of which fails.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.service import own_models as om
from tests.service.helpers import npy, require
from tests.service.live import live_server

triton = require("tritonclient.http", "tritonclient[http]")
InferenceServerException = require(
    "tritonclient.utils", "tritonclient[http]"
).InferenceServerException

S, T = om.S, om.T
X = np.random.default_rng(0).random((T, S, S, 1), dtype=np.float32)


def positive(model) -> float:
    return float(np.asarray(model(X[None], training=False))[0, 0])


@pytest.fixture
def repo(tmp_path):
    """A models folder with one classifier ``a``, and two other checkpoints kept aside."""
    root = tmp_path / "models"
    first = om.conv2d_lstm_binary(1)
    om.write_folder(root, "a", first)
    second = om.convlstm2d_binary(1)
    om.write_folder(tmp_path / "aside", "a2", second)
    return root, tmp_path / "aside" / "a2" / "model.keras", positive(first), positive(second)


def classify(http: httpx.Client, name: str) -> httpx.Response:
    return http.post(
        f"/v1/models/{name}/classify",
        content=npy(X),
        headers={"content-type": "application/x-npy"},
    )


class Hammer:
    """Requests to one model from 4 threads until stopped; every answer is kept."""

    def __init__(self, http: httpx.Client, name: str):
        self.http, self.name = http, name
        self.answers: list[tuple[int, float | None]] = []
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(4)
        self.futures = [self.pool.submit(self.loop) for _ in range(4)]

    def loop(self) -> None:
        while not self.stop.is_set():
            r = classify(self.http, self.name)
            score = None
            if r.status_code == 200:
                score = {s["class_name"]: s["score"] for s in r.json()["scores"]}["positive"]
            self.answers.append((r.status_code, score))

    def finish(self) -> list[tuple[int, float | None]]:
        self.stop.set()
        for f in self.futures:
            f.result()
        self.pool.shutdown()
        return self.answers


def test_tritonclient_index_load_unload_under_load(repo):
    root, other, p_first, p_second = repo
    settings = Settings(models_dir=root, load_mode="blocking")
    with live_server(create_app(settings)) as url:
        tc = triton.InferenceServerClient(url=url.removeprefix("http://"), network_timeout=120.0)
        http = httpx.Client(base_url=url, timeout=60.0)
        index = tc.get_model_repository_index()
        assert [(m["name"], m["state"]) for m in index] == [("a", "READY")]

        hammer = Hammer(http, "a")
        time.sleep(0.3)
        shutil.copyfile(other, root / "a" / "model.keras")  # a new checkpoint for "a"
        tc.load_model("a")  # reload: swapped in once warm
        time.sleep(0.3)
        answers = hammer.finish()
        codes = {c for c, _ in answers}
        assert codes == {200}, f"failed requests during the reload: {codes}"
        scores = [s for _, s in answers]
        assert any(abs(s - p_first) < 1e-4 for s in scores)
        assert abs(scores[-1] - p_second) < 1e-4  # the new copy serves after the swap
        assert all(abs(s - p_first) < 1e-4 or abs(s - p_second) < 1e-4 for s in scores)

        om.write_folder(root, "b", om.convlstm2d_softmax(2, 1))  # a new folder: listed, not loaded
        states = {m["name"]: m["state"] for m in tc.get_model_repository_index()}
        assert states == {"a": "READY", "b": "UNAVAILABLE"}
        tc.load_model("b")
        assert tc.is_model_ready("b")
        tc.unload_model("b")
        assert not tc.is_model_ready("b")
        assert classify(http, "b").status_code == 404

        (root / "c").mkdir()
        (root / "c" / "model.keras").write_bytes(b"broken")
        with pytest.raises(InferenceServerException, match="failed to load 'c'"):
            tc.load_model("c")
        (root / "a" / "model.keras").write_bytes(b"now broken")  # a failed reload...
        with pytest.raises(InferenceServerException, match="previous copy keeps serving"):
            tc.load_model("a")
        r = classify(http, "a")  # ...leaves the old copy serving
        assert r.status_code == 200
        with pytest.raises(InferenceServerException):
            tc.load_model("nothing_here")
        http.close()
        tc.close()


def test_repository_routes_need_a_key_when_keys_are_set(repo):
    root, *_ = repo
    settings = Settings(models_dir=root, load_mode="blocking", api_keys="k1")
    with live_server(create_app(settings)) as url:
        with httpx.Client(base_url=url) as http:
            assert http.post("/v2/repository/index").status_code == 401
            assert http.post("/v2/repository/models/a/unload").status_code == 401
            ok = http.post("/v2/repository/index", headers={"Authorization": "Bearer k1"})
            assert ok.status_code == 200 and ok.json()[0]["name"] == "a"


def wait_for(check, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_polling_loads_new_reloads_changed_unloads_removed(repo):
    root, other, p_first, p_second = repo
    settings = Settings(models_dir=root, load_mode="blocking", model_poll_s=0.2)
    with live_server(create_app(settings)) as url:
        http = httpx.Client(base_url=url, timeout=60.0)

        def names() -> set[str]:
            return {m["name"] for m in http.get("/v1/models").json()["models"] if m["ready"]}

        hammer = Hammer(http, "a")
        om.write_folder(root.parent / "staging", "b", om.convlstm2d_softmax(2, 1))
        os.replace(root.parent / "staging" / "b", root / "b")  # appears whole
        wait_for(lambda: names() == {"a", "b"})
        tmp = root / "a" / ".incoming.keras"
        shutil.copyfile(other, tmp)
        os.replace(tmp, root / "a" / "model.keras")  # "a" changes
        wait_for(lambda: classify(http, "a").json()["scores"][0]["score"] in _near(p_second))
        answers = hammer.finish()
        assert {c for c, _ in answers} == {200}
        shutil.rmtree(root / "b")
        wait_for(lambda: names() == {"a"})
        assert classify(http, "b").status_code == 404
        http.close()


def _near(p: float) -> _Near:
    return _Near(p)


class _Near:
    """``score in _Near(p)``: the positive score ``p`` or its complement, within 1e-4."""

    def __init__(self, p: float):
        self.p = p

    def __contains__(self, s: float) -> bool:
        return abs(s - self.p) < 1e-4 or abs(s - (1 - self.p)) < 1e-4


def test_readyz_models_and_index_agree_through_unload_and_load(repo):
    """/readyz, /v1/models and the V2 index read one lifecycle: after an unload none of them
    still counts the model as ready, and a load brings it back in all three."""
    from fastapi.testclient import TestClient

    root, *_ = repo
    om.write_folder(root, "b", om.convlstm2d_softmax(2, 1))
    settings = Settings(models_dir=root, load_mode="blocking")

    def views(c: TestClient) -> tuple[dict, str, dict, dict]:
        ready = c.get("/readyz").json()
        listed = {m["name"]: m["state"] for m in c.get("/v1/models").json()["models"]}
        index = {m["name"]: m["state"] for m in c.post("/v2/repository/index").json()}
        return ready["models"], ready["detail"], listed, index

    with TestClient(create_app(settings)) as c:
        models, detail, listed, index = views(c)
        assert models == listed == {"a": "ready", "b": "ready"}
        assert detail == "2 model(s) ready" and index == {"a": "READY", "b": "READY"}
        assert c.post("/v2/repository/models/b/unload").status_code == 200
        models, detail, listed, index = views(c)
        assert models == listed == {"a": "ready", "b": "unloaded"}
        assert detail == "1 model(s) ready; 1 unloaded: b", detail
        assert index == {"a": "READY", "b": "UNAVAILABLE"}
        assert c.get("/v2/models/b/ready").status_code == 400
        assert c.post("/v2/repository/models/b/load").status_code == 200
        models, detail, listed, index = views(c)
        assert models == listed == {"a": "ready", "b": "ready"} and detail == "2 model(s) ready"
        assert c.get("/v2/models/b/ready").status_code == 200


@pytest.mark.parametrize(
    "label, words",
    [
        ("x%0A2026-01-01 ERROR framecast.security: FORGED", "got 'x\\n2026"),  # a newline
        ("a%00b", "not a path"),  # NUL
        ("%2E%2E", "not starting with a dot"),  # ..
        ("x" * 5000, "(5000 characters)"),
        ("12", "not a number"),
    ],
)
def test_a_label_that_is_not_a_plain_name_is_refused_and_never_written(repo, label, words):
    root, *_ = repo
    with TestClient(create_app(Settings(models_dir=root, load_mode="blocking"))) as c:
        r = c.put(f"/v2/repository/models/a/labels/{label}", json={"version": 1})
        assert r.status_code == 400, r.text
        assert words in r.json()["error"] and len(r.json()["error"]) < 300, r.text
        assert not (root / "a" / "labels.json").exists()


def test_a_model_holds_at_most_max_labels(repo, caplog):
    root, *_ = repo
    settings = Settings(models_dir=root, load_mode="blocking")
    most = settings.max_labels
    with TestClient(create_app(settings)) as c:
        answers = [
            c.put(f"/v2/repository/models/a/labels/l{i}", json={"version": 1}).status_code
            for i in range(301)
        ]
        assert answers[:most] == [200] * most and set(answers[most:]) == {400}  # the 301st too
        r = c.put("/v2/repository/models/a/labels/one-more", json={"version": 1})
        assert r.status_code == 400 and "FRAMECAST_MAX_LABELS" in r.json()["error"]
        assert c.put("/v2/repository/models/a/labels/l0", json={"version": 1}).status_code == 200
        assert len(c.get("/v2/repository/models/a/labels").json()["labels"]) == most
