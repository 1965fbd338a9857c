"""bench/serving/serve_bench.py's models and data: untrained models of the default shapes, the
sample clips every request carries, and the bare model's batched compute (the ceiling), measured in
a child process (``python3 bench/serving/serve_bench.py --internal-bare FOLDER``)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from harness import ROOT, child_env

DEFAULT_MODELS = ("convlstm2d_next_frame", "conv2d_lstm_next_frame")
BARE_BATCHES = (1, 2, 4, 8, 16, 32, 64)
FRAMES, SIZE = 10, 64
SERVE_BENCH = Path(__file__).resolve().with_name("serve_bench.py")


def make_untrained(out: Path) -> Path:
    """Untrained next-frame models of the default shapes (``DEFAULT_CONFIGS``)."""
    from models.architectures import build, count_flops
    from models.repository import Manifest, save_model_folder
    from models.training.config import DEFAULT_CONFIGS

    for name in DEFAULT_MODELS:
        arch = name.replace("_next_frame", "")
        kwargs = dict(DEFAULT_CONFIGS[(arch, "next_frame")])
        model = build(
            arch,
            task="next_frame",
            time_steps=FRAMES,
            height=SIZE,
            width=SIZE,
            channels=1,
            name=name,
            **kwargs,
        )
        try:
            flops = count_flops(model)
        except Exception:  # noqa: BLE001 - informational only
            flops = 0
        manifest = Manifest(
            name=name,
            architecture=arch,
            task="next_frame",
            frames=FRAMES,
            height=SIZE,
            width=SIZE,
            channels=1,
            flops_per_clip=flops,
            builder_kwargs=kwargs,
            training={"note": "untrained (bench/serving/serve_bench.py --make-untrained)"},
        )
        save_model_folder(out / name, model, manifest)
        print(f"wrote untrained {name} ({manifest.params:,} params) to {out / name}", flush=True)
    return out


def sample_clips(n: int, mnist_dir: str | None) -> tuple[np.ndarray, str]:
    """(n, 10, 64, 64) uint8 clips and where they came from."""
    from models import data

    candidates = [
        mnist_dir,
        os.environ.get("FRAMECAST_MNIST_DIR"),
        ROOT / "shared/data/mnist",
        ROOT.parent / "shared/data/mnist",
    ]
    for c in candidates:
        if c and Path(c).exists():
            try:
                digits = data.load_mnist(c).digits("test")  # held out from training
                clips = data.next_frame_clips(digits, n, seed=1234, length=FRAMES)
                return (clips[..., 0] * 255).astype(np.uint8), f"Moving MNIST ({c})"
            except Exception as e:  # noqa: BLE001 - fall back to squares
                print(f"note: cannot make Moving MNIST clips from {c}: {e}", file=sys.stderr)
    rng = np.random.default_rng(0)
    clips = np.zeros((n, FRAMES, SIZE, SIZE), np.uint8)
    for i in range(n):
        y, x = rng.integers(0, SIZE - 16, 2)
        dy, dx = rng.integers(-3, 4, 2)
        for t in range(FRAMES):
            yy, xx = (y + dy * t) % (SIZE - 16), (x + dx * t) % (SIZE - 16)
            clips[i, t, yy : yy + 16, xx : xx + 16] = 255
    return clips, "moving squares (no MNIST found)"


# --------------------------------------------------------------------------- bare compute


def bare_compute(folder: Path, seconds: float) -> dict:
    """Runs in a child process: predict_on_batch at each batch size; clips/s and latency."""
    import keras

    from models.repository import read_manifest

    m = read_manifest(folder)
    model = keras.saving.load_model(folder / m.checkpoint, compile=False)
    rng = np.random.default_rng(0)
    per = {}
    for b in BARE_BATCHES:
        x = rng.random((b, m.frames, m.height, m.width, m.channels), dtype=np.float32)
        for _ in range(2):
            np.asarray(model.predict_on_batch(x))
        times, t_end = [], time.perf_counter() + seconds / len(BARE_BATCHES)
        while len(times) < 3 or time.perf_counter() < t_end:
            t0 = time.perf_counter()
            np.asarray(model.predict_on_batch(x))
            times.append(time.perf_counter() - t0)
            if len(times) >= 200:
                break
        med = statistics.median(times)
        per[b] = {"median_ms": med * 1000.0, "clips_per_s": b / med, "calls": len(times)}
    best = max(per, key=lambda b: per[b]["clips_per_s"])
    return {
        "per_batch": per,
        "ceiling_clips_per_s": per[best]["clips_per_s"],
        "best_batch": best,
        "one_clip_ms": per[1]["median_ms"],
        "backend": keras.backend.backend(),
    }


def run_bare(folder: Path, seconds: float) -> dict:
    cmd = [sys.executable, str(SERVE_BENCH), "--internal-bare", str(folder)]
    out = subprocess.run(
        cmd + ["--bare-seconds", str(seconds)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
    )
    if out.returncode != 0:
        raise RuntimeError(f"bare compute failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["per_batch"] = {int(k): v for k, v in res["per_batch"].items()}
    return res
