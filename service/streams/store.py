"""The stream table of one process: open streams, their limits and lifetimes.

A :class:`Stream` is one model's view of a video that keeps arriving: how many frames it has
received (``step``), what it keeps between frames (the recurrent ``states`` of a carried-state
model, or the ``window`` of its last frames) and the prediction of the frame it expects next (for
the *surprise* of that frame when it comes). A :class:`Group` is a compare stream: one stream per
model, fed the same frames.

:class:`StreamStore` holds them in this process (the embedded default), enforces the settings
(open streams per model and in all, idle timeout, memory per stream), and remembers why an ended
stream ended (expired, deleted, model unloaded or swapped) so that it answers 410 with that reason.
Every operation first sweeps: an idle stream past its timeout, or one whose model is no longer the
one it was opened on, ends there, so neither counts against a limit.

No model is called here; ``service/streams/stepping.py`` advances a stream.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.errors import StreamGone, StreamNotFound, TooManyStreams

HOW_TO_OPEN = "open a new one with POST /v1/models/{model}/streams"


@dataclass
class Stream:
    """One model's stream (``mode``: "carry" the recurrent state, or keep a "window")."""

    id: str
    model: str
    runner: Any  # the runner it was opened on: once another serves the name, the stream ends
    mode: str  # "carry" | "window"
    needs: int  # frames received before the first prediction (the model's context)
    keeps: int  # frames kept in the window ("window" mode; 0 when carrying)
    frame_bytes: int  # one float32 frame at the model's size
    state_bytes: int  # the recurrent states ("carry" mode; 0 in a window)
    created: float
    touched: float
    group: str | None = None  # the compare stream it belongs to
    model_sha: str | None = None  # the checkpoint it was opened on (a process sharing the
    # store that serves another checkpoint under the name ends it)
    step: int = 0  # frames received so far
    window: list[np.ndarray] = field(default_factory=list)
    states: list[np.ndarray] | None = None
    expected: np.ndarray | None = None  # the prediction of the next frame, (H, W, C)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def held_bytes(self) -> int:
        held = sum(f.nbytes for f in self.window) + (
            0 if self.expected is None else self.expected.nbytes
        )
        return held + sum(s.nbytes for s in self.states or ())

    @property
    def most_bytes(self) -> int:
        """The most this stream can hold: a full window or its states, and one prediction."""
        return self.keeps * self.frame_bytes + self.state_bytes + self.frame_bytes

    def info(self, now: float, idle_timeout_s: float) -> dict:
        idle = now - self.touched
        return {
            "id": self.id,
            "model": self.model,
            "mode": self.mode,
            "step": self.step,
            "needs": max(0, self.needs - self.step),
            "context": self.needs,
            "window": self.keeps or None,
            "idle_s": round(idle, 3),
            "expires_in_s": round(max(0.0, idle_timeout_s - idle), 3),
            "memory_bytes": self.held_bytes,
            "max_memory_bytes": self.most_bytes,
            "group": self.group,
        }


@dataclass
class Group:
    """A compare stream: the same frames to every member, answered side by side."""

    id: str
    members: dict[str, Stream]  # model name → its stream
    created: float
    touched: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def step(self) -> int:
        return min(s.step for s in self.members.values())

    def info(self, now: float, idle_timeout_s: float) -> dict:
        idle = now - self.touched
        return {
            "id": self.id,
            "models": list(self.members),
            "step": self.step,
            "idle_s": round(idle, 3),
            "expires_in_s": round(max(0.0, idle_timeout_s - idle), 3),
            "memory_bytes": sum(s.held_bytes for s in self.members.values()),
            "streams": [s.info(now, idle_timeout_s) for s in self.members.values()],
        }


class StreamStore:
    """The open streams of this process, within the limits of ``settings``.

    ``served()`` gives the runners served now (name → runner): a stream whose model is no longer
    served by the runner it was opened on has ended (unloaded or swapped). Storage is a dict
    here; :class:`service.streams.shared.SharedStreamStore` keeps the same table in a folder
    that several processes share (``--workers``), through the same primitives (``_load``,
    ``_save``, ``_remove``, ``_ids``, ``_why``, ``_mark``, ``_locked``, ``_hold_lock``)."""

    def __init__(
        self,
        settings: Any,
        served: Callable[[], dict[str, Any]],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        self.served = served
        self.clock = clock
        self._open: dict[str, Stream | Group] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()  # id → why it ended

    # -- storage (in this process) ----------------------------------------------------------
    def _load(self, stream_id: str) -> Stream | Group | None:
        return self._open.get(stream_id)

    def _save(self, entry: Stream | Group) -> None:
        self._open[entry.id] = entry

    def _remove(self, stream_id: str) -> bool:
        return self._open.pop(stream_id, None) is not None

    def _ids(self) -> list[str]:
        return list(self._open)

    def _why(self, stream_id: str) -> str | None:
        return self._ended.get(stream_id)

    def _mark(self, stream_id: str, why: str) -> None:
        self._ended[stream_id] = why
        self._ended.move_to_end(stream_id)
        while len(self._ended) > self.settings.stream_ended_kept:
            self._ended.popitem(last=False)

    def _locked(self, entry: Stream | Group) -> bool:
        members = entry.members.values() if isinstance(entry, Group) else (entry,)
        return entry.lock.locked() or any(s.lock.locked() for s in members)

    def _serves(self, s: Stream, served: dict[str, Any]) -> bool:
        return served.get(s.model) is s.runner

    @asynccontextmanager
    async def _hold_lock(self, stream_id: str, entry: Stream | Group) -> AsyncIterator[None]:
        async with entry.lock:
            yield

    # -- reading ---------------------------------------------------------------------------
    def entries(self) -> Iterator[Stream | Group]:
        for sid in self._ids():
            entry = self._load(sid)
            if entry is not None:
                yield entry

    def streams(self) -> Iterator[Stream]:
        for s in self.entries():
            yield from (s.members.values() if isinstance(s, Group) else (s,))

    def get(self, stream_id: str) -> Stream | Group:
        """The open stream (or compare stream) ``stream_id``: 410 when it ended, 404 when
        unknown."""
        self.sweep()
        found = self._load(stream_id)
        if found is not None:
            return found
        why = self._why(stream_id)
        if why is not None:
            raise StreamGone(f"stream {stream_id!r} {why}")
        raise StreamNotFound(
            f"no stream {stream_id!r} on this server; open one with "
            "POST /v1/models/{name}/streams (GET /v1/streams lists the open ones)"
        )

    @asynccontextmanager
    async def hold(self, stream_id: str) -> AsyncIterator[Stream | Group]:
        """The stream, held: posts to one stream wait here for each other, in every process
        sharing the store; what the holder changed is kept when it leaves (unless it ended)."""
        entry = self.get(stream_id)
        async with self._hold_lock(stream_id, entry):
            entry = self.get(stream_id)  # still open once our turn came, as stored now
            try:
                yield entry
            finally:
                if stream_id in self._ids():
                    self._save(entry)

    def listing(self) -> list[dict]:
        self.sweep()
        now, idle = self.clock(), self.settings.stream_idle_timeout_s
        return [s.info(now, idle) for s in self.entries()]

    # -- opening and ending ----------------------------------------------------------------
    def new_id(self) -> str:
        return secrets.token_urlsafe(12)

    def check_room(self, models: list[str]) -> None:
        """503 with Retry-After when opening one stream on each of ``models`` goes past a limit."""
        self.sweep()
        s = self.settings
        counts: dict[str, int] = {}
        for st in self.streams():
            counts[st.model] = counts.get(st.model, 0) + 1
        total = sum(counts.values())
        wait = int(min(s.stream_idle_timeout_s, 30))
        if total + len(models) > s.stream_max_total:
            raise TooManyStreams(
                f"the server holds {total} open streams, at most {s.stream_max_total} "
                "(FRAMECAST_STREAM_MAX_TOTAL); close one (DELETE /v1/streams/{id}) or retry "
                "when an idle one expires",
                wait,
            )
        for m in models:
            if counts.get(m, 0) + 1 > s.stream_max_per_model:
                raise TooManyStreams(
                    f"model {m!r} holds {counts[m]} open streams, at most "
                    f"{s.stream_max_per_model} (FRAMECAST_STREAM_MAX_PER_MODEL); close one "
                    "or retry when an idle one expires",
                    wait,
                )

    def add(self, entry: Stream | Group) -> None:
        self._save(entry)

    def end(self, stream_id: str, why: str) -> bool:
        """End an open stream (``why`` completes "stream X …" in its later 410s)."""
        if not self._remove(stream_id):
            return False
        self._mark(stream_id, why)
        return True

    def touch(self, entry: Stream | Group) -> None:
        entry.touched = self.clock()
        if isinstance(entry, Group):
            for s in entry.members.values():
                s.touched = entry.touched

    def sweep(self) -> None:
        """End the streams past their idle timeout and those whose model was unloaded or
        swapped (a stream being stepped is never expired under it: it was just touched)."""
        now, idle = self.clock(), self.settings.stream_idle_timeout_s
        served = self.served()
        for entry in list(self.entries()):
            members = list(entry.members.values()) if isinstance(entry, Group) else [entry]
            hint = (
                HOW_TO_OPEN.format(model=members[0].model)
                if isinstance(entry, Stream)
                else "open a new one with POST /v1/compare/streams"
            )
            if self._locked(entry):
                continue
            if now - entry.touched > idle:
                self.end(
                    entry.id,
                    f"expired after {idle:g} s without a frame "
                    f"(FRAMECAST_STREAM_IDLE_TIMEOUT_S); {hint}",
                )
                continue
            for s in members:
                if not self._serves(s, served):
                    what = "unloaded" if s.model not in served else "swapped for a new checkpoint"
                    self.end(
                        entry.id, f"ended: model {s.model!r} was {what} after it opened; {hint}"
                    )
                    break
