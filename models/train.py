"""`framecast train`: fit a model on Moving MNIST clips generated on the fly.

Layout of ``--out DIR`` while and after training::

    DIR/checkpoints/epoch-NNNN.keras   the latest finished epoch (model + optimizer state)
    DIR/checkpoints/state.json         which epoch that is, clips seen, wall time so far
    DIR/logs/                          TensorBoard event files (TensorFlow backend) and history.csv
    DIR/model.keras, DIR/manifest.json the final model (fixed context-length input) once done

Running the same command again after an interrupt resumes from the last finished epoch: Ctrl-C
loses at most the epoch in progress. Every file is written under a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models import data as D
from models.architectures import ARCHITECTURES, TASKS, build, closed_loop, count_flops, step_model
from models.env import describe
from models.repository import (
    Manifest,
    atomic_write_text,
    read_manifest,
    save_model_folder,
    verify_checkpoint,
)
from models.rollout import Forecaster, l1l2, rollout_mse
from models.train_args import add_arguments  # noqa: F401 (the flags live where --help is light)

# Default model sizes per (architecture, task), chosen so both architectures of a task have a
# similar parameter budget (see models/TRAINING.md). Override with --config '{"...": ...}'.
DEFAULT_CONFIGS: dict[tuple[str, str], dict] = {
    ("convlstm2d", "next_frame"): {"patch": 4, "filters": [64, 64], "kernel_size": 3},
    ("conv2d_lstm", "next_frame"): {
        "patch": 4,
        "conv_filters": [16, 32, 64, 32],
        "lstm_units": 128,
    },
    ("convlstm2d", "classify"): {"patch": 4, "filters": [32, 32], "kernel_size": 3},
    ("conv2d_lstm", "classify"): {"patch": 4, "conv_filters": [16, 32, 32, 32], "lstm_units": 48},
}


@dataclass
class TrainConfig:
    arch: str
    task: str
    out: Path
    epochs: int = 10
    steps: int = 100  # batches per epoch
    batch_size: int = 16
    seed: int = 0
    lr: float = 1e-3
    loss: str = "bce"  # next_frame only: bce | mse | l1l2
    precision: str = "float32"  # Keras dtype policy while training: float32 | mixed_bfloat16
    mnist_dir: str | None = None
    config: dict = field(default_factory=dict)
    val_clips: int = 128
    verbose: int = 1  # 1: progress display + a line per epoch; 2 (--quiet): the lines; 0: none
    rollout: int = (
        0  # next_frame only: 0 = teacher forcing; K = train on the model's own K-step rollout
    )
    init_from: Path | None = None  # a model folder whose weights start this run
    # next_frame only: train the carried-state encoder–forecaster (models/rollout.py) with
    # scheduled sampling, the truth fed back with a probability falling linearly from
    # ``sampling_start`` to 0 over the first ``sampling_clips`` clips of the run
    forecast: bool = False
    sampling_clips: int = 0
    sampling_start: float = 1.0

    def builder_kwargs(self) -> dict:
        kw = dict(DEFAULT_CONFIGS[(self.arch, self.task)])
        kw.update(self.config)
        return kw


class ClipDataset:
    """Fresh clips for every (epoch, batch), reproducible from the seed (a keras PyDataset)."""

    def __new__(cls, *args, **kwargs):  # build the real subclass lazily: keras imports are slow
        import keras

        class _ClipDataset(keras.utils.PyDataset):
            def __init__(
                self,
                digits: np.ndarray,
                task: str,
                batch_size: int,
                steps: int,
                seed: int,
                rollout: int = 0,
                sampling: tuple[float, int] | None = None,
            ):
                super().__init__(workers=1, use_multiprocessing=False)
                self.digits, self.task, self.rollout = digits, task, rollout
                self.sampling = sampling  # (start probability, clips to anneal over) or None
                self.batch_size, self.steps, self.seed = batch_size, steps, seed
                self.epoch = 0

            def __len__(self):
                return self.steps

            def __getitem__(self, index: int) -> tuple:
                s = D.clip_seed(self.seed, self.epoch, index)
                if self.sampling is not None:
                    start, over = self.sampling
                    seen = (self.epoch * self.steps + index) * self.batch_size
                    return forecast_batch(
                        self.digits, self.batch_size, s, truth_probability(seen, start, over)
                    )
                return make_batch(self.digits, self.task, self.batch_size, s, self.rollout)

        return _ClipDataset(*args, **kwargs)


def make_batch(
    digits: np.ndarray, task: str, n: int, seed: int, rollout: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) for training.

    next_frame, teacher forcing (``rollout=0``): predict frame t+1 at every step t of a clip.
    next_frame, closed loop (``rollout=K``): the 10 context frames in, the K frames after them out.
    """
    if task == "next_frame":
        clips = D.next_frame_clips(digits, n, seed)  # (n, 20, 64, 64, 1)
        if rollout:
            c = D.CONTEXT_FRAMES
            return clips[:, :c], clips[:, c : c + rollout]  # (n, 10, ...) -> (n, K, ...)
        return clips[:, :-1], clips[:, 1:]  # (n, 19, ...) -> (n, 19, ...)
    x, y = D.direction_clips(digits, n, seed)
    return x, y


def truth_probability(clips_seen: int, start: float, over: int) -> float:
    """Scheduled sampling: the chance that a fed-back frame is the truth after ``clips_seen``
    clips of the run, falling linearly from ``start`` to 0 over ``over`` clips (PredRNN anneals
    the same way, per iteration)."""
    if over <= 0:
        return 0.0
    return float(max(0.0, start * (1.0 - clips_seen / over)))


def forecast_batch(
    digits: np.ndarray, n: int, seed: int, p_truth: float
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """((clips, truth mask), targets) for the encoder–forecaster: 20-frame clips, a 0/1 mask of
    which of the 9 fed-back frames are the truth (Bernoulli ``p_truth``, seeded), and the true
    frames 1..19 that the 19 outputs predict."""
    clips = D.next_frame_clips(digits, n, seed)  # (n, 20, 64, 64, 1)
    fed = clips.shape[1] - 1 - D.CONTEXT_FRAMES  # frames fed back after the context: 9
    rng = np.random.default_rng(seed + 1)
    mask = (rng.random((n, fed)) < p_truth).astype(np.float32)
    return (clips, mask), clips[:, 1:]


def _state_path(out: Path) -> Path:
    return out / "checkpoints" / "state.json"


def read_state(out: Path) -> dict | None:
    p = _state_path(out)
    if not p.is_file():
        return None
    return json.loads(p.read_text())


def run(cfg: TrainConfig, argv: list[str] | None = None) -> Path:
    """Train (or resume) and write the final model folder; returns ``cfg.out``."""
    import keras

    if cfg.arch not in ARCHITECTURES or cfg.task not in TASKS:
        raise ValueError(f"--arch must be one of {ARCHITECTURES}, --task one of {TASKS}")
    if (cfg.rollout or cfg.forecast) and cfg.task != "next_frame":
        raise ValueError("--rollout and --forecast apply to --task next_frame only")
    if cfg.rollout and cfg.forecast:
        raise ValueError(
            "--rollout (sliding window) and --forecast (carried state) exclude each other"
        )
    if not 0 <= cfg.rollout <= D.NEXT_FRAME_LENGTH - D.CONTEXT_FRAMES:
        raise ValueError(
            f"--rollout must be between 0 and "
            f"{D.NEXT_FRAME_LENGTH - D.CONTEXT_FRAMES} (the frames after the context)"
        )
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)

    mnist = D.load_mnist(cfg.mnist_dir)
    print(f"[framecast] MNIST source: {mnist.source}", flush=True)
    digits = mnist.digits("train")  # digits 0-7999 only; the test digits are never touched here
    command = "framecast " + shlex.join(argv if argv is not None else sys.argv[1:])

    keras.utils.set_random_seed(cfg.seed)
    keras.config.set_dtype_policy(cfg.precision)
    state = read_state(out)
    kwargs = cfg.builder_kwargs()
    if cfg.task == "next_frame":
        train_steps = D.CONTEXT_FRAMES if cfg.rollout else None  # --forecast: one frame a call
    else:
        train_steps = D.DIRECTION_LENGTH
    if state is not None:
        if (state["arch"], state["task"]) != (cfg.arch, cfg.task):
            raise SystemExit(
                f"{out} holds a {state['arch']}/{state['task']} run; "
                f"use another --out for {cfg.arch}/{cfg.task}"
            )
        if state.get("rollout", 0) != cfg.rollout:
            raise SystemExit(
                f"{out} holds a run with --rollout {state.get('rollout', 0)}; "
                f"resume it with the same value or use another --out"
            )
        if bool(state.get("forecast")) != cfg.forecast:
            raise SystemExit(
                f"{out} holds a run {'with' if state.get('forecast') else 'without'}"
                " --forecast; resume it the same way or use another --out"
            )
        model = keras.models.load_model(ckpt_dir / state["checkpoint"], safe_mode=True)
        kwargs = state["builder_kwargs"]
        print(
            f"[framecast] resuming from {state['checkpoint']} (epoch {state['epoch']} of "
            f"{cfg.epochs}, {state['clips_seen']} clips seen)",
            flush=True,
        )
    else:
        parent = _parent(cfg) if cfg.init_from else None
        if parent is not None:
            kwargs = parent["builder_kwargs"]  # the architecture is the parent's, exactly
        state = {
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
        model = build(cfg.arch, task=cfg.task, time_steps=train_steps, **kwargs)
        if parent is not None:
            model.set_weights(parent["weights"])
        if cfg.rollout:
            model = closed_loop(model, cfg.rollout)
        if cfg.forecast:
            model = Forecaster(model, D.CONTEXT_FRAMES, name="forecaster")
        total = max(1, cfg.epochs * cfg.steps)
        schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, total, alpha=0.05)
        if cfg.task == "next_frame":
            loss = {"bce": "binary_crossentropy", "mse": "mean_squared_error", "l1l2": l1l2}[
                cfg.loss
            ]
            metrics = [rollout_mse] if cfg.forecast else ["mse"]
        else:
            loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
        model.compile(
            optimizer=keras.optimizers.Adam(schedule, clipnorm=1.0), loss=loss, metrics=metrics
        )

    sampling = tuple(state["sampling"]) if state.get("sampling") else None
    dataset = ClipDataset(
        digits, cfg.task, cfg.batch_size, cfg.steps, cfg.seed, cfg.rollout, sampling
    )
    val_digits_x, val_y = _validation(mnist, cfg)

    class Checkpoint(keras.callbacks.Callback):
        """Atomic per-epoch checkpoint + state; epoch-seeded data so a resume is reproducible."""

        def __init__(self):
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
            atomic_write_text(_state_path(out), json.dumps(state, indent=2))
            if old and old != name:
                (ckpt_dir / old).unlink(missing_ok=True)

    from models.progress import keras_callback

    # The progress display (a bar on a terminal, periodic lines in a log) and the per-epoch
    # summary line, in place of Keras' own (fit runs with verbose=0).
    shown = keras_callback(
        batch_size=cfg.batch_size,
        steps=cfg.steps,
        epochs=cfg.epochs,
        desc="train",
        quiet=cfg.verbose != 1,
        summary=cfg.verbose != 0,
    )
    callbacks = [
        Checkpoint(),
        keras.callbacks.CSVLogger(str(out / "logs" / "history.csv"), append=True),
    ]
    if keras.backend.backend() == "tensorflow" and importlib.util.find_spec("tensorboard"):
        callbacks.append(
            keras.callbacks.TensorBoard(log_dir=str(out / "logs"), update_freq="epoch")
        )
    else:
        print(
            "[framecast] TensorBoard logging needs the TensorFlow backend and the tensorboard "
            "package; writing logs/history.csv only",
            flush=True,
        )

    if state["epoch"] < cfg.epochs:
        try:
            model.fit(
                dataset,
                epochs=cfg.epochs,
                initial_epoch=state["epoch"],
                validation_data=(val_digits_x, val_y),
                callbacks=[*callbacks, shown],
                verbose=0,
            )
        except KeyboardInterrupt:
            shown.close()
            print(
                f"\n[framecast] interrupted; {state['epoch']} epoch(s) are saved in {ckpt_dir}. "
                "Run the same command again to resume.",
                flush=True,
            )
            raise SystemExit(130) from None

    # The final model takes a fixed context window so serving and evaluation never retrace; it is
    # float32 whatever the training precision (the weights are float32 under a mixed policy).
    keras.config.set_dtype_policy("float32")
    context = D.CONTEXT_FRAMES
    final = build(cfg.arch, task=cfg.task, time_steps=context, **kwargs)
    final.set_weights(step_model(model).get_weights())
    parent = state.get("init_from")
    clips_total = state["clips_seen"] + (parent["clips_seen"] if parent else 0)
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
        training={
            "command": command,
            "seed": cfg.seed,
            "data": {
                "source": mnist.source,
                "digits": (
                    f"{D.TRAIN_DIGITS.start}-{D.TRAIN_DIGITS.stop - 1} of the MNIST test split"
                ),
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
            "clips_seen": clips_total,
            "clips_seen_this_run": state["clips_seen"],
            "objective": (
                f"encoder-forecaster: read {context} context frames, then roll out "
                f"{D.NEXT_FRAME_LENGTH - context} frames carrying every recurrent "
                "state, fed back the truth with a probability annealed linearly from "
                f"{state['sampling'][0]:g} to 0 over {state['sampling'][1]} clips "
                "(scheduled sampling), else the model's own prediction; loss on all "
                f"{D.NEXT_FRAME_LENGTH - 1} outputs"
                if state.get("forecast")
                else f"closed loop: roll out {cfg.rollout} frames from a {context}-frame "
                "window (append the prediction, drop the oldest frame, as served) and "
                "score them against the truth"
                if cfg.rollout
                else "teacher forcing: predict frame t+1 at every step t"
                if cfg.task == "next_frame"
                else "classify the clip's direction"
            ),
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
        },
    )
    save_model_folder(out, final, manifest)
    print(
        f"[framecast] wrote {out / manifest.checkpoint} ({manifest.params} params, "
        f"{manifest.flops_per_clip / 1e6:.1f} MFLOP per clip); sha256 {manifest.sha256[:12]}…",
        flush=True,
    )
    return out


def _parent(cfg: TrainConfig) -> dict:
    """Weights and training record of the ``--init-from`` model folder (same arch and task)."""
    folder = Path(cfg.init_from)
    manifest = read_manifest(folder)  # raises ManifestError with the reason
    verify_checkpoint(folder, manifest)
    if (manifest.architecture, manifest.task) != (cfg.arch, cfg.task):
        raise SystemExit(
            f"--init-from {folder} is a {manifest.architecture}/{manifest.task} "
            f"model, not {cfg.arch}/{cfg.task}"
        )
    if cfg.config:
        raise SystemExit(
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


def _validation(mnist: D.MNIST, cfg: TrainConfig) -> tuple:
    """Fixed validation clips from the training digits, in the training input layout."""
    if cfg.task == "next_frame":
        clips = D.validation_set(mnist, "next_frame", cfg.val_clips)
        if cfg.forecast:  # scored closed loop, as served
            fed = clips.shape[1] - 1 - D.CONTEXT_FRAMES
            return (clips, np.zeros((len(clips), fed), np.float32)), clips[:, 1:]
        if cfg.rollout:
            c = D.CONTEXT_FRAMES
            return clips[:, :c], clips[:, c : c + cfg.rollout]
        return clips[:, :-1], clips[:, 1:]
    return D.validation_set(mnist, "classify", cfg.val_clips)


def main(args: argparse.Namespace) -> int:
    if not 0.0 <= args.sampling_start <= 1.0 or args.sampling_clips < 0:
        print(
            "framecast train: --sampling-start must be in [0, 1] and --sampling-clips >= 0",
            file=sys.stderr,
        )
        return 2
    for name in ("epochs", "steps", "batch_size", "val_clips"):
        if getattr(args, name) < 1:
            print(f"framecast train: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    cfg = TrainConfig(
        arch=args.arch,
        task=args.task,
        out=args.out,
        epochs=args.epochs,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        lr=args.lr,
        loss=args.loss,
        precision=args.precision,
        mnist_dir=args.mnist_dir,
        config=args.config,
        val_clips=args.val_clips,
        verbose=2 if args.quiet else 1,
        rollout=args.rollout,
        init_from=args.init_from,
        forecast=args.forecast,
        sampling_clips=args.sampling_clips,
        sampling_start=args.sampling_start,
    )
    run(cfg, argv=getattr(args, "argv", None))
    return 0
