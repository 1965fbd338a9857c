"""The stream table in Redis, for servers on many machines (``FRAMECAST_STREAM_STORE=redis://…``).

Two ``framecast serve`` processes (or Ray ingress replicas) pointed at one Redis share every stream
and nothing else: a frame may reach any of them. Redis is reached with ``redis`` (redis-py, its
asyncio client): the project's Redis client library, maintained by Redis itself, rather than a
protocol written here. Each stream is one hash (``<prefix>s:<id>``): its description (JSON), its
arrays as raw bytes (their dtype and shape are in the description; nothing is pickled), and the
fields a write checks: ``inc`` (the incarnation) and ``rev``.

- **One writer at a time, without locks that a crash could leave behind**: a process steps a stream
  from what it read (WATCH and one HMGET, together: all but the window frames, which a carried
  stream does not read again), then writes it back on the same connection in one MULTI/EXEC (the
  changed fields only, the new frame in its ring slot), which Redis refuses if the stream was
  written since the WATCH (``redis_hash.py``: two round trips a step). If another process wrote
  first, nothing is written and the step is made again from the new state
  (:class:`~service.streams.store.Contended`), so a frame is never applied twice, and a process
  killed mid-step leaves the stream as it was.
- **Idle expiry is Redis's**: every write sets the key's TTL to the stream's idle timeout. The
  open streams are also two sorted sets scored by their expiry (all, and per model); opening a
  stream counts and inserts in one script, so the limits hold across processes.
- **Ended ids** are remembered (``<prefix>ended:<id>``: why) for FRAMECAST_STREAM_ENDED_TTL_S.
- **A store that does not answer** within FRAMECAST_STREAM_STORE_TIMEOUT_S is a 503 with
  ``Retry-After`` naming it, never a hang; streams go on where they were once it is back.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from service.auth.principals import Principal, sees
from service.errors import StoreUnavailable, StreamConflict
from service.streams.records import Entry, Stream
from service.streams.redis_hash import (
    ARRAYS,
    Watch,
    flat,
    member_prefixes,
    pack,
    ring_slot,
    stale_fields,
    unpack,
)
from service.streams.redis_scripts import CREATE, END, OPEN, TAKE, TICKET, WHY
from service.streams.store import (
    Contended,
    StreamStore,
    check_owned,
    check_room,
    not_found,
    restarted,
    too_many_tickets,
)


@dataclass
class Peeked:
    """What :meth:`RedisStore.peek` knows of a stream: its id, models and owner."""

    id: str
    members: dict
    owner: str | None = None


def redacted(url: str) -> str:
    """The store's URL without its password (what logs and error messages name)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username + ':' if parts.username else ':'}***@{host}"
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=netloc))


class RedisStore(StreamStore):
    """The stream table in the Redis at ``url`` (see the module's docstring)."""

    kind = "redis"
    shared = True

    def __init__(self, settings: Any, url: str, clock: Callable[[], float] = time.time):
        super().__init__(settings, clock)
        self.url = url
        self.prefix = settings.stream_redis_prefix
        self._clients: dict[int, Any] = {}  # event loop → its client (asyncio connections)
        self._scripts: dict[str, Any] = {}  # script body → its Script on that client
        self._watches: dict[int, Watch] = {}  # id of an entry a step holds → its connection

    def describe_store(self) -> str:
        return f"redis {redacted(self.url)}"

    def _client(self) -> Any:
        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        client = self._clients.get(id(loop))
        if client is None:
            t = self.settings.stream_store_timeout_s
            client = aioredis.from_url(
                self.url, socket_timeout=t, socket_connect_timeout=t, decode_responses=False
            )
            self._clients = {id(loop): client}  # one loop serves an app at a time
            self._scripts = {}
        return client

    async def _run(self, what: str, make: Callable[[Any], Any]) -> Any:
        """One exchange with Redis, bounded: StoreUnavailable (503) when it does not answer."""
        import redis.exceptions as rx

        limit = self.settings.stream_store_timeout_s
        try:
            async with asyncio.timeout(limit):  # no task per call, as wait_for makes one
                return await make(self._client())
        except (TimeoutError, rx.TimeoutError, rx.ConnectionError, OSError) as e:
            raise self._unavailable(what, e) from None

    def _unavailable(self, what: str, e: BaseException) -> StoreUnavailable:
        then = (
            "the write may have reached it: send the frame again with the same step= and it is "
            "answered as before, never applied twice"
            if what == "a write"
            else "the stream stays where it was"
        )
        return StoreUnavailable(
            f"the stream store ({self.describe_store()}) did not answer {what} within "
            f"{self.settings.stream_store_timeout_s:g} s (FRAMECAST_STREAM_STORE_TIMEOUT_S): "
            f"{type(e).__name__}; retry shortly, {then}",
            self.settings.stream_store_retry_after_s,
        )

    async def _on(self, watch: Watch, what: str, make: Callable[[], Any]) -> Any:
        """One exchange on a step's own connection (:class:`Watch`), bounded as :meth:`_run`;
        the connection is closed if it fails or is cut short."""
        import redis.exceptions as rx

        try:
            async with asyncio.timeout(self.settings.stream_store_timeout_s):
                return await make()
        except BaseException as e:
            await watch.broken()
            if isinstance(e, (TimeoutError, rx.TimeoutError, rx.ConnectionError, OSError)):
                raise self._unavailable(what, e) from None
            raise

    def _key(self, stream_id: str) -> str:
        return f"{self.prefix}s:{stream_id}"

    def _ms(self, seconds: float) -> int:
        return max(1, int(seconds * 1000))

    async def _script(self, what: str, body: str, keys: list, args: list) -> Any:
        def call(c: Any) -> Any:
            script = self._scripts.get(body)
            if script is None:
                script = self._scripts[body] = c.register_script(body)
            return script(keys=keys, args=args)

        return await self._run(what, call)

    async def create(self, entry: Entry, caller: Principal | None = None) -> None:
        fields, models, kind = pack(entry)
        s = self.settings
        most = (caller.limits.max_streams if caller is not None else None) or 0
        args = [self.prefix, entry.id, self._ms(entry.idle_timeout_s), s.stream_max_total]
        args += [s.stream_max_per_model, self._ms(s.stream_ended_ttl_s), kind]
        args += [entry.owner or "", most, len(models)]
        code, count = await self._script(
            "opening a stream", CREATE, [self._key(entry.id)], args + models + flat(fields)
        )
        if code == -2:
            return
        if code == -1:
            raise StreamConflict(f"a stream {entry.id!r} is open already")
        if code == -3:
            check_owned(caller, int(count))
        if code == 0:
            check_room({}, models, s, held_total=int(count))
        check_room({models[code - 1]: int(count)}, [models[code - 1]], s, held_total=0)

    async def _load(self, stream_id: str) -> Entry | None:
        fields = await self._run("a read", lambda c: c.hgetall(self._key(stream_id)))
        return unpack({k.decode(): v for k, v in fields.items()}) if fields else None

    async def _load_held(self, stream_id: str, watch: Watch | None = None) -> Entry | None:
        """What a step reads: all but the window frames (:meth:`load_window` when needed): one
        HMGET for a stream, a second for a compare stream's members (with ``watch``: on its
        connection, the first sent with the WATCH)."""
        key = self._key(stream_id)
        names = ["meta", "kind", "a:states", "a:e", "a:answer"]
        if watch is None:
            got = await self._run("a read", lambda c: c.hmget(key, names))
        else:
            got = await self._on(watch, "a read", lambda: watch.read(key, names))
        if got[0] is None:
            return None
        fields = {n: v for n, v in zip(names, got) if v is not None}
        if got[1] == b"g":
            meta = json.loads(got[0])
            more = [f"a:m{i}_{k}" for i in range(len(meta["members"])) for k in ARRAYS]
            if watch is None:
                values = await self._run("a read", lambda c: c.hmget(key, more))
            else:
                values = await self._on(watch, "a read", lambda: watch.read_more(key, more))
            fields.update({n: v for n, v in zip(more, values) if v is not None})
        return unpack(fields)

    async def _read_held(self, stream_id: str) -> Entry:
        """A step's read, WATCHed on a connection the step keeps for its write
        (redis_watch.py): two round trips a step in all."""
        watch = Watch(self._client().connection_pool)
        try:
            found = await self._load_held(stream_id, watch)
            if found is None:
                await watch.release()
                return await self._seen(stream_id, None, None)  # 410 or 404
        except BaseException:
            await watch.release()
            raise
        self._watches[id(found)] = watch
        return found

    async def _let_go(self, held: Entry) -> None:
        watch = self._watches.pop(id(held), None)
        if watch is not None:
            await self._on(watch, "a release", watch.release)

    async def load_window(self, s: Stream, entry: Entry) -> None:
        if s.window_loaded:
            return
        p = next(p for p, m in member_prefixes(entry) if m.model == s.model)
        n = min(s.step, s.keeps)
        names = [f"a:{p}r{ring_slot(f, s.keeps)}" for f in range(s.step - n, s.step)]
        got = await self._run("a read", lambda c: c.hmget(self._key(entry.id), names)) if n else []
        h, w, c = s.frame_shape
        if any(g is None for g in got):
            raise restarted(entry.id)
        s.window = [np.frombuffer(g, np.float32).reshape(h, w, c) for g in got]
        s.window_loaded = True

    async def peek(self, stream_id: str, caller: Principal | None = None) -> Any:
        """Whether it is open (404 or 410 as :meth:`get`), its models and owner: two small
        fields."""
        key = self._key(stream_id)
        models, owner = await self._run("a read", lambda c: c.hmget(key, ["models", "owner"]))
        if models is None:
            return await self.get(stream_id, caller=caller)  # 404 or 410, with why
        who = (owner.decode() or None) if owner is not None else None
        if not sees(caller, who):
            raise not_found(stream_id)
        return Peeked(stream_id, dict.fromkeys(models.decode().split("\t")), who)

    async def _why(self, stream_id: str) -> str | None:
        args = [self.prefix, self._ms(self.settings.stream_ended_ttl_s), stream_id]
        why = await self._script("a read", WHY, [], args)
        return why.decode() if why is not None else None

    async def _commit(self, held: Entry, new: Entry) -> None:
        """A compare-and-set in one MULTI/EXEC, refused by Redis if anyone wrote the stream
        after the WATCH: the one sent with the step's read (:meth:`_read_held`), or, for a
        ``held`` read otherwise, one sent now with a check that the incarnation and revision
        are still those read. The big fields go straight to Redis: a Lua script would copy
        them twice more."""
        import redis.exceptions as rx

        fields, _, _ = pack(new, since=held)
        stale = stale_fields(new, fields)
        key, ttl = self._key(held.id), self._ms(new.idle_timeout_s)
        watch = self._watches.pop(id(held), None)
        if watch is not None and watch.conn is not None:  # WATCHed when read: MULTI/EXEC only
            commands: list[tuple[Any, ...]] = [("HDEL", key, *stale)] if stale else []
            commands += [("HSET", key, *flat(fields)), ("PEXPIRE", key, ttl)]
            if await self._on(watch, "a write", lambda: watch.write(commands)):
                return
            inc = await self._run("a read", lambda c: c.hget(key, "inc"))  # refused: why
            if inc is None or inc.decode() != held.incarnation:
                raise restarted(held.id)
            raise Contended(held.id)

        async def cas(c: Any) -> int:
            async with c.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                inc, rev = await pipe.hmget(key, ["inc", "rev"])
                if inc is None or inc.decode() != held.incarnation:
                    return -1
                if rev.decode() != str(held.rev):
                    return 0
                pipe.multi()
                if stale:
                    pipe.hdel(key, *stale)
                pipe.hset(key, mapping=fields)
                pipe.pexpire(key, ttl)  # idle expiry (the sorted sets catch up when pruned)
                try:
                    await pipe.execute()
                except rx.WatchError:
                    return 0
                return 1

        done = await self._run("a write", cas)
        if done == 0:
            raise Contended(held.id)
        if done == -1:
            raise restarted(held.id)

    async def end(self, stream_id: str, why: str) -> bool:
        args = [self.prefix, stream_id, why, self._ms(self.settings.stream_ended_ttl_s)]
        return bool(await self._script("ending a stream", END, [self._key(stream_id)], args))

    async def entries(self) -> list[Entry]:
        args = [self.prefix, self._ms(self.settings.stream_ended_ttl_s)]
        members = await self._script("a listing", OPEN, [], args)
        ids = list(dict.fromkeys(m.decode().split("\t")[0] for m in members))

        async def metas(c: Any) -> list:
            pipe = c.pipeline(transaction=False)
            for sid in ids:
                pipe.hget(self._key(sid), "meta")
            return await pipe.execute()

        got = await self._run("a listing", metas) if ids else []
        return [unpack({"meta": m}, arrays=False) for m in got if m is not None]

    async def put_ticket(self, key: str, grant: str, ttl_s: float, most: int) -> None:
        args = [self.prefix, key, grant, self._ms(ttl_s), most]
        if not await self._script("keeping a ticket", TICKET, [], args):
            raise too_many_tickets(most)

    async def take_ticket(self, key: str) -> str | None:
        got = await self._script("taking a ticket", TAKE, [], [self.prefix, key])
        return None if got is None else got.decode()

    async def ping(self) -> None:
        await self._run("a ping", lambda c: c.ping())

    async def close(self) -> None:
        for client in self._clients.values():
            try:
                await client.aclose()
            except Exception:  # noqa: BLE001 - a client of a closed loop: nothing to close
                pass
        self._clients = {}
