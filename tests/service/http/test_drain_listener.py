"""The end of a drain (service/http/drain.py): a listening socket stops taking new connections
before it closes, and its accept queue can be read, so that nothing a client sent into it is
reset. The drain as a whole, under load, is tests/service/cli/test_workers.py."""

from __future__ import annotations

import socket
import sys

import pytest

from service.http.drain import queued_connections, refuse_new_connections

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sockets")


def test_a_filtered_listener_completes_no_new_connection_and_keeps_its_queue():
    with socket.socket() as lsn:
        lsn.bind(("127.0.0.1", 0))
        lsn.listen(16)
        assert queued_connections(lsn) == 0
        first = socket.create_connection(lsn.getsockname(), timeout=2)  # queued, not accepted
        assert queued_connections(lsn) == 1
        assert refuse_new_connections(lsn)
        with pytest.raises(TimeoutError):  # its SYN is dropped: never queued, never reset
            socket.create_connection(lsn.getsockname(), timeout=0.3)
        assert queued_connections(lsn) == 1
        conn, _ = lsn.accept()  # what was queued before is still there, whole
        assert queued_connections(lsn) == 0
        first.sendall(b"request")
        assert conn.recv(16) == b"request"
        conn.close()
        first.close()


def test_an_unfiltered_listener_queues_every_connection():  # the test above could fail
    with socket.socket() as lsn:
        lsn.bind(("127.0.0.1", 0))
        lsn.listen(16)
        clients = [socket.create_connection(lsn.getsockname(), timeout=2) for _ in range(3)]
        assert queued_connections(lsn) == 3
        for c in clients:
            c.close()
