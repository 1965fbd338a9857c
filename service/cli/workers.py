"""`framecast serve --workers N`: N server processes on one port, a supervisor over them.

Each worker is a full framecast server (its own copy of every model, its own batcher and worker
threads) listening on the same ``host:port`` with ``SO_REUSEPORT``: the kernel spreads new
connections over them. Python runs one thread of Python at a time per process, so on a machine
with several cores the HTTP front end (parsing, decoding, encoding) of one process saturates a
core while the others idle; workers use them. Worker ``i`` gets ``FRAMECAST_WORKER_INDEX=i``
and, with several GPUs, serves on GPU ``i mod n`` (``service/runtime/devices.py``).

The supervisor:

- **restarts a worker that dies by a signal** (SIGKILL, a segfault, the OOM killer), or that
  exits 0 without being asked (a SIGTERM sent to it alone: a rolling restart): the others
  keep answering meanwhile (the kernel stops sending connections to a closed socket), and only
  the dead worker's requests in flight are lost. At most FRAMECAST_WORKER_RESTARTS restarts in
  any minute; past that it stops everything and exits 1 (a worker that dies at once every time
  would loop for ever).
- **stops everything when a worker exits with an error of its own** (exit 1: it could not serve
  any model; 2: bad settings): every worker would meet the same cause.
- **shares one stream table** among the workers (``FRAMECAST_STREAM_DIR``, a folder it makes
  under /dev/shm when unset and removes at the end: ``service/streams/shared.py``), so a live
  stream goes on whichever worker a new connection reaches, and across a worker's restart.
- **forwards SIGTERM/SIGINT**: each worker drains (new requests 503, those in flight answered,
  at most FRAMECAST_SHUTDOWN_GRACE_S: service/http/drain.py) and exits; a worker still there
  after the grace and 10 s more is killed.

Each event is one line on the ``framecast`` logger.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque

from service.config import Settings
from service.streams.shared import make_stream_dir

log = logging.getLogger("framecast")

RESTART_WINDOW_S = 60.0
KILL_AFTER_GRACE_S = 10.0


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class Supervisor:
    def __init__(self, settings: Settings):
        self.settings = settings
        grpc = (
            {} if settings.grpc_port is None else {"FRAMECAST_GRPC_PORT": str(settings.grpc_port)}
        )
        self.env = {
            **os.environ,
            **grpc,
            "FRAMECAST_HOST": settings.host,
            "FRAMECAST_PORT": str(settings.port),
            "FRAMECAST_MODELS_DIR": str(settings.models_dir),
            "FRAMECAST_LOG_LEVEL": settings.log_level,
            "FRAMECAST_WORKERS": "1",
            "FRAMECAST_WORKER_COUNT": str(settings.workers),  # FRAMECAST_CPU_THREADS=auto's share
            "FRAMECAST_REUSE_PORT": "1",  # HTTP's port, and gRPC's (--grpc-port) when set
        }
        self.stream_dir: str | None = None  # made here (and removed at the end) when unset
        if settings.stream_dir is None:
            self.stream_dir = make_stream_dir()
        self.env["FRAMECAST_STREAM_DIR"] = str(settings.stream_dir or self.stream_dir)
        self.procs: list[subprocess.Popen] = []
        self.restarts: deque[float] = deque()
        self.stopping_since: float | None = None
        self.status = 0

    def spawn(self, i: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"],
            env={**self.env, "FRAMECAST_WORKER_INDEX": str(i)},
        )

    def stop(self, signum: int = signal.SIGTERM, frame: object = None) -> None:
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    def check(self, i: int, p: subprocess.Popen) -> None:
        code = p.poll()
        if code is None or self.stopping_since is not None:
            return
        if code > 0:  # its own decision (nothing to serve, bad settings): all would meet it
            log.error(
                "worker %d (pid %d) %s: stopping the other workers", i, p.pid, _describe(code)
            )
            self.status = code or 1
            self.stop()
            return
        now = time.monotonic()
        while self.restarts and now - self.restarts[0] > RESTART_WINDOW_S:
            self.restarts.popleft()
        limit = self.settings.worker_restarts
        if len(self.restarts) >= limit:
            log.error(
                "worker %d (pid %d) %s; %d restart(s) in the last %.0f s already "
                "(FRAMECAST_WORKER_RESTARTS=%d): stopping",
                i, p.pid, _describe(code), len(self.restarts), RESTART_WINDOW_S, limit,
            )  # fmt: skip
            self.status = 1
            self.stop()
            return
        self.restarts.append(now)
        self.procs[i] = self.spawn(i)
        log.warning(
            "worker %d (pid %d) %s; started it again as pid %d (restart %d of at most %d a "
            "minute); the other workers go on serving",
            i, p.pid, _describe(code), self.procs[i].pid, len(self.restarts), limit,
        )  # fmt: skip

    def run(self) -> int:
        self.procs = [self.spawn(i) for i in range(self.settings.workers)]
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        kill_at = self.settings.shutdown_grace_s + KILL_AFTER_GRACE_S
        while self.stopping_since is None or any(p.poll() is None for p in self.procs):
            for i, p in enumerate(self.procs):
                self.check(i, p)
            if self.stopping_since is not None and time.monotonic() - self.stopping_since > kill_at:
                for p in self.procs:
                    if p.poll() is None:
                        log.error("worker pid %d still running %.0f s after SIGTERM: killed",
                                  p.pid, kill_at)  # fmt: skip
                        p.kill()
            time.sleep(0.2)
        return self.status


def run_workers(settings: Settings) -> int:
    """Start ``settings.workers`` workers and supervise them; 0 after SIGTERM, else the cause."""
    from service.http.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    sup = Supervisor(settings)
    try:
        return sup.run()
    finally:
        if sup.stream_dir is not None:  # the live streams end with the server
            shutil.rmtree(sup.stream_dir, ignore_errors=True)
