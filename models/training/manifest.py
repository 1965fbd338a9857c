"""The end of a run: the served model (a fixed context window, float32) and the manifest that
records how it was trained (command, data, objective, lineage, budget, environment)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from models import data as D
from models.repository import Manifest, save_model_folder
from models.runs.env import describe
from models.training.config import TrainConfig

if TYPE_CHECKING:  # annotations only
    import keras


def objective(cfg: TrainConfig, state: dict) -> str:
    """What the run minimised, in words (the card's Objective line)."""
    context = D.CONTEXT_FRAMES
    if state.get("forecast"):
        return (
            f"encoder-forecaster: read {context} context frames, then roll out "
            f"{D.NEXT_FRAME_LENGTH - context} frames carrying every recurrent "
            "state, fed back the truth with a probability annealed linearly from "
            f"{state['sampling'][0]:g} to 0 over {state['sampling'][1]} clips "
            "(scheduled sampling), else the model's own prediction; loss on all "
            f"{D.NEXT_FRAME_LENGTH - 1} outputs"
        )
    if cfg.rollout:
        return (
            f"closed loop: roll out {cfg.rollout} frames from a {context}-frame "
            "window (append the prediction, drop the oldest frame, as served) and "
            "score them against the truth"
        )
    if cfg.task == "next_frame":
        return "teacher forcing: predict frame t+1 at every step t"
    return "classify the clip's direction"


def training_record(cfg: TrainConfig, state: dict, command: str, source: str) -> dict:
    """The manifest's ``training`` section; ``source`` is where the MNIST digits came from."""
    parent = state.get("init_from")
    return {
        "command": command,
        "seed": cfg.seed,
        "data": {
            "source": source,
            "digits": f"{D.TRAIN_DIGITS.start}-{D.TRAIN_DIGITS.stop - 1} of the MNIST test split",
            "clips": (
                "Moving MNIST, 2 digits, 20 frames, 64x64 (Srivastava et al. 2015)"
                if cfg.task == "next_frame"
                else "direction clips, 1 digit, 10 frames, 64x64, 8 classes"
            ),
            "generated": "fresh clips every epoch, seeded by (seed, epoch, batch)",
        },
        "epochs": cfg.epochs,
        "steps_per_epoch": cfg.steps,
        "batch_size": cfg.batch_size,
        "clips_seen": state["clips_seen"] + (parent["clips_seen"] if parent else 0),
        "clips_seen_this_run": state["clips_seen"],
        "objective": objective(cfg, state),
        "init_from": parent,
        "learning_rate": cfg.lr,
        "schedule": "Adam, cosine decay to 5% over all steps, clipnorm 1.0",
        "precision": cfg.precision,
        "loss": (cfg.loss if cfg.task == "next_frame" else "sparse_categorical_crossentropy"),
        "rollout": "carried_state" if state.get("forecast") else "sliding_window",
        "train_time_steps": (D.CONTEXT_FRAMES if cfg.rollout else 19)
        if cfg.task == "next_frame"
        else D.DIRECTION_LENGTH,
        "wall_time_s": round(state["wall_time_s"], 1),
        "final_epoch_logs": state["history"][-1] if state["history"] else {},
        "environment": describe(),
    }


def write_final(
    out: Path,
    cfg: TrainConfig,
    state: dict,
    trained: keras.Model,
    kwargs: dict,
    command: str,
    source: str,
) -> Manifest:
    """Write ``out/model.keras`` and ``out/manifest.json`` from the trained weights.

    The final model takes a fixed context window so serving and evaluation never retrace; it is
    float32 whatever the training precision (the weights are float32 under a mixed policy).
    """
    import keras

    from models.architectures import build, count_flops, step_model

    keras.config.set_dtype_policy("float32")
    context = D.CONTEXT_FRAMES
    final = build(cfg.arch, task=cfg.task, time_steps=context, **kwargs)
    final.set_weights(step_model(trained).get_weights())
    manifest = Manifest(
        name=out.name,
        architecture=cfg.arch,
        task=cfg.task,
        frames=context,
        height=D.CANVAS,
        width=D.CANVAS,
        channels=1,
        class_names=list(D.DIRECTIONS) if cfg.task == "classify" else None,
        flops_per_clip=count_flops(final),
        builder_kwargs=kwargs,
        rollout="carried_state" if state.get("forecast") else "sliding_window",
        training=training_record(cfg, state, command, source),
    )
    save_model_folder(out, final, manifest)
    print(
        f"[framecast] wrote {out / manifest.checkpoint} ({manifest.params} params, "
        f"{manifest.flops_per_clip / 1e6:.1f} MFLOP per clip); sha256 {manifest.sha256[:12]}…",
        flush=True,
    )
    return manifest
