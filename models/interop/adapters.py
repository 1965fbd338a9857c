"""Models over a loaded model's own layers and weights, for serving it without retracing or
converting: one fixed-length copy per clip length of a free time axis (:class:`PerLength`,
:func:`at_length`), an entry that takes a clip's uint8 pixels (:func:`from_bytes`) and a forward
pass called without ``predict_on_batch``'s per-call work (:class:`Direct`)."""

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


class Direct:
    """A TensorFlow model's forward pass as one function traced once for every batch size (the
    batch axis free, the rest of its one input fixed), called on a batch with nothing else:
    ``predict_on_batch`` adapts its data, looks up its traced function by the batch's shape and
    builds its output again at every call, about a millisecond of Python (holding the GIL) a
    batch of a small model on this CPU. It is used only once it has answered warm-up's batches
    bit for bit as ``predict_on_batch`` did (:meth:`check`): ``exact``."""

    def __init__(self, model: keras.Model):
        import tensorflow as tf

        self.tf, self.exact = tf, False
        spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), model.inputs[0].dtype)
        self.fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        self.checked = 0  # warm-up batches it answered exactly; the first miss ends its trial

    @classmethod
    def trial(cls, model: Any) -> Direct | None:
        """A trial for ``model``: a Keras model of one input whose shape is fixed but for the
        batch axis; None for anything else (a free time axis, several inputs, no Keras)."""
        if not isinstance(model, keras.Model) or keras.backend.backend() != "tensorflow":
            return None
        inputs = getattr(model, "inputs", None) or []
        if len(inputs) != 1 or None in tuple(inputs[0].shape[1:]):
            return None
        return cls(model)

    def check(self, batch: Any, want: Any) -> None:
        """Compare its answer on ``batch`` with ``want`` (``predict_on_batch``'s, as float32)."""
        if self.checked < 0 or not isinstance(batch, np.ndarray):
            self.checked, self.exact = -1, False
            return
        got = self(batch)
        same = type(got) is type(want) and (
            all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
            if isinstance(got, list)
            else np.array_equal(got, want)
        )
        self.checked, self.exact = (self.checked + 1, True) if same else (-1, False)

    def __call__(self, batch: np.ndarray) -> Any:
        out = self.fn(self.tf.constant(batch))
        if isinstance(out, (list, tuple)):
            return [np.asarray(o, dtype=np.float32) for o in out]
        return np.asarray(out, dtype=np.float32)


__all__ = ["Direct", "PerLength", "at_length", "from_bytes"]
