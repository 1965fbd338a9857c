"""What a stream is between two frames: a record any process can load, step and store back.

A :class:`Stream` is one model's view of a video that keeps arriving: how many frames it has
received (``step``), its last ``keeps`` frames (``window``: what a window-mode stream reads again
for every frame, and what any stream replays to rebuild its state on a new model version), the
recurrent ``states`` of a carried-state stream, and the prediction of the frame it expects next
(for the *surprise* of that frame when it comes). A :class:`Group` is a compare stream: one stream
per model, fed the same frames.

A record holds no runner and no lock: it names its model, the version and checkpoint (sha256) it
last stepped on, and the version the client pinned, if any; whoever steps it looks the runner up.
So the state travels with the step, and any process (or Ray replica) can take any stream's next
frame. The stores (``service/streams/store.py`` and beside it) keep records as a JSON description
and named arrays (:func:`describe`, :func:`rebuild`); a snapshot is the same pair in one ``.npz``
(``service/streams/snapshot.py``).

``incarnation`` is drawn when a stream opens and never changes: a stream ended and opened again
under the same id (a V2 ``sequence_start``) is another incarnation, and a request that held the
old one cannot write it back. ``rev`` counts the writes (a store's compare-and-set).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

# the fields of a Stream that its JSON description carries as they are
META = (
    "id", "model", "mode", "needs", "keeps", "frame_bytes", "state_bytes", "created", "touched",
    "idle_timeout_s", "group", "step", "version", "sha256", "pinned", "incarnation", "rev",
    "owner",
)  # fmt: skip


def new_incarnation() -> str:
    return secrets.token_hex(8)


@dataclass
class Stream:
    """One model's stream (``mode``: "carry" the recurrent state, or keep a "window")."""

    id: str
    model: str
    mode: str  # "carry" | "window"
    needs: int  # frames received before the first prediction (the model's context)
    keeps: int  # frames kept in the window (the context: replayed on a new version)
    frame_bytes: int  # one float32 frame at the model's size
    state_bytes: int  # the recurrent states ("carry" mode; 0 in a window)
    created: float
    touched: float
    idle_timeout_s: float  # it expires after this long without a frame
    frame_shape: tuple[int, int, int] = (0, 0, 0)  # (H, W, C) of the model it was opened on
    state_shapes: list[tuple[int, ...]] = field(default_factory=list)  # carry mode
    group: str | None = None  # the compare stream it belongs to
    version: int = 1  # the model version it last stepped on
    sha256: str | None = None  # that version's checkpoint
    pinned: str | None = None  # the version (number or label) the client asked for, if any
    incarnation: str = field(default_factory=new_incarnation)
    rev: int = 0  # writes so far (compare-and-set)
    owner: str | None = None  # the key that opened it, when keys are on
    step: int = 0  # frames received so far
    window: list[np.ndarray] = field(default_factory=list)  # the last `keeps` frames
    states: list[np.ndarray] | None = None  # carry mode, once a frame was read
    expected: np.ndarray | None = None  # the prediction of the next frame, (H, W, C)
    last: dict | None = None  # the last post sent with step=: its answer, for a retry
    held: int | None = field(default=None, repr=False)  # read from a description alone
    # False when a store left the window out (a carried stream steps without it; the store
    # reads it when a replay or a snapshot needs it, and writes only the frames new to it)
    window_loaded: bool = field(default=True, repr=False)

    @property
    def window_len(self) -> int:
        return len(self.window) if self.window_loaded else min(self.step, self.keeps)

    @property
    def held_bytes(self) -> int:
        if self.held is not None:
            return self.held
        held = self.window_len * self.frame_bytes
        held += 0 if self.expected is None else self.expected.nbytes
        return held + sum(s.nbytes for s in self.states or ())

    @property
    def most_bytes(self) -> int:
        """The most this stream can hold: a full window, its states, and one prediction."""
        return most_bytes(self.keeps, self.frame_bytes, self.state_bytes)

    @property
    def members(self) -> dict[str, Stream]:
        return {self.model: self}

    def info(self, now: float) -> dict:
        idle = now - self.touched
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "mode": self.mode,
            "step": self.step,
            "needs": max(0, self.needs - self.step),
            "context": self.needs,
            "window": self.keeps if self.mode == "window" else None,
            "idle_s": round(idle, 3),
            "idle_timeout_s": self.idle_timeout_s,
            "expires_in_s": round(max(0.0, self.idle_timeout_s - idle), 3),
            "memory_bytes": self.held_bytes,
            "max_memory_bytes": self.most_bytes,
            "group": self.group,
        }

    def copy(self) -> Stream:
        """A copy to step (arrays shared: stepping replaces them, never writes into them)."""
        return replace(self, window=list(self.window))


def most_bytes(keeps: int, frame_bytes: int, state_bytes: int) -> int:
    return keeps * frame_bytes + state_bytes + frame_bytes


@dataclass
class Group:
    """A compare stream: the same frames to every member, answered side by side."""

    id: str
    members: dict[str, Stream]  # model name → its stream
    created: float
    touched: float
    idle_timeout_s: float
    incarnation: str = field(default_factory=new_incarnation)
    rev: int = 0
    owner: str | None = None

    @property
    def step(self) -> int:
        return min(s.step for s in self.members.values())

    @property
    def last(self) -> dict | None:
        return next(iter(self.members.values())).last

    @property
    def held_bytes(self) -> int:
        return sum(s.held_bytes for s in self.members.values())

    def info(self, now: float) -> dict:
        idle = now - self.touched
        return {
            "id": self.id,
            "models": list(self.members),
            "step": self.step,
            "idle_s": round(idle, 3),
            "idle_timeout_s": self.idle_timeout_s,
            "expires_in_s": round(max(0.0, self.idle_timeout_s - idle), 3),
            "memory_bytes": self.held_bytes,
            "streams": [s.info(now) for s in self.members.values()],
        }

    def copy(self) -> Group:
        return replace(self, members={k: s.copy() for k, s in self.members.items()})


Entry = Stream | Group


def touch(entry: Entry, now: float) -> None:
    entry.touched = now
    if isinstance(entry, Group):
        for s in entry.members.values():
            s.touched = now


# ------------------------------------------------------------------ records as JSON + arrays


def _stream_meta(s: Stream, prefix: str, arrays: dict[str, np.ndarray]) -> dict:
    meta: dict[str, Any] = {f: getattr(s, f) for f in META}
    meta["frame_shape"] = list(s.frame_shape)
    meta["state_shapes"] = [list(x) for x in s.state_shapes]
    meta["window"] = len(s.window)
    meta["states"] = None if s.states is None else len(s.states)
    meta["expected"] = s.expected is not None
    meta["held_bytes"] = s.held_bytes
    meta["last"] = None
    if s.last is not None:
        meta["last"] = {k: v for k, v in s.last.items() if k != "answer"}
        arrays[f"{prefix}answer"] = np.frombuffer(s.last["answer"], np.uint8)
    for i, f in enumerate(s.window):
        arrays[f"{prefix}w{i}"] = f
    for k, a in enumerate(s.states or ()):
        arrays[f"{prefix}s{k}"] = a
    if s.expected is not None:
        arrays[f"{prefix}e"] = s.expected
    return meta


def _stream_of(meta: dict, prefix: str, arrays: Any) -> Stream:
    s = Stream(**{f: meta[f] for f in META})
    s.frame_shape = tuple(meta["frame_shape"])
    s.state_shapes = [tuple(x) for x in meta["state_shapes"]]
    if arrays is None:  # the description alone (listings, counts): never stored back
        s.held = meta["held_bytes"]
        return s
    s.window = [np.asarray(arrays[f"{prefix}w{i}"]) for i in range(meta["window"])]
    if meta["states"] is not None:
        s.states = [np.asarray(arrays[f"{prefix}s{k}"]) for k in range(meta["states"])]
    s.expected = np.asarray(arrays[f"{prefix}e"]) if meta["expected"] else None
    if meta.get("last") is not None:
        s.last = {**meta["last"], "answer": np.asarray(arrays[f"{prefix}answer"]).tobytes()}
    return s


def describe(entry: Entry) -> tuple[dict, dict[str, np.ndarray]]:
    """An entry as a JSON-able description and its named arrays (numpy's, never pickled)."""
    arrays: dict[str, np.ndarray] = {}
    if isinstance(entry, Group):
        meta: dict[str, Any] = {
            "kind": "group",
            "id": entry.id,
            "created": entry.created,
            "touched": entry.touched,
            "idle_timeout_s": entry.idle_timeout_s,
            "incarnation": entry.incarnation,
            "rev": entry.rev,
            "owner": entry.owner,
            "members": [
                _stream_meta(s, f"m{i}_", arrays) for i, s in enumerate(entry.members.values())
            ],
        }
        return meta, arrays
    return {"kind": "stream", **_stream_meta(entry, "", arrays)}, arrays


def rebuild(meta: dict, arrays: Any = None) -> Entry:
    """The entry :func:`describe` described (``arrays``: a mapping name → array; None: the
    description alone, for a listing)."""
    if meta.get("kind") == "group":
        members = {
            m["model"]: _stream_of(m, f"m{i}_", arrays) for i, m in enumerate(meta["members"])
        }
        return Group(
            meta["id"],
            members,
            meta["created"],
            meta["touched"],
            meta["idle_timeout_s"],
            meta["incarnation"],
            meta["rev"],
            meta.get("owner"),
        )
    return _stream_of(meta, "", arrays)


def models_of(entry: Entry) -> list[str]:
    return list(entry.members)
