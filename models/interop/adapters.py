"""Models over a loaded model's own layers and weights, for serving it without retracing or
converting: one fixed-length copy per clip length of a free time axis (:class:`PerLength`,
:func:`at_length`) and an entry that takes a clip's uint8 pixels (:func:`from_bytes`)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import layers


class PerLength:
    """``predict_on_batch`` for a free time axis: one compiled copy per clip length.

    Under TensorFlow, calling a model's own ``predict_on_batch`` with a time length other than
    the first it saw can give wrong values (its traced function relaxes the shape), so each length
    gets its own function, made by ``make(length)`` and kept (at most ``keep``, least recently
    used dropped). Lengths are read from the first input's axis 1.
    """

    def __init__(self, make: Callable[[int], Any], keep: int = 64):
        self.make = make
        self.keep = keep
        self.copies: OrderedDict[int, Any] = OrderedDict()

    def __call__(self, length: int) -> Any:
        copy = self.copies.get(length)
        if copy is None:
            copy = self.copies[length] = self.make(length)
            while len(self.copies) > self.keep:
                self.copies.popitem(last=False)
        else:
            self.copies.move_to_end(length)
        return copy

    def predict_on_batch(self, batch: Any) -> Any:
        first = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(int(np.shape(first)[1])).predict_on_batch(batch)


def at_length(model: keras.Model) -> Callable[[int], keras.Model]:
    """``length → a model over the same layers whose input has that fixed time length``."""

    def make(length: int) -> keras.Model:
        shape = (length,) + tuple(model.inputs[0].shape[2:])
        inp = keras.Input(shape, dtype=model.inputs[0].dtype)
        return keras.Model(inp, model(inp), name=f"{model.name}_t{length}")

    return make


class _FromBytes(layers.Layer):
    """uint8 pixels → float32 in [0, 1]: ``x / 255`` in float32, the division numpy does. The
    divisor is a (frozen) weight, not a constant: TensorFlow's graph optimizer turns a division
    by a constant into a multiplication by its reciprocal, which is 1 ulp off for some pixels."""

    def build(self, input_shape: Any) -> None:
        self.divisor = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(255.0), trainable=False
        )

    def call(self, x: Any) -> Any:
        return keras.ops.divide(keras.ops.cast(x, "float32"), self.divisor)


def from_bytes(model: keras.Model) -> keras.Model:
    """The same model (the same layers and weights) taking uint8 pixels, 0–255, which it scales
    in its own graph: the caller hands over a clip's bytes and converts nothing. Only a model
    with one input of a fixed shape (ValueError otherwise)."""
    if len(model.inputs) != 1:
        raise ValueError(f"{len(model.inputs)} inputs")
    shape = tuple(model.inputs[0].shape[1:])
    if None in shape:
        raise ValueError(f"input shape {shape} is not fixed")
    inp = keras.Input(shape, dtype="uint8")
    return keras.Model(inp, model(_FromBytes()(inp)), name=f"{model.name}_from_bytes")


__all__ = ["PerLength", "at_length", "from_bytes"]
