"""How a stream takes its frames: one step of the model per frame, and the surprise of each.

- **carry** (a carried-state model, ``models/carried.py``): every frame is read once, by one
  single-frame step from the recurrent states the stream keeps (:meth:`ModelRunner.feed`, batched
  with every other stream's step and every rollout of the model: the batcher never holds two
  frames of one stream, since a stream's frames are applied in order under its lock). Past the
  model's context the state is carried on.
- **window** (any next-frame model; the only way for a sliding-window or free-axis one): the stream
  keeps its last ``keeps`` frames and each frame past the context is one ``predict`` on that
  window.

While a stream holds no more frames than the model's context, both give what ``predict`` answers
for the same frames sent as one clip: the same layers, the same order (tests check it).

The *surprise* of a frame is the error of the prediction made for it before it came (MSE per
frame, PSNR, SSIM: compare's metrics, ``models/metrics.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.metrics import mse_per_frame, psnr, ssim
from service.errors import InvalidInput, WrongTask
from service.runtime.items import Timing
from service.streams.store import Stream

MODES = ("carry", "window")


def plan(runner: Any, settings: Any, past_context: str | None) -> dict[str, Any]:
    """How a stream on ``runner`` works: its mode, the frames it needs before predicting, the
    frames it keeps and the bytes it may hold; 422 when a setting or the model forbids it."""
    m = runner.manifest
    if m.task != "next_frame":
        raise WrongTask(f"model {m.name!r} is a {m.task} model; streams need a next-frame model")
    carries = bool(getattr(runner, "carries", False))
    mode = past_context or settings.stream_past_context
    if mode not in MODES:
        raise InvalidInput(f"past_context={mode!r}: choose one of {', '.join(MODES)}")
    if not carries:
        if past_context == "carry":
            why = (
                "is served by Ray replicas, whose recurrent state does not travel to the "
                "ingress that keeps the stream"
                if runner.rollout == "carried_state"
                else f"rolls out by {runner.rollout} and has no recurrent state to carry frame "
                "by frame"
            )
            raise InvalidInput(
                f"model {m.name!r} {why}; its streams keep a window (past_context=window)"
            )
        mode = "window"
    needs = m.reads or 1
    keeps = 0 if mode == "carry" else (m.reads or settings.stream_window)
    frame_bytes = m.height * m.width * m.channels * 4
    shapes = getattr(getattr(runner, "policy", None), "state_shapes", []) if mode == "carry" else []
    state_bytes = sum(int(np.prod(s)) * 4 for s in shapes)
    most = keeps * frame_bytes + state_bytes + frame_bytes
    if most > settings.stream_max_bytes:
        raise InvalidInput(
            f"a stream on model {m.name!r} holds up to {most} bytes ({mode}), more than "
            f"FRAMECAST_STREAM_MAX_BYTES={settings.stream_max_bytes}"
        )
    return {
        "mode": mode,
        "needs": needs,
        "keeps": keeps,
        "frame_bytes": frame_bytes,
        "state_bytes": state_bytes,
    }


def stream_plan(runner: Any, settings: Any) -> dict | None:
    """What ``/v1/models`` says of a model's streams (None for a classifier)."""
    if runner.manifest.task != "next_frame":
        return None
    try:
        how = plan(runner, settings, None)
    except InvalidInput as refused:  # a stream would hold more than FRAMECAST_STREAM_MAX_BYTES
        return {"mode": None, "refused": refused.message}
    carries = bool(getattr(runner, "carries", False))
    return {
        "mode": how["mode"],
        "modes": list(MODES) if carries else ["window"],
        "context": how["needs"],
        "window": how["keeps"] or None,
        "max_memory_bytes": how["keeps"] * how["frame_bytes"]
        + how["state_bytes"]
        + how["frame_bytes"],
    }


@dataclass
class Advanced:
    """What one post did to a stream."""

    received: int  # frames in this post
    predicted: np.ndarray | None  # (horizon, H, W, C), None before the context is full
    surprise: list[dict] | None  # one entry per received frame that had been predicted
    timing: Timing


def surprise_of(step: int, expected: np.ndarray, frame: np.ndarray) -> dict:
    """The error of the prediction ``expected`` for frame number ``step`` (1-based)."""
    p, t = expected[None], frame[None]
    ss = float(ssim(p, t)[0]) if min(frame.shape[:2]) >= 7 else None
    return {
        "step": step,
        "mse_per_frame": float(mse_per_frame(p, t)[0]),
        "psnr": float(psnr(p, t)[0]),
        "ssim": ss,
    }


def _add(total: Timing, t: Timing) -> None:
    total.queued_ms += t.queued_ms
    total.inference_ms += t.inference_ms
    total.calls += t.calls
    total.batch = max(total.batch, t.batch)
    total.bucket = max(total.bucket, t.bucket)


async def advance(stream: Stream, frames: np.ndarray, horizon: int, tickets: list) -> Advanced:
    """Apply ``frames`` (T, H, W, C) float32, fitted to the model, to ``stream`` (held under its
    lock by the caller) and predict ``horizon`` frames once the context is full. ``tickets``:
    a queue reservation to use for the first model call (or empty). All or nothing: a failed
    call leaves the stream as it was, and the same frames can be sent again."""
    runner, n = stream.runner, len(frames)
    before = stream.step
    after: list[np.ndarray | None] = [None] * n  # the prediction made after each frame
    predicted: np.ndarray | None = None
    timing = Timing()
    ticket = tickets[0] if tickets else None
    states, window = stream.states, list(stream.window)  # committed below, once all went well
    if stream.mode == "carry":
        steps = horizon if before + n >= stream.needs else 0
        fed, t = await runner.feed(frames, steps, states, ticket=ticket)
        _add(timing, t)
        for i, f in enumerate(fed.after):
            if before + i + 1 >= stream.needs:
                after[i] = f
        states = fed.kept
        if steps:
            predicted = np.stack(fed.outputs)
    else:
        for i, frame in enumerate(frames):
            window.append(frame)
            del window[: max(0, len(window) - stream.keeps)]
            if before + i + 1 < stream.needs:
                continue
            last = i == n - 1
            out, t = await runner.predict(np.stack(window), horizon if last else 1, ticket=ticket)
            ticket = None  # used
            _add(timing, t)
            after[i] = out[0]
            if last:
                predicted = out
        if ticket is not None:  # no call was made: give the place back
            ticket.release()
    expected = [stream.expected] + after[:-1]
    surprise = [
        surprise_of(before + i + 1, e, frames[i]) for i, e in enumerate(expected) if e is not None
    ]
    stream.states, stream.window = states, window
    stream.step, stream.expected = before + n, after[-1]
    return Advanced(n, predicted, surprise or None, timing)
