"""A response's head and body in one ``send()``: the first write waits for the next one.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start`` and its body at ``http.response.body``: two ``send()`` system calls, and
on the wire two segments, for every small answer (a classify result is a few hundred bytes). A
:class:`CorkedTransport` stands between uvicorn's protocol and the socket's transport and holds a
connection's first write (the head) until the next one (the body), then writes both in one call
at once; a write with nothing after it in the same turn of the event loop goes at the start of the
next turn (``loop.call_soon``). So a response leaves as soon as its body is sent, as before, in one
call. Order is kept: every write of the connection goes through it. Past :data:`FLUSH_BYTES` it
writes at once, ``close()`` writes what it holds first, ``abort()`` drops it. A streamed
response's chunks sent over several turns go out each turn, as before. A WebSocket upgrade takes
the transport itself (:meth:`CorkedTransport.uncorked`): its frames are written as they always
were.

``FRAMECAST_COALESCE_WRITES=false`` leaves uvicorn's writes as they are.
"""

from __future__ import annotations

import asyncio
from typing import Any

FLUSH_BYTES = 64 * 1024


class CorkedTransport:
    """``transport`` with a first write held for the next (everything else passes through)."""

    __slots__ = ("_t", "_loop", "_held", "_size", "_scheduled")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._t = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._size = 0
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._held.append(bytes(data) if not isinstance(data, bytes) else data)
        self._size += len(data)
        if len(self._held) > 1 or self._size >= FLUSH_BYTES:  # a head's body came: both go now
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._turn_ended)

    def writelines(self, chunks: Any) -> None:
        for c in chunks:
            self.write(c)

    def _turn_ended(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Write what is held, in one call (nothing when the transport is closing)."""
        if not self._held:
            return
        held = self._held
        data = held[0] if len(held) == 1 else b"".join(held)
        self._held, self._size = [], 0
        if not self._t.is_closing():
            self._t.write(data)

    def uncorked(self) -> asyncio.Transport:
        """The transport itself, what is held written first (a WebSocket upgrade takes it)."""
        self.flush()
        return self._t

    def get_write_buffer_size(self) -> int:
        return self._t.get_write_buffer_size() + self._size

    def close(self) -> None:
        self.flush()
        self._t.close()

    def write_eof(self) -> None:
        self.flush()
        self._t.write_eof()

    def abort(self) -> None:
        self._held, self._size = [], 0
        self._t.abort()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, ...
        return getattr(self._t, name)
