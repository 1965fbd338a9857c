"""The stream table shared by processes: in a folder (service/streams/folder.py, --workers) and
in Redis (service/streams/redis_store.py, many machines). Two apps on one store act as two
servers; a stream goes on whichever one a request reaches, in order, and after a restart."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.streams.folder import FolderStore
from service.streams.redis_store import RedisStore
from tests.service.conftest import CARRY, CARRY2, WINDOW
from tests.service.helpers import FRAMES
from tests.service.routes.v1.test_streams import (
    NPY,
    _settings,
    frames_of,
    npy,
    open_stream,
    post,
    values,
)


@pytest.fixture(scope="module")
def redis(request):
    from tests.redis_server import redis_server

    with redis_server() as server:
        yield server


@pytest.fixture(scope="module", params=["folder", "redis"])
def pair(request, stream_models, tmp_path_factory):
    if request.param == "folder":
        s = _settings(stream_models, stream_dir=tmp_path_factory.mktemp("shared") / "streams")
        kind = FolderStore
    else:
        s = _settings(stream_models, stream_store=request.getfixturevalue("redis").url())
        kind = RedisStore
    with TestClient(create_app(s)) as a, TestClient(create_app(s)) as b:
        assert isinstance(a.app.state.streams, kind)
        yield a, b, s


@pytest.mark.parametrize("name,mode", [(CARRY, "carry"), (WINDOW, "window"), (CARRY, "window")])
def test_a_stream_alternating_between_workers_equals_one_in_one_process(
    pair, sc_single, name, mode
):
    a, b, _ = pair
    frames = frames_of(FRAMES + 3, seed=21)
    sid = open_stream(a, name, past_context=mode)
    ref = open_stream(sc_single, name, past_context=mode)
    for i in range(len(frames)):
        got = post((a, b)[i % 2], sid, frames[i : i + 1], step=i)
        want = post(sc_single, ref, frames[i : i + 1])
        assert got["step"] == want["step"] == i + 1
        if want["frames"]:
            np.testing.assert_allclose(values(got), values(want), atol=1e-6)
        assert (got["surprise"] is None) == (want["surprise"] is None)
    info = b.get(f"/v1/streams/{sid}").json()
    assert info["step"] == len(frames) and info["memory_bytes"] > 0


@pytest.fixture(scope="module")
def sc_single(stream_models):
    with TestClient(create_app(_settings(stream_models))) as c:
        yield c


def test_posts_from_both_workers_are_applied_in_turn(pair):
    a, b, _ = pair
    sid = open_stream(a, CARRY)
    steps, errors = [], []

    def one(i):
        try:
            steps.append(post((a, b)[i % 2], sid, frames_of(1, seed=i))["step"])
        except AssertionError as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(steps) == list(range(1, 9))


def test_delete_limits_and_compare_streams_are_shared(pair):
    a, b, s = pair
    sid = open_stream(a, CARRY)
    assert b.delete(f"/v1/streams/{sid}").status_code == 200
    r = a.post(f"/v1/streams/{sid}/frames", content=npy(frames_of(1)), headers=NPY)
    assert r.status_code == 410 and "deleted" in r.json()["message"]
    gid = a.post("/v1/compare/streams", params={"models": f"{CARRY},{CARRY2}"}).json()["id"]
    x = post(b, gid, frames_of(FRAMES, seed=3))
    assert set(x["models"]) == {CARRY, CARRY2} and x["step"] == FRAMES
    assert post(a, gid, frames_of(1, seed=4))["step"] == FRAMES + 1
    stores = [c.app.state.streams for c in (a, b)]
    try:
        now = sum(asyncio.run(stores[0].counts()).values())
        for st in stores:  # a limit of however many are open now, plus one
            st.settings = s.model_copy(update={"stream_max_total": now + 1})
        open_stream(b, WINDOW)
        r = a.post(f"/v1/models/{CARRY}/streams")
        assert r.status_code == 503 and "FRAMECAST_STREAM_MAX_TOTAL" in r.json()["message"]
    finally:
        for st in stores:
            st.settings = s


def test_a_stream_survives_a_worker_restart(pair):
    a, _, s = pair
    frames = frames_of(FRAMES + 1, seed=5)
    sid = open_stream(a, CARRY)
    post(a, sid, frames[:FRAMES])
    with TestClient(create_app(s)) as again:  # a new worker on the same folder
        got = post(again, sid, frames[FRAMES:], step=FRAMES)
        assert got["step"] == FRAMES + 1 and got["surprise"] is not None


def test_ids_never_name_a_path(pair):
    a, _, s = pair
    r = a.post("/v1/streams/..%2F..%2Fetc/frames", content=npy(frames_of(1)), headers=NPY)
    assert r.status_code == 404
    if s.stream_dir is not None:
        files = {p.name for p in s.stream_dir.iterdir()}
        assert all(f in ("ended", ".table.lock") or len(f.split(".")[0]) == 40 for f in files)


def test_a_model_unloaded_on_one_server_keeps_its_streams_for_the_others(pair):
    a, b, _ = pair
    sid = open_stream(a, WINDOW)
    post(a, sid, frames_of(2, seed=8))
    assert a.post(f"/v2/repository/models/{WINDOW}/unload").status_code == 200
    try:
        r = a.post(f"/v1/streams/{sid}/frames", content=npy(frames_of(1)), headers=NPY)
        assert r.status_code == 404 and "the stream is kept" in r.json()["message"]
        assert post(b, sid, frames_of(1, seed=9))["step"] == 3  # another server goes on
    finally:
        assert a.post(f"/v2/repository/models/{WINDOW}/load").status_code == 200
    assert post(a, sid, frames_of(1, seed=10))["step"] == 4


def test_a_new_version_polled_in_is_replayed_in_a_shared_store(tmp_path, request):
    """A carried stream in the folder and in Redis: the new version's first answer is predict's
    on the stream's last context frames (the window is read back from the store to replay)."""
    import os
    import time

    from tests.service import own_models as om
    from tests.service.routes.v1.test_streams import predict

    root = tmp_path / "models"
    first = om.free_sequence_next_frame()
    om.write_folder(root / "nf", "1", first)
    second = om.free_sequence_next_frame()
    second.set_weights([w * 0.7 + 0.01 for w in first.get_weights()])
    om.write_folder(tmp_path / "aside", "2", second)
    frames = frames_of(7, om.S, seed=44)
    for kind in ("folder", "redis"):
        where = (
            {"stream_dir": tmp_path / f"streams-{kind}"}
            if kind == "folder"
            else {"stream_store": request.getfixturevalue("redis").url(5)}
        )
        s = _settings(root, model_poll_s=0.2, stream_window=4, **where)
        with TestClient(create_app(s)) as c:
            sid = open_stream(c, "nf", past_context="carry")
            for i in range(5):
                assert post(c, sid, frames[i : i + 1], step=i)["version"] == 1
            os.replace(tmp_path / "aside" / "2", root / "nf" / "2")  # appears whole
            deadline = time.monotonic() + 60
            while list(c.app.state.runtime.models.versions("nf")) != [2]:
                assert time.monotonic() < deadline, "version 2 was never served"
                time.sleep(0.05)
            got = post(c, sid, frames[5:6], step=5)
            assert got["replayed"] == {"from_version": 1, "version": 2, "frames": 4}, kind
            np.testing.assert_allclose(values(got), predict(c, "nf", frames[2:6]), atol=2e-5)
            assert post(c, sid, frames[6:7], step=6)["replayed"] is None
        os.replace(root / "nf" / "2", tmp_path / "aside" / "2")  # for the next store


def test_a_frame_is_announced_to_its_batcher_while_the_stream_is_read(pair, monkeypatch):
    """In a shared store the stream is read (over the network, from a file) before it steps: a
    frame to a stream this process stepped before takes a place in its model's batcher first,
    as an upload being decoded does, so the batcher waits for it rather than step without it;
    the place is given back once the step has its own, and none is left over."""
    a, _, _ = pair
    store, runner = a.app.state.streams, a.app.state.runtime.get(CARRY, None)
    batcher = runner.batcher
    sid = open_stream(a, CARRY)
    post(a, sid, frames_of(1, seed=5), step=0)  # this process has stepped it: it knows the model
    assert store.models_seen(sid) == ((CARRY, None),)
    seen: list[int] = []
    read = store._load_held

    async def spying(stream_id, *rest):
        seen.append(batcher._incoming)  # places taken by frames on their way, now
        return await read(stream_id, *rest)

    monkeypatch.setattr(store, "_load_held", spying)
    post(a, sid, frames_of(1, seed=6), step=1)
    assert seen and seen[0] == 1, seen
    assert batcher._incoming == 0  # given back

    fresh = open_stream(a, CARRY)  # never stepped here: nothing to announce
    seen.clear()
    post(a, fresh, frames_of(1, seed=7), step=0)
    assert seen == [0]
    assert batcher._incoming == 0
