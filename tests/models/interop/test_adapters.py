"""``from_bytes`` (models/interop/adapters.py): a classifier that takes a clip's uint8 pixels and
scales them in its graph answers exactly (bit for bit) what it answers on the pixels scaled by
numpy, under both backends; models it cannot wrap are refused with a reason."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from models.checkpoint import open_folder
from models.interop.adapters import from_bytes

ROOT = Path(__file__).resolve().parents[3]


def _same(model: keras.Model, wrapped: keras.Model, batch: int, seed: int) -> None:
    shape = tuple(model.inputs[0].shape[1:])
    raw = np.random.default_rng(seed).integers(0, 256, (batch,) + shape, dtype=np.uint8)
    got = np.asarray(wrapped.predict_on_batch(raw))
    want = np.asarray(model.predict_on_batch(np.divide(raw, np.float32(255.0), dtype=np.float32)))
    assert got.dtype == want.dtype and np.array_equal(got, want), np.abs(got - want).max()


@pytest.mark.parametrize("name", ["conv2d_lstm_classify", "convlstm2d_classify"])
def test_bundled_classifiers_answer_bit_for_bit(name):
    _, model = open_folder(ROOT / "models" / name)
    wrapped = from_bytes(model)
    for batch, seed in ((1, 0), (3, 1), (8, 2)):
        _same(model, wrapped, batch, seed)


def test_an_rgb_textbook_shaped_classifier_answers_bit_for_bit():
    inp = keras.Input((4, 16, 16, 3))
    x = keras.layers.TimeDistributed(keras.layers.Conv2D(4, 3, activation="relu"))(inp)
    x = keras.layers.TimeDistributed(keras.layers.Flatten())(x)
    x = keras.layers.LSTM(8)(x)
    model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(x))
    _same(model, from_bytes(model), 5, 3)


def test_models_it_cannot_wrap_are_refused_with_a_reason():
    free = keras.Input((None, 8, 8, 1))
    x = keras.layers.ConvLSTM2D(2, 3)(free)
    with pytest.raises(ValueError, match="not fixed"):
        from_bytes(keras.Model(free, keras.layers.Flatten()(x)))
    a, b = keras.Input((2, 4, 4, 1)), keras.Input((3,))
    two = keras.Model([a, b], keras.layers.Concatenate()([keras.layers.Flatten()(a), b]))
    with pytest.raises(ValueError, match="2 inputs"):
        from_bytes(two)


_UNDER_JAX = """
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
from models.interop.adapters import from_bytes
from models.checkpoint import open_folder
_, model = open_folder(__import__("pathlib").Path(sys.argv[1]) / "models" / "conv2d_lstm_classify")
raw = np.random.default_rng(4).integers(0, 256, (3, 10, 64, 64, 1), dtype=np.uint8)
got = np.asarray(from_bytes(model).predict_on_batch(raw))
want = np.asarray(model.predict_on_batch(np.divide(raw, np.float32(255.0), dtype=np.float32)))
print("same" if np.array_equal(got, want) else f"differ {np.abs(got - want).max()}")
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_under_jax_too():
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", _UNDER_JAX, str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "same"
