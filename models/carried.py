"""The carried-state encoder–forecaster (Shi et al. 2015, Wang et al. 2017) in Keras.

A next-frame model built as one chain of layers, whose recurrent layers return sequences, can be
run one frame at a time with every recurrent layer's state carried between frames: read the
context once, then feed each prediction back as the next input. That is what
:class:`ContextPass` (context → next frame + states) and :class:`Step` (one frame + states →
next frame + states) do, with the *same layer objects* as the checkpoint (no copied weights), and
what :class:`Forecaster` does for training (teacher forcing on the context, scheduled sampling on
the rest: each fed-back frame is the truth with probability ``p``, else the model's own output).

A model that does not fit (several inputs, layers that are not a chain, a recurrent layer that
does not return sequences or runs backwards, a layer that mixes time) raises
:class:`NotSteppable`; :func:`stepper` also checks numerically that the context pass gives the
model's own next frame, so a model it accepts rolls out exactly as the model reads a sequence.

Only ``keras`` and ``keras.ops`` are used: the same code runs under TensorFlow and JAX.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from models.rollout import carried_rollout

# A backend tensor (TensorFlow or JAX) inside ``call``, or a symbolic ``keras.KerasTensor``.
Tensor = Any

RECURRENT = (
    layers.LSTM,
    layers.GRU,
    layers.SimpleRNN,
    layers.ConvLSTM1D,
    layers.ConvLSTM2D,
    layers.ConvLSTM3D,
)


class NotSteppable(ValueError):
    """The model cannot carry its state frame by frame; the message says why."""


def chain(model: keras.Model) -> list:
    """The model's layers after its input, in order, when they form one chain; else raise."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise NotSteppable("the model has several inputs or outputs")
    body = [layer for layer in model.layers if not isinstance(layer, layers.InputLayer)]
    prev = model.inputs[0]
    for layer in body:
        if len(getattr(layer, "_inbound_nodes", [])) != 1:
            raise NotSteppable(f"layer {layer.name!r} is called more than once")
        node = layer._inbound_nodes[0]
        if len(node.input_tensors) != 1 or node.input_tensors[0] is not prev:
            raise NotSteppable(
                f"layer {layer.name!r} does not take the previous layer's output "
                "(the layers are not one chain)"
            )
        prev = layer.output
    if prev is not model.outputs[0]:
        raise NotSteppable("the last layer's output is not the model's output")
    recurrent = [layer for layer in body if isinstance(layer, RECURRENT)]
    if not recurrent:
        raise NotSteppable("the model has no recurrent layer (LSTM, GRU, ConvLSTM) to carry")
    for layer in body:
        if isinstance(layer, layers.Bidirectional):
            raise NotSteppable(f"layer {layer.name!r} is bidirectional")
        if isinstance(layer, RECURRENT):
            if not layer.return_sequences:
                raise NotSteppable(f"recurrent layer {layer.name!r} does not return sequences")
            if layer.go_backwards or layer.stateful:
                raise NotSteppable(f"recurrent layer {layer.name!r} runs backwards or is stateful")
    return body


def _n_states(layer: keras.layers.Layer) -> int:
    """LSTM and ConvLSTM cells carry (h, c); GRU and SimpleRNN carry h."""
    lstm = (layers.LSTM, layers.ConvLSTM1D, layers.ConvLSTM2D, layers.ConvLSTM3D)
    return 2 if isinstance(layer, lstm) else 1


def _state_shapes(body: list) -> list[tuple[int, ...]]:
    """Per-clip shapes of every carried state, in the order the layers use them."""
    shapes = []
    for layer in body:
        if isinstance(layer, RECURRENT):
            per_step = tuple(layer.output.shape[2:])  # (units,) or (h, w, filters)
            shapes += [per_step] * _n_states(layer)
    return shapes


def _frame(body: list, x: Tensor, states: list) -> tuple[Tensor, list]:
    """One frame ``(batch, 1, ...)`` through the chain with ``states`` carried → (out, states)."""
    new, k = [], 0
    for layer in body:
        if isinstance(layer, RECURRENT):
            n = _n_states(layer)
            h, s = layer.cell(x[:, 0], states[k : k + n] if n > 1 else states[k])
            k += n
            new += list(s) if isinstance(s, (list, tuple)) else [s]
            x = ops.expand_dims(h, 1)
        else:
            x = layer(x)
    return x, new


def _zeros(like: Tensor, shapes: list[tuple[int, ...]], dtype: Any) -> list:
    batch = ops.shape(like)[0]
    return [ops.zeros((batch,) + tuple(s), dtype=dtype) for s in shapes]


class _Chain(keras.Model):
    """Common part: holds the next-frame model (its layers are the weights) and its chain."""

    def __init__(self, model: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.inner = model
        self._body = chain(model)
        self.state_shapes = _state_shapes(self._body)

    def _run(self, frames: Tensor, states: list | None = None) -> tuple[list, list]:
        """Frames ``(batch, T, ...)`` from ``states`` (zeros if None) → (outputs, states)."""
        if states is None:
            states = _zeros(frames, self.state_shapes, frames.dtype)
        if frames.shape[1] is None:
            raise ValueError(
                "a carried-state pass needs a known number of frames per call "
                "(one instance per length)"
            )
        outs = []
        for t in range(frames.shape[1]):
            y, states = _frame(self._body, frames[:, t : t + 1], states)
            outs.append(y)
        return outs, states


class ContextPass(_Chain):
    """``(batch, T, H, W, C)`` → ``[next frame (batch, 1, H, W, C), *states]``."""

    def call(self, frames: Tensor) -> list[Tensor]:
        outs, states = self._run(frames)
        return [outs[-1]] + list(states)


class Step(_Chain):
    """``[frame (batch, 1, H, W, C), *states]`` → ``[next frame (batch, 1, H, W, C), *states]``."""

    def call(self, inputs: list[Tensor]) -> list[Tensor]:
        frame, states = inputs[0], list(inputs[1:])
        outs, states = self._run(frame, states)
        return [outs[-1]] + list(states)


@keras.saving.register_keras_serializable(package="framecast")
class Forecaster(_Chain):
    """Training: ``[clips (batch, T, ...), truth_prob (batch, T - 1 - context)]`` → the
    predictions of frames 1..T-1 ``(batch, T - 1, ...)``.

    Frames ``0..context-1`` are read as given (the encoder); after that the input at step ``t`` is
    the true frame ``t`` where ``truth_prob[:, t - context]`` is 1 and the model's own prediction
    of it where it is 0 (scheduled sampling; all zeros = closed loop, as served). Gradients flow
    through the fed-back predictions.
    """

    def __init__(self, model: keras.Model, context: int, **kwargs):
        super().__init__(model, **kwargs)
        self.context = int(context)

    def call(self, inputs: list[Tensor]) -> Tensor:
        clips, truth = inputs
        states = _zeros(clips, self.state_shapes, clips.dtype)
        outs: list[Tensor] = []
        for t in range(clips.shape[1] - 1):
            x = clips[:, t : t + 1]
            if t >= self.context:
                m = ops.reshape(truth[:, t - self.context], (-1,) + (1,) * (len(clips.shape) - 1))
                x = m * x + (1.0 - m) * outs[-1]
            y, states = _frame(self._body, x, states)
            outs.append(y)
        return ops.concatenate(outs, axis=1)

    def get_config(self) -> dict:
        return {
            "model": keras.saving.serialize_keras_object(self.inner),
            "context": self.context,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict) -> Forecaster:
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"))
        return cls(model, **config)


class Stepper:
    """The compiled context pass and step of one next-frame model (``context`` and ``step``:
    Keras models whose ``predict_on_batch`` takes and gives numpy arrays)."""

    def __init__(self, model: keras.Model):
        self.model = model
        self.context = ContextPass(model)
        self.step = Step(model)
        self.state_shapes = self.context.state_shapes

    def rollout(self, frames: np.ndarray, horizon: int) -> np.ndarray:
        """``(batch, T, H, W, C)`` → ``(batch, horizon, H, W, C)``, carrying the states: the
        rollout that serving and evaluation run (``models/rollout.py``), on one batch."""
        return carried_rollout(self, frames, horizon, batch_size=len(frames))


def stepper(model: keras.Model, *, check: bool = True, atol: float = 1e-4) -> Stepper:
    """A :class:`Stepper` for ``model``, or :class:`NotSteppable` saying why there is none.

    With ``check``, one random clip's context pass must equal the model's own last output on it
    (within ``atol``): a layer that mixes frames, which the structure alone does not reveal, fails
    here instead of rolling out wrongly.
    """
    s = Stepper(model)
    if check:
        shape = tuple(model.input_shape[1:])
        t = shape[0] or 4
        x = np.random.default_rng(0).random((1, t) + shape[1:], dtype=np.float32)
        try:
            want = np.asarray(model.predict_on_batch(x))[:, -1]
            # a throwaway context pass: a traced function keeps the shapes it first saw, and
            # the check's length need not be the one served
            got = np.asarray(ContextPass(model).predict_on_batch(x)[0])[:, 0]
        except Exception as e:  # noqa: BLE001 - any failure means "cannot step"
            raise NotSteppable(f"frame-by-frame call failed ({type(e).__name__}: {e})") from None
        if got.shape != want.shape or not np.allclose(got, want, atol=atol):
            raise NotSteppable(
                "frame-by-frame outputs differ from the model's own (a layer mixes frames)"
            )
    return s
