"""The JSON shapes of the stream routes (for validation of the answers and the OpenAPI document)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.schemas import Converted, PredictedFrame


class Surprise(BaseModel):
    """How far one received frame was from the prediction made for it (compare's metrics)."""

    step: int = Field(description="the frame's number in the stream (1 = the first received)")
    mse_per_frame: float
    psnr: float
    ssim: float | None = Field(None, description="null for frames smaller than 7x7")


class StreamInfo(BaseModel):
    id: str
    model: str
    version: int = Field(1, description="the model version its last frame was read by")
    mode: str = Field(
        description="carry: one step of the recurrent cells per frame, the state carried on; "
        "window: the last `window` frames kept and read again for every frame"
    )
    step: int = Field(description="frames received so far")
    needs: int = Field(description="frames still needed before the first prediction")
    context: int = Field(description="frames the model reads before it predicts")
    window: int | None = Field(None, description="frames kept (window mode)")
    idle_s: float
    idle_timeout_s: float = Field(description="it expires after this long without a frame")
    expires_in_s: float = Field(description="seconds left before it expires without a frame")
    memory_bytes: int = Field(description="bytes the stream holds on the server now")
    max_memory_bytes: int = Field(description="the most it can hold")
    group: str | None = Field(None, description="the compare stream it belongs to")


class Replayed(BaseModel):
    """The stream moved to a new model version since its last frame: its state was rebuilt on
    it from its last frames, so this answer is what predict on the new version answers for them."""

    from_version: int
    version: int
    frames: int = Field(description="frames read again (the stream's last context frames)")


class StreamAnswer(Converted):
    """What one post of frames did: the prediction of the next frame(s) and the surprise of
    the frames just received."""

    id: str
    model: str
    version: int = Field(1, description="the model version that read these frames")
    mode: str
    step: int = Field(description="frames received so far, these included")
    received: int = Field(description="frames in this request")
    needs: int = Field(description="frames still needed before the first prediction (0: none)")
    message: str | None = Field(None, description="why nothing was predicted, when so")
    horizon: int
    frames: list[PredictedFrame] = Field(
        description="the next frame(s) predicted, as predict's JSON answer has them; "
        "empty while the context is not full"
    )
    surprise: list[Surprise] | None = Field(
        None,
        description="for each frame just received that had been predicted, that prediction's "
        "error; null when none had been",
    )
    replayed: Replayed | None = Field(
        None, description="set when the stream moved to a new model version with this post"
    )
    latency_ms: float
    inference_ms: float


class StreamOpened(StreamInfo):
    location: str = Field(description="where to post its frames")
    answer: StreamAnswer | None = Field(None, description="the answer to the frames sent at open")
    restored: bool = Field(False, description="opened from a snapshot")


class StreamList(BaseModel):
    streams: list[dict]


class CompareStreamAnswer(BaseModel):
    id: str
    step: int
    received: int
    models: dict[str, StreamAnswer]
    winners: dict[str, str | None] = Field(
        description="per metric, the model whose surprise over this request's frames was best "
        "(null before every model predicted, 'tie' when shared)"
    )
