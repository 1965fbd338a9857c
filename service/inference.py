"""One way to call a model, for every road in: ``/v1`` predict, classify and compare, ``/v2``
infer and the hot path (which calls the ``/v1`` route functions).

A route parses HTTP and shapes the answer; between the two, this module does what every model call
needs, once:

Streams (``service/streams/``) take the same road one frame at a time: reserve, fit every frame
(:func:`prepare_all`), call (one carried-state step per frame, or a window), measure.

1. **the queue reservation** (:func:`reserve`): a place in each model's queue is taken before the
   upload is read, so a full queue answers 503 at once instead of after decoding the body;
2. **fitting** (:func:`prepare`): the model's context from the uploaded frames (the last frames it
   reads, resized, padded or cropped as asked, colour converted), with the report of what fitting
   changed; frames stay uint8 for a classifier whose model scales bytes in its graph (its
   ``accepts_u8``: checked bit for bit against the float entry at warm-up);
3. **the call** (:func:`call`): predict or classify by the model's task, timed;
4. **metrics and timings** (:meth:`Answer.finish`): decode, queue, model and encode phases into
   ``/metrics`` and the ``Server-Timing`` header, and the ``X-`` headers every answer carries
   (``X-Conversion``: the conversion report, in PNG, GIF and .npy answers too).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.checks import require_task
from service.errors import TooFewFrames
from service.http.uploads import INLINE_FIT_BYTES, offload
from service.media.fitting import Conversion, conform
from service.media.frames import Frame
from service.runtime.batcher import Ticket
from service.runtime.items import Timing
from service.runtime.runner import Runner
from service.telemetry import Metrics, server_timing

__all__ = ["Answer", "Fit", "Prepared", "Runner", "Ticket", "Timing", "call", "prepare", "reserve"]


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # json.dumps with options builds one per call


@dataclass(frozen=True)
class Fit:
    """How uploaded frames are fitted to a model: ``resize`` (false: refuse another size) and
    ``how`` (stretch, pad or crop)."""

    resize: bool = True
    how: str = "stretch"


@dataclass
class Prepared:
    """One model's input made from an upload: the context it reads and what fitting changed."""

    context: np.ndarray  # (frames, H, W, C): float32 in [0, 1], or uint8 for a bytes entry
    conversion: Conversion
    dropped: int  # uploaded frames before the context, which the model does not read
    received: int  # frames uploaded

    def report(self) -> dict[str, Any]:
        """The answer's fields that state what fitting changed."""
        conv = self.conversion
        return {
            "resized": conv.resized_from is not None,
            "resized_from": conv.resized_from,
            "fit": conv.fit,
            "channels_from": conv.channels_from,
            "frames_dropped": self.dropped,
        }

    def header(self) -> str:
        """The report as the ``X-Conversion`` header: the same fields, compact JSON."""
        return _COMPACT.encode(self.report())


@dataclass
class Answer:
    """One model call's output and where its time went."""

    runner: Runner
    output: np.ndarray  # next frame: (horizon, H, W, C); classify: (num_classes,)
    timing: Timing
    t_start: float  # the request began (perf_counter seconds)
    t_called: float  # the upload was read and fitted; the call began
    t_answered: float  # the call returned
    prepared: Prepared | None = None  # None for a caller that sent tensors (/v2)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def latency_ms(self) -> float:
        return (self.t_answered - self.t_called) * 1000.0

    def headers(self) -> dict[str, str]:
        out = {
            "X-Model": self.runner.name,
            "X-Latency-Ms": f"{self.latency_ms:.2f}",
            "X-Inference-Ms": f"{self.timing.inference_ms:.2f}",
            "X-Batch-Size": str(self.timing.batch),
        }
        if self.prepared is not None:  # an upload was fitted: what fitting changed
            out["X-Conversion"] = self.prepared.header()
        return out

    def finish(self, metrics: Metrics, headers: dict[str, str]) -> dict[str, float]:
        """Once the answer is encoded: the phases (ms) into /metrics and ``Server-Timing``."""
        now = time.perf_counter()
        phases = {
            "decode": (self.t_called - self.t_start) * 1000.0,
            "queue": self.timing.queued_ms,
            "model": self.timing.inference_ms,
            "encode": (now - self.t_answered) * 1000.0,
        }
        metrics.observe_phases(self.runner.name, phases, str(self.runner.version))
        phases["total"] = (now - self.t_start) * 1000.0
        headers["Server-Timing"] = server_timing(phases)
        return phases


def observe_compared(
    metrics: Metrics,
    done: list[tuple[Runner, Timing]],
    t_start: float,
    t_decoded: float,
    t_models: float,
) -> None:
    """The phases of every model one request ran side by side (compare) into /metrics and the
    V2 statistics, as :meth:`Answer.finish` does for one: the decode and the encode shared, the
    queue and the model call each its own."""
    now = time.perf_counter()
    for runner, timing in done:
        phases = {
            "decode": (t_decoded - t_start) * 1000.0,
            "queue": timing.queued_ms,
            "model": timing.inference_ms,
            "encode": (now - t_models) * 1000.0,
        }
        metrics.observe_phases(runner.name, phases, str(runner.version))


@contextmanager
def reserve(*runners: Runner) -> Iterator[list[Ticket | None]]:
    """A place in each model's queue while the upload is read and fitted (503 at once when one is
    full: no upload is read then); each ticket is handed to :func:`call`, which uses it. Leaving
    the block releases the places not used."""
    if len(runners) == 1:  # predict and classify: one model, no stack to keep
        with runners[0].expect() as ticket:
            yield [ticket]
        return
    with ExitStack() as stack:
        yield [stack.enter_context(r.expect()) for r in runners]


def takes_bytes(runner: Runner) -> bool:
    """Whether the model scales 8-bit frames in its graph (classifiers checked at warm-up)."""
    return runner.manifest.task == "classify" and bool(getattr(runner, "accepts_u8", False))


async def prepare(runner: Runner, frames: list[Frame], fit: Fit, *, held_back: int = 0) -> Prepared:
    """The model's context from uploaded frames (``held_back``: frames the request kept back as
    truth, named in the message when too few are left)."""
    context, conv, dropped = await fit_context(
        frames, runner, fit.resize, held_back, fit.how, raw=takes_bytes(runner)
    )
    return Prepared(context, conv, dropped, len(frames))


async def prepare_all(runner: Runner, frames: list[Frame], fit: Fit) -> Prepared:
    """Every uploaded frame fitted to the model, float32 (a stream reads them all, in order)."""
    arr, conv = await _conform(frames, runner, fit.resize, 0, fit.how)
    return Prepared(arr, conv, 0, len(frames))


async def call(
    runner: Runner,
    context: np.ndarray,
    *,
    horizon: int = 1,
    ticket: Ticket | None = None,
    t_start: float | None = None,
    prepared: Prepared | None = None,
    background: bool = False,
) -> Answer:
    """The model's answer for one context, by its task: next frame(s) (``horizon``) or scores.
    ``background``: an evaluation job's clip, served after online requests (a lower priority)."""
    t0 = time.perf_counter()
    if runner.manifest.task == "classify":
        out, timing = await runner.classify(context, ticket=ticket, background=background)
    else:
        out, timing = await runner.predict(context, horizon, ticket=ticket, background=background)
    return Answer(
        runner, out, timing, t0 if t_start is None else t_start, t0, time.perf_counter(), prepared
    )


async def call_background(runner: Runner, context: np.ndarray, horizon: int = 1) -> Answer:
    """An evaluation job's call, at the lower priority. A carried-state rollout reads its context
    one frame a call, as a stream does (the chain of layers stepped: the numbers of predict's
    context pass, which :func:`models.carried.stepper` checks at load), so that an online
    request never waits behind more than one single-frame step of a job."""
    if runner.manifest.task != "next_frame" or not getattr(runner, "carries", False):
        return await call(runner, context, horizon=horizon, background=True)
    t0 = time.perf_counter()
    fed, timing = await runner.feed(  # type: ignore[attr-defined]
        np.asarray(context, np.float32), horizon, None, background=True
    )
    return Answer(runner, np.stack(fed.outputs), timing, t0, t0, time.perf_counter())


async def run(
    runner: Runner,
    frames: list[Frame],
    task: str,
    fit: Fit,
    *,
    horizon: int = 1,
    ticket: Ticket | None = None,
    t_start: float | None = None,
    held_back: int = 0,
) -> Answer:
    """Fit and call: what predict, classify and each model of compare do with an upload (the
    ticket, when one was reserved, is released by :func:`reserve` if fitting refuses)."""
    require_task(runner.name, runner.manifest.task, task)
    p = await prepare(runner, frames, fit, held_back=held_back)
    return await call(
        runner, p.context, horizon=horizon, ticket=ticket, t_start=t_start, prepared=p
    )


# --------------------------------------------------------------------------- fitting


def take_context(
    frames: list[Frame], needed: int | None, model: str, held_back: int = 0
) -> tuple[list[Frame], int]:
    """The last ``needed`` frames (None: all) and the index of the first; 422 when fewer were
    sent (``held_back``: frames the request kept back as truth, counted in the message)."""
    if needed is None:
        return frames, 0
    if len(frames) < needed:
        held = (
            f" ({len(frames) + held_back} uploaded, the last {held_back} held back as truth "
            f"by holdout={held_back})"
            if held_back
            else ""
        )
        raise TooFewFrames(
            f"{len(frames)} frame(s) of context were uploaded{held}; model {model!r} "
            f"needs {needed} (when more are sent it uses the last {needed})"
        )
    return frames[-needed:], len(frames) - needed


async def fit_context(
    frames: list[Frame],
    runner: Runner,
    resize: bool,
    held_back: int = 0,
    fit: str = "stretch",
    raw: bool = False,
) -> tuple[np.ndarray, Conversion, int]:
    """The model's context ``(frames, H, W, C)`` from the upload, what fitting changed, and how
    many uploaded frames before it the model does not read. ``raw``: 8-bit frames that need no
    fitting stay uint8 (for a runner whose model scales them: ``accepts_u8``)."""
    m = runner.manifest
    chosen, first = take_context(frames, m.reads, m.name, held_back)
    arr, conv = await _conform(chosen, runner, resize, first, fit, scale=not raw)
    return arr, conv, first


async def fit_frames(
    frames: list[Frame], runner: Runner, resize: bool, offset: int = 0, fit: str = "stretch"
) -> np.ndarray:
    """Any frames (e.g. truth) fitted to the model's (H, W, C)."""
    return (await _conform(frames, runner, resize, offset, fit))[0]


async def _conform(
    frames: list[Frame], runner: Runner, resize: bool, offset: int, fit: str, scale: bool = True
) -> tuple[np.ndarray, Conversion]:
    m = runner.manifest
    out = len(frames) * m.height * m.width * m.channels * 4  # float32 bytes out
    read = 4 * sum(math.prod(f.shape) for f in frames)  # and in: resizing 4096² frames is work
    return await offload(
        max(out, read) <= INLINE_FIT_BYTES,
        lambda: conform(
            frames,
            height=m.height,
            width=m.width,
            channels=m.channels,
            resize=resize,
            model=f"model {m.name!r}",
            offset=offset,
            fit=fit,
            scale=scale,
        ),
    )
