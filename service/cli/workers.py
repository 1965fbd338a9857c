"""`framecast serve --workers N`: N server processes on one port.

Each worker is a full framecast server (its own copy of every model, its own batcher and worker
threads) listening on the same ``host:port`` with ``SO_REUSEPORT``: the kernel spreads new
connections over them. Python runs one thread of Python at a time per process, so on a machine
with several cores the HTTP front end (parsing, decoding, encoding) of one process saturates a
core while the others idle; workers use them. Worker ``i`` gets ``FRAMECAST_WORKER_INDEX=i``
and, with several GPUs, serves on GPU ``i mod n`` (``service/runtime/devices.py``).

The supervisor starts the workers, forwards SIGTERM/SIGINT to them (each drains its requests,
``FRAMECAST_SHUTDOWN_GRACE_S``), and stops all of them when one exits with an error (a worker
that could not serve any model exits 1, and so does the supervisor).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from service.config import Settings


def run_workers(settings: Settings) -> int:
    """Start ``settings.workers`` workers and wait; the exit status of the first to fail."""
    env = {
        **os.environ,
        "FRAMECAST_HOST": settings.host,
        "FRAMECAST_PORT": str(settings.port),
        "FRAMECAST_MODELS_DIR": str(settings.models_dir),
        "FRAMECAST_LOG_LEVEL": settings.log_level,
        "FRAMECAST_WORKERS": "1",
        "FRAMECAST_WORKER_COUNT": str(settings.workers),  # FRAMECAST_CPU_THREADS=auto's share
        "FRAMECAST_REUSE_PORT": "1",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"],
            env={**env, "FRAMECAST_WORKER_INDEX": str(i)},
        )
        for i in range(settings.workers)
    ]
    stopping = []

    def forward(signum: int, frame: object) -> None:
        stopping.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    while any(p.poll() is None for p in procs):
        for p in procs:
            code = p.poll()
            if code not in (None, 0) and not stopping:  # one failed: stop the others
                status = code
                forward(signal.SIGTERM, None)
        time.sleep(0.2)
    if not stopping:
        status = status or max(p.returncode or 0 for p in procs)
    return status
