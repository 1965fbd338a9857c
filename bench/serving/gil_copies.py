"""Why the model's worker copies with bytes.join: a batch stacked by numpy against one stacked by
``models.rollout.stacked``, alone and beside a busy Python thread (the event loop under
load).

    python3 bench/serving/gil_copies.py        # ~10 s; writes docs/bench/gil_copies.json

numpy releases the GIL for every large copy; a thread that gave it up waits for the busy thread
to drop it, which Python forces after a switch interval (5 ms by default), once per copy.
``bytes.join`` copies holding the GIL, so it waits for nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from harness import ROOT

from models.rollout import stacked


def _ms_per_call(fn, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return 1000.0 * (time.perf_counter() - t0) / n


def run(batch: int, seconds: float) -> dict:
    clips = [np.random.default_rng(i).random((10, 64, 64, 1), np.float32) for i in range(batch)]
    ways = {"np.stack": lambda: np.stack(clips), "bytes.join (stacked)": lambda: stacked(clips)}
    out: dict = {
        "batch": f"{batch} clips of (10, 64, 64, 1) float32",
        "switch_interval_ms": sys.getswitchinterval() * 1000.0,
        "alone_ms": {k: round(_ms_per_call(f, seconds), 3) for k, f in ways.items()},
    }
    stop = threading.Event()

    def busy() -> None:  # pure Python, never waits: holds the GIL but for forced switches
        x = 0
        while not stop.is_set():
            x += 1

    t = threading.Thread(target=busy, daemon=True)
    t.start()
    try:
        out["beside_busy_thread_ms"] = {
            k: round(_ms_per_call(f, seconds), 3) for k, f in ways.items()
        }
    finally:
        stop.set()
        t.join()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=2.0, help="per way, per condition")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "gil_copies.json")
    args = p.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    report: dict = {"command": " ".join(["python3 bench/serving/gil_copies.py", *given])}
    report.update(run(args.batch, args.seconds))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for cond in ("alone_ms", "beside_busy_thread_ms"):
        print(cond, report[cond])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
