"""A stream's hash in Redis: its fields (:func:`pack`, :func:`unpack`) and a step's read and write
of them on one connection (:class:`Watch`), two round trips a step.

A step reads its stream and writes it back only if nobody wrote it meanwhile
(``redis_store.py``). The read is ``WATCH`` and ``HMGET`` sent together on a connection the step
keeps from redis-py's pool, and the write is ``MULTI``, the changed fields, ``PEXPIRE`` and
``EXEC`` sent together on the same connection. Redis answers the ``EXEC`` with nil, and writes
nothing, when the key was written, deleted or expired after the ``WATCH``: the compare-and-set of
a WATCH, a check of ``inc`` and ``rev`` and a MULTI/EXEC on a pooled connection, in two round trips
where that takes four (each one costs the server Python work, and on a network its latency).

The connection goes back to the pool when the step ends. A step that ends without writing (an
error, a stream found expired) sends ``UNWATCH`` first, so that the next user of the connection
watches nothing; a connection that failed, timed out or was interrupted is closed, never reused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from service.streams.records import Entry, Group, Stream, describe, rebuild


def member_prefixes(entry: Entry) -> list[tuple[str, Stream]]:
    if isinstance(entry, Group):
        return [(f"m{i}_", m) for i, m in enumerate(entry.members.values())]
    return [("", entry)]


def ring_slot(frame: int, keeps: int) -> int:
    return frame % keeps


def pack(entry: Entry, since: Entry | None = None) -> tuple[dict[str, bytes], list[str], str]:
    """The hash fields of ``entry`` (all of them, or with ``since``: the stored revision it
    steps from, only the window frames new since then), its models and its kind."""
    meta, _ = describe(entry)
    fields: dict[str, bytes] = {"meta": json.dumps(meta).encode()}
    before = dict(member_prefixes(since)) if since is not None else {}
    for p, s in member_prefixes(entry):
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
                slot = ring_slot(number, s.keeps)
                fields[f"a:{p}r{slot}"] = np.ascontiguousarray(frame).tobytes()
    fields["inc"] = entry.incarnation.encode()
    fields["rev"] = str(entry.rev).encode()
    models = list(entry.members)
    fields["models"] = "\t".join(models).encode()
    fields["owner"] = (entry.owner or "").encode()
    kind = "g" if isinstance(entry, Group) else "s"
    fields["kind"] = kind.encode()
    return fields, models, kind


ARRAYS = ("states", "e", "answer")  # a stream's array fields besides its window frames


def stale_fields(entry: Entry, fields: dict[str, bytes]) -> list[str]:
    """Fields a stored revision may hold that ``entry`` no longer has (states after a switch to
    a window, a retry's answer)."""
    out = []
    for p, _ in member_prefixes(entry):
        out += [f"a:{p}{k}" for k in ARRAYS if f"a:{p}{k}" not in fields]
    return out


def unpack(fields: dict, arrays: bool = True) -> Entry:
    """The entry of a hash's fields (``fields``: name → bytes; window frames where present)."""
    meta = json.loads(fields["meta"])
    entry = rebuild(meta)
    if not arrays:
        return entry
    metas = meta["members"] if isinstance(entry, Group) else [meta]
    for (p, s), m in zip(member_prefixes(entry), metas):
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
        frames = [fields.get(f"a:{p}r{ring_slot(f, s.keeps)}") for f in range(s.step - n, s.step)]
        kept = [f for f in frames if f is not None]
        if len(kept) == len(frames):
            s.window = [np.frombuffer(f, np.float32).reshape(h, w, c) for f in kept]
        else:
            s.window, s.window_loaded = [], False
    return entry


def flat(fields: dict[str, bytes]) -> list:
    out: list = []
    for k, v in fields.items():
        out += [k, v]
    return out


class Watch:
    """One step's connection (taken by :meth:`read`, given back by :meth:`write` or
    :meth:`release`, closed by :meth:`broken`)."""

    def __init__(self, pool: Any):
        self.pool = pool
        self.conn: Any = None

    async def read(self, key: str, names: Sequence[str]) -> list:
        """WATCH ``key`` and read its fields ``names`` (None for each one missing): one round
        trip."""
        self.conn = conn = await self.pool.get_connection()
        await conn.send_packed_command(conn.pack_commands([("WATCH", key), ("HMGET", key, *names)]))
        await conn.read_response()
        return await conn.read_response()

    async def read_more(self, key: str, names: Sequence[str]) -> list:
        """More fields of the watched key (a compare stream's members)."""
        conn = self.conn
        await conn.send_packed_command(conn.pack_commands([("HMGET", key, *names)]))
        return await conn.read_response()

    async def write(self, commands: list[tuple]) -> bool:
        """``commands`` in one MULTI/EXEC: True when Redis applied them, False when it refused
        because the watched key changed since :meth:`read` (nothing written). The connection goes
        back to the pool either way (EXEC ends the WATCH)."""
        conn = self.conn
        batch = [("MULTI",), *commands, ("EXEC",)]
        await conn.send_packed_command(conn.pack_commands(batch))
        for _ in batch[:-1]:
            await conn.read_response()  # OK, then QUEUED for each
        applied = await conn.read_response()
        self.conn = None
        await self.pool.release(conn)
        return applied is not None

    async def release(self) -> None:
        """Give the connection back without writing: UNWATCH first (closed if that fails)."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            await conn.send_packed_command(conn.pack_commands([("UNWATCH",)]))
            await conn.read_response()
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        finally:
            await self.pool.release(conn)

    async def broken(self) -> None:
        """Close the connection (its exchange failed or was cut short) and give it back."""
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                await conn.disconnect(nowait=True)
            finally:
                await self.pool.release(conn)
