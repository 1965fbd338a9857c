"""MNIST loading and Moving MNIST clips built from real digits.

Arrays are ``(clips, time, height, width, channels)`` float32 in [0, 1]; time is axis 1.

Two kinds of clip:
- next-frame clips after Srivastava et al. 2015: two 28x28 digits bouncing in a 64x64 canvas,
  20 frames, step 0.1 of the free range per frame, overlap by pixel-wise max;
- direction clips for classification: one digit moving in a straight line in one of 8 screen
  directions (``DIRECTIONS``), 10 frames, never touching the border.

Digit indices 0-7999 of the MNIST test split feed training and validation clips; 8000-9999 feed
the test clips (``TRAIN_DIGITS`` / ``TEST_DIGITS``). They are never mixed.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

import numpy as np

CANVAS = 64
DIGIT = 28
NEXT_FRAME_LENGTH = 20
CONTEXT_FRAMES = 10
DIRECTION_LENGTH = 10
DIRECTIONS = ("E", "NE", "N", "NW", "W", "SW", "S", "SE")
TRAIN_DIGITS = range(0, 8000)
TEST_DIGITS = range(8000, 10000)
# Fixed test sets: `evaluate` always uses these seeds and sizes (on TEST_DIGITS).
TEST_SEED_NEXT_FRAME = 20150001
TEST_SEED_CLASSIFY = 20150002
TEST_CLIPS = 2000
VALIDATION_SEED = 777

MNIST_DIR_ENV = "FRAMECAST_MNIST_DIR"
_IMAGE_FILES = ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte")
_LABEL_FILES = ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte")


class MNISTError(RuntimeError):
    """MNIST could not be read; the message names the file and what is wrong with it."""


@dataclass(frozen=True)
class MNIST:
    images: np.ndarray  # (10000, 28, 28) uint8
    labels: np.ndarray  # (10000,) uint8
    source: str  # where the digits came from, for model cards

    def digits(self, split: str) -> np.ndarray:
        """The digit images of ``split`` ('train' -> 0-7999, 'test' -> 8000-9999)."""
        if split == "train":
            idx = TRAIN_DIGITS
        elif split == "test":
            idx = TEST_DIGITS
        else:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if len(self.images) < idx.stop:
            raise MNISTError(f"{self.source} holds {len(self.images)} digits; need {idx.stop}")
        return self.images[idx.start : idx.stop]


def _open_maybe_gz(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise MNISTError(f"cannot read {path}: {e.strerror or e}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise MNISTError(f"{path} is not a valid gzip file ({e})") from None
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip) into a uint8 array; errors name the file."""
    path = Path(path)
    data = _open_maybe_gz(path)
    if len(data) < 4:
        raise MNISTError(f"{path} is too short to be an IDX file ({len(data)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 4:
        raise MNISTError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MNISTError(f"{path} is truncated inside its header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise MNISTError(
            f"{path} is corrupt: header says {dims} = {expected} bytes, "
            f"file holds {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find(directory: Path, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        for name in (stem + ".gz", stem):
            if (directory / name).is_file():
                return directory / name
    return None


def portable_path(path: str | os.PathLike, *, project: str | os.PathLike | None = None) -> str:
    """``path`` as a card may name it: relative to the project when it is inside the project or
    beside it (``../shared/data/mnist``), else as the setting that names it
    (``$FRAMECAST_MNIST_DIR``), never this machine's absolute path.

    The path is named as given first (``os.path.abspath``: ``..`` folded, links not followed), so
    a data folder reached through a link beside the project (``../shared`` -> elsewhere) keeps
    the name it was reached by; only when that is neither inside nor beside the project are the
    resolved forms (links followed) tried. ``project`` is the project root (default: this
    checkout)."""
    path = Path(path)
    if project is None:
        given_root = Path(os.path.abspath(__file__)).parent.parent
    else:
        given_root = Path(os.path.abspath(project))
    real_root = given_root.resolve()
    given, real = os.path.abspath(path), path.resolve()
    for p, root in ((given, given_root), (given, real_root), (real, real_root)):
        rel = Path(os.path.relpath(p, root))
        if rel.parts[:1] != ("..",) or rel.parts[1:2] != ("..",):  # inside, or one level up
            return rel.as_posix()
    return f"${MNIST_DIR_ENV}" + (f" ({path.name})" if path.suffix else "")


def load_mnist(path: str | os.PathLike | None = None) -> MNIST:
    """Load the MNIST test split (10,000 digits).

    ``path`` (or the ``FRAMECAST_MNIST_DIR`` setting) is a directory with the IDX files
    ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``, or with Keras'
    ``mnist.npz``, or the ``mnist.npz`` file itself. With neither, fall back to
    ``keras.datasets.mnist.load_data()`` (needs internet) and use its test split.
    """
    path = path or os.environ.get(MNIST_DIR_ENV) or None
    if path is None:
        try:
            import keras

            (_, _), (x_test, y_test) = keras.datasets.mnist.load_data()
        except Exception as e:  # noqa: BLE001 - any download failure is reported the same way
            raise MNISTError(
                f"no MNIST directory given (--mnist-dir or {MNIST_DIR_ENV}) and the Keras download "
                f"failed: {e}"
            ) from None
        return MNIST(
            x_test.astype(np.uint8),
            y_test.astype(np.uint8),
            "keras.datasets.mnist.load_data() test split (downloaded)",
        )
    p = Path(path)
    if p.is_file() and p.suffix == ".npz":
        return _load_npz(p)
    if not p.is_dir():
        raise MNISTError(f"MNIST path {p} does not exist (set --mnist-dir or {MNIST_DIR_ENV})")
    images_file = _find(p, _IMAGE_FILES)
    labels_file = _find(p, _LABEL_FILES)
    if images_file is None and (p / "mnist.npz").is_file():
        return _load_npz(p / "mnist.npz")
    if images_file is None:
        raise MNISTError(f"{p} holds neither {_IMAGE_FILES[0]}[.gz] nor mnist.npz")
    if labels_file is None:
        raise MNISTError(f"{p} holds {images_file.name} but not {_LABEL_FILES[0]}[.gz]")
    images = read_idx(images_file)
    labels = read_idx(labels_file)
    if images.ndim != 3 or images.shape[1:] != (DIGIT, DIGIT):
        raise MNISTError(f"{images_file} holds shape {images.shape}, expected (N, 28, 28)")
    if labels.shape != (images.shape[0],):
        raise MNISTError(f"{labels_file} holds {labels.shape} labels for {images.shape[0]} images")
    return MNIST(images, labels, f"IDX files in {portable_path(p)} (MNIST test split)")


def _load_npz(path: Path) -> MNIST:
    try:
        with np.load(path, allow_pickle=False) as z:
            x, y = z["x_test"], z["y_test"]
    except KeyError as e:
        raise MNISTError(f"{path} lacks the array {e} (expected Keras' mnist.npz)") from None
    except (OSError, ValueError) as e:
        raise MNISTError(f"{path} is not a readable .npz file ({e})") from None
    if x.ndim != 3 or x.shape[1:] != (DIGIT, DIGIT) or y.shape != (x.shape[0],):
        raise MNISTError(f"{path} x_test has shape {x.shape}, expected (N, 28, 28)")
    return MNIST(x.astype(np.uint8), y.astype(np.uint8), f"{portable_path(path)} (x_test split)")


# --------------------------------------------------------------------------- clip generation


def _paste_max(canvas: np.ndarray, digit: np.ndarray, top: int, left: int) -> None:
    region = canvas[top : top + DIGIT, left : left + DIGIT]
    np.maximum(region, digit, out=region)


def moving_mnist_trajectory(
    rng: np.random.Generator, length: int, size: int = CANVAS
) -> np.ndarray:
    """Integer top-left positions ``(length, 2)`` as (row, col) of one bouncing digit."""
    free = size - DIGIT
    y, x = rng.random(), rng.random()  # start uniform over the free area, in [0, 1]
    theta = rng.random() * 2 * math.pi
    vy, vx = math.sin(theta), math.cos(theta)
    step = 0.1  # of the free range per frame (3.6 px on a 64 px canvas)
    out = np.empty((length, 2), dtype=np.int64)
    for t in range(length):
        out[t] = int(y * free), int(x * free)
        y += vy * step
        x += vx * step
        if y <= 0:
            y, vy = 0.0, -vy
        elif y >= 1:
            y, vy = 1.0, -vy
        if x <= 0:
            x, vx = 0.0, -vx
        elif x >= 1:
            x, vx = 1.0, -vx
    return out


def next_frame_clips(
    digits: np.ndarray,
    n: int,
    seed: int,
    *,
    length: int = NEXT_FRAME_LENGTH,
    num_digits: int = 2,
    size: int = CANVAS,
) -> np.ndarray:
    """``n`` Moving MNIST clips ``(n, length, size, size, 1)`` float32 in [0, 1].

    Deterministic for ``(digits, n, seed)``; digits are drawn from ``digits`` only.
    """
    rng = np.random.default_rng(seed)
    clips = np.zeros((n, length, size, size), dtype=np.uint8)
    for i in range(n):
        for _ in range(num_digits):
            digit = digits[rng.integers(len(digits))]
            traj = moving_mnist_trajectory(rng, length, size)
            for t in range(length):
                _paste_max(clips[i, t], digit, traj[t, 0], traj[t, 1])
    return (clips.astype(np.float32) / 255.0)[..., None]


def direction_clips(
    digits: np.ndarray, n: int, seed: int, *, length: int = DIRECTION_LENGTH, size: int = CANVAS
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` direction clips ``(n, length, size, size, 1)`` and labels ``(n,)``
    (an index into DIRECTIONS).

    One digit moves in a straight line at 1.5-3.5 px/frame toward one of 8 screen directions
    (class centre +- 15 degrees; N is toward row 0) and stays inside the canvas for every frame.
    """
    rng = np.random.default_rng(seed)
    clips = np.zeros((n, length, size, size), dtype=np.uint8)
    labels = rng.integers(len(DIRECTIONS), size=n)
    free = size - DIGIT
    span = length - 1
    for i in range(n):
        digit = digits[rng.integers(len(digits))]
        angle = math.radians(45 * labels[i] + rng.uniform(-15, 15))
        speed = rng.uniform(1.5, 3.5)
        dx, dy = speed * math.cos(angle), -speed * math.sin(angle)  # screen rows grow downward
        # start so that start + t*d stays in [0, free] for t in [0, span] (after rounding)
        x_lo, x_hi = max(0.0, -dx * span), min(float(free), free - dx * span)
        y_lo, y_hi = max(0.0, -dy * span), min(float(free), free - dy * span)
        x0, y0 = rng.uniform(x_lo, x_hi), rng.uniform(y_lo, y_hi)
        for t in range(length):
            top = min(max(int(round(y0 + dy * t)), 0), free)
            left = min(max(int(round(x0 + dx * t)), 0), free)
            _paste_max(clips[i, t], digit, top, left)
    return (clips.astype(np.float32) / 255.0)[..., None], labels.astype(np.int64)


@overload
def test_set(mnist: MNIST, task: Literal["next_frame"], n: int = ...) -> np.ndarray: ...
@overload
def test_set(
    mnist: MNIST, task: Literal["classify"], n: int = ...
) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def test_set(
    mnist: MNIST, task: str, n: int = ...
) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...
def test_set(
    mnist: MNIST, task: str, n: int = TEST_CLIPS
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The fixed test set of ``task``, built from digits 8000-9999 with a seed fixed in code."""
    digits = mnist.digits("test")
    if task == "next_frame":
        return next_frame_clips(digits, n, TEST_SEED_NEXT_FRAME)
    if task == "classify":
        return direction_clips(digits, n, TEST_SEED_CLASSIFY)
    raise ValueError(f"unknown task {task!r}")


@overload
def validation_set(mnist: MNIST, task: Literal["next_frame"], n: int = ...) -> np.ndarray: ...
@overload
def validation_set(
    mnist: MNIST, task: Literal["classify"], n: int = ...
) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def validation_set(
    mnist: MNIST, task: str, n: int = ...
) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...
def validation_set(
    mnist: MNIST, task: str, n: int = 256
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """A fixed validation set from the training digits (0-7999), disjoint from training seeds."""
    digits = mnist.digits("train")
    if task == "next_frame":
        return next_frame_clips(digits, n, VALIDATION_SEED)
    return direction_clips(digits, n, VALIDATION_SEED)


def clip_seed(seed: int, epoch: int, batch: int) -> int:
    """Seed of one training batch: fresh clips every epoch, reproducible after a resume.

    Training seeds are >= 1e9 so they never coincide with the fixed validation/test seeds.
    """
    return int(np.random.SeedSequence([seed, epoch, batch]).generate_state(1)[0]) + 1_000_000_000
