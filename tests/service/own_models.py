"""Models built the way users build them (plain Keras, not framecast's builders), tiny.

Each ``make_*`` returns an uncompiled-or-compiled ``keras.Model``; :func:`write_folder` saves one
alone in ``root/<name>/model.keras`` (or ``.h5``), with no manifest, as a user would.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

S = 16  # frame side
T = 6  # frames of a fixed time axis


def conv2d_lstm_binary(channels: int = 3, frames: int | None = T) -> keras.Model:
    """The textbook Conv2D+LSTM: TimeDistributed Conv2D encoder, flattened, into an LSTM,
    ``Dense(1, sigmoid)``."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((frames, S, S, channels)),
            layers.TimeDistributed(layers.Conv2D(4, 3, activation="relu")),
            layers.TimeDistributed(layers.MaxPooling2D(2)),
            layers.TimeDistributed(layers.Flatten()),
            layers.LSTM(8),
            layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def convlstm2d_binary(channels: int = 3) -> keras.Model:
    """The textbook ConvLSTM2D classifier, ``Dense(1, sigmoid)``."""
    keras.utils.set_random_seed(2)
    inp = keras.Input((T, S, S, channels))
    x = layers.ConvLSTM2D(4, 3, padding="same", return_sequences=False)(inp)
    x = layers.BatchNormalization()(x)
    x = layers.Flatten()(x)
    out = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inp, out)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def convlstm2d_softmax(classes: int = 3, channels: int = 1) -> keras.Model:
    keras.utils.set_random_seed(3)
    inp = keras.Input((T, S, S, channels))
    x = layers.ConvLSTM2D(4, 3, padding="same")(inp)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inp, out)


def keras_example_next_frame(channels: int = 1) -> keras.Model:
    """Like the Keras ConvLSTM next-frame example: free time axis, ConvLSTM2D layers returning
    sequences, a Conv3D head (which mixes neighbouring frames: no carried state possible)."""
    keras.utils.set_random_seed(4)
    inp = keras.Input((None, S, S, channels))
    x = layers.ConvLSTM2D(4, 3, padding="same", return_sequences=True, activation="relu")(inp)
    x = layers.BatchNormalization()(x)
    x = layers.ConvLSTM2D(4, 3, padding="same", return_sequences=True, activation="relu")(x)
    out = layers.Conv3D(channels, (3, 3, 3), activation="sigmoid", padding="same")(x)
    model = keras.Model(inp, out)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def free_sequence_next_frame(channels: int = 1) -> keras.Model:
    """Free time axis, one frame per input frame, causal (per-frame head): steppable."""
    keras.utils.set_random_seed(5)
    inp = keras.Input((None, S, S, channels))
    x = layers.ConvLSTM2D(4, 3, padding="same", return_sequences=True)(inp)
    out = layers.TimeDistributed(layers.Conv2D(channels, 1, activation="sigmoid"))(x)
    return keras.Model(inp, out)


def many_to_one_next_frame(channels: int = 1) -> keras.Model:
    """``(T, S, S, C)`` → one frame ``(S, S, C)``."""
    keras.utils.set_random_seed(6)
    inp = keras.Input((T, S, S, channels))
    x = layers.ConvLSTM2D(4, 3, padding="same", return_sequences=False)(inp)
    out = layers.Conv2D(channels, 1, activation="sigmoid")(x)
    return keras.Model(inp, out)


def write_folder(root: Path, name: str, model: keras.Model, suffix: str = ".keras") -> Path:
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / f"model{suffix}")
    return folder
