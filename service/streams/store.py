"""The stream table: one interface, three stores.

:class:`StreamStore` is what the routes and ``service/streams/feeding.py`` use: open a stream
within the limits (:meth:`~StreamStore.create`, atomic: two opens at once never both take the
last place), read one (:meth:`~StreamStore.get`), hold one to step it (:meth:`~StreamStore.hold`:
one writer at a time, and what it wrote lands whole or not at all), end one, list them. Behind it:

- :class:`MemoryStore` (this module): this process's memory, the embedded default;
- ``FolderStore`` (``service/streams/folder.py``): a folder the processes of one machine share
  (``--workers N``), one ``flock`` per stream;
- ``RedisStore`` (``service/streams/redis_store.py``): Redis, for many machines, a
  compare-and-set on each write.

Each store owns atomicity, idle expiry (a stream's own ``idle_timeout_s``), the limits (open
streams per model and in all, ``FRAMECAST_STREAM_MAX_*``) and why an ended stream ended (so that
it answers 410 with the reason rather than 404). No model is called here.

Ownership: a stream records the key that opened it (``owner``, when keys are on). Reads take the
caller (``caller=``, a :class:`~service.auth.principals.Principal` or None) and answer a stream
the caller may not see (:func:`~service.auth.principals.sees`) exactly as an unknown id (404),
ended ones too: an ended stream's tombstone keeps its owner beside why it ended. Opening one
counts the caller's open streams against its ``max_streams`` in the same step as the server's
limits (429). The stores also keep the WebSocket tickets (:meth:`StreamStore.put_ticket`), so a
ticket taken by one process is good in every process sharing the store, once.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from service.auth.principals import Principal, check_count, sees
from service.errors import (
    FramecastError,
    Overloaded,
    StreamConflict,
    StreamGone,
    StreamNotFound,
    TooManyStreams,
)
from service.streams.records import Entry, Group, Stream

HOW_TO_OPEN = "open a new one with POST /v1/models/{model}/streams"
HOW_TO_COMPARE = "open a new one with POST /v1/compare/streams"


class Contended(Exception):
    """Another process wrote the stream while this one stepped it: step it again from what is
    stored now (a compare-and-set lost; nothing was written)."""


def how_to_reopen(entry: Entry | None = None, model: str = "{name}", group: bool = False) -> str:
    if isinstance(entry, Group) or group:
        return HOW_TO_COMPARE
    return HOW_TO_OPEN.format(model=entry.model if isinstance(entry, Stream) else model)


def expired_why(idle_s: float, hint: str) -> str:
    return f"expired after {idle_s:g} s without a frame (its idle timeout); {hint}"


SEP = "\x1f"  # between the owner and why, in an ended stream's tombstone


def tomb(why: str, owner: str | None) -> str:
    """What an ended stream leaves: why it ended, and whose it was."""
    return f"{owner or ''}{SEP}{why}"


def untomb(text: str) -> tuple[str, str | None]:
    """(why, owner) of a tombstone (one without an owner: None)."""
    owner, sep, why = text.partition(SEP)
    return (why, owner or None) if sep else (text, None)


def not_found(stream_id: str) -> StreamNotFound:
    """The answer to an unknown id, and to a stream the caller may not see: the same words."""
    return StreamNotFound(
        f"no stream {stream_id!r} on this server; open one with "
        "POST /v1/models/{name}/streams (GET /v1/streams lists the open ones)"
    )


def check_owned(caller: Principal | None, owned: int) -> None:
    """429 when ``caller`` holds its ``max_streams`` open streams already."""
    check_count(caller, "max_streams", owned, "open streams")


def check_room(
    counts: dict[str, int], models: Iterable[str], settings: Any, held_total: int | None = None
) -> None:
    """503 with Retry-After when one more stream on each of ``models`` goes past a limit
    (``counts``: open streams per model now; a compare stream counts once per model)."""
    total = sum(counts.values()) if held_total is None else held_total
    models = list(models)
    wait = int(min(settings.stream_idle_timeout_s, 30))
    if total + len(models) > settings.stream_max_total:
        raise TooManyStreams(
            f"the server holds {total} open streams, at most {settings.stream_max_total} "
            "(FRAMECAST_STREAM_MAX_TOTAL); close one (DELETE /v1/streams/{id}) or retry "
            "when an idle one expires",
            wait,
        )
    for m in models:
        if counts.get(m, 0) + 1 > settings.stream_max_per_model:
            raise TooManyStreams(
                f"model {m!r} holds {counts[m]} open streams, at most "
                f"{settings.stream_max_per_model} (FRAMECAST_STREAM_MAX_PER_MODEL); close one "
                "or retry when an idle one expires",
                wait,
            )


class StreamStore:
    """The interface (and the parts every store shares). A store's ``kind`` is "memory",
    "folder" or "redis"; ``shared`` says whether other processes see its streams."""

    kind = "abstract"
    shared = False

    def __init__(self, settings: Any, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.clock = clock
        # this process's holders of one stream: its lock, and how many hold or wait for it
        self._local: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        self._tickets: dict[str, tuple[float, str]] = {}  # a ticket's hash → (until, grant)
        # the models (and pinned versions) of the streams this process stepped last, most
        # recent last: what a frame announces to their batchers before the stream is read
        self._models_of: OrderedDict[str, tuple[tuple[str, str | None], ...]] = OrderedDict()

    # -- the models a stream's next frame goes to, as this process saw them -------------------
    def models_seen(self, stream_id: str) -> tuple[tuple[str, str | None], ...]:
        """The (model, pinned version) of each member of ``stream_id`` when this process last
        stepped it; empty when it never did (a hint: the stream is read before it is used)."""
        return self._models_of.get(stream_id, ())

    def runners_seen(self, runtime: Any, stream_id: str) -> list[Any]:
        """The runners a frame of ``stream_id`` is expected on, as this process last stepped it:
        in a shared store only (a store of this process's own is read at once)."""
        out = []
        for model, pinned in self.models_seen(stream_id) if self.shared else ():
            try:
                out.append(runtime.get(model, pinned))
            except FramecastError:  # unloaded since: the read says what to answer
                return []
        return out

    def saw_models(self, stream_id: str, models: tuple[tuple[str, str | None], ...]) -> None:
        self._models_of[stream_id] = models
        self._models_of.move_to_end(stream_id)
        while len(self._models_of) > max(1, int(self.settings.stream_max_total)):
            self._models_of.popitem(last=False)

    # -- what each store provides -------------------------------------------------------------
    async def create(self, entry: Entry, caller: Principal | None = None) -> None:
        """Add ``entry`` (a new stream or compare stream) unless a limit says no (the server's,
        and the caller's ``max_streams``): the counts and the insert are one step for every
        process sharing the store."""
        raise NotImplementedError

    async def _load(self, stream_id: str) -> Entry | None:
        """The entry as stored now (expired ones ended first), or None."""
        raise NotImplementedError

    async def _load_held(self, stream_id: str) -> Entry | None:
        """What a step reads (a store may leave the window out: :meth:`load_window`)."""
        return await self._load(stream_id)

    async def load_window(self, s: Stream, entry: Entry) -> None:
        """Read ``s``'s window frames when :meth:`_load_held` left them out."""
        return None

    async def peek(self, stream_id: str, caller: Principal | None = None) -> Any:
        """Whether the stream is open (404 or 410 as :meth:`get`), cheaply, and its models
        (``.members``): for the checks and the log line before an upload is read."""
        return await self.get(stream_id, caller=caller)

    async def _why(self, stream_id: str) -> str | None:
        """An ended stream's tombstone (:func:`tomb`), while it is remembered."""
        raise NotImplementedError

    async def _commit(self, held: Entry, new: Entry) -> None:
        """Store ``new`` in place of ``held`` if ``held`` is still what is stored (same
        incarnation, same ``rev``); StreamGone when it ended meanwhile, :class:`Contended` when
        another process wrote it first."""
        raise NotImplementedError

    @asynccontextmanager
    async def exclusive(self, stream_id: str) -> AsyncIterator[None]:
        """Held while one request steps a stream (this process's lock; a store shared by
        several adds its own, or relies on the compare-and-set of :meth:`_commit`)."""
        lock, users = self._local.setdefault(stream_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                self._local.pop(stream_id, None)

    def busy(self, stream_id: str) -> bool:
        """Whether a request of this process holds (or waits for) the stream."""
        return stream_id in self._local

    async def end(self, stream_id: str, why: str) -> bool:
        """End an open stream (``why`` completes "stream X …" in its later 410s; its owner is
        kept with it)."""
        raise NotImplementedError

    async def entries(self) -> list[Entry]:
        """Every open entry (arrays may be left out: :meth:`listing` needs their sizes only)."""
        raise NotImplementedError

    async def close(self) -> None:
        return None

    def describe_store(self) -> str:
        return self.kind

    # -- shared by every store ----------------------------------------------------------------
    def new_id(self) -> str:
        return secrets.token_urlsafe(12)

    async def get(
        self, stream_id: str, *, held: bool = False, caller: Principal | None = None
    ) -> Entry:
        """The open stream (or compare stream) ``stream_id``: 410 when it ended, 404 when
        unknown or not ``caller``'s to see (``held``: as a step reads it)."""
        found = await (self._load_held(stream_id) if held else self._load(stream_id))
        return await self._seen(stream_id, found, caller)

    async def _seen(self, stream_id: str, found: Entry | None, caller: Principal | None) -> Entry:
        """``found`` if ``caller`` may see it; else 410 for an ended stream, 404."""
        if found is not None:
            if sees(caller, found.owner):
                return found
            raise not_found(stream_id)
        ended = await self._why(stream_id)
        if ended is not None:
            why, owner = untomb(ended)
            if sees(caller, owner):
                raise StreamGone(f"stream {stream_id!r} {why}")
        raise not_found(stream_id)

    @asynccontextmanager
    async def hold(self, stream_id: str) -> AsyncIterator[Entry]:
        """The stream, held: posts to one stream wait here for each other (in every process
        sharing the store). The holder changes the copy it is given; when it leaves without
        an error that copy is stored, whole, as the stream's next revision (a holder that
        raised leaves the stream as it was)."""
        async with self.exclusive(stream_id):
            held = await self._read_held(stream_id)
            try:
                if self.clock() - held.touched > held.idle_timeout_s:  # nobody steps it: ours
                    why = expired_why(held.idle_timeout_s, how_to_reopen(held))
                    await self._let_go(held)
                    await self.end(stream_id, why)
                    raise StreamGone(f"stream {stream_id!r} {why}")
                work = held.copy()
                yield work
                work.rev = held.rev + 1
                await self._commit(held, work)
            finally:
                await self._let_go(held)

    async def _read_held(self, stream_id: str) -> Entry:
        """What :meth:`hold` reads (a store may keep what it needs for the write with it until
        :meth:`_commit` or :meth:`_let_go`)."""
        return await self.get(stream_id, held=True)

    async def _let_go(self, held: Entry) -> None:
        """The hold of ``held`` ends (written or not): what :meth:`_read_held` kept goes."""
        return None

    async def listing(self, caller: Principal | None = None) -> list[dict]:
        """The open streams ``caller`` may see."""
        now = self.clock()
        return [e.info(now) for e in await self.entries() if sees(caller, e.owner)]

    # -- WebSocket tickets (this process's memory here; the shared stores keep them shared) ---
    async def put_ticket(self, key: str, grant: str, ttl_s: float, most: int) -> None:
        """Keep ``grant`` under ``key`` (a ticket's hash) for ``ttl_s`` seconds; 503 when
        ``most`` tickets wait already."""
        tickets = self._tickets
        now = time.monotonic()
        if len(tickets) >= most:
            for k, (until, _) in list(tickets.items()):
                if until < now:
                    del tickets[k]
            if len(tickets) >= most:
                raise too_many_tickets(most)
        tickets[key] = (now + ttl_s, grant)

    async def take_ticket(self, key: str) -> str | None:
        """The grant kept under ``key``, once (None: used, expired or never issued)."""
        got = self._tickets.pop(key, None)
        if got is None or got[0] < time.monotonic():
            return None
        return got[1]

    async def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in await self.entries():
            for m in e.members:
                counts[m] = counts.get(m, 0) + 1
        return counts


def too_many_tickets(most: int) -> Overloaded:
    return Overloaded(
        f"{most} WebSocket tickets wait to be used, the limit (FRAMECAST_WS_TICKETS_MAX); "
        "retry shortly"
    )


def restarted(stream_id: str) -> StreamConflict:
    return StreamConflict(
        f"stream {stream_id!r} was ended or started again while this request was applied to "
        "it; nothing of this request was kept (GET the stream for where it stands)"
    )


class MemoryStore(StreamStore):
    """The stream table in this process's memory (the embedded default: nothing to start).
    Idle streams are swept on every operation (a stream being stepped is never expired under
    it); ended ids are remembered, up to FRAMECAST_STREAM_ENDED_KEPT of them."""

    kind = "memory"

    def __init__(self, settings: Any, clock: Callable[[], float] = time.time):
        super().__init__(settings, clock)
        self._open: dict[str, Entry] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()  # id → its tombstone

    def _mark(self, stream_id: str, why: str) -> None:
        self._ended[stream_id] = why
        self._ended.move_to_end(stream_id)
        while len(self._ended) > self.settings.stream_ended_kept:
            self._ended.popitem(last=False)

    def _end_now(self, stream_id: str, why: str) -> bool:
        gone = self._open.pop(stream_id, None)
        if gone is None:
            return False
        self._mark(stream_id, tomb(why, gone.owner))
        return True

    def sweep(self) -> None:
        now = self.clock()
        for sid, e in list(self._open.items()):
            if self.busy(sid):
                continue
            if now - e.touched > e.idle_timeout_s:
                self._end_now(sid, expired_why(e.idle_timeout_s, how_to_reopen(e)))

    async def create(self, entry: Entry, caller: Principal | None = None) -> None:
        self.sweep()
        if entry.id in self._open:
            raise StreamConflict(f"a stream {entry.id!r} is open already")
        if caller is not None and caller.limits.max_streams is not None:
            check_owned(caller, sum(e.owner == caller.id for e in self._open.values()))
        check_room(await self.counts(), entry.members, self.settings)
        self._open[entry.id] = entry  # no await between the counts and this: one step
        self._ended.pop(entry.id, None)

    async def _load(self, stream_id: str) -> Entry | None:
        self.sweep()
        return self._open.get(stream_id)

    async def _why(self, stream_id: str) -> str | None:
        return self._ended.get(stream_id)

    async def _commit(self, held: Entry, new: Entry) -> None:
        now = self._open.get(held.id)
        if now is None or now.incarnation != held.incarnation:
            raise restarted(held.id)
        if now.rev != held.rev:
            raise Contended(held.id)
        self._open[held.id] = new

    async def end(self, stream_id: str, why: str) -> bool:
        return self._end_now(stream_id, why)

    async def entries(self) -> list[Entry]:
        self.sweep()
        return list(self._open.values())
