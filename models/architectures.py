"""Functional Keras 3 builders for the two video architectures.

Every model takes clips shaped ``(batch, time, height, width, channels)`` with pixel values in
[0, 1]. The time axis is axis 1. ``time_steps`` fixes it (serving and evaluation use a fixed
context window so nothing retraces); ``None`` leaves it free (training on longer windows).

Heads:
- ``next_frame``: output ``(batch, time, height, width, channels)`` in [0, 1]; the frame at index
  ``t`` is the prediction for input frame ``t + 1``, so one call trains/predicts every step.
- ``classify``: output ``(batch, num_classes)`` softmax scores, computed after the last frame.

Only ``keras`` is imported (no ``tf.*``): the same models run under the TensorFlow and JAX backends.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from models.repository import ARCHITECTURES, TASKS

__all__ = ["ARCHITECTURES", "TASKS", "build", "closed_loop", "count_flops", "step_model"]


def _space_to_depth(
    x: keras.KerasTensor, *, patch: int, height: int, width: int, channels: int, name: str
) -> keras.KerasTensor:
    """(batch, time, H, W, C) -> (batch, time, H/p, W/p, p*p*C), like Shi et al.'s 4x4 patches."""
    hp, wp = height // patch, width // patch
    x = layers.Reshape((-1, hp, patch, wp, patch * channels), name=f"{name}_split")(x)
    # (batch, time, H/p, p, W/p, p*C) -> (batch, time, H/p, W/p, p, p*C)
    x = layers.Permute((1, 2, 4, 3, 5), name=f"{name}_permute")(x)
    return layers.Reshape((-1, hp, wp, patch * patch * channels), name=f"{name}_merge")(x)


def _depth_to_space(
    x: keras.KerasTensor, *, patch: int, height: int, width: int, channels: int, name: str
) -> keras.KerasTensor:
    """(batch, time, H/p, W/p, p*p*C) -> (batch, time, H, W, C); the inverse of _space_to_depth."""
    hp, wp = height // patch, width // patch
    x = layers.Reshape((-1, hp, wp, patch, patch * channels), name=f"{name}_split")(x)
    # (batch, time, H/p, W/p, p, p*C) -> (batch, time, H/p, p, W/p, p*C)
    x = layers.Permute((1, 2, 4, 3, 5), name=f"{name}_permute")(x)
    return layers.Reshape((-1, height, width, channels), name=f"{name}_merge")(x)


def _check_common(task: str, height: int, width: int, patch: int, num_classes: int) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if height % patch or width % patch:
        raise ValueError(f"height and width ({height}x{width}) must be multiples of patch={patch}")
    if task == "classify" and num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 for classification, got {num_classes}")


def build_convlstm2d(
    *,
    task: str = "next_frame",
    time_steps: int | None = None,
    height: int = 64,
    width: int = 64,
    channels: int = 1,
    patch: int = 4,
    filters: tuple[int, ...] = (64, 64),
    kernel_size: int = 3,
    num_classes: int = 8,
    name: str | None = None,
) -> keras.Model:
    """A stack of ConvLSTM2D layers over the patch grid, keeping the 2-D layout through time."""
    _check_common(task, height, width, patch, num_classes)
    inputs = keras.Input((time_steps, height, width, channels), name="frames")
    x = _space_to_depth(
        inputs, patch=patch, height=height, width=width, channels=channels, name="patchify"
    )
    # (batch, time, H/p, W/p, p*p*C)
    last = len(filters) - 1
    for i, f in enumerate(filters):
        keep_time = task == "next_frame" or i < last
        x = layers.ConvLSTM2D(
            f, kernel_size, padding="same", return_sequences=keep_time, name=f"convlstm_{i}"
        )(x)
        # next_frame: (batch, time, H/p, W/p, f); classify, last layer: (batch, H/p, W/p, f)
    if task == "next_frame":
        x = layers.TimeDistributed(
            layers.Conv2D(patch * patch * channels, 1, activation="sigmoid"), name="to_patches"
        )(x)
        # (batch, time, H/p, W/p, p*p*C)
        outputs = _depth_to_space(
            x, patch=patch, height=height, width=width, channels=channels, name="unpatchify"
        )
        # (batch, time, H, W, C)
    else:
        x = layers.GlobalAveragePooling2D(name="pool")(x)  # (batch, f)
        outputs = layers.Dense(num_classes, activation="softmax", name="scores")(x)
    return keras.Model(inputs, outputs, name=name or f"convlstm2d_{task}")


def build_conv2d_lstm(
    *,
    task: str = "next_frame",
    time_steps: int | None = None,
    height: int = 64,
    width: int = 64,
    channels: int = 1,
    patch: int = 4,
    conv_filters: tuple[int, ...] = (32, 64, 64),
    lstm_units: int = 256,
    num_classes: int = 8,
    name: str | None = None,
) -> keras.Model:
    """A per-frame Conv2D encoder (TimeDistributed), flattened, into an LSTM, then the head.

    The encoder halves the resolution with each strided conv; the next-frame decoder mirrors it
    with transposed convs back to the patch grid, then the same depth-to-space head as ConvLSTM2D.
    """
    _check_common(task, height, width, patch, num_classes)
    n_down = len(conv_filters)
    if height % (2**n_down) or width % (2**n_down):
        raise ValueError(f"height and width must be multiples of 2**{n_down} for {n_down} convs")
    inputs = keras.Input((time_steps, height, width, channels), name="frames")
    x = inputs
    for i, f in enumerate(conv_filters):
        x = layers.TimeDistributed(
            layers.Conv2D(f, 3, strides=2, padding="same", activation="relu"), name=f"encoder_{i}"
        )(x)
    # (batch, time, H/2^n, W/2^n, conv_filters[-1])
    gh, gw, gc = height // 2**n_down, width // 2**n_down, conv_filters[-1]
    x = layers.TimeDistributed(layers.Flatten(), name="flatten")(x)  # (batch, time, gh*gw*gc)
    x = layers.LSTM(lstm_units, return_sequences=task == "next_frame", name="lstm")(x)
    if task == "classify":
        # x: (batch, lstm_units), the state after the last frame
        outputs = layers.Dense(num_classes, activation="softmax", name="scores")(x)
        return keras.Model(inputs, outputs, name=name or f"conv2d_lstm_{task}")
    # x: (batch, time, lstm_units)
    x = layers.TimeDistributed(layers.Dense(gh * gw * gc, activation="relu"), name="decoder_dense")(
        x
    )
    x = layers.Reshape((-1, gh, gw, gc), name="decoder_grid")(x)  # (batch, time, gh, gw, gc)
    size, i = gh, 0
    while size < height // patch:
        f = conv_filters[max(0, n_down - 2 - i)]
        x = layers.TimeDistributed(
            layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu"),
            name=f"decoder_{i}",
        )(x)
        size, i = size * 2, i + 1
    # (batch, time, H/p, W/p, f)
    x = layers.TimeDistributed(
        layers.Conv2D(patch * patch * channels, 1, activation="sigmoid"), name="to_patches"
    )(x)
    outputs = _depth_to_space(
        x, patch=patch, height=height, width=width, channels=channels, name="unpatchify"
    )  # (batch, time, H, W, C)
    return keras.Model(inputs, outputs, name=name or f"conv2d_lstm_{task}")


BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "conv2d_lstm": build_conv2d_lstm,
    "convlstm2d": build_convlstm2d,
}


def closed_loop(step: keras.Model, horizon: int, name: str = "closed_loop") -> keras.Model:
    """Wrap a fixed-window next-frame model so it rolls out ``horizon`` frames on its own.

    ``step`` maps ``(batch, context, H, W, C)`` to per-step predictions of the same shape; its
    last output is the next frame. The wrapper does exactly what serving and evaluation do: append
    that prediction, drop the oldest frame, call again. Input ``(batch, context, H, W, C)``, output
    ``(batch, horizon, H, W, C)``. Gradients flow through the fed-back predictions, so training it
    minimises the rollout error itself (the weights are ``step``'s, shared by every call).
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    context = step.input_shape[1]
    if context is None:
        raise ValueError("closed_loop needs a step model with a fixed number of input frames")
    inputs = keras.Input(step.input_shape[1:], name="context")
    window, outs = inputs, []
    for _ in range(horizon):
        nxt = step(window)[:, -1:]  # (batch, 1, H, W, C)
        outs.append(nxt)
        window = keras.ops.concatenate([window[:, 1:], nxt], axis=1)  # (batch, context, ...)
    outputs = outs[0] if horizon == 1 else keras.ops.concatenate(outs, axis=1)
    return keras.Model(inputs, outputs, name=name)


def step_model(model: keras.Model) -> keras.Model:
    """The fixed-window model inside a ``closed_loop`` wrapper (or ``model`` itself)."""
    inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return inner[0] if len(inner) == 1 else model


def build(arch: str, **kwargs) -> keras.Model:
    """Build ``arch`` (one of ARCHITECTURES) with builder keyword arguments."""
    if arch not in BUILDERS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return BUILDERS[arch](**kwargs)


def count_flops(model: keras.Model, time_steps: int | None = None) -> int:
    """Multiply-adds x 2 for one clip through ``model`` (convs, recurrent cells, dense layers).

    Counted analytically from layer configs and output shapes; element-wise activations,
    reshapes and pooling are ignored (they are a small fraction). The time axis is the model's
    own, or ``time_steps`` (which it must be given when it is free, and which counts one carried
    step with 1). A Dense layer on a sequence is counted once per time step.
    ``models/costs.py`` says which layers it cannot count (:data:`COUNTED`).
    """
    total = 0

    def shape_of(t: keras.KerasTensor) -> tuple:
        return tuple(t.shape)

    def steps_of(n: int | None) -> int:
        t = time_steps if time_steps is not None else n
        if t is None:
            raise ValueError("the model's time axis is free: give time_steps")
        return int(t)

    for layer in model.layers:
        inner, steps = layer, 1
        if not isinstance(getattr(layer, "layer", layer), COUNTED):
            continue
        if isinstance(layer, layers.TimeDistributed):
            inner = layer.layer
            steps = steps_of(shape_of(layer.output)[1])
        in_shape = shape_of(layer.input)
        out_shape = shape_of(layer.output)
        if isinstance(layer, layers.TimeDistributed):
            in_shape = (in_shape[0],) + in_shape[2:]
            out_shape = (out_shape[0],) + out_shape[2:]
        if isinstance(inner, layers.ConvLSTM2D):
            t = steps_of(in_shape[1])
            h, w, cin = in_shape[2], in_shape[3], in_shape[4]
            k = inner.kernel_size[0] * inner.kernel_size[1]
            f = inner.filters
            total += 2 * t * h * w * k * (cin + f) * 4 * f
        elif isinstance(inner, layers.LSTM):
            t, din = steps_of(in_shape[1]), in_shape[2]
            u = inner.units
            total += 2 * t * (din + u) * 4 * u
        elif isinstance(inner, layers.Conv2DTranspose):
            h, w, cin = in_shape[1], in_shape[2], in_shape[3]
            k = inner.kernel_size[0] * inner.kernel_size[1]
            total += 2 * steps * h * w * k * cin * inner.filters
        elif isinstance(inner, layers.Conv2D):
            ho, wo = out_shape[1], out_shape[2]
            cin = in_shape[3]
            k = inner.kernel_size[0] * inner.kernel_size[1]
            total += 2 * steps * ho * wo * k * cin * inner.filters
        elif isinstance(inner, layers.Dense):
            rows = 1  # a Dense on (batch, time, ..., features) runs once per row
            for i, d in enumerate(in_shape[1:-1]):
                rows *= steps_of(d) if i == 0 and len(in_shape) == 3 else int(d)
            total += 2 * steps * rows * in_shape[-1] * inner.units
    return int(total)


# the layers count_flops counts (the rest of a model's cost is ignored or refused, costs.py)
COUNTED = (
    layers.ConvLSTM2D,
    layers.LSTM,
    layers.Conv2D,
    layers.Conv2DTranspose,
    layers.Dense,
)
