"""`framecast train`: fit a model on Moving MNIST clips generated on the fly.

Layout of ``--out DIR`` while and after training::

    DIR/checkpoints/epoch-NNNN.keras   the latest finished epoch (model + optimizer state)
    DIR/checkpoints/state.json         which epoch that is, clips seen, wall time so far
    DIR/logs/                          TensorBoard event files (TensorFlow backend) and history.csv
    DIR/model.keras, DIR/manifest.json the final model (fixed context-length input) once done

Running the same command again after an interrupt resumes from the last finished epoch: Ctrl-C
loses at most the epoch in progress. Every file is written under a temporary name and renamed.

:func:`run` reads as the run goes: start or resume the model (:func:`start`, :func:`resume`),
the data (``batches.py``), the callbacks, the fit, the final model (``manifest.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models import data as D
from models.architectures import build, closed_loop
from models.carried import Forecaster
from models.training.batches import ClipDataset, validation_data
from models.training.checkpoints import (
    check_resumable,
    epoch_checkpoint,
    new_state,
    parent,
    read_state,
)
from models.training.config import TrainConfig, TrainingError
from models.training.losses import l1l2, rollout_mse
from models.training.manifest import write_final

if TYPE_CHECKING:  # annotations only
    import keras


def run(cfg: TrainConfig, argv: list[str] | None = None) -> Path:
    """Train (or resume) and write the final model folder; returns ``cfg.out``."""
    import keras

    cfg.check()
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
    if state is not None:
        model, kwargs = resume(cfg, out, state)
    else:
        state, model, kwargs = start(cfg)

    sampling = tuple(state["sampling"]) if state.get("sampling") else None
    dataset = ClipDataset(
        digits, cfg.task, cfg.batch_size, cfg.steps, cfg.seed, cfg.rollout, sampling
    )
    validation = validation_data(mnist, cfg)
    fit(cfg, out, state, model, dataset, validation)
    write_final(out, cfg, state, model, kwargs, command, mnist.source)
    return out


def resume(cfg: TrainConfig, out: Path, state: dict) -> tuple[keras.Model, dict]:
    """The model of the newest epoch checkpoint and its builder arguments (the same run only)."""
    import keras

    check_resumable(state, cfg, out)
    model = keras.models.load_model(out / "checkpoints" / state["checkpoint"], safe_mode=True)
    print(
        f"[framecast] resuming from {state['checkpoint']} (epoch {state['epoch']} of "
        f"{cfg.epochs}, {state['clips_seen']} clips seen)",
        flush=True,
    )
    return model, state["builder_kwargs"]


def start(cfg: TrainConfig) -> tuple[dict, keras.Model, dict]:
    """A new run: its state, the compiled model of its objective, its builder arguments."""
    kwargs = cfg.builder_kwargs()
    init = parent(cfg) if cfg.init_from else None
    if init is not None:
        kwargs = init["builder_kwargs"]  # the architecture is the parent's, exactly
    state = new_state(cfg, kwargs, init)
    model = build(cfg.arch, task=cfg.task, time_steps=cfg.train_time_steps, **kwargs)
    if init is not None:
        model.set_weights(init["weights"])
    if cfg.rollout:
        model = closed_loop(model, cfg.rollout)
    if cfg.forecast:
        model = Forecaster(model, D.CONTEXT_FRAMES, name="forecaster")
    compile_model(cfg, model)
    return state, model, kwargs


def compile_model(cfg: TrainConfig, model: keras.Model) -> None:
    """Adam with a cosine decay over every step of the run, the task's loss and metrics."""
    import keras

    total = max(1, cfg.epochs * cfg.steps)
    schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, total, alpha=0.05)
    if cfg.task == "next_frame":
        loss = {"bce": "binary_crossentropy", "mse": "mean_squared_error", "l1l2": l1l2}[cfg.loss]
        metrics: list[Any] = [rollout_mse] if cfg.forecast else ["mse"]
    else:
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, clipnorm=1.0), loss=loss, metrics=metrics
    )


def callbacks(cfg: TrainConfig, out: Path, state: dict, dataset: Any) -> list:
    """The per-epoch checkpoint, the CSV log, TensorBoard where it can run, and last the
    progress display (a bar on a terminal, periodic lines in a log) with the per-epoch summary
    line, in place of Keras' own (fit runs with verbose=0)."""
    import keras

    from models.runs.progress import keras_callback

    shown = keras_callback(
        batch_size=cfg.batch_size,
        steps=cfg.steps,
        epochs=cfg.epochs,
        desc="train",
        quiet=cfg.verbose != 1,
        summary=cfg.verbose != 0,
    )
    out_cbs = [
        epoch_checkpoint(out, state, cfg, dataset),
        keras.callbacks.CSVLogger(str(out / "logs" / "history.csv"), append=True),
    ]
    if keras.backend.backend() == "tensorflow" and importlib.util.find_spec("tensorboard"):
        out_cbs.append(keras.callbacks.TensorBoard(log_dir=str(out / "logs"), update_freq="epoch"))
    else:
        print(
            "[framecast] TensorBoard logging needs the TensorFlow backend and the tensorboard "
            "package; writing logs/history.csv only",
            flush=True,
        )
    return [*out_cbs, shown]


def fit(
    cfg: TrainConfig, out: Path, state: dict, model: keras.Model, dataset: Any, validation: tuple
) -> None:
    """Fit the epochs still to run; Ctrl-C keeps the finished ones (and goes on up: the CLI
    exits with code 130)."""
    every = callbacks(cfg, out, state, dataset)
    if state["epoch"] >= cfg.epochs:
        return
    try:
        model.fit(
            dataset,
            epochs=cfg.epochs,
            initial_epoch=state["epoch"],
            validation_data=validation,
            callbacks=every,
            verbose=0,
        )
    except KeyboardInterrupt:
        every[-1].close()
        print(
            f"\n[framecast] interrupted; {state['epoch']} epoch(s) are saved in "
            f"{out / 'checkpoints'}. Run the same command again to resume.",
            flush=True,
        )
        raise


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
    try:
        run(cfg, argv=getattr(args, "argv", None))
    except TrainingError as e:  # a refusal: one line and exit code 2, as for a bad flag
        print(f"framecast train: error: {e}", file=sys.stderr)
        return 2
    return 0
