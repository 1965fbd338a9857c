"""A step's read and write on one Redis connection (service/streams/redis_hash.py), against a
real ``redis-server``: the read WATCHes the stream, so a write by anyone between a step's read
and its write is refused and writes nothing; a step takes two round trips; a step that ends
without writing leaves its connection watching nothing; a store that stops answering mid-step is
a 503 and the connection is closed, not reused (a write it timed out on applied once at most)."""

from __future__ import annotations

import asyncio

import pytest
import redis as redis_py
from fastapi.testclient import TestClient

from service.app import create_app
from service.errors import StoreUnavailable, StreamConflict
from service.streams.redis_store import RedisStore
from service.streams.store import Contended
from tests.redis_server import redis_server
from tests.service.conftest import CARRY
from tests.service.routes.v1.test_streams import _settings, frames_of, open_stream, post


@pytest.fixture(scope="module")
def redis():
    with redis_server() as server:
        yield server


def _calls(raw) -> dict[str, int]:
    return {k: v["calls"] for k, v in raw.info("commandstats").items()}


def test_a_write_after_the_steps_read_is_refused_and_nothing_is_written(stream_models, redis):
    s = _settings(stream_models, stream_store=redis.url(5))
    raw = redis_py.Redis.from_url(redis.url(5))
    with TestClient(create_app(s)) as c:
        sid = open_stream(c, CARRY)
        post(c, sid, frames_of(1, seed=1), step=0)
        key = f"{s.stream_redis_prefix}s:{sid}"
        store = RedisStore(s, redis.url(5))

        async def steps():
            # another process writes between this step's read and its write: refused
            with pytest.raises(Contended):
                async with store.hold(sid) as work:
                    raw.hset(key, "rev", str(work.rev + 7))  # as a write by another process
                    before = raw.hgetall(key)
                    work.step = 99
            assert raw.hgetall(key) == before
            assert not store._watches  # its connection went back
            raw.hset(key, "rev", str(work.rev))

            # deleted meanwhile: refused as a stream started again, not made again
            with pytest.raises(StreamConflict, match="started again"):
                async with store.hold(sid) as work:
                    kept = raw.hgetall(key)
                    raw.delete(key)
                    work.step = 99
            assert not raw.exists(key)
            raw.hset(key, mapping=kept)

            # a step that holds: two round trips, WATCH+HMGET then MULTI..EXEC, no UNWATCH
            raw.config_resetstat()
            async with store.hold(sid) as work:
                work.step += 1
            calls = _calls(raw)
            assert calls.get("cmdstat_watch") == 1 and calls.get("cmdstat_exec") == 1, calls
            assert "cmdstat_unwatch" not in calls, calls
            assert (await store.get(sid)).step == work.step

            # a step that fails leaves its connection watching nothing: the next write on the
            # pool's connections is not refused for a key watched by a step long gone
            with pytest.raises(RuntimeError):
                async with store.hold(sid) as work:
                    raise RuntimeError("the model failed")
            assert _calls(raw).get("cmdstat_unwatch") == 1
            raw.hset(key, "touched_by_other", b"1")  # would abort a watch left behind
            async with store.hold(sid) as work:
                work.step += 1
            assert (await store.get(sid)).step == work.step
            await store.close()

        asyncio.run(steps())
    raw.close()


def test_a_store_that_stops_answering_mid_step_is_a_503_and_its_connection_closed(
    stream_models, redis
):
    s = _settings(stream_models, stream_store=redis.url(6), stream_store_timeout_s=0.5)
    with TestClient(create_app(s)) as c:
        sid = open_stream(c, CARRY)
        store = RedisStore(s, redis.url(6))

        async def step():
            pool = store._client().connection_pool
            with pytest.raises(StoreUnavailable, match="did not answer a write"):
                async with store.hold(sid) as work:
                    redis.pause()
                    work.step += 1
            redis.resume()
            assert not store._watches
            assert not pool._in_use_connections  # closed and given back, none held
            # the MULTI/EXEC may have reached Redis before it stopped: applied once, or not
            was = (await store.get(sid)).step
            async with store.hold(sid) as work:  # the store answers again: the step goes on
                work.step += 1
            now = (await store.get(sid)).step
            await store.close()
            return was, now

        try:
            was, now = asyncio.run(step())
        finally:
            redis.resume()
        assert was in (0, 1) and now == was + 1
        assert post(c, sid, frames_of(1, seed=2))["step"] == now + 1
