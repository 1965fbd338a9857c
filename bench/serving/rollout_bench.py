"""Carried-state vs sliding-window rollouts of the same next-frame checkpoint, side by side.

    python3 bench/serving/rollout_bench.py models/convlstm2d_next_frame [--horizon 10] [--repeats
    20]
        [--clips 256] [--out docs/bench/rollout_bench.json]

Two measurements, both ways, in one run on one machine:
- **serving**: one clip, ``horizon`` frames, through the server's runner (batcher + policy, the
  same code ``POST /v1/models/{name}/predict?horizon=k`` runs), median of ``--repeats``;
- **evaluation**: ``--clips`` clips rolled out ``horizon`` frames in batches of 32, as
  ``framecast evaluate`` does (clips per second).

The sliding window calls the fixed-window model ``horizon`` times on ``frames`` frames; the
carried state reads the context once and then steps one frame at a time (``models/carried.py``).
Both use the checkpoint's own weights; their outputs differ unless the model was trained for the
rollout it is given (the figures are about cost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
import harness  # noqa: F401  (puts the repository root on sys.path)
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads (in main)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--clips", type=int, default=256)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    import keras

    from models.carried import stepper
    from models.repository import read_manifest, verify_checkpoint
    from models.rollout import carried_rollout, rollout
    from models.runs.env import describe
    from service.runtime.devices import Placement
    from service.runtime.policies import CarriedState, SlidingWindow
    from service.runtime.runner import ModelRunner
    from service.telemetry import Metrics

    man = read_manifest(args.folder)
    model = keras.saving.load_model(
        verify_checkpoint(args.folder, man), safe_mode=True, compile=False
    )
    s = stepper(model)
    shape = (man.frames, man.height, man.width, man.channels)
    rng = np.random.default_rng(0)
    clip = rng.random(shape, dtype=np.float32)
    place = Placement("cpu:0", "cpu:0", keras.backend.backend())
    kinds = {
        "sliding_window": (SlidingWindow(shape), {"model": model}),
        "carried_state": (
            CarriedState(shape, s.state_shapes),
            {"model": model, "context": s.context, "step": s.step},
        ),
    }
    report: dict = {
        "checkpoint": str(args.folder),
        "sha256": man.sha256,
        "horizon": args.horizon,
        "environment": describe(),
        "serving": {},
        "evaluation": {},
    }
    for kind, (policy, callables) in kinds.items():
        runner = ModelRunner(
            args.folder,
            man,
            model,
            None,
            place,
            metrics=Metrics(),
            max_queue=8,
            timeout_s=600.0,
            max_batch_size=1,
            policy=policy,
            callables=callables,
        )
        runner.submit(runner.warm).result()
        by_horizon: dict[int, list[float]] = {1: [], args.horizon: []}
        for _ in range(args.repeats + 2):  # taking turns: the same machine state for both
            for horizon in by_horizon:
                t0 = time.perf_counter()
                asyncio.run(runner.predict(clip, horizon))
                by_horizon[horizon].append(time.perf_counter() - t0)
        runner.close()
        times, once = by_horizon[args.horizon][2:], by_horizon[1][2:]
        report["serving"][kind] = {
            "median_ms": round(statistics.median(times) * 1000, 2),
            "p90_ms": round(sorted(times)[int(0.9 * len(times))] * 1000, 2),
            "horizon_1_median_ms": round(statistics.median(once) * 1000, 2),
            # what horizon=k costs against horizon=1 (the bar: <= 3.5 at k = 10)
            "horizon_cost": round(statistics.median(times) / statistics.median(once), 2),
        }
        sv = report["serving"][kind]
        print(
            f"serving  {kind:15s} horizon={args.horizon}: {sv['median_ms']:8.1f} ms per clip "
            f"(median), horizon=1: {sv['horizon_1_median_ms']:.1f} ms, "
            f"{sv['horizon_cost']}x",
            flush=True,
        )
    ctx = rng.random((args.clips,) + shape, dtype=np.float32)
    fns = {
        "sliding_window": lambda x: rollout(model, x, args.horizon, 32),
        "carried_state": lambda x: carried_rollout(s, x, args.horizon, 32),
    }
    for kind, fn in fns.items():
        fn(ctx[:32])  # compile outside the timing
        t0 = time.perf_counter()
        fn(ctx)
        dt = time.perf_counter() - t0
        report["evaluation"][kind] = {
            "clips": args.clips,
            "seconds": round(dt, 2),
            "clips_per_s": round(args.clips / dt, 1),
        }
        print(
            f"evaluate {kind:15s} {args.clips} clips: {dt:7.1f} s ({args.clips / dt:.1f} clips/s)",
            flush=True,
        )
    sv, ev = report["serving"], report["evaluation"]
    report["speedup"] = {
        "serving": round(sv["sliding_window"]["median_ms"] / sv["carried_state"]["median_ms"], 2),
        "evaluation": round(
            ev["carried_state"]["clips_per_s"] / ev["sliding_window"]["clips_per_s"], 2
        ),
    }
    print(
        f"carried state is {report['speedup']['serving']}x faster per served clip and "
        f"{report['speedup']['evaluation']}x faster in evaluation"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
