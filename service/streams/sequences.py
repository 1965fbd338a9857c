"""The V2 protocol's sequence extension over framecast's streams (as Triton reads it).

A request to ``/v2/models/{name}/infer`` (or gRPC ``ModelInfer``) whose ``parameters`` carry a
``sequence_id`` is one step of a stream: ``sequence_start: true`` opens it (a live sequence with the
same id starts again), every request applies its frames (``frames`` input ``[1, T, H, W, C]``,
T ≥ 1) in order and answers ``next_frame`` / ``rollout`` for what comes next, and
``sequence_end: true`` closes it after answering. A Triton client's stateful code
(``client.infer(..., sequence_id=7, sequence_start=True)``) works unchanged.

Until the model's context is full the outputs are zeros and the response's ``parameters`` say so
(``sequence_needs``: frames still needed); they also carry ``sequence_step`` (frames received) and
``surprise_mse_per_frame`` (the error of the prediction made for the last frame received). The
stream is the one ``/v1/streams`` lists, under the id ``v2:<model>:<n>`` (an integer id) or
``v2:<model>:s:<id>`` (a string id). A ``sequence_start`` on a sequence that has a request in
flight waits for it, then starts the sequence again: the restart wins.

With API keys on, sequence ids are the key's own: the stream of key ``alice``'s sequence 1 is
``v2:<model>:1@alice``, so two keys' ``sequence_id=1`` never meet; the stream belongs to the key
(only it, and an admin, reach it under ``/v1/streams/{id}``), counts against its
``max_streams``, and a sequence needs the ``stream`` scope besides ``infer``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.auth.principals import Principal, Scope, owner_of
from service.errors import BadRequest, Forbidden, StreamGone, StreamNotFound
from service.inference import Fit
from service.media.frames import Frame
from service.streams.feeding import Options, feed, new_stream
from service.streams.store import StreamStore


@dataclass(frozen=True)
class Sequence:
    id: str
    start: bool
    end: bool


MAX_ID = (1 << 64) - 1  # a uint64 correlation id, as Triton's
ID_CHARS = re.compile(r"[A-Za-z0-9._~-]+")


def sequence_of(req: dict, max_chars: int = 128) -> Sequence | None:
    """The request's sequence parameters, or None when it is not part of one (no id, or 0 as
    Triton reads it). An id is an unsigned 64-bit integer (1 … 2^64-1) or a string of 1 to
    ``max_chars`` letters, digits and ``. _ ~ -`` (so its stream is reachable under
    ``/v1/streams/{id}``); ``7`` and ``"7"`` are two sequences."""
    params = req.get("parameters") or {}
    if not isinstance(params, dict):
        return None  # horizon_of reports a malformed "parameters"
    sid = params.get("sequence_id")
    start, end = params.get("sequence_start", False), params.get("sequence_end", False)
    if sid is None or sid == 0 or sid == "":
        if start or end:
            raise BadRequest("sequence_start and sequence_end need a sequence_id")
        return None
    rule = (
        f"sequence_id must be an unsigned integer from 1 to {MAX_ID} or a string of 1 to "
        f'{max_chars} letters, digits and . _ ~ - (not "0")'
    )
    if isinstance(sid, bool) or not isinstance(sid, (int, str)):
        raise BadRequest(f"{rule}; got a {type(sid).__name__}")
    if isinstance(sid, int):
        if not 0 < sid <= MAX_ID:
            raise BadRequest(f"{rule}; got {sid}")
        key = str(sid)
    else:
        if len(sid) > max_chars or not ID_CHARS.fullmatch(sid) or sid == "0":
            shown = sid[:40] + ("…" if len(sid) > 40 else "")
            raise BadRequest(f"{rule}; got {shown!r} ({len(sid)} characters)")
        key = f"s:{sid}"
    for key_name, value in (("sequence_start", start), ("sequence_end", end)):
        if not isinstance(value, bool):
            raise BadRequest(f"{key_name} must be true or false, got {value!r}")
    return Sequence(key, start, end)


def stream_id(model: str, seq: Sequence, owner: str | None = None) -> str:
    """The stream of a sequence: ``v2:<model>:<n>`` for an integer id, ``v2:<model>:s:<id>`` for
    a string one; ``@<key id>`` after it when a key sent it."""
    return f"v2:{model}:{seq.id}" + ("" if owner is None else f"@{owner}")


async def infer_sequence(
    runtime: Any,
    store: StreamStore,
    runner: Any,
    seq: Sequence,
    clips: np.ndarray,
    horizon: int,
    caller: Principal | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One request of a sequence: ``clips`` (1, T, H, W, C) float32 → the outputs' arrays and
    the response parameters (``caller``: the key that sent it, whose sequence it is)."""
    if caller is not None and not caller.can(Scope.STREAM):
        raise Forbidden(
            f"key {caller.id!r} may not keep sequences (sequence_id): that needs the stream "
            "scope; send the request without sequence parameters"
        )
    if len(clips) != 1:
        raise BadRequest(
            f"a sequence's request carries one clip (batch 1) of one or more frames; got "
            f"batch {len(clips)}"
        )
    owner = owner_of(caller)
    sid = stream_id(runner.name, seq, owner)
    if seq.start:
        stream = new_stream(store, runner, None, stream_id=sid, owner=owner)
        async with store.exclusive(sid):  # a request of the old sequence in flight ends first
            await store.end(sid, "was started again by sequence_start")
            await store.create(stream, caller)  # the restart wins: the next request continues it
    else:
        try:
            await store.get(sid, caller=caller)
        except (StreamNotFound, StreamGone) as e:
            why = e.message if isinstance(e, StreamGone) else f"sequence {seq.id} is not open"
            raise BadRequest(
                f"{why}; the first request of a sequence to model {runner.name!r} must set "
                "sequence_start=true"
            ) from None
    frames = [Frame(f, f"sequence {seq.id} frame {i}") for i, f in enumerate(clips[0])]
    opts = Options(horizon, fit=Fit(resize=False), tensors=True)
    try:
        body = await feed(runtime, store, sid, frames, opts)
    finally:
        if seq.end:
            await store.end(sid, "was ended by sequence_end")
    m = runner.manifest
    pred = body["tensor"]
    if pred is None:  # the context is not full yet: zeros, and sequence_needs says so
        pred = np.zeros((horizon, m.height, m.width, m.channels), np.float32)
    params: dict[str, Any] = {"sequence_step": body["step"], "sequence_needs": body["needs"]}
    if body["surprise"]:
        params["surprise_mse_per_frame"] = body["surprise"][-1]["mse_per_frame"]
    return {"rollout": pred[None], "next_frame": pred[None, 0]}, params
