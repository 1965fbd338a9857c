"""Ownership in every stream store (service/streams/store.py, folder.py, redis_store.py): a stream
records the key that opened it, answers any other non-admin key as an unknown id (404, ended ones
too), lists only the caller's, counts a key's streams against its max_streams in the same step as
the server's limits (429), keeps its owner through a restart (folder, Redis), and a WebSocket
ticket is taken once whichever process takes it."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.auth.principals import Limits, Principal
from service.config import Settings
from service.errors import StreamGone, StreamNotFound, TooManyRequests
from service.streams.folder import FolderStore
from service.streams.records import Stream
from service.streams.redis_store import RedisStore
from service.streams.store import MemoryStore

ALICE = Principal("alice", frozenset({"infer", "stream"}), Limits(max_streams=2))
BOB = Principal("bob", frozenset({"infer", "stream"}))
ADMIN = Principal("root", frozenset({"admin"}))


@pytest.fixture(scope="module")
def redis():
    from tests.redis_server import redis_server

    with redis_server() as server:
        yield server


def _settings(tmp_path, **kw):
    return Settings(models_dir=tmp_path, stream_idle_timeout_s=60, **kw)


@pytest.fixture(params=["memory", "folder", "redis"])
def make(request, tmp_path):
    """make() → a new store on the same table (a second process, or a restarted one)."""
    if request.param == "memory":
        store = MemoryStore(_settings(tmp_path))
        return lambda: store
    if request.param == "folder":
        s = _settings(tmp_path, stream_dir=tmp_path / "streams")
        return lambda: FolderStore(s, tmp_path / "streams")
    server = request.getfixturevalue("redis")
    server.flush()
    s = _settings(tmp_path, stream_store=server.url())
    return lambda: RedisStore(s, server.url())


def stream(sid: str, owner: str | None, idle_s: float = 60.0) -> Stream:
    now = time.time()
    return Stream(sid, "m", "carry", 4, 4, 64, 0, now, now, idle_s, (4, 4, 1), owner=owner)


def run(coro):
    return asyncio.run(coro)


def test_a_stream_is_its_owners_and_an_admins(make):
    async def go():
        store = make()
        await store.create(stream("a1", "alice"), ALICE)
        await store.create(stream("b1", "bob"), BOB)
        assert (await store.get("a1", caller=ALICE)).owner == "alice"
        assert (await store.get("a1", caller=ADMIN)).id == "a1"
        assert (await store.get("a1")).id == "a1"  # no caller: keys off
        with pytest.raises(StreamNotFound) as other:
            await store.get("a1", caller=BOB)
        with pytest.raises(StreamNotFound) as unknown:
            await store.get("nope", caller=BOB)
        assert other.value.message == unknown.value.message.replace("'nope'", "'a1'")
        with pytest.raises(StreamNotFound):
            await store.peek("a1", BOB)
        assert (await store.peek("a1", ALICE)).id == "a1"
        assert [s["id"] for s in await store.listing(ALICE)] == ["a1"]
        assert [s["id"] for s in await store.listing(BOB)] == ["b1"]
        assert sorted(s["id"] for s in await store.listing(ADMIN)) == ["a1", "b1"]
        await store.close()

    run(go())


def test_an_ended_stream_is_410_to_its_owner_and_404_to_others(make):
    async def go():
        store = make()
        await store.create(stream("a2", "alice"), ALICE)
        assert await store.end("a2", "was deleted; open a new one")
        with pytest.raises(StreamGone, match="was deleted"):
            await store.get("a2", caller=ALICE)
        with pytest.raises(StreamGone):
            await store.get("a2", caller=ADMIN)
        with pytest.raises(StreamNotFound):  # existence is not revealed, even once ended
            await store.get("a2", caller=BOB)
        await store.close()

    run(go())


def test_a_keys_max_streams_is_429_naming_it_and_counts_only_its_own(make):
    async def go():
        store = make()
        await store.create(stream("x1", "alice"), ALICE)
        await store.create(stream("x2", "alice"), ALICE)
        await store.create(stream("y1", "bob"), BOB)  # bob's do not count against alice
        with pytest.raises(TooManyRequests) as e:
            await store.create(stream("x3", "alice"), ALICE)
        assert e.value.status == 429 and int(e.value.headers["Retry-After"]) >= 1
        assert "max_streams=2" in e.value.message and "'alice'" in e.value.message
        await store.end("x1", "was deleted")
        await store.create(stream("x3", "alice"), ALICE)  # room again
        await store.close()

    run(go())


def test_the_owner_survives_a_restart_of_a_shared_store(make):
    async def go():
        first = make()
        await first.create(stream("r1", "alice"), ALICE)
        await first.close()
        again = make()  # another process, or this one restarted
        assert (await again.get("r1", caller=ALICE)).owner == "alice"
        with pytest.raises(StreamNotFound):
            await again.get("r1", caller=BOB)
        with pytest.raises(TooManyRequests):  # its count holds across processes too
            await again.create(stream("r2", "alice"), ALICE)
            await again.create(stream("r3", "alice"), ALICE)
        await again.close()

    run(go())


def test_an_expired_streams_tombstone_keeps_its_owner(make):
    async def go():
        store = make()
        await store.create(stream("e1", "alice", idle_s=0.3), ALICE)
        deadline = time.monotonic() + 10
        while True:
            try:
                await store.get("e1", caller=ALICE)
            except StreamGone as e:
                assert "expired" in e.message
                break
            assert time.monotonic() < deadline, "the stream did not expire"
            await asyncio.sleep(0.1)
        with pytest.raises(StreamNotFound):
            await store.get("e1", caller=BOB)
        await store.create(stream("e2", "alice"), ALICE)  # the expired one no longer counts
        await store.create(stream("e3", "alice"), ALICE)
        await store.close()

    run(go())


def test_a_ticket_is_taken_once_by_any_process(make):
    async def go():
        a, b = make(), make()
        await a.put_ticket("ab" * 32, '{"key": "alice", "stream": "s"}', 30, 100)
        assert await b.take_ticket("ab" * 32) == '{"key": "alice", "stream": "s"}'
        assert await a.take_ticket("ab" * 32) is None  # used
        assert await b.take_ticket("cd" * 32) is None  # never issued
        await a.put_ticket("ef" * 32, "{}", 0.05, 100)
        await asyncio.sleep(0.2)
        assert await b.take_ticket("ef" * 32) is None  # expired
        await a.close()
        await b.close()

    run(go())


def test_waiting_tickets_are_bounded(make):
    from service.errors import Overloaded

    async def go():
        store = make()
        for i in range(3):
            await store.put_ticket(f"{i:064x}", "{}", 30, 3)
        with pytest.raises(Overloaded, match="FRAMECAST_WS_TICKETS_MAX"):
            await store.put_ticket(f"{9:064x}", "{}", 30, 3)
        await store.take_ticket(f"{0:064x}")
        await store.put_ticket(f"{9:064x}", "{}", 30, 3)  # room again
        await store.close()

    run(go())
