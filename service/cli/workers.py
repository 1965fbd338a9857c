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
- **lets a restarted worker take connections only once its models are ready**: it is started
  with ``FRAMECAST_LOAD_MODE=blocking``, so its socket is bound at once but listens only after
  the lifespan has loaded and warmed every model (and its gRPC port, with ``--grpc-port``, is
  opened only then too: service/app.py). Linux hands a ``SO_REUSEPORT`` connection only to a
  socket that listens, so meanwhile every new connection reaches the other workers: no client
  sees the restart loading (no 503 ``not_ready``, nothing refused). The first start keeps
  ``FRAMECAST_LOAD_MODE`` as set (background by default: the port answers at once and
  ``/readyz`` says 503 while loading, so a probe can watch the start). Every worker writes
  one byte on a pipe (``FRAMECAST_READY_FD``) once it listens; for a restart the supervisor
  logs ``worker i (pid p) ready after X s, taking connections``.
- **stops everything when a worker exits with an error of its own** (exit 1: it could not serve
  any model; 2: bad settings): at the first start every worker would meet the same cause. A
  *restarted* worker that exits so before it took connections (it could not load: memory
  short, a checkpoint being replaced) while another worker serves is the exception: the
  server goes on with the others, and it is started again after RETRY_FIRST_S, the wait
  doubling after each failed try up to RETRY_MAX_S (not counted against
  FRAMECAST_WORKER_RESTARTS: it cannot loop fast). With no other worker serving, it stops
  everything as at the first start.
- **shares one stream table** among the workers (``FRAMECAST_STREAM_DIR``, a folder it makes
  under /dev/shm when unset and removes at the end: ``service/streams/folder.py``), so a live
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
from dataclasses import dataclass

from service.config import Settings
from service.streams.folder import make_stream_dir

log = logging.getLogger("framecast")

RESTART_WINDOW_S = 60.0
KILL_AFTER_GRACE_S = 10.0
RETRY_FIRST_S = 5.0  # a restart that could not load is tried again after this, doubling...
RETRY_MAX_S = 300.0  # ...up to this


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


@dataclass
class Worker:
    """One worker's process now, and what the supervisor knows of it."""

    proc: subprocess.Popen
    started: float  # time.monotonic() when it was spawned
    restarted: bool  # started again after a death: load_mode=blocking, listens once ready
    ready_fd: int | None  # the read end of its ready pipe, until it says or exits
    retry_s: float = RETRY_FIRST_S  # if this restart cannot load: the wait before the next
    taking: bool = False  # it said it takes connections (its socket listens)
    retry_at: float | None = None  # a restart that could not load: started again at this time

    @property
    def serving(self) -> bool:
        return self.taking and self.retry_at is None and self.proc.poll() is None


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
        if settings.stream_store in (None, "memory"):  # else the workers share that store
            if settings.stream_dir is None:
                self.stream_dir = make_stream_dir()
            self.env["FRAMECAST_STREAM_DIR"] = str(settings.stream_dir or self.stream_dir)
        self.workers: list[Worker] = []
        self.restarts: deque[float] = deque()
        self.stopping_since: float | None = None
        self.status = 0
        self.announced = False  # the addresses were logged (once every worker first listened)

    @property
    def procs(self) -> list[subprocess.Popen]:
        return [w.proc for w in self.workers]

    def spawn(self, i: int, *, restart: bool = False, retry_s: float = RETRY_FIRST_S) -> Worker:
        """Start worker ``i``; a restart loads in blocking mode, so that its socket listens (and
        the kernel hands it connections) only once every model is warm: the other workers
        answer meanwhile. The worker writes one byte on a pipe once it listens
        (FRAMECAST_READY_FD)."""
        read, write = os.pipe()
        env = {**self.env, "FRAMECAST_WORKER_INDEX": str(i), "FRAMECAST_READY_FD": str(write)}
        if restart:
            env["FRAMECAST_LOAD_MODE"] = "blocking"
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve"], env=env, pass_fds=(write,)
            )
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)  # the worker's copy alone: its exit is the pipe's end
        os.set_blocking(read, False)
        return Worker(proc, time.monotonic(), restart, read, retry_s=retry_s)

    def hangup(self, signum: int = signal.SIGHUP, frame: object = None) -> None:
        """SIGHUP to every worker (each reloads the keys file); the supervisor goes on."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGHUP)

    def stop(self, signum: int = signal.SIGTERM, frame: object = None) -> None:
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    def hear(self, i: int) -> None:
        """Read worker ``i``'s ready pipe: one byte once it takes connections, end of file
        when it exited without."""
        w = self.workers[i]
        if w.ready_fd is None:
            return
        try:
            said = os.read(w.ready_fd, 1)
        except BlockingIOError:
            return
        os.close(w.ready_fd)
        w.ready_fd = None
        if said:
            w.taking = True
            if not self.announced and all(o.taking for o in self.workers):
                from service.cli.sockets import served_urls

                self.announced = True
                log.info(
                    "%d workers listening: %s; each loads its own models (GET /readyz answers "
                    "200 once the worker that answers is ready)",
                    len(self.workers), served_urls(self.settings),
                )  # fmt: skip
            if w.restarted:
                log.info(
                    "worker %d (pid %d) ready after %.1f s, taking connections",
                    i, w.proc.pid, time.monotonic() - w.started,
                )  # fmt: skip

    def check(self, i: int) -> None:
        w = self.workers[i]
        if self.stopping_since is not None:
            return
        now = time.monotonic()
        if w.retry_at is not None:
            if now >= w.retry_at:
                self.workers[i] = self.spawn(
                    i, restart=True, retry_s=min(2 * w.retry_s, RETRY_MAX_S)
                )
                log.warning(
                    "worker %d: starting it again as pid %d (the last try could not load); it "
                    "takes connections once its models are ready",
                    i, self.workers[i].proc.pid,
                )  # fmt: skip
            return
        code = w.proc.poll()
        if code is None:
            return
        self.hear(i)  # a byte written just before it exited
        p = w.proc
        if code > 0:  # its own decision (nothing to serve, bad settings)
            serving = sum(o.serving for j, o in enumerate(self.workers) if j != i)
            if w.restarted and not w.taking and serving:
                # a restart that could not load while the others serve: their first start
                # loaded, so the cause is likely this moment's (memory, a folder being
                # changed); the port stays served, and it is tried again later
                w.retry_at = now + w.retry_s
                log.error(
                    "worker %d (pid %d) %s before it took connections; the other %d worker(s) "
                    "go on serving; starting it again in %.0f s",
                    i, p.pid, _describe(code), serving, w.retry_s,
                )  # fmt: skip
                return
            # at the first start (or with no other worker serving): all would meet the cause
            log.error(
                "worker %d (pid %d) %s: stopping the other workers", i, p.pid, _describe(code)
            )
            self.status = code or 1
            self.stop()
            return
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
        self.workers[i] = self.spawn(i, restart=True)
        log.warning(
            "worker %d (pid %d) %s; started it again as pid %d (restart %d of at most %d a "
            "minute); the other workers go on serving, and it takes connections once its "
            "models are ready",
            i, p.pid, _describe(code), self.workers[i].proc.pid, len(self.restarts), limit,
        )  # fmt: skip

    def run(self) -> int:
        self.workers = [self.spawn(i) for i in range(self.settings.workers)]
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, self.hangup)  # each worker reads its keys file again
        kill_at = self.settings.shutdown_grace_s + KILL_AFTER_GRACE_S
        try:
            while self.stopping_since is None or any(p.poll() is None for p in self.procs):
                for i in range(len(self.workers)):
                    self.hear(i)
                    self.check(i)
                if (
                    self.stopping_since is not None
                    and time.monotonic() - self.stopping_since > kill_at
                ):
                    for p in self.procs:
                        if p.poll() is None:
                            log.error("worker pid %d still running %.0f s after SIGTERM: killed",
                                      p.pid, kill_at)  # fmt: skip
                            p.kill()
                time.sleep(0.2)
        finally:
            for w in self.workers:
                if w.ready_fd is not None:
                    os.close(w.ready_fd)
                    w.ready_fd = None
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
