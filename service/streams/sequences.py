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
stream is the one ``/v1/streams`` lists, under the id ``v2:<model>:<sequence_id>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import BadRequest, StreamGone, StreamNotFound
from service.inference import Fit
from service.media.frames import Frame
from service.streams.feeding import Options, feed, open_stream
from service.streams.store import StreamStore


@dataclass(frozen=True)
class Sequence:
    id: str
    start: bool
    end: bool


def sequence_of(req: dict) -> Sequence | None:
    """The request's sequence parameters, or None when it is not part of one (no id, or 0 as
    Triton reads it)."""
    params = req.get("parameters") or {}
    if not isinstance(params, dict):
        return None  # horizon_of reports a malformed "parameters"
    sid = params.get("sequence_id")
    start, end = params.get("sequence_start", False), params.get("sequence_end", False)
    if sid is None or sid == 0 or sid == "":
        if start or end:
            raise BadRequest("sequence_start and sequence_end need a sequence_id")
        return None
    if (
        isinstance(sid, bool)
        or not isinstance(sid, (int, str))
        or (isinstance(sid, int) and sid < 0)
    ):
        raise BadRequest(f"sequence_id must be an unsigned integer or a string, got {sid!r}")
    for key, value in (("sequence_start", start), ("sequence_end", end)):
        if not isinstance(value, bool):
            raise BadRequest(f"{key} must be true or false, got {value!r}")
    return Sequence(str(sid), start, end)


def stream_id(model: str, seq: Sequence) -> str:
    return f"v2:{model}:{seq.id}"


async def infer_sequence(
    store: StreamStore,
    runner: Any,
    seq: Sequence,
    clips: np.ndarray,
    horizon: int,
    metrics: Any = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One request of a sequence: ``clips`` (1, T, H, W, C) float32 → the outputs' arrays and
    the response parameters."""
    if len(clips) != 1:
        raise BadRequest(
            f"a sequence's request carries one clip (batch 1) of one or more frames; got "
            f"batch {len(clips)}"
        )
    sid = stream_id(runner.name, seq)
    if seq.start:
        store.end(sid, "was started again by sequence_start")
        stream = open_stream(store, runner, None)
        store.check_room([runner.name])
        stream.id = sid
        store.add(stream)
    else:
        try:
            store.get(sid)
        except (StreamNotFound, StreamGone) as e:
            why = e.message if isinstance(e, StreamGone) else f"sequence {seq.id} is not open"
            raise BadRequest(
                f"{why}; the first request of a sequence to model {runner.name!r} must set "
                "sequence_start=true"
            ) from None
    frames = [Frame(f, f"sequence {seq.id} frame {i}") for i, f in enumerate(clips[0])]
    opts = Options(horizon, fit=Fit(resize=False), tensors=True)
    try:
        body = await feed(store, sid, frames, opts, metrics)
    finally:
        if seq.end:
            store.end(sid, "was ended by sequence_end")
    m = runner.manifest
    pred = body["tensor"]
    if pred is None:  # the context is not full yet: zeros, and sequence_needs says so
        pred = np.zeros((horizon, m.height, m.width, m.channels), np.float32)
    params: dict[str, Any] = {"sequence_step": body["step"], "sequence_needs": body["needs"]}
    if body["surprise"]:
        params["surprise_mse_per_frame"] = body["surprise"][-1]["mse_per_frame"]
    return {"rollout": pred[None], "next_frame": pred[None, 0]}, params
