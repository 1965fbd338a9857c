"""Inference on one model: next-frame prediction (with rollout) and classification."""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from service import inference
from service.checks import require_horizon, require_task
from service.deps import RuntimeDep, SettingsDep
from service.http.uploads import INLINE_FIT_BYTES, offload, read_upload
from service.inference import Fit
from service.media import encode as codecs
from service.media.fitting import FitMode
from service.routes import params
from service.routes.openapi import conversion_header, error_responses, upload_openapi
from service.schemas import ClassifyResponse, PredictedFrame, PredictResponse

router = APIRouter(prefix="/v1/models", tags=["inference"])

_BINARY = {
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "image/gif": {"schema": {"type": "string", "format": "binary"}},
    "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
}

ResizeQuery = params.RESIZE.query()
FitQuery = params.FIT.query()


def predicted_frames(frames: np.ndarray, raw: bool) -> list[PredictedFrame]:
    return [
        PredictedFrame(
            index=i, png=codecs.png_b64(f), values=np.round(f, 6).tolist() if raw else None
        )
        for i, f in enumerate(frames)
    ]


@router.post(
    "/{name}/predict",
    response_model=PredictResponse,
    summary="Predict the next frame(s) of a clip (next-frame models)",
    description="Upload the context frames (multipart files in order, one GIF/APNG/WebP/TIFF, one "
    ".npy, or JSON base64). With `horizon=k` the model rolls out k frames, feeding each "
    "prediction back: read once with the recurrent state carried, in a sliding window of its "
    "fixed context length, or (free time axis) over the context and every prediction so far "
    "(the model's `rollout` in /v1/models). `output` picks "
    "JSON (base64 PNG frames, raw floats with `raw=true`), a PNG strip of the "
    "predicted frames, an animated GIF of context + prediction, or an .npy "
    "(horizon, H, W, C) float32 array. Every answer says what fitting the frames to the model "
    "changed: the JSON fields `resized_from`, `fit`, `channels_from` and `frames_dropped`, and "
    "the same report in the `X-Conversion` header (JSON), which PNG, GIF and .npy answers carry "
    "too.",
    openapi_extra=upload_openapi(with_truth=False),
    responses={
        200: {"content": _BINARY, "headers": conversion_header()},
        **error_responses(404, 413, 415, 422, 503, 504),
    },
)
async def predict(
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    name: str = Path(description="a next-frame model", examples=["convlstm2d_next_frame"]),
    horizon: int = params.HORIZON.query(),
    output: Literal["json", "png", "gif", "npy"] = params.PREDICT_OUTPUT.query(),
    raw: bool = params.RAW.query(),
    resize: bool = ResizeQuery,
    fit: FitMode = FitQuery,
    version: str | None = params.VERSION.query(),
) -> Response:
    t_start = time.perf_counter()
    runner = runtime.get(name, version)
    require_task(name, runner.manifest.task, "next_frame")
    require_horizon(horizon, settings.max_horizon)
    with inference.reserve(runner) as (ticket,):  # 503 at once when the queue is full
        upload = await read_upload(request, settings, allow_truth=False)
        answer = await inference.run(
            runner, upload.frames, "next_frame", Fit(resize, fit), horizon=horizon,
            ticket=ticket, t_start=t_start,
        )  # fmt: skip
    pred, prepared, timing = answer.output, answer.prepared, answer.timing
    assert prepared is not None, "inference.run fits the upload"
    context = prepared.context
    headers = answer.headers()

    def encode() -> tuple[bytes, str]:
        if output == "png":
            return codecs.strip_png(pred), "image/png"
        if output == "gif":
            return codecs.gif_bytes(np.concatenate([context, pred], axis=0)), "image/gif"
        if output == "npy":
            return codecs.npy_bytes(pred), "application/x-npy"
        body = PredictResponse(
            model=name,
            horizon=horizon,
            context_frames=len(context),
            frames_received=prepared.received,
            **prepared.report(),
            shape=list(pred.shape),
            latency_ms=round(answer.latency_ms, 3),
            inference_ms=round(timing.inference_ms, 3),
            frames=predicted_frames(pred, raw),
        )
        return body.model_dump_json().encode(), "application/json"

    small = pred.size * 4 <= INLINE_FIT_BYTES  # a few PNGs: cheaper here than a thread hop
    content, media_type = await offload(small, encode)
    answer.finish(runtime.metrics, headers)
    return Response(content, media_type=media_type, headers=headers)


def ranked(scores: np.ndarray, class_names: list[str]) -> list[dict]:
    """Every class, best first (ties in class order, NaN last, as a stable ``np.argsort`` of
    ``-scores``), as ``ClassScore`` fields: the response model validates the plain dicts in one
    pass (a third of the time of building each ``ClassScore`` here)."""
    values = scores.tolist()  # sorted by Python, which keeps the GIL (numpy's sort gives it up)
    order = sorted(range(len(values)), key=lambda i: (values[i] != values[i], -values[i]))
    return [{"class_name": class_names[i], "score": values[i]} for i in order]


@router.post(
    "/{name}/classify",
    response_model=ClassifyResponse,
    summary="Classify a clip (classification models)",
    description="Upload the frames as for predict; returns the `top_k` best classes with their "
    "scores, best first, in `scores` (and in `top`, the same list, kept for older clients); "
    "`label` is the best class. Ask `top_k` ≥ the number of classes for every class's score.",
    openapi_extra=upload_openapi(with_truth=False),
    responses={
        200: {"headers": conversion_header()},
        **error_responses(404, 413, 415, 422, 503, 504),
    },
)
async def classify(
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    name: str = Path(description="a classification model", examples=["convlstm2d_classify"]),
    top_k: int = params.TOP_K.query(),
    resize: bool = ResizeQuery,
    fit: FitMode = FitQuery,
    version: str | None = params.VERSION.query(),
) -> Response:
    t_start = time.perf_counter()
    runner = runtime.get(name, version)
    m = runner.manifest
    require_task(name, m.task, "classify")
    with inference.reserve(runner) as (ticket,):
        upload = await read_upload(request, settings, allow_truth=False)
        answer = await inference.run(
            runner, upload.frames, "classify", Fit(resize, fit), ticket=ticket, t_start=t_start
        )
    scores, prepared = answer.output, answer.prepared
    assert prepared is not None, "inference.run fits the upload"
    names = m.class_names or [str(i) for i in range(scores.shape[-1])]
    ordered = ranked(scores, names)
    k = min(top_k, len(ordered))
    body = ClassifyResponse(
        model=name,
        label=ordered[0]["class_name"],
        top_k=k,
        # ClassScore fields as plain dicts, which pydantic validates (see ranked)
        top=ordered[:k],  # type: ignore[arg-type]
        scores=ordered[:k],  # type: ignore[arg-type]
        context_frames=len(prepared.context),
        frames_received=prepared.received,
        **prepared.report(),
        latency_ms=round(answer.latency_ms, 3),
        inference_ms=round(answer.timing.inference_ms, 3),
    )
    headers = answer.headers()
    answer.finish(runtime.metrics, headers)
    return Response(body.model_dump_json(), media_type="application/json", headers=headers)
