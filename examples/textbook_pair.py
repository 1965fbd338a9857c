"""Build, briefly train and save the textbook pair that framecast compares, as a user would.

    python3 examples/textbook_pair.py OUT_DIR

writes ``OUT_DIR/conv2d_lstm.keras`` and ``OUT_DIR/convlstm2d.keras``: both take RGB clips
``(10, 64, 64, 3)`` and end in ``Dense(1, activation="sigmoid")``. They learn a toy task on
synthetic clips (does a bright square move right? 1 : 0) for a few seconds, so that their
answers mean something; nothing here is framecast code, only Keras.
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
from keras import layers

SHAPE = (10, 64, 64, 3)


def conv2d_lstm() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input(SHAPE),
            layers.TimeDistributed(layers.Conv2D(8, 3, strides=2, activation="relu")),
            layers.TimeDistributed(layers.MaxPooling2D(2)),
            layers.TimeDistributed(layers.Flatten()),
            layers.LSTM(32),
            layers.Dense(1, activation="sigmoid"),
        ],
        name="conv2d_lstm",
    )


def convlstm2d() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input(SHAPE),
            layers.AveragePooling3D((1, 4, 4)),
            layers.ConvLSTM2D(8, 3, padding="same"),
            layers.Flatten(),
            layers.Dense(1, activation="sigmoid"),
        ],
        name="convlstm2d",
    )


def clips(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` clips of a coloured square moving right (label 1) or left (label 0)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n,) + SHAPE, np.float32)
    y = rng.integers(0, 2, n).astype(np.float32)
    for i in range(n):
        row, start = rng.integers(4, 48), rng.integers(10, 44)
        colour = rng.uniform(0.5, 1.0, 3)
        for t in range(SHAPE[0]):
            col = start + (t if y[i] else -t)
            x[i, t, row : row + 12, col : col + 12] = colour
    return x, y


def main(out: str) -> None:
    keras.utils.set_random_seed(0)
    Path(out).mkdir(parents=True, exist_ok=True)
    x, y = clips(256)
    for model in (conv2d_lstm(), convlstm2d()):
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        model.fit(x, y, epochs=8, batch_size=32, verbose=0)
        acc = model.evaluate(*clips(64, seed=1), verbose=0)[1]
        path = Path(out) / f"{model.name}.keras"
        model.save(path)
        print(f"{path}: held-out accuracy {acc:.2f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
