"""What a live stream on a carried-state model should do past the model's context, measured.

A stream of 30 frames on a model that reads 10: after frame 10, each new frame can either be
read by one more step with the state **carried** on from frame 1 (one step a frame), or the
model can re-read a **window** of the last 10 frames (a context pass, 10 steps a frame). This
script feeds held-out Moving MNIST streams (digits 8000-9999, 30 frames, a seed fixed here)
through both, with the rollout code the server runs (``models/rollout.py``: ``Feed`` through
``state_step`` for carry, ``context_step`` for the window), and writes the one-step-ahead error
of each way at every frame (MSE per frame, mean over streams) to JSON.

    python3 bench/streams/stream_past_context.py --mnist-dir ../shared/data/mnist \
        [--models models/convlstm2d_next_frame models/conv2d_lstm_next_frame] [--clips 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SEED = 30_030  # the streams' seed (not a training or test seed)
LENGTH = 30


def measure(folder: Path, clips: np.ndarray, batch: int) -> dict:
    import models.carried  # noqa: F401 - registers the custom layers
    from models.carried import stepper
    from models.checkpoint import open_folder
    from models.metrics import mse_per_frame
    from models.rollout import Feed, Rollout, context_step, state_step

    manifest, model = open_folder(folder)
    s = stepper(model)
    context = manifest.reads or 10
    n, length = clips.shape[:2]
    carry = np.zeros((n, length - context))
    window = np.zeros((n, length - context))
    spent = {"carry": 0.0, "window": 0.0}
    zeros = [np.zeros(sh, np.float32) for sh in s.state_shapes]
    for start in range(0, n, batch):
        part = clips[start : start + batch]
        b = len(part)
        # carry: every frame read once, the prediction after frame t compared with frame t+1
        t0 = time.perf_counter()
        feeds = [Feed(list(c[:-1]), 0, list(zeros)) for c in part]
        preds = []
        for _ in range(length - 1):
            state_step(feeds, batch, s.step.predict_on_batch)
        preds = np.stack([np.stack(f.after) for f in feeds])  # (b, length-1, H, W, C)
        spent["carry"] += time.perf_counter() - t0
        for t in range(context, length):
            carry[start : start + b, t - context] = mse_per_frame(preds[:, t - 1], part[:, t])
        # window: the last `context` frames read again for every frame
        t0 = time.perf_counter()
        for t in range(context, length):
            rolls = [Rollout(c[t - context : t], 1) for c in part]
            got = np.stack(context_step(rolls, batch, s.context.predict_on_batch))[:, 0]
            window[start : start + b, t - context] = mse_per_frame(got, part[:, t])
        spent["window"] += time.perf_counter() - t0
    frames = n * (length - context)
    return {
        "model": manifest.name,
        "architecture": manifest.architecture,
        "context": context,
        "frames_per_stream": length,
        "streams": n,
        "mse_per_frame": {
            "carry": float(carry.mean()),
            "window": float(window.mean()),
            "carry_within_context_plus_10": float(carry[:, :10].mean()),
            "window_within_context_plus_10": float(window[:, :10].mean()),
        },
        "per_frame": {
            "frame": list(range(context + 1, length + 1)),
            "carry": [round(float(v), 3) for v in carry.mean(axis=0)],
            "window": [round(float(v), 3) for v in window.mean(axis=0)],
        },
        "ms_per_frame": {k: round(v * 1000.0 / frames, 3) for k, v in spent.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist-dir", required=True, help="the MNIST test split (IDX or mnist.npz)")
    p.add_argument(
        "--models",
        nargs="+",
        type=Path,
        default=[
            ROOT / "models" / "convlstm2d_next_frame",
            ROOT / "models" / "conv2d_lstm_next_frame",
        ],
    )
    p.add_argument("--clips", type=int, default=200)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "stream_past_context.json")
    args = p.parse_args(argv)
    from models.data import load_mnist, next_frame_clips

    mnist = load_mnist(args.mnist_dir)
    clips = next_frame_clips(mnist.digits("test"), args.clips, SEED, length=LENGTH)
    results = [measure(f, clips, args.batch) for f in args.models]
    for r in results:
        m = r["mse_per_frame"]
        print(
            f"{r['model']}: carry {m['carry']:.2f}, window {m['window']:.2f} MSE/frame "
            f"(frames {r['context'] + 1}-{LENGTH}, {r['streams']} streams); ms/frame "
            f"{r['ms_per_frame']}"
        )
    body = {
        "what": "one-step-ahead MSE per frame of a 30-frame stream past a 10-frame context: "
        "the state carried on vs a window of the last 10 frames re-read",
        "command": "python3 bench/streams/stream_past_context.py --mnist-dir ../shared/data/mnist"
        + (f" --clips {args.clips}" if args.clips != 200 else ""),
        "data": f"Moving MNIST from MNIST test digits 8000-9999, {LENGTH} frames, seed {SEED}",
        "host": f"{platform.machine()}, {os.cpu_count()} cores",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(body, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
