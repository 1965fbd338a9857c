"""Pydantic request/response classes (``*Request``, ``*Response``), each with an OpenAPI example."""

from __future__ import annotations

from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

_PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAAAAACPAi4CAAAAJElEQVR4nO3BAQ0AAADCoPdPbQ8HFAAAAAAAAAAAAAAAAAAA"
    "AIA3HkAAASnLuTwAAAAASUVORK5CYII="
)


def _example(example: dict) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]}, protected_namespaces=())


def example_of(model: type[BaseModel]) -> dict[str, Any]:
    """The example :func:`_example` gave ``model`` (its JSON schema's ``examples[0]``)."""
    extra = model.model_config["json_schema_extra"]
    assert isinstance(extra, dict), "set by _example"
    return cast("list[dict[str, Any]]", extra["examples"])[0]


class ErrorResponse(BaseModel):
    model_config = _example(
        {
            "error": "frame_size_error",
            "status": 422,
            "message": "frame 3 (file 'c.png') is 32x48 (width x height) but "
            "frame 0 is 64x64; all frames must share one size "
            "(or send resize=true)",
        }
    )
    error: str = Field(description="machine-readable kind")
    message: str = Field(description="what was wrong and how to fix it")
    status: int


class HealthResponse(BaseModel):
    model_config = _example({"status": "ok"})
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    model_config = _example(
        {
            "ready": True,
            "state": "ready",
            "detail": "4 model(s) ready",
            "models": {"convlstm2d_next_frame": "ready"},
        }
    )
    ready: bool
    state: str = Field(description="starting | loading | ready | failed")
    detail: str = ""
    models: dict[str, str] = Field(default_factory=dict, description="model -> its state")


class InputSpec(BaseModel):
    frames: int | None = Field(
        description="the model's time axis; null: free (any number of frames)"
    )
    height: int
    width: int
    channels: int
    context: int | None = Field(
        None,
        description="free time axis: frames one request reads (the manifest's context); "
        "null: every uploaded frame, up to FRAMECAST_MAX_FRAMES",
    )


class CostFacts(BaseModel):
    """What a model costs, counted at load and measured (models/costs.py): null with a note
    saying why wherever a figure is not known, never 0."""

    params: int | None = None
    flops_per_clip: int | None = Field(
        None,
        description="multiply-adds x 2 of one clip's call; null (flops_note: why) when "
        "the model holds layers the counter does not know",
    )
    flops_per_clip_frames: int | None = Field(None, description="the clip length counted")
    flops_note: str | None = None
    flops_per_step: int | None = Field(
        None,
        description="carried-state models: one frame through every layer, state carried "
        "(a stream's step, a rollout's step after the context)",
    )
    flops_per_step_note: str | None = None
    weight_bytes: int | None = Field(None, description="the weights as held in memory")
    checkpoint_bytes: int | None = Field(None, description="the checkpoint file's size")
    peak_memory_bytes: int | None = Field(
        None,
        description="measured: the allocator's peak bytes in use during one clip at "
        "batch 1 beyond those in use before it (activations and scratch); null until measured",
    )
    memory_note: str | None = None
    memory_method: str | None = None


class ModelInfo(BaseModel):
    model_config = _example(
        {
            "name": "convlstm2d_next_frame",
            "architecture": "convlstm2d",
            "task": "next_frame",
            "input": {"frames": 10, "height": 64, "width": 64, "channels": 1},
            "class_names": None,
            "params": 482_000,
            "flops_per_clip": 1_500_000_000,
            "device": "gpu:0 (NVIDIA H100)",
            "sha256": "3f5c…",
            "ready": True,
            "warmup_ms": 412.5,
            "rollout": "carried_state",
            "metrics": {"mse_per_frame": 61.2, "ssim": 0.84},
        }
    )
    name: str
    state: str = Field(
        "ready",
        description="ready, loading, warming, failed or unloaded (the fields below the "
        "name are null for a model that is not loaded)",
    )
    error: str | None = Field(None, description="why a failed model is not served")
    version: int | None = Field(
        None, description="the numbered version described (a flat model folder's is 1)"
    )
    versions: list[int] = Field(
        default_factory=list,
        description="every version of this model served (its version policy's choice); a "
        "request without ?version= reaches the highest",
    )
    labels: dict[str, int] = Field(
        default_factory=dict, description="labels (stable, canary…) → the version each names"
    )
    display_name: str = ""
    description: str = ""
    architecture: str | None = Field(None, description="conv2d_lstm, convlstm2d or other")
    task: str | None = None
    output: str | None = Field(
        None,
        description="sequence (one frame per input frame, the last the next), frame "
        "(many-to-one) or scores",
    )
    source: str | None = Field(
        None,
        description="manifest (written by framecast) or checkpoint (read from the file alone)",
    )
    input: InputSpec | None = None
    class_names: list[str] | None = None
    params: int | None = None
    flops_per_clip: int | None = Field(
        None, description="counted at load (cost.flops_per_clip); null with cost.flops_note"
    )
    cost: CostFacts | None = Field(None, description="parameters, FLOPs, bytes, peak memory")
    device: str | None = None
    sha256: str | None = None
    ready: bool
    warmup_ms: float | None = None
    rollout: str = Field(
        "none",
        description="how `horizon=k` is rolled out: `carried_state` "
        "(context read once, then one frame a step with the recurrent state "
        "carried), `sliding_window` (the model re-reads its last `frames` "
        "frames each step), `growing` (free time axis: the model re-reads the context and "
        "every prediction so far), or `none` (classifiers)",
    )
    metrics: dict | None = Field(None, description="the model card's JSON; null when not evaluated")
    stream: dict | None = Field(
        None,
        description="how a live stream on it works (next-frame models): `mode` carry (one step "
        "of the cells a frame, the state carried) or window (the last `window` frames re-read "
        "each frame), `modes` the ones it can take, `context` frames before its first prediction",
    )


class ModelListResponse(BaseModel):
    model_config = _example({"models": [example_of(ModelInfo)]})
    models: list[ModelInfo]


class FramesRequest(BaseModel):
    """The JSON form of an upload: base64-encoded files (each decoded like a multipart file)."""

    model_config = _example({"frames": [_PNG_B64] * 10, "truth": None})
    frames: list[str] = Field(
        description="base64 images in order (PNG/JPEG/BMP/WebP), or one "
        "base64 multi-frame file (GIF/APNG/TIFF) or .npy; a "
        "data: URL prefix is allowed"
    )
    truth: list[str] | None = Field(None, description="compare only: the true future frames")


class PredictedFrame(BaseModel):
    index: int = Field(description="0 = the first frame after the context")
    png: str = Field(description="the frame as a base64 PNG")
    values: list | None = Field(None, description="raw floats (H, W, C) in [0, 1] when raw=true")


class Converted(BaseModel):
    """What fitting the upload to the model changed (each null when nothing of the kind)."""

    resized: bool = Field(False, description="whether any frame's size was changed")
    resized_from: list[int] | None = Field(
        None, description="[height, width] of the upload's frames before resizing"
    )
    fit: str | None = Field(
        None, description="how sizes were fitted when resized: stretch, pad or crop (query fit=)"
    )
    channels_from: int | None = Field(
        None, description="the upload's channels when converted (1 grey, 3 RGB)"
    )
    frames_dropped: int = Field(
        0, description="uploaded context frames before the ones the model read (not used)"
    )


class PredictResponse(Converted):
    model_config = _example(
        {
            "model": "convlstm2d_next_frame",
            "horizon": 1,
            "context_frames": 10,
            "frames_received": 10,
            "resized": False,
            "shape": [1, 64, 64, 1],
            "latency_ms": 12.4,
            "inference_ms": 9.8,
            "frames": [{"index": 0, "png": _PNG_B64, "values": None}],
        }
    )
    model: str
    horizon: int
    context_frames: int = Field(description="frames the model used (the last ones uploaded)")
    frames_received: int
    shape: list[int] = Field(description="(horizon, height, width, channels)")
    latency_ms: float
    inference_ms: float
    frames: list[PredictedFrame]


class ClassScore(BaseModel):
    class_name: str
    score: float


class ClassifyResponse(Converted):
    model_config = _example(
        {
            "model": "convlstm2d_classify",
            "label": "NE",
            "top_k": 2,
            "top": [{"class_name": "NE", "score": 0.91}, {"class_name": "N", "score": 0.05}],
            "scores": [{"class_name": "NE", "score": 0.91}, {"class_name": "N", "score": 0.05}],
            "context_frames": 10,
            "frames_received": 10,
            "resized": False,
            "latency_ms": 8.1,
            "inference_ms": 6.0,
        }
    )
    model: str
    label: str = Field(description="the class with the highest score")
    top_k: int
    top: list[ClassScore] = Field(
        description="the top_k best classes, best first: the same list as `scores` (kept for "
        "clients written when `scores` held every class)"
    )
    scores: list[ClassScore] = Field(
        description="the top_k best classes with their scores, best first (top_k ≥ the number "
        "of classes: every class)"
    )
    context_frames: int
    frames_received: int
    latency_ms: float
    inference_ms: float


class FrameMetrics(BaseModel):
    mse_per_frame: float = Field(description="sum of squared errors over a frame, mean over frames")
    mae_per_frame: float
    psnr: float
    ssim: float | None = Field(None, description="null for frames smaller than the 7x7 window")
    per_step: dict[str, list[float | None]] = Field(default_factory=dict)


class CompareModelResult(BaseModel):
    model: str
    architecture: str
    metrics: FrameMetrics | None = None
    label: str | None = None
    correct: bool | None = None
    true_class_score: float | None = None
    latency_ms: float = Field(description="from submission to answer, queueing included")
    inference_ms: float
    params: int
    cost: CostFacts | None = Field(None, description="the model's cost facts (/v1/models)")
    context_frames: int | None = Field(None, description="frames this model read")
    class_names: list[str] | None = Field(None, description="classify: this model's classes")
    scores: list[ClassScore] | None = None
    frames: list[PredictedFrame] | None = Field(
        None, description="next frame, with frames=true: the predicted frames as base64 PNGs"
    )
    conversion: Converted = Field(
        default_factory=Converted, description="what fitting the upload to this model changed"
    )


class CompareResponse(BaseModel):
    model_config = _example(
        {
            "task": "next_frame",
            "horizon": 2,
            "truth": "holdout",
            "context_frames": 10,
            "results": {
                "conv2d_lstm": {
                    "model": "conv2d_lstm_next_frame",
                    "architecture": "conv2d_lstm",
                    "params": 11_700_000,
                    "latency_ms": 21.0,
                    "inference_ms": 15.2,
                    "metrics": {
                        "mse_per_frame": 80.1,
                        "mae_per_frame": 190.3,
                        "psnr": 18.2,
                        "ssim": 0.71,
                    },
                },
                "convlstm2d": {
                    "model": "convlstm2d_next_frame",
                    "architecture": "convlstm2d",
                    "params": 482_000,
                    "latency_ms": 18.0,
                    "inference_ms": 12.9,
                    "metrics": {
                        "mse_per_frame": 61.2,
                        "mae_per_frame": 150.0,
                        "psnr": 19.9,
                        "ssim": 0.80,
                    },
                },
            },
            "winner": "convlstm2d",
            "winners": {"mse_per_frame": "convlstm2d", "ssim": "convlstm2d"},
        }
    )
    task: str
    horizon: int | None = None
    truth: Literal["holdout", "upload", "label"] | None = Field(
        None, description="where the ground truth came from; null when unknown"
    )
    true_label: str | None = None
    context_frames: int
    winner: str | None = Field(
        None,
        description="the key of `results` that won on the main metric "
        "(MSE per frame / true-class score); "
        "'tie' when equal; null without truth or with one model",
    )
    winners: dict[str, str] = Field(default_factory=dict, description="metric -> key of `results`")
    results: dict[str, CompareModelResult] = Field(
        description="keyed by architecture (the default pair) or, with ?models=, by model name"
    )
    context_png: list[str] | None = Field(
        None,
        description="inputs=true: the context frames the models saw, base64 PNGs at the "
        "Conv2D+LSTM model's size (oldest first)",
    )
    truth_png: list[str] | None = Field(
        None,
        description="inputs=true, next frame with truth: the true future frames, base64 "
        "PNGs at the same size",
    )
