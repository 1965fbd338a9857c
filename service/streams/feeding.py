"""Opening streams and feeding them frames: what the HTTP, WebSocket and V2 routes share.

A route decodes its protocol's frames (``service.media``) and calls :func:`feed`, which takes the
stream's lock (a stream's frames are applied in order; concurrent posts wait their turn), checks
the client's ``step=``, fits the frames to each model (``service.inference.prepare_all``),
advances every stream (``service/streams/stepping.py``; a compare stream's models concurrently)
and shapes the answer: predict's JSON frames and the surprise of each frame received.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from service import inference
from service.errors import InvalidInput, StreamConflict
from service.inference import Fit
from service.media import encode as codecs
from service.media.frames import Frame
from service.routes.v1.scores import pick  # compare's rule for a winner (a pure function)
from service.streams.stepping import Advanced, advance, plan
from service.streams.store import Group, Stream, StreamStore
from service.telemetry import server_timing

LOWER_IS_BETTER = {"mse_per_frame": True, "psnr": False, "ssim": False}


@dataclass(frozen=True)
class Options:
    """How one post is answered (the route's query parameters)."""

    horizon: int = 1
    raw: bool = False
    fit: Fit = Fit()
    step: int | None = None  # the client's count of frames sent before these, if it keeps one
    tensors: bool = False  # the prediction as an array (``"tensor"``), not PNGs (V2 sequences)


def open_stream(
    store: StreamStore, runner: Any, past_context: str | None, group: str | None = None
) -> Stream:
    """A new stream on ``runner`` (not yet in the store: :meth:`StreamStore.add` puts it there)."""
    how = plan(runner, store.settings, past_context)
    now = store.clock()
    sid = store.new_id()
    sha = getattr(runner.manifest, "sha256", None)
    return Stream(
        sid, runner.name, runner, created=now, touched=now, group=group, model_sha=sha, **how
    )


def open_group(store: StreamStore, runners: list[Any], past_context: str | None) -> Group:
    gid, now = store.new_id(), store.clock()
    members = {r.name: open_stream(store, r, past_context, group=gid) for r in runners}
    return Group(gid, members, now, now)


def _answer(
    stream: Stream, adv: Advanced, prepared: inference.Prepared, opts: Options, spent_ms: float
) -> dict:
    needs = max(0, stream.needs - stream.step)
    pred = adv.predicted
    frames = []
    if pred is not None and not opts.tensors:
        frames = [
            {
                "index": i,
                "png": codecs.png_b64(f),
                "values": np.round(f, 6).tolist() if opts.raw else None,
            }
            for i, f in enumerate(pred)
        ]
    return {
        "id": stream.group or stream.id,
        "model": stream.model,
        "mode": stream.mode,
        "step": stream.step,
        "received": adv.received,
        "needs": needs,
        "message": (
            f"model {stream.model!r} reads {stream.needs} frames before it predicts: "
            f"send {needs} more"
            if needs
            else None
        ),
        "horizon": opts.horizon,
        "frames": frames,
        "surprise": adv.surprise,
        **prepared.report(),
        "latency_ms": round(spent_ms, 3),
        "inference_ms": round(adv.timing.inference_ms, 3),
        **({"tensor": pred} if opts.tensors else {}),
    }


def _check_step(entry: Stream | Group, opts: Options) -> None:
    if opts.step is not None and opts.step != entry.step:
        raise StreamConflict(
            f"the stream has received {entry.step} frames, the request says step={opts.step}: "
            f"{'a frame was lost' if opts.step > entry.step else 'frames were sent twice'} "
            "(send step= as the number of frames sent before these; GET the stream for its step)"
        )


async def _advance(
    streams: list[Stream], frames: list[Frame], opts: Options
) -> list[tuple[dict, dict]]:
    """Every stream of a post (one, or a compare stream's): a queue place on each model and every
    upload fitted before any stream moves (a full queue or a bad frame changes none), then all
    advanced concurrently; per stream, its answer and phases (ms)."""
    t0 = time.perf_counter()
    runners = [s.runner for s in streams]
    with inference.reserve(*runners) as tickets:  # 503 at once when a queue is full
        prepared = [await inference.prepare_all(r, frames, opts.fit) for r in runners]
        t1 = time.perf_counter()

        async def one(k: int) -> tuple[dict, dict]:
            adv = await advance(streams[k], prepared[k].context, opts.horizon, [tickets[k]])
            t2 = time.perf_counter()
            answer = _answer(streams[k], adv, prepared[k], opts, (t2 - t1) * 1000.0)
            phases = {  # every phase of the statistics extension, each once a post
                "decode": (t1 - t0) * 1000.0,
                "queue": adv.timing.queued_ms,
                "model": adv.timing.inference_ms,
                "encode": (time.perf_counter() - t2) * 1000.0,
            }
            return answer, phases

        return list(await asyncio.gather(*(one(k) for k in range(len(streams)))))


def _winners(answers: dict[str, dict]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for metric, lower in LOWER_IS_BETTER.items():
        values: dict[str, float | None] = {}
        for name, a in answers.items():
            got = [s[metric] for s in a["surprise"] or () if s[metric] is not None]
            values[name] = float(np.mean(got)) if got else None
        out[metric] = pick(values, lower)
    return out


async def feed(
    store: StreamStore,
    stream_id: str,
    frames: list[Frame],
    opts: Options,
    metrics: Any = None,
    headers: dict[str, str] | None = None,
) -> dict:
    """Apply ``frames`` to the stream (or compare stream) ``stream_id`` and answer."""
    s = store.settings
    if not frames:
        raise InvalidInput("no frames were sent; send one frame or more")
    if len(frames) > s.stream_max_frames:
        raise InvalidInput(
            f"{len(frames)} frames in one request; a stream takes at most {s.stream_max_frames} "
            "at a time (FRAMECAST_STREAM_MAX_FRAMES): send them in several requests"
        )
    async with store.hold(stream_id) as entry:  # posts to one stream: one after the other
        _check_step(entry, opts)
        store.touch(entry)
        members = [entry] if isinstance(entry, Stream) else list(entry.members.values())
        try:
            done = await _advance(members, frames, opts)
        except Exception as e:
            if isinstance(entry, Group) and len({m.step for m in members}) > 1:
                store.end(  # one model moved on, another did not: the group cannot go on
                    entry.id,
                    f"ended: its models fell out of step when one failed ({e}); "
                    "open a new one with POST /v1/compare/streams",
                )
            raise
        finally:
            store.touch(entry)
    if metrics is not None:
        for m, (_, phases) in zip(members, done):
            metrics.observe_phases(m.model, phases, str(getattr(m.runner, "version", 1)))
    phases = {k: max(p[k] for _, p in done) for k in done[0][1]}
    if isinstance(entry, Stream):
        body = done[0][0]
    else:
        answers = {m.model: a for m, (a, _) in zip(members, done)}
        body = {
            "id": entry.id,
            "step": entry.step,
            "received": len(frames),
            "models": answers,
            "winners": _winners(answers),
        }
    if headers is not None:
        headers["Server-Timing"] = server_timing(phases)
    return body
