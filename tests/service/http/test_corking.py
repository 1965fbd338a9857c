"""A response's head and body in one send() (service/http/corking.py): they leave in one write as
soon as the body is sent, order is kept, nothing is held past its turn, and a streamed body is not
held back.

The unit tests drive :class:`CorkedTransport` over a recording transport on a real event loop;
the protocol tests drive framecast's own uvicorn protocol (``guarded_protocol``) with a recording
transport in place of a socket; the live tests talk to a real server over raw sockets."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.config import Settings
from service.http.connections import guarded_protocol
from service.http.corking import FLUSH_BYTES, CorkedTransport
from tests.service.live import connect, live_server, read_answer


class Recorder(asyncio.Transport):
    """A transport that records each write (one entry per write call) and its closing."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.protocol = None

    def write(self, data) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol) -> None:
        self.protocol = protocol


async def _turn() -> None:
    await asyncio.sleep(0)


def _run(coro):
    return asyncio.run(coro)


def test_a_head_waits_for_its_body_and_both_leave_in_one_write_at_once():
    async def go():
        t = Recorder()
        c = CorkedTransport(t, asyncio.get_running_loop())
        c.write(b"HTTP/1.1 200 OK\r\n\r\n")
        c.write(b"")  # nothing: no write
        assert t.writes == [] and c.get_write_buffer_size() == len(b"HTTP/1.1 200 OK\r\n\r\n")
        c.write(bytearray(b"body"))  # the body: both now, not at the turn's end
        assert t.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        c.write(b"a streamed chunk")  # a lone write goes at the next turn
        assert len(t.writes) == 1
        await _turn()
        assert t.writes[1:] == [b"a streamed chunk"] and c.get_write_buffer_size() == 0
        await _turn()
        assert len(t.writes) == 2  # nothing written twice

    _run(go())


def test_close_writes_what_is_held_first_and_abort_drops_it():
    async def go():
        t = Recorder()
        c = CorkedTransport(t, asyncio.get_running_loop())
        c.write(b"last answer")
        c.close()
        assert t.writes == [b"last answer"] and t.closed
        await _turn()  # the scheduled flush finds nothing more to write
        assert t.writes == [b"last answer"]
        t2 = Recorder()
        c2 = CorkedTransport(t2, asyncio.get_running_loop())
        c2.write(b"never sent")
        c2.abort()
        await _turn()
        assert t2.writes == [] and t2.aborted

    _run(go())


def test_a_large_write_is_not_held_and_a_closing_transport_gets_nothing():
    async def go():
        t = Recorder()
        c = CorkedTransport(t, asyncio.get_running_loop())
        c.write(b"head")
        c.write(b"x" * FLUSH_BYTES)
        assert t.writes == [b"head" + b"x" * FLUSH_BYTES]  # at once, not at the turn's end
        c.write(b"tail")
        t.closed = True  # the client went away meanwhile
        await _turn()
        assert len(t.writes) == 1

    _run(go())


def test_uncorked_gives_the_transport_itself_after_writing_what_is_held():
    async def go():
        t = Recorder()
        c = CorkedTransport(t, asyncio.get_running_loop())
        c.write(b"held")
        assert c.uncorked() is t and t.writes == [b"held"]
        assert c.get_extra_info("peername") == ("127.0.0.1", 5000)  # the rest passes through

    _run(go())


async def _small_app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = scope["path"].encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _drive(settings: Settings, data: bytes, answers: int) -> list[bytes]:
    """framecast's uvicorn protocol on a recording transport, given ``data`` as received; the
    writes it makes until ``answers`` responses are complete."""
    import uvicorn
    from uvicorn.server import ServerState

    async def go():
        config = uvicorn.Config(_small_app, log_level="warning", lifespan="off")
        config.load()
        cls = guarded_protocol(settings)
        proto = cls(config=config, server_state=ServerState(), app_state={})
        t = Recorder()
        proto.connection_made(t)
        proto.data_received(data)
        for _ in range(200):
            if b"".join(t.writes).count(b"HTTP/1.1 200") >= answers:
                break
            await _turn()
        for _ in range(3):
            await _turn()  # anything still held would be written by now
        proto.connection_lost(None)
        return t.writes

    return _run(go())


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def test_the_protocol_writes_a_response_head_and_body_in_one_write():
    writes = _drive(Settings(), _get("/one"), 1)
    assert len(writes) == 1, writes
    assert writes[0].startswith(b"HTTP/1.1 200") and writes[0].endswith(b"\r\n\r\n/one")


def test_with_coalescing_off_uvicorn_writes_head_and_body_apart():
    writes = _drive(Settings(coalesce_writes=False), _get("/one"), 1)
    assert len(writes) == 2, writes
    assert writes[0].startswith(b"HTTP/1.1 200") and writes[1] == b"/one"


def test_pipelined_requests_are_answered_in_order():
    writes = _drive(Settings(), _get("/first") + _get("/second") + _get("/third"), 3)
    sent = b"".join(writes)
    assert sent.count(b"HTTP/1.1 200") == 3
    assert sent.index(b"/first") < sent.index(b"/second") < sent.index(b"/third")


# -- live -----------------------------------------------------------------------------------


def _streaming_app(gate: threading.Event):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first;", "more_body": True})
        # the client answers the first chunk by setting the gate: were the chunk held until
        # the response ended, this would wait for ever
        while not gate.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"second;", "more_body": False})

    return app


def test_a_streamed_chunk_reaches_the_client_before_the_response_ends():
    gate = threading.Event()
    with live_server(_streaming_app(gate), settings=Settings()) as url, connect(url) as s:
        s.sendall(_get("/stream"))
        s.settimeout(10)
        got = b""
        while b"first;" not in got:
            chunk = s.recv(65536)
            assert chunk, got
            got += chunk
        assert b"second;" not in got
        gate.set()
        while b"0\r\n\r\n" not in got:
            chunk = s.recv(65536)
            assert chunk, got
            got += chunk
    assert b"second;" in got


@pytest.mark.parametrize("coalesce", [True, False])
def test_a_live_server_answers_pipelined_requests_in_order(coalesce):
    with live_server(_small_app, settings=Settings(coalesce_writes=coalesce)) as url:
        with connect(url) as s:
            s.sendall(_get("/a") + _get("/b"))
            first, second = read_answer(s), read_answer(s)
            s.sendall(b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            third = read_answer(s)
    assert [first[2], second[2], third[2]] == [b"/a", b"/b", b"/c"]
    assert third[1]["connection"] == "close"
