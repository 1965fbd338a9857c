"""Pydantic request/response classes (``*Request``, ``*Response``), each with an OpenAPI example."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAAAAACPAi4CAAAAJElEQVR4nO3BAQ0AAADCoPdPbQ8HFAAAAAAAAAAAAAAAAAAA"
    "AIA3HkAAASnLuTwAAAAASUVORK5CYII="
)


def _example(example: dict) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]}, protected_namespaces=())


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
    frames: int = Field(description="frames of context the model takes (fixed)")
    height: int
    width: int
    channels: int


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
    architecture: str
    task: str
    input: InputSpec
    class_names: list[str] | None = None
    params: int
    flops_per_clip: int = 0
    device: str
    sha256: str
    ready: bool
    warmup_ms: float | None = None
    rollout: str = Field(
        "none",
        description="how `horizon=k` is rolled out: `carried_state` "
        "(context read once, then one frame a step with the recurrent state "
        "carried), `sliding_window` (the model re-reads its last `frames` "
        "frames each step), or `none` (classifiers)",
    )
    metrics: dict | None = Field(None, description="the model card's JSON; null when not evaluated")


class ModelListResponse(BaseModel):
    model_config = _example(
        {"models": [ModelInfo.model_config["json_schema_extra"]["examples"][0]]}
    )
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


class PredictResponse(BaseModel):
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
    resized: bool = Field(description="whether any frame was resized or colour-converted")
    shape: list[int] = Field(description="(horizon, height, width, channels)")
    latency_ms: float
    inference_ms: float
    frames: list[PredictedFrame]


class ClassScore(BaseModel):
    class_name: str
    score: float


class ClassifyResponse(BaseModel):
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
    top: list[ClassScore] = Field(description="the top_k classes, best first")
    scores: list[ClassScore] = Field(description="every class, best first")
    context_frames: int
    frames_received: int
    resized: bool
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
    params: int
    latency_ms: float = Field(description="from submission to answer, queueing included")
    inference_ms: float
    frames: list[PredictedFrame] | None = None
    scores: list[ClassScore] | None = None
    label: str | None = None
    metrics: FrameMetrics | None = None
    correct: bool | None = None
    true_class_score: float | None = None


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
    results: dict[str, CompareModelResult] = Field(description="keyed by architecture")
    winner: str | None = Field(
        None,
        description="architecture that won on the main metric "
        "(MSE per frame / true-class score); "
        "'tie' when equal; null without truth",
    )
    winners: dict[str, str] = Field(default_factory=dict, description="metric -> architecture")
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
