"""Task policies: what one step of a request does, for the batcher's shared calls.

A policy turns an upload's context into a request's *payload* (:meth:`begin`), and makes one
batched step for many payloads (:meth:`step`): it fills padded batches (``bucket_for(n)`` rows for
``n`` payloads: a warmed shape), makes
the model call(s) through ``call`` (which times them), and returns each payload's result, or
``None`` when it needs more steps. It knows nothing of queues or threads.

- :class:`Classify`: one call, the score vector.
- :class:`SlidingWindow`: the generic next-frame rollout for any model with a fixed window: call
  the model on the last ``frames`` frames, append its last output, drop the oldest frame.
- :class:`CarriedState`: the encoder–forecaster rollout (``models/rollout.py``): one context pass,
  then one single-frame step per frame, every recurrent state carried in the payload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from service.errors import InvalidInput

Call = Callable[[Any], Any]  # one model call on a padded batch → its output (numpy)


class Policy(Protocol):
    task: str
    rollout: str  # "none" (classify), "sliding_window" or "carried_state"

    def begin(self, context: np.ndarray, steps: int) -> Any: ...

    def step(
        self, payloads: list[Any], bucket_for: Callable[[int], int], calls: dict[str, Call]
    ) -> list[Any]: ...

    def warm_inputs(self, bucket: int) -> dict[str, Any]: ...


@dataclass
class Rollout:
    """One clip rolling out ``steps`` frames."""

    window: np.ndarray  # (frames, H, W, C) float32: the context, then what it reads next
    steps: int
    outputs: list[np.ndarray] = field(default_factory=list)
    states: list[np.ndarray] | None = None  # carried state (CarriedState only), per clip

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise InvalidInput(f"a rollout needs at least 1 step, got horizon={self.steps}")

    def add(self, frame: np.ndarray) -> np.ndarray | None:
        """Record a predicted frame; the stacked rollout once ``steps`` frames are out."""
        self.outputs.append(frame)
        return np.stack(self.outputs) if len(self.outputs) == self.steps else None


class Classify:
    task, rollout = "classify", "none"

    def __init__(self, input_shape: tuple[int, ...]):
        self.input_shape = input_shape

    def begin(self, context: np.ndarray, steps: int = 1) -> np.ndarray:
        return np.asarray(context, np.float32).reshape(self.input_shape)

    def step(
        self, payloads: list[np.ndarray], bucket_for: Callable[[int], int], calls: dict[str, Call]
    ) -> list:
        batch = np.zeros(
            (bucket_for(len(payloads)),) + self.input_shape, np.float32
        )  # padding rows stay zero
        for i, clip in enumerate(payloads):
            batch[i] = clip
        out = calls["model"](batch)  # (bucket, classes)
        return [out[i].copy() for i in range(len(payloads))]

    def warm_inputs(self, bucket: int) -> dict[str, Any]:
        return {"model": np.zeros((bucket,) + self.input_shape, np.float32)}


class SlidingWindow:
    task, rollout = "next_frame", "sliding_window"

    def __init__(self, input_shape: tuple[int, ...]):
        self.input_shape = input_shape

    def begin(self, context: np.ndarray, steps: int) -> Rollout:
        return Rollout(np.asarray(context, np.float32).reshape(self.input_shape), int(steps))

    def step(
        self, payloads: list[Rollout], bucket_for: Callable[[int], int], calls: dict[str, Call]
    ) -> list:
        batch = np.zeros((bucket_for(len(payloads)),) + self.input_shape, np.float32)
        for i, r in enumerate(payloads):
            batch[i] = r.window
        out = calls["model"](batch)  # (bucket, frames, H, W, C): y[:, t] predicts frame t+1
        results = []
        for i, r in enumerate(payloads):
            nxt = out[i, -1]
            r.window = np.concatenate([r.window[1:], nxt[None]], axis=0)
            results.append(r.add(nxt))
        return results

    def warm_inputs(self, bucket: int) -> dict[str, Any]:
        return {"model": np.zeros((bucket,) + self.input_shape, np.float32)}


class CarriedState:
    """Payloads that have not read their context share one context call; the others share one
    step call on their last predicted frame and carried states. A batch may hold both."""

    task, rollout = "next_frame", "carried_state"

    def __init__(self, input_shape: tuple[int, ...], state_shapes: list[tuple[int, ...]]):
        self.input_shape = input_shape
        self.frame_shape = input_shape[1:]
        self.state_shapes = [tuple(s) for s in state_shapes]

    def begin(self, context: np.ndarray, steps: int) -> Rollout:
        return Rollout(np.asarray(context, np.float32).reshape(self.input_shape), int(steps))

    def step(
        self, payloads: list[Rollout], bucket_for: Callable[[int], int], calls: dict[str, Call]
    ) -> list:
        results: list[Any] = [None] * len(payloads)
        fresh = [i for i, r in enumerate(payloads) if r.states is None]
        going = [i for i, r in enumerate(payloads) if r.states is not None]
        if fresh:  # each phase padded to its own bucket: a newcomer costs one small context call
            batch = np.zeros((bucket_for(len(fresh)),) + self.input_shape, np.float32)
            for j, i in enumerate(fresh):
                batch[j] = payloads[i].window
            self._take(calls["context"](batch), fresh, payloads, results)
        if going:
            bucket = bucket_for(len(going))
            inputs = [np.zeros((bucket, 1) + self.frame_shape, np.float32)]
            inputs += [np.zeros((bucket,) + s, np.float32) for s in self.state_shapes]
            for j, i in enumerate(going):
                r = payloads[i]
                inputs[0][j, 0] = r.outputs[-1]
                for k, s in enumerate(r.states):
                    inputs[1 + k][j] = s
            self._take(calls["step"](inputs), going, payloads, results)
        return results

    @staticmethod
    def _take(out: list, rows: list[int], payloads: list[Rollout], results: list) -> None:
        frames, states = out[0], out[1:]  # (bucket, 1, H, W, C), each (bucket, ...)
        for j, i in enumerate(rows):
            r = payloads[i]
            r.states = [np.array(s[j]) for s in states]
            results[i] = r.add(np.array(frames[j, 0]))

    def warm_inputs(self, bucket: int) -> dict[str, Any]:
        step = [np.zeros((bucket, 1) + self.frame_shape, np.float32)]
        step += [np.zeros((bucket,) + s, np.float32) for s in self.state_shapes]
        return {"context": np.zeros((bucket,) + self.input_shape, np.float32), "step": step}
