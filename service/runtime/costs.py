"""Each served model's cost facts: counted at load (parameters, FLOPs per clip and per carried
step, weight and checkpoint bytes: ``models/costs.py``), and its peak memory per clip measured
in the background.

The measure needs TensorFlow started with another CPU allocator, so it runs in a process of its
own (``python3 -m models.costs FOLDER``), one at a time, at the lowest CPU priority (``nice``
19: it takes only CPU that serving leaves idle), once the model serves. The figure is kept in
FRAMECAST_COST_CACHE_DIR by checkpoint sha256, clip length and device, so a restart, another
worker (``--workers``: a file lock lets one of them measure) or another server on the machine
reads it instead of measuring again. Until it is known ``/v1/models`` says why it is null.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("framecast.runtime")

MEASURING = "being measured (python3 -m models.costs, a low-priority process of its own)"
OFF = "not measured (FRAMECAST_MEASURE_MEMORY=off)"


def counted(runner: Any, model: Any, warm_frames: int) -> dict[str, Any]:
    """The counted facts of a runner's loaded Keras model (no memory figure yet)."""
    from models.costs import cost_facts

    m = runner.manifest
    facts = cost_facts(
        model,
        frames=m.frames,
        reads=m.reads or warm_frames,
        carried=runner.rollout == "carried_state",
        checkpoint=Path(runner.folder) / m.checkpoint,
    )
    facts.update(peak_memory_bytes=None, memory_note=MEASURING, memory_method=None)
    return facts


class MemoryProbe:
    """Measures served models' peak memory per clip, one at a time, in the background."""

    def __init__(
        self,
        cache_dir: Path,
        enabled: bool = True,
        device: str = "CPU:0",
        start_after: threading.Event | None = None,
    ):
        self.cache_dir, self.enabled, self.device = Path(cache_dir), enabled, device
        self.start_after = start_after  # the server is ready: warm-up has the CPU until then
        self._todo: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None
        self._closed = False

    def watch(self, runner: Any) -> None:
        """Fill ``runner.costs``' memory figure: from the cache, or measured later."""
        costs = getattr(runner, "costs", None)
        if not costs:
            return
        if not self.enabled:
            costs.update(memory_note=OFF)
            return
        if self._read(runner):
            return
        self._todo.put(runner)
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="framecast-memory-probe", daemon=True
            )
            self._thread.start()

    def _key(self, runner: Any) -> Path:
        m = runner.manifest
        frames = runner.costs.get("flops_per_clip_frames") or m.frames or 0
        device = self.device.replace(":", "")
        return self.cache_dir / f"{m.sha256 or m.name}-{frames}-{device}.json"

    def _read(self, runner: Any) -> bool:
        try:
            found = json.loads(self._key(runner).read_text())
        except (OSError, ValueError):
            return False
        runner.costs.update(
            peak_memory_bytes=found.get("peak_memory_bytes"),
            memory_note=found.get("memory_note"),
            memory_method=found.get("memory_method"),
        )
        return True

    def _loop(self) -> None:
        while self.start_after is not None and not self.start_after.wait(1.0):
            if self._closed:
                return
        while not self._closed:
            runner = self._todo.get()
            if runner is None or self._closed:
                return
            try:
                self._measure(runner)
            except Exception as e:  # noqa: BLE001 - a figure we could not get says why
                log.warning("peak memory of model %s not measured: %s", runner.name, e)
                runner.costs.update(memory_note=f"not measured: {type(e).__name__}: {e}")

    def _measure(self, runner: Any) -> None:
        key = self._key(runner)
        key.parent.mkdir(parents=True, exist_ok=True)
        with open(key.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be measuring it: wait
            if self._read(runner) or self._closed:
                return
            frames = runner.costs.get("flops_per_clip_frames")
            nice = shutil.which("nice")
            cmd = ([nice, "-n", "19"] if nice else []) + [sys.executable, "-m", "models.costs"]
            cmd += [str(runner.folder), "--device", self.device]
            cmd += ["--frames", str(frames)] if frames else []
            self._proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
            out, _ = self._proc.communicate()
            if self._closed or self._proc.returncode != 0:
                return
            found = json.loads(out.strip().splitlines()[-1])
            tmp = key.with_suffix(".tmp")
            tmp.write_text(json.dumps(found))
            os.replace(tmp, key)
        self._read(runner)
        log.info(
            "model %s: peak memory per clip (batch 1) %s bytes",
            runner.name,
            runner.costs.get("peak_memory_bytes"),
        )

    def close(self) -> None:
        """Stop: the measuring process, if any, is ended (it holds nothing worth keeping)."""
        self._closed = True
        self._todo.put(None)
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


__all__ = ["MEASURING", "MemoryProbe", "OFF", "counted"]
