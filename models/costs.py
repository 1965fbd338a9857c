"""What a model costs, for any model framecast serves (bundled, imported or copied into a folder):
parameters, FLOPs per clip (and per carried step), weight and checkpoint bytes, and peak memory
per clip, measured.

- FLOPs are counted by :func:`models.architectures.count_flops` (multiply-adds x 2 of the convs,
  recurrent cells and dense layers, from the layers' shapes) at the model's own time axis, or at
  the frames one request reads when its time axis is free. A model holding a layer with weights
  that the counter does not know (a GRU, a Conv3D, a nested model, a custom layer, ...) gets
  ``None`` and the reason, never 0: a partial count would understate it.
- Peak memory per clip is *measured*: :func:`measure_memory` runs one clip at batch 1 through
  the model in this process with TensorFlow's BFC CPU allocator, which counts every tensor it
  allocates (the default CPU allocator with oneDNN counts only those over 256 KiB, and none
  without), and reports the allocator's peak bytes in use during that call minus those in use
  before it: the activations and scratch of one clip, the weights and the input excluded. The
  allocator is chosen at TensorFlow's start, so this runs in a process of its own
  (``python3 -m models.costs FOLDER``, which the service starts at low priority); it prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras

# layers with weights whose cost is small beside the counted ones (element-wise per pixel)
CHEAP = ("BatchNormalization", "LayerNormalization", "GroupNormalization", "Normalization")
ALLOCATOR_ENV = {"TF_CPU_ALLOCATOR_USE_BFC": "true", "TF_CPP_MIN_LOG_LEVEL": "3"}
METHOD = (
    "TensorFlow's BFC allocator: peak bytes in use during one batch-1 call minus those in use "
    "before it (activations and scratch; weights and input excluded), in a process of its own"
)


def flops(model: keras.Model, time_steps: int | None = None) -> tuple[int | None, str]:
    """FLOPs of one clip (``time_steps``: the frames it reads, for a free time axis; 1: one
    carried step) and, when they cannot be counted, None and why."""
    from keras import layers

    from models.architectures import COUNTED, count_flops
    from models.checkpoint import walk

    for layer in list(walk(model))[1:]:
        inner = getattr(layer, "layer", layer)
        if isinstance(layer, layers.Wrapper) and not isinstance(layer, layers.TimeDistributed):
            return None, f"layer {layer.name!r} ({type(layer).__name__}) is not counted"
        if hasattr(layer, "layers") and not isinstance(layer, layers.TimeDistributed):
            return None, f"nested model {layer.name!r} is not counted (only one level of layers)"
        if not layer.weights or isinstance(inner, COUNTED) or type(inner).__name__ in CHEAP:
            continue
        if isinstance(layer, layers.TimeDistributed) and not inner.weights:
            continue
        known = ", ".join(c.__name__ for c in COUNTED)
        return None, (
            f"layer {layer.name!r} ({type(inner).__name__}) has weights the FLOP counter does "
            f"not count (it counts {known})"
        )
    try:
        return count_flops(model, time_steps), ""
    except (ValueError, TypeError) as e:
        return None, f"the layers' shapes do not give a count ({e})"


def weight_bytes(model: keras.Model) -> int:
    """Bytes of every weight as held in memory (trainable or not)."""
    import numpy as np

    return int(sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights))


def cost_facts(
    model: keras.Model,
    *,
    frames: int | None,
    reads: int | None,
    carried: bool,
    checkpoint: Path | None,
) -> dict[str, Any]:
    """The counted cost facts of a loaded model (memory comes from :func:`measure_memory`).
    ``frames``: its time axis (None: free); ``reads``: frames one request reads; ``carried``:
    it rolls out one frame a step with its state carried."""
    t = frames or reads
    per_clip, why = flops(model, None if frames else t)
    if frames is None and t is None:
        per_clip, why = None, "its time axis is free and no context is set: a clip's length varies"
    per_step, step_why = (None, "it carries no state: every step reads the whole window")
    if carried:
        per_step, step_why = flops(model, 1)
    out: dict[str, Any] = {
        "params": int(model.count_params()),
        "flops_per_clip": per_clip,
        "flops_per_clip_frames": t,
        "flops_note": why or None,
        "flops_per_step": per_step,
        "flops_per_step_note": step_why or None,
        "weight_bytes": weight_bytes(model),
        "checkpoint_bytes": checkpoint.stat().st_size
        if checkpoint and checkpoint.is_file()
        else None,
    }
    return out


def measure_memory(folder: str | os.PathLike, frames: int | None, device: str = "CPU:0") -> dict:
    """Peak memory of one clip at batch 1 through the model in ``folder`` (``frames``: the clip
    length, for a free time axis). Call it in a fresh process started with
    :data:`ALLOCATOR_ENV` (:func:`main` does)."""
    import numpy as np

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    from models.checkpoint import open_folder

    with keras.device(device):
        manifest, model = open_folder(folder)
    t = manifest.frames or manifest.context or frames or 10
    x = np.zeros((1, t, manifest.height, manifest.width, manifest.channels), np.float32)
    with keras.device(device):
        model.predict_on_batch(x)  # traced (and any lazy weights built) before the measure
        tf.config.experimental.reset_memory_stats(device)
        before = tf.config.experimental.get_memory_info(device)["current"]
        t0 = time.perf_counter()
        model.predict_on_batch(x)
        seconds = time.perf_counter() - t0
        peak = tf.config.experimental.get_memory_info(device)["peak"]
    return {
        "peak_memory_bytes": int(peak - before),
        "memory_frames": t,
        "memory_device": device,
        "memory_method": METHOD,
        "memory_call_ms": round(seconds * 1000.0, 3),
        "tensorflow": tf.__version__,
        "sha256": manifest.sha256,
    }


def main(argv: list[str] | None = None) -> int:
    """``python3 -m models.costs FOLDER [--frames T] [--device CPU:0]``: prints the measured
    memory as JSON (started again with the allocator when the environment lacks it)."""
    p = argparse.ArgumentParser(prog="python3 -m models.costs", description=main.__doc__)
    p.add_argument("folder")
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--device", default="CPU:0")
    p.add_argument("--allocator-set", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.allocator_set:  # TensorFlow reads its allocator's variables when it starts
        env = {**os.environ, **ALLOCATOR_ENV}
        again = [sys.executable, "-m", "models.costs", *sys.argv[1:], "--allocator-set"]
        os.execve(sys.executable, again, env)
    try:
        out = measure_memory(args.folder, args.frames, args.device)
    except Exception as e:  # noqa: BLE001 - whatever fails is the answer: why there is no figure
        out = {"peak_memory_bytes": None, "memory_note": f"{type(e).__name__}: {e}"}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
