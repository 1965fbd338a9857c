"""bench/frontend/frontend.py's bare figure: the checkpoint's own ``predict_on_batch`` in a process
of its own, no HTTP, measured in the rounds beside the servers.

The process is ``python3 bench/frontend/frontend.py --bare-only FOLDER`` (:func:`bare_serve`);
:class:`Bare` starts and drives one, :func:`bare_sizings` gives the pool sizings measured,
:func:`bare_summary` the figure from their rounds.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from harness import signal_group

BARE_BATCHES = (8, 16, 32, 64)
FRONTEND = Path(__file__).resolve().with_name("frontend.py")


def bare_serve(folder: Path) -> None:
    """The bare process (``--bare-only``): the checkpoint's own ``predict_on_batch`` (for a
    next-frame model on the 10-frame window: its last output is the next frame, what horizon=1
    answers), each batch size warmed, then one measurement per line read from stdin (its
    seconds, split over the batch sizes), each answered with one JSON line: per batch, the clips
    done, the wall and the process's CPU seconds (every thread: TensorFlow's pools too)."""
    from models.checkpoint import open_folder

    manifest, model = open_folder(folder)
    shape = (manifest.frames, manifest.height, manifest.width, manifest.channels)
    xs = {b: np.random.default_rng(0).random((b,) + shape, np.float32) for b in BARE_BATCHES}
    for x in xs.values():
        for _ in range(3):
            model.predict_on_batch(x)
    print("ready", flush=True)
    for line in sys.stdin:
        seconds, out = float(line), {}
        for batch, x in xs.items():
            n, t0 = 0, time.perf_counter()
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            while time.perf_counter() - t0 < seconds / len(xs):
                model.predict_on_batch(x)
                n += 1
            wall = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            out[batch] = {"clips": n * batch, "wall_s": wall, "cpu_s": cpu}
        print(json.dumps(out), flush=True)


class Bare:
    """A bare process (:func:`bare_serve`) with one sizing of TensorFlow's pools, measured in
    the rounds like a server: stopped (SIGSTOP) while it is not its turn."""

    def __init__(self, folder: Path, env: dict):
        cmd = [sys.executable, str(FRONTEND), "--bare-only", str(folder)]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
            start_new_session=True,
        )
        self.runs: list[dict] = []

    def wait_ready(self) -> None:
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the bare process exited ({self.proc.wait()})")

    def measure(self, seconds: float) -> dict:
        try:
            self.proc.stdin.write(f"{seconds}\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            raise RuntimeError(f"the bare process exited ({self.proc.wait()}) mid-measurement")
        run = {int(k): v for k, v in json.loads(line).items()}
        self.runs.append(run)
        return run

    def pause(self, on: bool) -> None:
        """SIGSTOP (or SIGCONT) the process group; ProcessLookupError when it is gone."""
        os.killpg(self.proc.pid, signal.SIGSTOP if on else signal.SIGCONT)

    def stop(self) -> None:
        signal_group(self.proc.pid, signal.SIGCONT)  # quiet when already gone
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()  # its cue to exit
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc.stdout.close()


def bare_sizings() -> dict[str, dict]:
    """TensorFlow's default pools, and the intra-op pool at cores - 1, as
    ``FRAMECAST_CPU_THREADS=auto`` sizes it for a lone worker."""
    from service.runtime.devices import cores

    intra = max(1, cores() - 1)
    return {"default": {}, f"intra-op {intra}": {"TF_NUM_INTRAOP_THREADS": str(intra)}}


def bare_summary(bares: dict[str, Bare]) -> dict:
    """Each sizing's best batch over all its rounds (clips/s: clips over wall seconds; CPU ms a
    clip: CPU over clips); the faster sizing is the bare figure, both are kept (``by_pools``)."""
    by_pools = {}
    for label, bare in bares.items():
        rows = []
        for batch in BARE_BATCHES:
            runs = [r[batch] for r in bare.runs]
            clips = sum(r["clips"] for r in runs)
            rows.append(
                {
                    "batch": batch,
                    "clips_s": round(clips / sum(r["wall_s"] for r in runs), 1),
                    "cpu_ms_per_clip": round(1000.0 * sum(r["cpu_s"] for r in runs) / clips, 3),
                    "clips_s_per_round": [round(r["clips"] / r["wall_s"], 1) for r in runs],
                }
            )
        by_pools[label] = max(rows, key=lambda r: r["clips_s"])
    best = max(by_pools, key=lambda k: by_pools[k]["clips_s"])
    return {**by_pools[best], "tf_pools": best, "by_pools": by_pools}
