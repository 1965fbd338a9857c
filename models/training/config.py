"""What one `framecast train` run is: :class:`TrainConfig`, the default model sizes, and the
refusal of flags that contradict each other (no Keras here: the CLI reads it before training)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from models import data as D
from models.repository import ARCHITECTURES, TASKS

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


class TrainingError(ValueError):
    """A run cannot start or resume as asked; the message says what and why (one line)."""


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
    # next_frame only: train the carried-state encoder–forecaster (models/carried.py) with
    # scheduled sampling, the truth fed back with a probability falling linearly from
    # ``sampling_start`` to 0 over the first ``sampling_clips`` clips of the run
    forecast: bool = False
    sampling_clips: int = 0
    sampling_start: float = 1.0

    def builder_kwargs(self) -> dict:
        kw = dict(DEFAULT_CONFIGS[(self.arch, self.task)])
        kw.update(self.config)
        return kw

    def check(self) -> None:
        """TrainingError when the architecture, the task and the objective flags do not fit."""
        if self.arch not in ARCHITECTURES or self.task not in TASKS:
            raise TrainingError(f"--arch must be one of {ARCHITECTURES}, --task one of {TASKS}")
        if (self.rollout or self.forecast) and self.task != "next_frame":
            raise TrainingError("--rollout and --forecast apply to --task next_frame only")
        if self.rollout and self.forecast:
            raise TrainingError(
                "--rollout (sliding window) and --forecast (carried state) exclude each other"
            )
        if not 0 <= self.rollout <= D.NEXT_FRAME_LENGTH - D.CONTEXT_FRAMES:
            raise TrainingError(
                f"--rollout must be between 0 and "
                f"{D.NEXT_FRAME_LENGTH - D.CONTEXT_FRAMES} (the frames after the context)"
            )

    @property
    def train_time_steps(self) -> int | None:
        """The time axis of the model while training (None: free; --forecast calls it one frame
        at a time)."""
        if self.task == "next_frame":
            return D.CONTEXT_FRAMES if self.rollout else None
        return D.DIRECTION_LENGTH
