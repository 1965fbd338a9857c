"""The stream table in a folder that several server processes share (``--workers N``).

Set ``FRAMECAST_STREAM_DIR`` (``framecast serve --workers N`` makes one under ``/dev/shm`` for its
workers and removes it when it stops): every stream is two files there, its description
(``<key>.json``) and its arrays (``<key>.npz``: window frames, recurrent states, the expected
frame; numpy's format, never pickled), written atomically (a temporary file, then ``rename``).
A request holds the stream's lock file (``flock``, taken in a thread so the event loop goes on)
while it loads, advances and writes the stream back, so posts to one stream are applied one after
the other whichever process they reach, and a stream continues on any worker a new connection
lands on. ``<key>`` is a hash of the id, so no id (V2 sequence ids are the client's) names a path.

What survives: a worker's restart (the files stay with the folder; the new worker serves them at
once). Not a restart of the whole server: the supervisor removes its folder, as an in-process
table is lost (point ``FRAMECAST_STREAM_DIR`` at a folder of your own to keep it, e.g. across a
rolling restart of the supervisor). A stream remembers its model's checkpoint (sha256): a worker
serving another checkpoint under that name ends it, as a swap does in one process.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import io
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from service.streams.store import Group, Stream, StreamStore

FIELDS = (
    "id", "model", "mode", "needs", "keeps", "frame_bytes", "state_bytes", "created", "touched",
    "group", "step",
)  # fmt: skip
SWEEP_EVERY_S = 1.0  # a full scan of the folder at most this often (stat calls only)


def make_stream_dir() -> str:
    """A new, private folder for the stream table of the processes about to start (in memory,
    /dev/shm, where there is one); whoever makes it removes it when they stop."""
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    return tempfile.mkdtemp(prefix="framecast-streams-", dir=shm)


def _key(stream_id: str) -> str:
    return hashlib.sha256(stream_id.encode()).hexdigest()[:40]


def _sha(runner: Any) -> str | None:
    return getattr(getattr(runner, "manifest", None), "sha256", None)


def _dump(s: Stream, prefix: str, arrays: dict[str, np.ndarray]) -> dict:
    meta = {f: getattr(s, f) for f in FIELDS}
    meta["sha256"] = s.model_sha
    meta["window"] = len(s.window)
    meta["states"] = None if s.states is None else len(s.states)
    meta["expected"] = s.expected is not None
    for i, f in enumerate(s.window):
        arrays[f"{prefix}w{i}"] = f
    for k, a in enumerate(s.states or ()):
        arrays[f"{prefix}s{k}"] = a
    if s.expected is not None:
        arrays[f"{prefix}e"] = s.expected
    return meta


def _restore(meta: dict, prefix: str, arrays: Any, served: dict[str, Any]) -> Stream:
    runner = served.get(meta["model"])
    s = Stream(runner=runner, **{f: meta[f] for f in FIELDS})
    s.window = [arrays[f"{prefix}w{i}"] for i in range(meta["window"])]
    if meta["states"] is not None:
        s.states = [arrays[f"{prefix}s{k}"] for k in range(meta["states"])]
    s.expected = arrays[f"{prefix}e"] if meta["expected"] else None
    s.model_sha = meta["sha256"]
    return s


def _write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SharedStreamStore(StreamStore):
    """:class:`StreamStore` whose table is the folder ``root`` (see the module's docstring)."""

    def __init__(
        self,
        settings: Any,
        served: Callable[[], dict[str, Any]],
        root: Path,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(settings, served, clock)
        self.root = Path(root)
        (self.root / "ended").mkdir(parents=True, exist_ok=True)
        self._local: dict[str, asyncio.Lock] = {}  # this process's holders of one stream
        self._swept = 0.0

    # -- files -----------------------------------------------------------------------------
    def _paths(self, stream_id: str) -> tuple[Path, Path, Path]:
        k = _key(stream_id)
        return self.root / f"{k}.json", self.root / f"{k}.npz", self.root / f"{k}.lock"

    def _load(self, stream_id: str) -> Stream | Group | None:
        meta_path, arrays_path, _ = self._paths(stream_id)
        try:
            meta = json.loads(meta_path.read_text())
            with np.load(arrays_path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (FileNotFoundError, ValueError, OSError):
            return None  # not there (or being replaced: the holder writes it back whole)
        served = self.served()
        if meta.get("kind") == "group":
            members = {
                m["model"]: _restore(m, f"m{i}_", arrays, served)
                for i, m in enumerate(meta["members"])
            }
            return Group(meta["id"], members, meta["created"], meta["touched"])
        return _restore(meta, "", arrays, served)

    def _save(self, entry: Stream | Group) -> None:
        arrays: dict[str, np.ndarray] = {}
        if isinstance(entry, Group):
            meta: dict = {
                "kind": "group",
                "id": entry.id,
                "created": entry.created,
                "touched": entry.touched,
                "members": [
                    _dump(s, f"m{i}_", arrays) for i, s in enumerate(entry.members.values())
                ],
            }
        else:
            meta = {"kind": "stream", **_dump(entry, "", arrays)}
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=False, **arrays)
        meta_path, arrays_path, _ = self._paths(entry.id)
        _write(arrays_path, buf.getvalue())  # arrays first: a description names whole arrays
        _write(meta_path, json.dumps(meta).encode())

    def _remove(self, stream_id: str) -> bool:
        meta_path, arrays_path, lock_path = self._paths(stream_id)
        try:
            meta_path.unlink()
        except FileNotFoundError:
            return False
        arrays_path.unlink(missing_ok=True)
        return True

    def _ids(self) -> list[str]:
        ids = []
        for p in self.root.glob("*.json"):
            try:
                ids.append(json.loads(p.read_text())["id"])
            except (FileNotFoundError, ValueError, KeyError, OSError):
                continue
        return ids

    def _why(self, stream_id: str) -> str | None:
        try:
            return (self.root / "ended" / _key(stream_id)).read_text()
        except FileNotFoundError:
            return None

    def _mark(self, stream_id: str, why: str) -> None:
        _write(self.root / "ended" / _key(stream_id), why.encode())

    def _locked(self, entry: Stream | Group) -> bool:
        """Whether a request (in any process) holds it: a lock we cannot take at once."""
        lock_path = self._paths(entry.id)[2]
        with open(lock_path, "a+b") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False

    def _serves(self, s: Stream, served: dict[str, Any]) -> bool:
        r = served.get(s.model)
        return r is not None and _sha(r) == s.model_sha

    @asynccontextmanager
    async def _hold_lock(self, stream_id: str, entry: Stream | Group) -> AsyncIterator[None]:
        local = self._local.setdefault(stream_id, asyncio.Lock())
        async with local:  # one waiter per process on the file lock; the others queue here
            f = open(self._paths(stream_id)[2], "a+b")  # noqa: SIM115 - closed below
            try:
                await run_in_threadpool(fcntl.flock, f, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
                f.close()

    # -- sweeping, at most once a second ---------------------------------------------------
    def sweep(self) -> None:
        now = time.monotonic()
        if now - self._swept < SWEEP_EVERY_S:
            return
        self._swept = now
        super().sweep()
        ended = sorted((self.root / "ended").iterdir(), key=lambda p: p.stat().st_mtime)
        for p in ended[: max(0, len(ended) - self.settings.stream_ended_kept)]:
            p.unlink(missing_ok=True)  # forgotten: its lock file goes too, long unused
            if not (self.root / f"{p.name}.json").exists():
                (self.root / f"{p.name}.lock").unlink(missing_ok=True)

    def check_room(self, models: list[str]) -> None:
        self._swept = 0.0  # limits count what is open now
        super().check_room(models)
