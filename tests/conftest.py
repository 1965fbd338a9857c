"""Shared fixtures: a synthetic MNIST (so tests never need the real data) and the real one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# the suite writes nothing under ~/.local/state: evaluation jobs and cost figures (servers the tests
# start, in this process or as subprocesses, inherit these) go to a folder of this run; peak memory
# is measured only by the tests that ask for it (a TensorFlow process per model otherwise)
_STATE = tempfile.mkdtemp(prefix="framecast-test-state-")
os.environ.setdefault("FRAMECAST_JOB_DIR", os.path.join(_STATE, "jobs"))
os.environ.setdefault("FRAMECAST_COST_CACHE_DIR", os.path.join(_STATE, "costs"))
os.environ.setdefault("FRAMECAST_MEASURE_MEMORY", "off")


def _synthetic_digits(n: int, seed: int = 0) -> np.ndarray:
    """(n, 28, 28) uint8 blobs: a bright filled rectangle per image, at a random place."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28), dtype=np.uint8)
    for i in range(n):
        h, w = rng.integers(6, 20, size=2)
        top, left = rng.integers(0, 28 - h), rng.integers(0, 28 - w)
        x[i, top : top + h, left : left + w] = rng.integers(128, 256)
    return x


@pytest.fixture(scope="session")
def synthetic_mnist_npz(tmp_path_factory) -> Path:
    """A Keras-style mnist.npz with 10,000 synthetic test digits."""
    d = tmp_path_factory.mktemp("mnist")
    x = _synthetic_digits(10_000)
    y = (np.arange(10_000) % 10).astype(np.uint8)
    path = d / "mnist.npz"
    np.savez(path, x_train=x[:10], y_train=y[:10], x_test=x, y_test=y)
    return path


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """The real MNIST test split, from FRAMECAST_MNIST_DIR; skipped when not configured."""
    d = os.environ.get("FRAMECAST_MNIST_DIR")
    if not d or not Path(d).is_dir():
        pytest.skip("FRAMECAST_MNIST_DIR is not set to the MNIST folder")
    return Path(d)
