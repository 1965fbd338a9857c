"""The live-stream group of framecast's settings (``FRAMECAST_STREAM_*``).

A part of :class:`service.config.Settings`, which inherits these fields and reads them from the
environment with the others; declared here only to keep config.py one screenful per group. Never
instantiated on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings

STORE_SCHEMES = ("memory", "file://", "redis://", "rediss://", "unix://")

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
        "freed and it answers 410 with how to open a new one (a client may choose its own "
        "at open, ?idle_timeout_s=, up to FRAMECAST_STREAM_MAX_IDLE_TIMEOUT_S)",
    )
    stream_max_idle_timeout_s: float = Field(
        3600.0,
        gt=0,
        description="the longest idle timeout a client may ask for when it opens a stream",
    )
    stream_min_idle_timeout_s: float = Field(
        0.1,
        gt=0,
        description="the shortest idle timeout a client may ask for when it opens a stream (a "
        "shorter one would end it before a frame could reach it)",
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
        "docs/streams.md, 'Carry or window', has both ways' held-out error on 30-frame streams",
    )
    stream_store: str | None = Field(
        None,
        description="where the stream table lives: `memory` (this process; the default), "
        "`file:///path` (a folder the processes of one machine share, as "
        "FRAMECAST_STREAM_DIR) or `redis://HOST:PORT/DB` (Redis: servers on many machines "
        "share every stream; `rediss://` for TLS). docs/streams.md says what survives what",
    )
    stream_store_timeout_s: float = Field(
        2.0,
        gt=0,
        description="how long a request waits for the stream store (Redis) before it is "
        "answered 503 with Retry-After",
    )
    stream_store_retry_after_s: int = Field(
        1, ge=1, description="the Retry-After of a 503 when the stream store does not answer"
    )
    stream_redis_prefix: str = Field(
        "framecast:",
        description="the prefix of framecast's keys in Redis (servers sharing streams share it)",
    )
    stream_ended_ttl_s: float = Field(
        86400.0,
        gt=0,
        description="Redis store: how long an ended stream's id is remembered (410 with why)",
    )
    stream_on_swap: Literal["replay", "end"] = Field(
        "replay",
        description="what a stream does when its model is swapped for a new version or "
        "checkpoint: replay (rebuild its state on the new one from its last context frames; "
        "its answer says so) or end (410)",
    )
    stream_commit_retries: int = Field(
        8,
        ge=0,
        description="times a step is made again when another process wrote the stream first "
        "(a shared store's compare-and-set); past them 503 with Retry-After",
    )
    stream_max_id_chars: int = Field(
        128,
        ge=1,
        le=1024,
        description="the longest V2 string sequence_id (letters, digits and . _ ~ -); an "
        "ended stream's id is remembered, so this bounds what one costs",
    )
    stream_dir: Path | None = Field(
        None,
        description="a folder the stream table lives in, shared by every process given the "
        "same one (service/streams/folder.py); unset: in this process's memory. "
        "`framecast serve --workers N` makes one for its workers (under /dev/shm) when unset",
    )
    stream_ended_kept: int = Field(
        10000,
        ge=0,
        description="ids of expired, deleted or ended streams remembered, so that they answer "
        "410 (with why) rather than 404",
    )

    @field_validator("stream_store")
    @classmethod
    def _store_url(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if v == "memory" or v.startswith(STORE_SCHEMES[1:]):
            return v
        raise ValueError(
            "give memory, file:///path (a folder), redis://HOST:PORT/DB or rediss://..."
        )

    @model_validator(mode="after")
    def _one_store(self) -> StreamSettings:
        if self.stream_dir is not None and self.stream_store not in (None, "memory"):
            raise ValueError(
                "FRAMECAST_STREAM_DIR and FRAMECAST_STREAM_STORE both say where streams live: "
                "set one (FRAMECAST_STREAM_STORE=file:///path is the folder)"
            )
        return self
