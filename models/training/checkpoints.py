"""A run's files before its final model: ``checkpoints/state.json`` (which epoch, clips seen, wall
time, the builder's arguments, the history), the newest epoch's checkpoint beside it, and the
model folder a run may start from (``--init-from``).

Every file is written under a temporary name and renamed, so an interrupt loses at most the
epoch in progress, and a resume must ask for the very run the folder holds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.repository import atomic_write_text, read_manifest, verify_checkpoint
from models.training.config import TrainConfig, TrainingError

if TYPE_CHECKING:  # annotations only
    import keras


def state_path(out: Path) -> Path:
    return out / "checkpoints" / "state.json"


def read_state(out: Path) -> dict | None:
    p = state_path(out)
    if not p.is_file():
        return None
    return json.loads(p.read_text())


def new_state(cfg: TrainConfig, kwargs: dict, parent: dict | None) -> dict:
    """The state of a run that has not finished an epoch yet."""
    return {
        "arch": cfg.arch,
        "task": cfg.task,
        "epoch": 0,
        "clips_seen": 0,
        "wall_time_s": 0.0,
        "builder_kwargs": kwargs,
        "checkpoint": None,
        "history": [],
        "rollout": cfg.rollout,
        "forecast": cfg.forecast,
        "sampling": [cfg.sampling_start, cfg.sampling_clips] if cfg.forecast else None,
        "init_from": parent and {k: v for k, v in parent.items() if k != "weights"},
    }


def check_resumable(state: dict, cfg: TrainConfig, out: Path) -> None:
    """Refuse to resume a run that ``out`` holds with another model or objective."""
    if (state["arch"], state["task"]) != (cfg.arch, cfg.task):
        raise TrainingError(
            f"{out} holds a {state['arch']}/{state['task']} run; "
            f"use another --out for {cfg.arch}/{cfg.task}"
        )
    if state.get("rollout", 0) != cfg.rollout:
        raise TrainingError(
            f"{out} holds a run with --rollout {state.get('rollout', 0)}; "
            f"resume it with the same value or use another --out"
        )
    if bool(state.get("forecast")) != cfg.forecast:
        raise TrainingError(
            f"{out} holds a run {'with' if state.get('forecast') else 'without'}"
            " --forecast; resume it the same way or use another --out"
        )


def epoch_checkpoint(
    out: Path, state: dict, cfg: TrainConfig, dataset: Any
) -> keras.callbacks.Callback:
    """A Keras callback: an atomic checkpoint and ``state`` after every epoch (the previous
    epoch's checkpoint removed), and the epoch told to ``dataset`` so a resume is reproducible."""
    import keras

    ckpt_dir = out / "checkpoints"

    class EpochCheckpoint(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.t0 = time.perf_counter()

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            dataset.epoch = epoch

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            name = f"epoch-{epoch + 1:04d}.keras"
            tmp = ckpt_dir / f".{name}.tmp.keras"
            self.model.save(tmp)
            (ckpt_dir / name).unlink(missing_ok=True)
            tmp.rename(ckpt_dir / name)
            old = state["checkpoint"]
            now = time.perf_counter()
            state.update(
                epoch=epoch + 1,
                checkpoint=name,
                clips_seen=state["clips_seen"] + cfg.steps * cfg.batch_size,
                wall_time_s=state["wall_time_s"] + (now - self.t0),
            )
            state["history"].append({k: float(v) for k, v in (logs or {}).items()})
            self.t0 = now
            atomic_write_text(state_path(out), json.dumps(state, indent=2))
            if old and old != name:
                (ckpt_dir / old).unlink(missing_ok=True)

    return EpochCheckpoint()


def parent(cfg: TrainConfig) -> dict:
    """Weights and training record of the ``--init-from`` model folder (same arch and task)."""
    assert cfg.init_from is not None, "parent() is called for --init-from only"
    folder = Path(cfg.init_from)
    manifest = read_manifest(folder)  # raises ManifestError with the reason
    verify_checkpoint(folder, manifest)
    if (manifest.architecture, manifest.task) != (cfg.arch, cfg.task):
        raise TrainingError(
            f"--init-from {folder} is a {manifest.architecture}/{manifest.task} "
            f"model, not {cfg.arch}/{cfg.task}"
        )
    if cfg.config:
        raise TrainingError(
            "--config cannot be combined with --init-from: the architecture is the parent's"
        )
    import keras

    weights = keras.models.load_model(folder / manifest.checkpoint, safe_mode=True).get_weights()
    t = manifest.training or {}
    print(
        f"[framecast] starting from the weights of {folder} ({t.get('clips_seen', 0)} clips "
        f"seen there)",
        flush=True,
    )
    return {
        "path": str(folder),
        "name": manifest.name,
        "sha256": manifest.sha256,
        "command": t.get("command"),
        "clips_seen": int(t.get("clips_seen", 0)),
        "wall_time_s": t.get("wall_time_s"),
        "objective": t.get("objective"),
        "builder_kwargs": dict(manifest.builder_kwargs),
        "weights": weights,
    }
