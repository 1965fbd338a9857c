"""The stream table in a folder that the server processes of one machine share (``--workers N``).

``FRAMECAST_STREAM_STORE=file:///path`` (or ``FRAMECAST_STREAM_DIR=/path``; ``framecast serve
--workers N`` makes one under ``/dev/shm`` for its workers when neither is set, and removes it
when it stops): every stream is two files there, its description (``<key>.json``) and its arrays
(``<key>.npz``: window frames, recurrent states, the expected frame; numpy's format, never
pickled), written atomically (a temporary file, then ``rename``), arrays first. A request holds
the stream's lock file (``flock``, taken in a thread so the event loop goes on) while it loads,
steps and writes the stream back, so posts to one stream are applied one after the other whichever
process they reach; the kernel drops the lock of a process that dies, so a killed worker never
wedges a stream. Opening a stream holds the table's lock (``.table.lock``) while it counts the
open streams and writes the new one, so the limits hold when many open at once. ``<key>`` is a
hash of the id, so no id (V2 sequence ids are the client's) names a path.

What survives: a worker's restart or SIGKILL (the files stay with the folder). Not a restart of the
whole server when the supervisor made the folder (it removes it): point the setting at a folder of
your own to keep it, e.g. across a rolling restart of the supervisor.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from service.auth.principals import Principal
from service.streams.records import Entry, describe, rebuild
from service.streams.store import (
    Contended,
    StreamStore,
    check_owned,
    check_room,
    expired_why,
    how_to_reopen,
    restarted,
    tomb,
    too_many_tickets,
)

SWEEP_EVERY_S = 1.0  # a full scan of the folder at most this often (stat calls only)


def make_stream_dir() -> str:
    """A new, private folder for the stream table of the processes about to start (in memory,
    /dev/shm, where there is one); whoever makes it removes it when they stop."""
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    return tempfile.mkdtemp(prefix="framecast-streams-", dir=shm)


def _key(stream_id: str) -> str:
    return hashlib.sha256(stream_id.encode()).hexdigest()[:40]


def _write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _flocked(path: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold ``flock`` on ``path`` (True), or with ``blocking=False`` say False when another
    holds it."""
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class FolderStore(StreamStore):
    """The stream table in the folder ``root`` (see the module's docstring)."""

    kind = "folder"
    shared = True

    def __init__(self, settings: Any, root: Path, clock: Callable[[], float] = time.time):
        super().__init__(settings, clock)
        self.root = Path(root)
        (self.root / "ended").mkdir(parents=True, exist_ok=True)
        self._swept = 0.0

    def describe_store(self) -> str:
        return f"folder {self.root}"

    # -- files -----------------------------------------------------------------------------
    def _paths(self, stream_id: str) -> tuple[Path, Path, Path]:
        k = _key(stream_id)
        return self.root / f"{k}.json", self.root / f"{k}.npz", self.root / f"{k}.lock"

    def _meta(self, stream_id: str) -> dict | None:
        try:
            return json.loads(self._paths(stream_id)[0].read_text())
        except (FileNotFoundError, ValueError, OSError):
            return None  # not there (or being replaced: the holder writes it back whole)

    def _read(self, stream_id: str) -> Entry | None:
        meta_path, arrays_path, _ = self._paths(stream_id)
        try:
            meta = json.loads(meta_path.read_text())
            with np.load(arrays_path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (FileNotFoundError, ValueError, OSError):
            return None
        return rebuild(meta, arrays)

    def _store(self, entry: Entry) -> None:
        meta, arrays = describe(entry)
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=False, **arrays)
        meta_path, arrays_path, _ = self._paths(entry.id)
        _write(arrays_path, buf.getvalue())  # arrays first: a description names whole arrays
        _write(meta_path, json.dumps(meta).encode())

    def _remove(self, stream_id: str) -> bool:
        meta_path, arrays_path, _ = self._paths(stream_id)
        try:
            meta_path.unlink()
        except FileNotFoundError:
            return False
        arrays_path.unlink(missing_ok=True)
        return True

    def _mark(self, stream_id: str, why: str) -> None:
        _write(self.root / "ended" / _key(stream_id), why.encode())

    def _end_now(self, stream_id: str, why: str) -> bool:
        meta = self._meta(stream_id)
        if not self._remove(stream_id):
            return False
        self._mark(stream_id, tomb(why, (meta or {}).get("owner")))
        return True

    def _metas(self) -> list[dict]:
        metas = []
        for p in self.root.glob("*.json"):
            try:
                metas.append(json.loads(p.read_text()))
            except (FileNotFoundError, ValueError, OSError):
                continue
        return metas

    # -- the interface -----------------------------------------------------------------------
    @asynccontextmanager
    async def exclusive(self, stream_id: str) -> AsyncIterator[None]:
        async with super().exclusive(stream_id):  # one waiter per process on the file lock
            f = open(self._paths(stream_id)[2], "a+b")  # noqa: SIM115 - closed below
            try:
                await run_in_threadpool(fcntl.flock, f, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
                f.close()

    def _sweep(self, force: bool = False) -> None:
        """End the idle streams nobody holds (at most once a second unless ``force``), and
        forget the oldest ended ids past FRAMECAST_STREAM_ENDED_KEPT."""
        now = time.monotonic()
        if not force and now - self._swept < SWEEP_EVERY_S:
            return
        self._swept = now
        clock = self.clock()
        for meta in self._metas():
            if clock - meta["touched"] <= meta["idle_timeout_s"]:
                continue
            sid = meta["id"]
            if self.busy(sid):
                continue
            with _flocked(self._paths(sid)[2], blocking=False) as free:
                if free:
                    entry = rebuild(meta)
                    self._end_now(sid, expired_why(meta["idle_timeout_s"], how_to_reopen(entry)))
        ended = sorted((self.root / "ended").iterdir(), key=lambda p: p.stat().st_mtime)
        for p in ended[: max(0, len(ended) - self.settings.stream_ended_kept)]:
            p.unlink(missing_ok=True)  # forgotten: its lock file goes too, long unused
            if not (self.root / f"{p.name}.json").exists():
                (self.root / f"{p.name}.lock").unlink(missing_ok=True)

    def _create(self, entry: Entry, caller: Principal | None) -> None:
        with _flocked(self.root / ".table.lock"):
            self._sweep(force=True)  # limits count what is open now
            if self._meta(entry.id) is not None:
                from service.errors import StreamConflict

                raise StreamConflict(f"a stream {entry.id!r} is open already")
            counts: dict[str, int] = {}
            metas = self._metas()
            for meta in metas:
                for m in rebuild(meta).members:
                    counts[m] = counts.get(m, 0) + 1
            if caller is not None and caller.limits.max_streams is not None:
                check_owned(caller, sum(m.get("owner") == caller.id for m in metas))
            check_room(counts, entry.members, self.settings)
            (self.root / "ended" / _key(entry.id)).unlink(missing_ok=True)
            self._store(entry)

    async def create(self, entry: Entry, caller: Principal | None = None) -> None:
        await run_in_threadpool(self._create, entry, caller)

    async def _load(self, stream_id: str) -> Entry | None:
        self._sweep()
        return self._read(stream_id)

    async def _why(self, stream_id: str) -> str | None:
        try:
            return (self.root / "ended" / _key(stream_id)).read_text()
        except FileNotFoundError:
            return None

    async def _commit(self, held: Entry, new: Entry) -> None:
        now = self._meta(held.id)  # under the stream's lock: nobody else writes it
        if now is None or now["incarnation"] != held.incarnation:
            raise restarted(held.id)
        if now["rev"] != held.rev:
            raise Contended(held.id)
        self._store(new)

    async def end(self, stream_id: str, why: str) -> bool:
        return self._end_now(stream_id, why)

    async def entries(self) -> list[Entry]:
        self._sweep()
        return [rebuild(m) for m in self._metas()]

    # -- WebSocket tickets: one file each; taking one is a rename, which one process wins ----
    def _put_ticket(self, key: str, grant: str, ttl_s: float, most: int) -> None:
        folder = self.root / "tickets"
        folder.mkdir(exist_ok=True)
        held = list(folder.iterdir())
        if len(held) >= most:
            now = self.clock()
            for p in held:
                try:
                    if json.loads(p.read_text())["until"] < now:
                        p.unlink(missing_ok=True)
                except (OSError, ValueError, KeyError):
                    continue
            if len(list(folder.iterdir())) >= most:
                raise too_many_tickets(most)
        _write(folder / key, json.dumps({"until": self.clock() + ttl_s, "grant": grant}).encode())

    def _take_ticket(self, key: str) -> str | None:
        path = self.root / "tickets" / key
        taken = path.with_name(f".taken-{key}-{os.getpid()}-{time.monotonic_ns()}")
        try:
            os.rename(path, taken)  # atomic: of two processes taking it, one finds it gone
        except FileNotFoundError:
            return None
        try:
            held = json.loads(taken.read_text())
        finally:
            taken.unlink(missing_ok=True)
        return str(held["grant"]) if held["until"] >= self.clock() else None

    async def put_ticket(self, key: str, grant: str, ttl_s: float, most: int) -> None:
        await run_in_threadpool(self._put_ticket, key, grant, ttl_s, most)

    async def take_ticket(self, key: str) -> str | None:
        if not all(c in "0123456789abcdef" for c in key):
            return None  # a hash names the file: nothing else may
        return await run_in_threadpool(self._take_ticket, key)
