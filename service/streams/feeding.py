"""Opening streams and feeding them frames: what the HTTP, WebSocket and V2 routes share.

A route decodes its protocol's frames (``service.media``) and calls :func:`feed`, which holds the
stream (a stream's frames are applied in order; concurrent posts wait their turn, in every process
sharing the store), looks up the runner of each of its models (the version it was opened on, or
the newest: a new version is taken up by replaying the stream's last frames, unless
FRAMECAST_STREAM_ON_SWAP=end), checks the client's ``step=``, fits the frames to each model
(``service.inference.prepare_all``), advances every stream (``service/streams/stepping.py``; a
compare stream's models concurrently), shapes the answer (predict's JSON frames and the surprise of
each frame received) and stores the stream back whole, or not at all.

``step=`` makes a post safe to retry: a post whose ``step`` and frames are those of the last post
applied is answered that post's answer again, never applied twice; a ``step`` that says a frame
was lost is a 409.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from service import inference
from service.errors import (
    InvalidInput,
    ModelNotFound,
    StoreUnavailable,
    StreamConflict,
    StreamGone,
)
from service.inference import Fit
from service.media import encode as codecs
from service.media.frames import Frame
from service.routes.v1.scores import pick  # compare's rule for a winner (a pure function)
from service.streams.records import Entry, Group, Stream, touch
from service.streams.stepping import Advanced, advance, plan
from service.streams.store import Contended, StreamStore, how_to_reopen
from service.telemetry import server_timing

log = logging.getLogger("framecast.streams")

LOWER_IS_BETTER = {"mse_per_frame": True, "psnr": False, "ssim": False}


@dataclass(frozen=True)
class Options:
    """How one post is answered (the route's query parameters)."""

    horizon: int = 1
    raw: bool = False
    fit: Fit = Fit()
    step: int | None = None  # the client's count of frames sent before these, if it keeps one
    tensors: bool = False  # the prediction as an array (``"tensor"``), not PNGs (V2 sequences)


def idle_timeout(settings: Any, asked: float | None) -> float:
    """The idle timeout of a new stream: the client's, within FRAMECAST_STREAM_MAX_IDLE_TIMEOUT_S,
    else FRAMECAST_STREAM_IDLE_TIMEOUT_S."""
    if asked is None:
        return float(settings.stream_idle_timeout_s)
    least, most = settings.stream_min_idle_timeout_s, settings.stream_max_idle_timeout_s
    if not least <= asked <= most:
        raise InvalidInput(
            f"idle_timeout_s={asked:g}: give a number of seconds of at least {least:g} "
            f"(FRAMECAST_STREAM_MIN_IDLE_TIMEOUT_S) and at most {most:g} "
            "(FRAMECAST_STREAM_MAX_IDLE_TIMEOUT_S)"
        )
    return float(asked)


def new_stream(
    store: StreamStore,
    runner: Any,
    past_context: str | None,
    *,
    group: str | None = None,
    idle_timeout_s: float | None = None,
    pinned: str | None = None,
    owner: str | None = None,
    stream_id: str | None = None,
) -> Stream:
    """A new stream on ``runner`` (not yet in the store: :meth:`StreamStore.create` puts it
    there)."""
    how = plan(runner, store.settings, past_context)
    now = store.clock()
    return Stream(
        stream_id or store.new_id(),
        runner.name,
        created=now,
        touched=now,
        idle_timeout_s=idle_timeout(store.settings, idle_timeout_s),
        group=group,
        version=runner.version,
        sha256=runner.manifest.sha256 or None,
        pinned=pinned,
        owner=owner,
        **how,
    )


def new_group(
    store: StreamStore,
    runners: list[Any],
    past_context: str | None,
    *,
    idle_timeout_s: float | None = None,
    owner: str | None = None,
) -> Group:
    gid, now = store.new_id(), store.clock()
    idle = idle_timeout(store.settings, idle_timeout_s)
    members = {
        r.name: new_stream(store, r, past_context, group=gid, idle_timeout_s=idle, owner=owner)
        for r in runners
    }
    return Group(gid, members, now, now, idle, owner=owner)


async def runner_of(runtime: Any, store: StreamStore, entry: Entry, s: Stream) -> tuple[Any, bool]:
    """The runner that takes ``s``'s next frame, and whether the stream must replay its last
    frames on it (a new version or checkpoint since its last frame). A model this server no
    longer serves ends the stream when the store is this process's alone; in a shared store
    another server may serve it, so the stream is kept and this request refused (404)."""
    hint = how_to_reopen(entry)
    try:
        runner = runtime.get(s.model, s.pinned)
    except ModelNotFound as e:
        if store.shared:
            raise ModelNotFound(
                f"stream {entry.id!r} is on model {s.model!r}, which this server does not serve "
                f"now ({e.message}); the stream is kept: send its frames to a server that "
                "serves the model"
            ) from None
        gone = f"ended: model {s.model!r} was unloaded after it opened; {hint}"
        await store.end(entry.id, gone)
        raise StreamGone(f"stream {entry.id!r} {gone}") from None
    m = runner.manifest
    if runner.version == s.version and (m.sha256 or None) == s.sha256:
        return runner, False
    why: str | None = None
    if (m.height, m.width, m.channels) != tuple(s.frame_shape):
        why = (
            f"ended: model {s.model!r} version {runner.version} reads "
            f"{m.height}x{m.width}x{m.channels} frames, not the stream's "
            f"{'x'.join(map(str, s.frame_shape))}; {hint}"
        )
    elif store.settings.stream_on_swap == "end":
        why = (
            f"ended: model {s.model!r} was swapped for version {runner.version} "
            f"(checkpoint {str(m.sha256)[:12]}) after it opened "
            f"(FRAMECAST_STREAM_ON_SWAP=end); {hint}"
        )
    if why is not None:
        await store.end(entry.id, why)
        raise StreamGone(f"stream {entry.id!r} {why}")
    if s.mode == "carry" and not getattr(runner, "carries", False):
        s.mode, s.states, s.state_bytes, s.state_shapes = "window", None, 0, []
    elif s.mode == "carry":
        s.state_shapes = [tuple(x) for x in runner.state_shapes]
        s.state_bytes = sum(int(np.prod(x)) * 4 for x in s.state_shapes)
    return runner, True


def _answer(
    stream: Stream,
    runner: Any,
    adv: Advanced,
    prepared: inference.Prepared,
    opts: Options,
    spent_ms: float,
    was: int,
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
    replayed = None
    if adv.replayed or was != runner.version:
        replayed = {"from_version": was, "version": runner.version, "frames": adv.replayed}
    return {
        "id": stream.group or stream.id,
        "model": stream.model,
        "version": runner.version,
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
        "replayed": replayed,
        **prepared.report(),
        "latency_ms": round(spent_ms, 3),
        "inference_ms": round(adv.timing.inference_ms, 3),
        **({"tensor": pred} if opts.tensors else {}),
    }


def digest(frames: list[Frame], opts: Options) -> str:
    """What identifies a post for a retry: its frames' pixels and how it asked to be answered."""
    h = hashlib.sha256(repr((opts.horizon, opts.raw, opts.fit, opts.tensors)).encode())
    for f in frames:
        px = f.u8 if f.u8 is not None else f.data
        h.update(repr((px.dtype.str, px.shape)).encode())
        h.update(np.ascontiguousarray(px).tobytes())
    return h.hexdigest()


class _Again(Exception):
    """The post is a retry of the last one applied: its answer, again (nothing is written)."""

    def __init__(self, answer: bytes):
        self.answer = answer


def _check_step(entry: Entry, opts: Options, sent: str | None, n: int) -> None:
    if opts.step is None or opts.step == entry.step:
        return
    last = entry.last
    if last is not None and last["step"] == opts.step and opts.step + last["n"] == entry.step:
        if last["digest"] == sent:
            raise _Again(last["answer"])
        raise StreamConflict(
            f"step={opts.step} was applied already, with other frames or options; the stream "
            f"has received {entry.step} frames (send step={entry.step} with the next ones)"
        )
    raise StreamConflict(
        f"the stream has received {entry.step} frames, the request says step={opts.step}: "
        f"{'a frame was lost' if opts.step > entry.step else 'frames were sent twice'} "
        "(send step= as the number of frames sent before these; GET the stream for its step)"
    )


async def _advance(
    streams: list[Stream],
    runners: list[Any],
    replays: list[bool],
    frames: list[Frame],
    opts: Options,
    announced: list | None = None,
) -> list[tuple[dict, dict]]:
    """Every stream of a post (one, or a compare stream's): a queue place on each model and every
    upload fitted before any stream moves (a full queue or a bad frame changes none), then all
    advanced concurrently; per stream, its answer and phases (ms). ``announced``: the places
    taken before the stream was read (:func:`feed`), given back once these are taken."""
    t0 = time.perf_counter()
    with inference.reserve(*runners) as tickets:  # 503 at once when a queue is full
        for early in announced or ():
            if early is not None:  # a runner without a queue of its own (Ray's) gives none
                early.release()
        prepared = [await inference.prepare_all(r, frames, opts.fit) for r in runners]
        t1 = time.perf_counter()

        async def one(k: int) -> tuple[dict, dict]:
            s, r, was = streams[k], runners[k], streams[k].version
            adv = await advance(s, r, prepared[k].context, opts.horizon, [tickets[k]], replays[k])
            t2 = time.perf_counter()
            answer = _answer(s, r, adv, prepared[k], opts, (t2 - t1) * 1000.0, was)
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


async def _step_once(
    runtime: Any,
    store: StreamStore,
    stream_id: str,
    frames: list[Frame],
    opts: Options,
    sent: Any,
    announced: list | None = None,
) -> tuple[dict, list[tuple[Stream, Any, dict]]]:
    async with store.hold(stream_id) as entry:  # posts to one stream: one after the other
        _check_step(entry, opts, sent, len(frames))
        members = [entry] if isinstance(entry, Stream) else list(entry.members.values())
        found = [await runner_of(runtime, store, entry, m) for m in members]
        for m, (_, replay) in zip(members, found):
            if replay or m.mode == "window":  # it reads its window again
                await store.load_window(m, entry)
        runners = [r for r, _ in found]
        touch(entry, store.clock())
        done = await _advance(members, runners, [f for _, f in found], frames, opts, announced)
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
        last = None
        if sent is not None:  # kept for a retry of this very post
            last = {"step": opts.step, "n": len(frames), "digest": sent}
            last["answer"] = json.dumps(body).encode()
        for m in members:
            m.last = last
    return body, [(m, r, p) for m, r, (_, p) in zip(members, runners, done)]


async def feed(
    runtime: Any,
    store: StreamStore,
    stream_id: str,
    frames: list[Frame],
    opts: Options,
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
    sent = digest(frames, opts) if opts.step is not None and not opts.tensors else None
    # In a shared store the stream is read over the network (or from a file) first: its models'
    # batchers are told a frame is coming meanwhile, as for an upload being decoded, so they wait
    # for it (up to FRAMECAST_MAX_BATCH_DELAY_MS) rather than step the others without it.
    with inference.reserve(*store.runners_seen(runtime, stream_id)) as announced:
        for attempt in range(s.stream_commit_retries + 1):
            try:
                body, stepped = await _step_once(
                    runtime, store, stream_id, frames, opts, sent, announced
                )
                break
            except _Again as again:
                if headers is not None:
                    headers["X-Stream-Retry"] = "answered again"
                return json.loads(again.answer)
            except Contended:
                log.info("stream %s: written by another process meanwhile; stepped again (%d)",
                         stream_id, attempt + 1)  # fmt: skip
        else:
            raise StoreUnavailable(
                f"stream {stream_id!r} was written by other servers {s.stream_commit_retries + 1} "
                "times while this request stepped it (FRAMECAST_STREAM_COMMIT_RETRIES); send "
                "each stream's frames one at a time",
                1,
            )
    if store.shared:
        store.saw_models(stream_id, tuple((m.model, m.pinned) for m, _, _ in stepped))
    metrics = getattr(runtime, "metrics", None)
    if metrics is not None:
        for m, r, phases in stepped:
            metrics.observe_phases(m.model, phases, str(getattr(r, "version", 1)))
    if headers is not None:
        phases = {k: max(p[k] for _, _, p in stepped) for k in stepped[0][2]}
        headers["Server-Timing"] = server_timing(phases)
    return body
