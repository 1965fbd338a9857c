"""The Redis store (service/streams/redis_store.py) against a real ``redis-server``: a store that
stops answering (SIGSTOP) is a 503 with Retry-After naming it within the timeout, never a hang,
and the stream goes on where it was once it answers again; idle expiry is Redis's TTL; a write
that lost the compare-and-set is made again, never applied twice, and a write (WATCH, a check,
MULTI/EXEC) changes nothing unless the incarnation and revision read are still there; the
password never shows."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.errors import StreamConflict
from service.streams.redis_store import RedisStore, redacted
from service.streams.store import Contended
from tests.redis_server import redis_server
from tests.service.conftest import CARRY
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
def redis():
    with redis_server() as server:
        yield server


def test_a_paused_store_is_a_503_naming_it_then_the_stream_goes_on(stream_models, redis):
    s = _settings(stream_models, stream_store=redis.url(1), stream_store_timeout_s=0.5)
    frames = frames_of(FRAMES + 2, seed=41)
    with TestClient(create_app(s)) as c, TestClient(create_app(_settings(stream_models))) as ref:
        sid, rid = open_stream(c, CARRY), open_stream(ref, CARRY)
        for i in range(FRAMES):
            post(c, sid, frames[i : i + 1], step=i)
            post(ref, rid, frames[i : i + 1])
        redis.pause()
        try:
            t0 = time.monotonic()
            r = c.post(
                f"/v1/streams/{sid}/frames",
                params={"step": FRAMES},
                content=npy(frames[FRAMES : FRAMES + 1]),
                headers=NPY,
            )
            spent = time.monotonic() - t0
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "store_unavailable"
            assert f"redis redis://127.0.0.1:{redis.port}/1" in r.json()["message"]
            assert "FRAMECAST_STREAM_STORE_TIMEOUT_S" in r.json()["message"]
            assert int(r.headers["retry-after"]) >= 1
            assert spent < 10, f"answered after {spent:.1f} s: the timeout did not hold"
            r = c.get("/v1/streams")
            assert r.status_code == 503
        finally:
            redis.resume()
        for i in range(FRAMES, FRAMES + 2):  # the same frame again: applied once
            got = post(c, sid, frames[i : i + 1], step=i)
            want = post(ref, rid, frames[i : i + 1])
            assert got["step"] == want["step"] == i + 1
            np.testing.assert_allclose(values(got), values(want), atol=1e-6)


def test_idle_expiry_is_the_stores_ttl(stream_models, redis):
    s = _settings(stream_models, stream_store=redis.url(2))
    with TestClient(create_app(s)) as c:
        sid = open_stream(c, CARRY, idle_timeout_s=0.3)
        kept = open_stream(c, CARRY)
        deadline = time.monotonic() + 30
        while c.get(f"/v1/streams/{sid}").status_code == 200:  # Redis drops the key
            assert time.monotonic() < deadline, "the stream never expired"
            time.sleep(0.05)
        r = c.get(f"/v1/streams/{sid}")
        assert r.status_code == 410 and "expired" in r.json()["message"]
        assert f"POST /v1/models/{CARRY}/streams" in r.json()["message"]
        ids = [x["id"] for x in c.get("/v1/streams").json()["streams"]]
        assert ids == [kept]  # no longer counted


def test_a_lost_compare_and_set_writes_nothing(stream_models, redis):
    """Two holders read one revision; the second write is refused (Contended), so a step made
    from a stale state is never stored."""
    s = _settings(stream_models, stream_store=redis.url(3))
    with TestClient(create_app(s)) as c:
        sid = open_stream(c, CARRY)
        store = RedisStore(s, redis.url(3))

        async def race():
            a, b = await store.get(sid), await store.get(sid)
            a2, b2 = a.copy(), b.copy()
            a2.step, b2.step = 5, 7
            a2.rev = b2.rev = a.rev + 1
            await store._commit(a, a2)
            with pytest.raises(Contended):
                await store._commit(b, b2)
            return (await store.get(sid)).step

        assert asyncio.run(race()) == 5
        assert post(c, sid, frames_of(1))["step"] == 6


def test_the_commit_is_a_compare_and_set_on_incarnation_and_revision(stream_models, redis):
    """Against the write itself: a stale revision is refused (Contended) and a stream deleted
    or opened again as another incarnation is refused (restarted), both leaving the hash and its
    TTL as they were; a commit that holds drops the stale fields, sets the changed ones and sets
    the TTL to the idle timeout again."""
    import redis as redis_py

    s = _settings(stream_models, stream_store=redis.url(4))
    raw = redis_py.Redis.from_url(redis.url(4))
    far = 10**9  # ms: a TTL no commit sets, so a refused one can be told from one that wrote
    with TestClient(create_app(s)) as c:
        sid = open_stream(c, CARRY, idle_timeout_s=600)
        post(c, sid, frames_of(1, seed=3), step=0)  # states and a retry's answer stored
        key = f"{s.stream_redis_prefix}s:{sid}"
        store = RedisStore(s, redis.url(4))

        def stepped(held, **kw):
            new = held.copy()
            new.step, new.rev = held.step + 1, held.rev + 1
            for k, v in kw.items():
                setattr(new, k, v)
            return new

        async def commits():
            held = await store.get(sid, held=True)
            assert b"a:answer" in raw.hgetall(key) and held.last is not None

            # (a) another process wrote first: the revision read is stale
            await store._commit(held, stepped(held))
            raw.pexpire(key, far)
            before = raw.hgetall(key)
            with pytest.raises(Contended):
                await store._commit(held, stepped(held, step=99, last=None))
            assert raw.hgetall(key) == before and raw.pttl(key) > 600_000

            # (b) deleted, then opened again under the same id as another incarnation
            now = await store.get(sid, held=True)
            raw.delete(key)
            with pytest.raises(StreamConflict, match="started again"):
                await store._commit(now, stepped(now))
            assert not raw.exists(key)  # nothing written: the hash is not made again
            raw.hset(key, mapping={**before, b"inc": b"another"})
            raw.pexpire(key, far)
            again = raw.hgetall(key)
            with pytest.raises(StreamConflict, match="started again"):
                await store._commit(now, stepped(now, step=99))
            assert raw.hgetall(key) == again and raw.pttl(key) > 600_000

            # (c) a commit that holds: stale fields dropped, fields set, TTL set again
            raw.hset(key, mapping=before)
            raw.pexpire(key, far)
            now = await store.get(sid, held=True)
            assert now.rev == held.rev + 1 and now.states is not None
            await store._commit(now, stepped(now, last=None, expected=None))
            after = raw.hgetall(key)
            assert b"a:answer" not in after and b"a:e" not in after
            assert after[b"a:states"] == before[b"a:states"]
            assert after[b"rev"] == str(now.rev + 1).encode()
            assert after[b"inc"] == before[b"inc"]
            assert 0 < raw.pttl(key) <= 600_000
            got = await store.get(sid)
            assert (got.step, got.rev, got.last) == (now.step + 1, now.rev + 1, None)
            await store.close()

        asyncio.run(commits())
    raw.close()


def test_the_password_of_the_store_never_shows():
    url = "redis://user:s3cret-pw@redis.internal:6380/2"
    assert redacted(url) == "redis://user:***@redis.internal:6380/2"
    assert "s3cret" not in redacted("rediss://:s3cret@h/0")
    assert redacted("redis://h:1/0") == "redis://h:1/0"
