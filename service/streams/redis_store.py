"""The stream table in Redis, for servers on many machines (``FRAMECAST_STREAM_STORE=redis://…``).

Two ``framecast serve`` processes (or Ray ingress replicas) pointed at one Redis share every stream
and nothing else: a frame may reach any of them. Redis is reached with ``redis`` (redis-py, its
asyncio client): the project's Redis client library, maintained by Redis itself, rather than a
protocol written here. Each stream is one hash (``<prefix>s:<id>``): its description (JSON), its
arrays as raw bytes (their dtype and shape are in the description; nothing is pickled), and the
fields a write checks: ``inc`` (the incarnation) and ``rev``.

- **One writer at a time, without locks that a crash could leave behind**: a process steps a stream
  from what it read (one HMGET: all but the window frames, which a carried stream does not read
  again), then writes it back with a compare-and-set on ``rev`` (WATCH, a check, MULTI/EXEC: the
  changed fields only, the new frame in its ring slot). If another process wrote first, nothing
  is written and the step is made again from the new state
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
from service.streams.records import Entry, Group, Stream, describe, rebuild
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


def _members(entry: Entry) -> list[tuple[str, Stream]]:
    if isinstance(entry, Group):
        return [(f"m{i}_", m) for i, m in enumerate(entry.members.values())]
    return [("", entry)]


def _slot(frame: int, keeps: int) -> int:
    return frame % keeps


def pack(entry: Entry, since: Entry | None = None) -> tuple[dict[str, bytes], list[str], str]:
    """The hash fields of ``entry`` (all of them, or with ``since``: the stored revision it
    steps from, only the window frames new since then), its models and its kind."""
    meta, _ = describe(entry)
    fields: dict[str, bytes] = {"meta": json.dumps(meta).encode()}
    before = dict(_members(since)) if since is not None else {}
    for p, s in _members(entry):
        if s.states is not None:
            fields[f"a:{p}states"] = b"".join(np.ascontiguousarray(a).tobytes() for a in s.states)
        if s.expected is not None:
            fields[f"a:{p}e"] = np.ascontiguousarray(s.expected).tobytes()
        if s.last is not None:
            fields[f"a:{p}answer"] = s.last["answer"]
        old = before.get(p)
        first = old.step if old is not None else 0  # a step: the frames new since it only
        n = len(s.window)
        for k, frame in enumerate(s.window):  # frame number s.step - n + k, ring slot of it
            number = s.step - n + k
            if number >= first:
                fields[f"a:{p}r{_slot(number, s.keeps)}"] = np.ascontiguousarray(frame).tobytes()
    fields["inc"] = entry.incarnation.encode()
    fields["rev"] = str(entry.rev).encode()
    models = list(entry.members)
    fields["models"] = "\t".join(models).encode()
    fields["owner"] = (entry.owner or "").encode()
    kind = "g" if isinstance(entry, Group) else "s"
    fields["kind"] = kind.encode()
    return fields, models, kind


_ARRAYS = ("states", "e", "answer")  # a stream's array fields besides its window frames


def _stale(entry: Entry, fields: dict[str, bytes]) -> list[str]:
    """Fields a stored revision may hold that ``entry`` no longer has (states after a switch to
    a window, a retry's answer)."""
    out = []
    for p, _ in _members(entry):
        out += [f"a:{p}{k}" for k in _ARRAYS if f"a:{p}{k}" not in fields]
    return out


def unpack(fields: dict, arrays: bool = True) -> Entry:
    """The entry of a hash's fields (``fields``: name → bytes; window frames where present)."""
    meta = json.loads(fields["meta"])
    entry = rebuild(meta)
    if not arrays:
        return entry
    metas = meta["members"] if isinstance(entry, Group) else [meta]
    for (p, s), m in zip(_members(entry), metas):
        s.held = None
        h, w, c = s.frame_shape
        raw = fields.get(f"a:{p}states")
        if raw is not None:
            out, at = [], 0
            for shape in s.state_shapes:
                size = int(np.prod(shape))
                out.append(np.frombuffer(raw, np.float32, size, at * 4).reshape(shape))
                at += size
            s.states = out
        raw = fields.get(f"a:{p}e")
        s.expected = None if raw is None else np.frombuffer(raw, np.float32).reshape(h, w, c)
        if m.get("last") is not None and fields.get(f"a:{p}answer") is not None:
            s.last = {**m["last"], "answer": bytes(fields[f"a:{p}answer"])}
        n = min(s.step, s.keeps)
        frames = [fields.get(f"a:{p}r{_slot(f, s.keeps)}") for f in range(s.step - n, s.step)]
        kept = [f for f in frames if f is not None]
        if len(kept) == len(frames):
            s.window = [np.frombuffer(f, np.float32).reshape(h, w, c) for f in kept]
        else:
            s.window, s.window_loaded = [], False
    return entry


def _flat(fields: dict[str, bytes]) -> list:
    out: list = []
    for k, v in fields.items():
        out += [k, v]
    return out


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
            return await asyncio.wait_for(make(self._client()), limit)
        except (TimeoutError, rx.TimeoutError, rx.ConnectionError, OSError) as e:
            raise StoreUnavailable(
                f"the stream store ({self.describe_store()}) did not answer {what} within "
                f"{limit:g} s (FRAMECAST_STREAM_STORE_TIMEOUT_S): {type(e).__name__}; "
                "retry shortly, the stream stays where it was",
                self.settings.stream_store_retry_after_s,
            ) from None

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
            "opening a stream", CREATE, [self._key(entry.id)], args + models + _flat(fields)
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

    async def _load_held(self, stream_id: str) -> Entry | None:
        """What a step reads: all but the window frames (:meth:`load_window` when needed): one
        HMGET for a stream, a second for a compare stream's members."""
        key = self._key(stream_id)
        names = ["meta", "kind", "a:states", "a:e", "a:answer"]
        got = await self._run("a read", lambda c: c.hmget(key, names))
        if got[0] is None:
            return None
        fields = {n: v for n, v in zip(names, got) if v is not None}
        if got[1] == b"g":
            meta = json.loads(got[0])
            more = [f"a:m{i}_{k}" for i in range(len(meta["members"])) for k in _ARRAYS]
            values = await self._run("a read", lambda c: c.hmget(key, more))
            fields.update({n: v for n, v in zip(more, values) if v is not None})
        return unpack(fields)

    async def load_window(self, s: Stream, entry: Entry) -> None:
        if s.window_loaded:
            return
        p = next(p for p, m in _members(entry) if m.model == s.model)
        n = min(s.step, s.keeps)
        names = [f"a:{p}r{_slot(f, s.keeps)}" for f in range(s.step - n, s.step)]
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
        """A compare-and-set: WATCH the stream, check it is still the revision read, then
        write it in one MULTI/EXEC (refused by Redis if anyone wrote it after the WATCH). The
        big fields go straight to Redis: a Lua script would copy them twice more."""
        import redis.exceptions as rx

        fields, _, _ = pack(new, since=held)
        stale = _stale(new, fields)
        key, ttl = self._key(held.id), self._ms(new.idle_timeout_s)

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
