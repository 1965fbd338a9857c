"""How a stream takes its frames: one step of the model per frame, and the surprise of each.

- **carry** (a carried-state model, ``models/carried.py``): every frame is read once, by one
  single-frame step from the recurrent states the stream keeps. The state travels with the step:
  :meth:`ModelRunner.feed` (or a Ray replica's) takes the frames and the states and gives back
  the predictions and the new states, batched with every other stream's step and every rollout
  of the model (the batcher never holds two frames of one stream, since a stream's frames are
  applied in order while it is held); no runner keeps a stream's state. Past the model's context
  the state is carried on.
- **window** (any next-frame model; the only way for a sliding-window or free-axis one): the stream
  keeps its last ``keeps`` frames and each frame past the context is one ``predict`` on that
  window.

Either way the stream keeps its last context frames: on a new model version (a swap, a reload of
another checkpoint) it rebuilds its state by reading them again (``replay``), so its first answer
there is what ``predict`` on the new version answers for them.

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
from service.streams.records import Stream, most_bytes

MODES = ("carry", "window")


def plan(runner: Any, settings: Any, past_context: str | None) -> dict[str, Any]:
    """How a stream on ``runner`` works: its mode, the frames it needs before predicting, the
    frames it keeps (its window, or the context it replays on a new model version) and the
    bytes it may hold; 422 when a setting or the model forbids it."""
    m = runner.manifest
    if m.task != "next_frame":
        raise WrongTask(f"model {m.name!r} is a {m.task} model; streams need a next-frame model")
    carries = bool(getattr(runner, "carries", False))
    mode = past_context or settings.stream_past_context
    if mode not in MODES:
        raise InvalidInput(f"past_context={mode!r}: choose one of {', '.join(MODES)}")
    if not carries:
        if past_context == "carry":
            raise InvalidInput(
                f"model {m.name!r} rolls out by {runner.rollout} and has no recurrent state to "
                "carry frame by frame; its streams keep a window (past_context=window)"
            )
        mode = "window"
    needs = m.reads or 1
    keeps = m.reads or settings.stream_window
    frame_bytes = m.height * m.width * m.channels * 4
    shapes = [tuple(s) for s in getattr(runner, "state_shapes", [])] if mode == "carry" else []
    state_bytes = sum(int(np.prod(s)) * 4 for s in shapes)
    most = most_bytes(keeps, frame_bytes, state_bytes)
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
        "frame_shape": (m.height, m.width, m.channels),
        "state_shapes": shapes,
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
        "window": how["keeps"] if how["mode"] == "window" else None,
        "max_memory_bytes": most_bytes(how["keeps"], how["frame_bytes"], how["state_bytes"]),
    }


@dataclass
class Advanced:
    """What one post did to a stream."""

    received: int  # frames in this post
    predicted: np.ndarray | None  # (horizon, H, W, C), None before the context is full
    surprise: list[dict] | None  # one entry per received frame that had been predicted
    timing: Timing
    replayed: int = 0  # frames read again to rebuild the state on a new model version


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


async def advance(
    stream: Stream,
    runner: Any,
    frames: np.ndarray,
    horizon: int,
    tickets: list,
    replay: bool = False,
) -> Advanced:
    """Apply ``frames`` (T, H, W, C) float32, fitted to the model, to ``stream`` (a copy the
    caller holds) on ``runner``, and predict ``horizon`` frames once the context is full.
    ``tickets``: a queue reservation for the first model call (or empty). ``replay``: the stream
    moved to a new model version: its state is rebuilt from its last ``keeps`` frames, these
    included, so the answer is what ``predict`` on the new version answers for them. All or
    nothing: a failed call leaves the stream as it was."""
    n, before = len(frames), stream.step
    if (replay or stream.mode == "window") and not stream.window_loaded:
        raise RuntimeError("the stream's window was not read (StreamStore.load_window)")
    history = [*stream.window, *frames]
    after: list[np.ndarray | None] = [None] * n  # the prediction made after each frame
    predicted: np.ndarray | None = None
    timing = Timing()
    ticket = tickets[0] if tickets else None
    states = stream.states
    replayed = 0
    if stream.mode == "carry":
        fed_frames, offset = frames, 0
        if replay:  # read again from zeros: the stream's last context frames, these included
            ctx = history[-stream.keeps :]
            fed_frames, offset, states = np.stack(ctx), len(ctx) - n, None
            replayed = len(ctx)
        steps = horizon if before + n >= stream.needs else 0
        fed, t = await runner.feed(fed_frames, steps, states, ticket=ticket)
        _add(timing, t)
        for i in range(n):
            if offset + i >= 0 and before + i + 1 >= stream.needs:
                after[i] = fed.after[offset + i]
        states = fed.kept
        if steps:
            predicted = np.stack(fed.outputs)
    else:
        window = list(stream.window)
        for i, frame in enumerate(frames):
            window.append(frame)
            del window[: max(0, len(window) - stream.keeps)]
            if before + i + 1 < stream.needs:
                continue
            last = i == n - 1
            out, t = await runner.predict(np.stack(window), horizon if last else 1, ticket=ticket)
            if replay and not replayed:  # the first call on the new version reads this
                replayed = len(window)
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
    stream.states = states
    stream.window = [np.asarray(f) for f in history[-stream.keeps :]]
    stream.step, stream.expected = before + n, after[-1]
    if replay:
        stream.version, stream.sha256 = runner.version, runner.manifest.sha256 or None
    return Advanced(n, predicted, surprise or None, timing, replayed)
