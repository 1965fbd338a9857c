"""Task policies: what one step of a request does, for the batcher's shared calls.

A policy turns an upload's context into a request's *payload* (:meth:`begin`), and makes one
batched step for many payloads (:meth:`step`): it fills padded batches (``bucket_for(n)`` rows for
``n`` payloads: a warmed shape), makes
the model call(s) through ``call`` (which times them), and returns each payload's result, or
``None`` when it needs more steps. It knows nothing of queues or threads.

- :class:`Classify`: one call, the score vector (a one-unit sigmoid head: its complement, then
  it, as two classes).
- :class:`SlidingWindow`: the generic next-frame rollout for any model with a fixed window: call
  the model on the last ``frames`` frames, append its next frame, drop the oldest frame.
- :class:`Growing`: the rollout of a free time axis: call the model on the context and every frame
  predicted so far (as the Keras next-frame example does), one compiled length at a time.
- :class:`CarriedState`: the encoder–forecaster rollout (``models/carried.py``): one context pass,
  then one single-frame step per frame, every recurrent state carried in the payload.

:func:`make_policy` picks a loaded model's policy and the callables it calls.

What one step of a rollout does to each clip (its window, its states, the frame it predicts) is
``models/rollout.py``'s, which ``framecast evaluate`` runs too: a policy only groups the payloads
into batches (one per length, one per phase) and pads them to the bucket.

A model's input shape is ``(frames, H, W, C)`` with ``frames`` None for a free time axis: then
payloads of different lengths are called in separate batches of their own length (``calls``
dispatch on the length), and warm-up uses ``warm_frames``. A next-frame model's ``output`` is
``"sequence"`` (one frame per input frame; the last is the next) or ``"frame"`` (many-to-one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from models.repository import Manifest
from models.rollout import Feed, Rollout, context_step, stacked, state_step, window_step
from service.errors import InvalidInput
from service.media.frames import scaled

log = logging.getLogger("framecast.runtime")
Call = Callable[[Any], Any]  # one model call on a padded batch → its output (numpy)


class Policy(Protocol):
    task: str
    rollout: str  # "none" (classify), "sliding_window" or "carried_state"

    def begin(self, context: np.ndarray, steps: int) -> Any: ...

    def step(
        self, payloads: list[Any], bucket_for: Callable[[int], int], calls: dict[str, Call]
    ) -> list[Any]: ...

    def warm_inputs(self, bucket: int) -> dict[str, Any]: ...


def _by_length(payloads: list[Any], clip: Callable[[Any], np.ndarray]) -> dict[int, list[int]]:
    """Payload indices grouped by the length of ``clip(payload)`` (one batch per length)."""
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(payloads):
        groups.setdefault(len(clip(p)), []).append(i)
    return groups


class _Shaped:
    """The input spec of a policy: ``(frames or None, H, W, C)``, and the warm-up length."""

    def __init__(self, input_shape: tuple, warm_frames: int | None = None):
        self.input_shape = tuple(input_shape)
        self.frames = self.input_shape[0]
        self.frame_shape = self.input_shape[1:]
        self.warm_frames = self.frames or warm_frames or 1

    def clip(self, context: np.ndarray) -> np.ndarray:
        x = np.asarray(context, np.float32)
        if self.frames is not None:
            return x.reshape(self.input_shape)
        if x.ndim != 4 or x.shape[1:] != self.frame_shape or len(x) < 1:
            raise InvalidInput(
                f"context of shape {x.shape} does not fit (frames, {self.frame_shape})"
            )
        return x

    def batch(self, clips: list[np.ndarray], bucket: int) -> np.ndarray:
        """Clips of one length in a zero-padded batch of ``bucket`` rows (see :func:`stacked`)."""
        return stacked(clips, bucket)

    def warm_clip(self, bucket: int) -> np.ndarray:
        return np.zeros((bucket, self.warm_frames) + self.frame_shape, np.float32)

    def rollout_of(self, context: np.ndarray, steps: int) -> Rollout:
        """A request's payload for the next-frame policies: its clip rolling out ``steps``."""
        clip, steps = self.clip(context), int(steps)
        if steps < 1:
            raise InvalidInput(f"a rollout needs at least 1 step, got horizon={steps}")
        return Rollout(clip, steps)


class Classify(_Shaped):
    task, rollout = "classify", "none"

    def __init__(self, input_shape: tuple, binary: str = "", warm_frames: int | None = None):
        super().__init__(input_shape, warm_frames)
        self.binary = binary == "sigmoid"  # (batch, 1) probabilities → two classes

    def begin(self, context: np.ndarray, steps: int = 1) -> np.ndarray:
        """A float32 clip, or a uint8 one (0-255) for a fixed time axis: the model's
        ``model_u8`` entry scales those bytes in its graph (the runner's ``accepts_u8``)."""
        if getattr(context, "dtype", None) == np.uint8:
            if self.frames is not None:
                return np.asarray(context).reshape(self.input_shape)
            context = scaled(context)
        return self.clip(context)

    def step(
        self, payloads: list[np.ndarray], bucket_for: Callable[[int], int], calls: dict[str, Call]
    ) -> list:
        results: list[Any] = [None] * len(payloads)
        groups: dict[tuple[int, bool], list[int]] = {}  # one batch per length and input type
        for i, p in enumerate(payloads):
            groups.setdefault((len(p), p.dtype == np.uint8), []).append(i)
        for (_, raw), rows in groups.items():
            clips = [payloads[i] for i in rows]
            if raw and "model_u8" in calls:
                out = calls["model_u8"](stacked(clips, bucket_for(len(rows)), np.uint8))
            else:  # floats (bytes scaled here when the model has no uint8 entry)
                if raw:
                    clips = [scaled(c) for c in clips]
                out = calls["model"](self.batch(clips, bucket_for(len(rows))))
            out = np.asarray(out)  # (bucket, classes)
            for j, i in enumerate(rows):
                s = out[j].reshape(-1)
                results[i] = np.array([1.0 - s[0], s[0]], np.float32) if self.binary else s.copy()
        return results

    def warm_inputs(self, bucket: int) -> dict[str, Any]:
        clip = self.warm_clip(bucket)
        return {"model": clip, "model_u8": np.zeros(clip.shape, np.uint8)}


class SlidingWindow(_Shaped):
    """A fixed window: each step reads the last ``frames`` frames, appends the prediction and
    drops the oldest frame."""

    task, rollout = "next_frame", "sliding_window"
    grows = False  # Growing: keep every frame instead of dropping the oldest

    def __init__(
        self, input_shape: tuple, output: str = "sequence", warm_frames: int | None = None
    ):
        super().__init__(input_shape, warm_frames)
        self.output = output

    def begin(self, context: np.ndarray, steps: int) -> Rollout:
        return self.rollout_of(context, steps)

    def step(
        self, payloads: list[Rollout], bucket_for: Callable[[int], int], calls: dict[str, Call]
    ) -> list:
        results: list[Any] = [None] * len(payloads)
        for rows in _by_length(payloads, lambda r: r.window).values():  # one, for a fixed window
            group = [payloads[i] for i in rows]
            done = window_step(
                group, bucket_for(len(rows)), calls["model"], output=self.output, grows=self.grows
            )
            for i, result in zip(rows, done):
                results[i] = result
        return results

    def warm_inputs(self, bucket: int) -> dict[str, Any]:
        return {"model": self.warm_clip(bucket)}


class Growing(SlidingWindow):
    """Free time axis, no carried state: each step reads the context and every prediction so far
    (one batch per length; each length is compiled once, on first use)."""

    rollout, grows = "growing", True


class CarriedState(_Shaped):
    """Payloads that have not read their context share one context call (one per length); the
    others share one step call on their last predicted frame and carried states. A batch may
    hold both."""

    task, rollout = "next_frame", "carried_state"

    def __init__(
        self,
        input_shape: tuple,
        state_shapes: list[tuple[int, ...]],
        warm_frames: int | None = None,
    ):
        super().__init__(input_shape, warm_frames)
        self.state_shapes = [tuple(s) for s in state_shapes]

    def begin(self, context: np.ndarray, steps: int) -> Rollout:
        return self.rollout_of(context, steps)

    def feed(self, frames: np.ndarray, steps: int, states: list[np.ndarray] | None) -> Feed:
        """A stream's payload: ``frames`` (T, H, W, C) read one step each from ``states`` (None:
        a new stream, zeros), then ``steps`` frames predicted."""
        x = np.asarray(frames, np.float32)
        if x.ndim != 4 or x.shape[1:] != self.frame_shape or len(x) < 1:
            raise InvalidInput(f"frames of shape {x.shape} do not fit (T, {self.frame_shape})")
        if states is None:
            states = [np.zeros(s, np.float32) for s in self.state_shapes]
        return Feed(list(x), int(steps), list(states))

    def step(
        self, payloads: list[Any], bucket_for: Callable[[int], int], calls: dict[str, Call]
    ) -> list:
        """Rollouts that have not read their context share a context call; rollouts past it and
        stream feeds (:class:`~models.rollout.Feed`) share one single-frame step call."""
        results: list[Any] = [None] * len(payloads)
        fresh = [i for i, r in enumerate(payloads) if r.states is None]
        going = [i for i, r in enumerate(payloads) if r.states is not None]
        if fresh:  # each phase padded to its own bucket: a newcomer costs one small context call
            for rows in _by_length([payloads[i] for i in fresh], lambda r: r.window).values():
                rows = [fresh[j] for j in rows]
                group = [payloads[i] for i in rows]
                done = context_step(group, bucket_for(len(rows)), calls["context"])
                for i, result in zip(rows, done):
                    results[i] = result
        if going:
            done = state_step([payloads[i] for i in going], bucket_for(len(going)), calls["step"])
            for i, result in zip(going, done):
                results[i] = result
        return results

    def warm_inputs(self, bucket: int) -> dict[str, Any]:
        step = [np.zeros((bucket, 1) + self.frame_shape, np.float32)]
        step += [np.zeros((bucket,) + s, np.float32) for s in self.state_shapes]
        return {"context": self.warm_clip(bucket), "step": step}


def make_policy(
    manifest: Manifest, model: Any, *, warm_frames: int = 10, keep_lengths: int = 32
) -> tuple[Policy, dict[str, Any]]:
    """The task policy of a loaded model and the callables it calls (name → model).

    A fixed time axis is called as is. A free one (``frames`` None) is called through one
    compiled copy per clip length (:class:`models.interop.adapters.PerLength`), warmed at the
    manifest's context, else ``warm_frames``. Rollouts: what the manifest asks for; a model read
    from its checkpoint alone rolls out as it reads a sequence: a fixed window slides, a free
    one grows (carrying the recurrent states when the layers allow it: the same numbers, faster).
    """
    m = manifest
    shape = (m.frames, m.height, m.width, m.channels)
    warm = m.context or warm_frames
    free = m.frames is None
    if free:
        from models.interop.adapters import PerLength, at_length  # Keras: once one is loaded

        calls: dict[str, Any] = {"model": PerLength(at_length(model), keep_lengths)}
    else:
        calls = {"model": model}
    if m.task == "classify":
        if not free:  # the model also takes a clip's bytes and scales them in its graph
            from models.interop.adapters import from_bytes

            try:
                calls["model_u8"] = from_bytes(model)
            except Exception as e:  # noqa: BLE001 - any model it cannot wrap: floats, as before
                log.info("model %s takes float32 frames only (%s)", m.name, e)
        return Classify(shape, m.binary, warm), calls
    auto = m.source == "checkpoint" and m.rollout in ("", "auto", "sliding_window")
    want = ("carried_state" if free and m.output == "sequence" else "") if auto else m.rollout
    if want == "carried_state":
        from models.carried import ContextPass, NotSteppable, stepper

        try:
            s = stepper(model)  # NotSteppable (a ValueError) says why it cannot
        except NotSteppable:
            if not auto:
                raise
        else:
            context = PerLength(lambda _t: ContextPass(model), keep_lengths) if free else s.context
            m.rollout = "carried_state"
            calls.update(context=context, step=s.step)
            return CarriedState(shape, s.state_shapes, warm), calls
    if free:
        m.rollout = "growing"
        return Growing(shape, m.output, warm), calls
    m.rollout = "sliding_window"
    return SlidingWindow(shape, m.output), calls
