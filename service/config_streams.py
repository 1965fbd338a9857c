"""The live-stream group of framecast's settings (``FRAMECAST_STREAM_*``).

A part of :class:`service.config.Settings`, which inherits these fields and reads them from the
environment with the others; declared here only to keep config.py one screenful per group. Never
instantiated on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings

MIB = 1 << 20


class StreamSettings(BaseSettings):
    # live streams (/v1/models/{name}/streams, /v1/streams/{id}/..., service/streams/)
    stream_max_per_model: int = Field(
        64,
        ge=1,
        description="open streams one model may hold; one more is answered 503 with Retry-After",
    )
    stream_max_total: int = Field(
        256,
        ge=1,
        description="open streams in all (every model, compare streams counted once per "
        "model); one more is answered 503 with Retry-After",
    )
    stream_idle_timeout_s: float = Field(
        300.0,
        gt=0,
        description="a stream that receives no frame for this long expires: its state is "
        "freed and it answers 410 with how to open a new one",
    )
    stream_max_frames: int = Field(
        32,
        ge=1,
        description="frames one POST /v1/streams/{id}/frames (or one WebSocket message) may "
        "carry; more is a 422",
    )
    stream_max_bytes: int = Field(
        64 * MIB,
        ge=1,
        description="memory one stream may hold on the server (its window of frames, "
        "recurrent states and last prediction); a stream that would hold more is refused "
        "at open with a 422 naming the figure",
    )
    stream_window: int = Field(
        10,
        ge=1,
        description="frames a stream keeps for a model with a free time axis and no context "
        "in its manifest (a fixed time axis keeps its own length)",
    )
    stream_past_context: Literal["carry", "window"] = Field(
        "carry",
        description="what a stream on a carried-state model does once it has received more "
        "frames than the model's context: carry (one step per frame, the state carried on "
        "from the first frame) or window (read its last context-length frames again for "
        "every frame: a context pass each). Per stream: ?past_context= when opening. "
        "README, 'Live streams', has both ways' held-out error on 30-frame streams",
    )
    stream_dir: Path | None = Field(
        None,
        description="a folder the stream table lives in, shared by every process given the "
        "same one (service/streams/shared.py); unset: in this process's memory. "
        "`framecast serve --workers N` makes one for its workers (under /dev/shm) when unset",
    )
    stream_ended_kept: int = Field(
        10000,
        ge=0,
        description="ids of expired, deleted or ended streams remembered, so that they answer "
        "410 (with why) rather than 404",
    )
