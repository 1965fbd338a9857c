"""The clips a run trains and validates on: fresh Moving MNIST clips for every (epoch, batch),
reproducible from the seed, in the layout of the run's objective."""

from __future__ import annotations

from typing import Any

import numpy as np

from models import data as D
from models.training.config import TrainConfig


class ClipDataset:
    """Fresh clips for every (epoch, batch), reproducible from the seed (a keras PyDataset)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # the real subclass, lazily: keras is slow
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

            def __len__(self) -> int:
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


def validation_data(mnist: D.MNIST, cfg: TrainConfig) -> tuple:
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
