"""OpenAPI helpers for the routes: the bodies they read by hand and the errors they answer."""

from __future__ import annotations

from typing import Any

from service.schemas import ErrorResponse, FramesRequest, example_of

_ERROR_TEXTS = {
    404: "unknown model",
    413: "body larger than FRAMECAST_MAX_UPLOAD_BYTES",
    415: "unsupported media type or file format",
    422: "malformed frame or array, too few frames, sizes differ with resize=false, "
    "wrong task for the model, bad parameter",
    503: "models not ready, queue full or inference timed out",
    504: "the request ran past FRAMECAST_REQUEST_TIMEOUT_S; its model work was dropped",
}


# read by hand (service/http/uploads.py), so declared here; they pick the frames of video files only
VIDEO_PARAMETERS = [
    {
        "name": "start",
        "in": "query",
        "required": False,
        "description": "video uploads: index of the first decoded frame kept (0: the first)",
        "schema": {"type": "integer", "minimum": 0, "default": 0},
        "example": 0,
    },
    {
        "name": "stride",
        "in": "query",
        "required": False,
        "description": "video uploads: keep every stride-th decoded frame from start "
        "(≤ FRAMECAST_MAX_VIDEO_STRIDE, 1000 by default)",
        "schema": {"type": "integer", "minimum": 1, "default": 1},
        "example": 1,
    },
]


def upload_openapi(*, with_truth: bool) -> dict[str, Any]:
    """``openapi_extra`` describing the accepted bodies, with examples, and the video query
    parameters (routes read the body by hand)."""
    files = {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "description": "frames in order: image files, or one GIF/APNG/WebP/TIFF, or one .npy, "
        "or one video (MP4, WebM, AVI, MOV; see the start and stride parameters)",
    }
    props: dict[str, Any] = {"files": files}
    if with_truth:
        props["truth"] = {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "the true future frames (optional; or use holdout=k)",
        }
    json_schema = FramesRequest.model_json_schema()
    if not with_truth:
        json_schema["properties"].pop("truth", None)
    example = dict(example_of(FramesRequest))
    if not with_truth:
        example.pop("truth", None)
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "parameters": [dict(p) for p in VIDEO_PARAMETERS],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": props, "required": ["files"]}
                },
                "application/json": {"schema": json_schema, "example": example},
                "image/gif": binary,
                "video/mp4": binary,
                "video/webm": binary,
                "application/x-npy": binary,
                "application/octet-stream": binary,
            },
        },
    }


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the error codes a route can answer, with the error schema."""
    return {c: {"model": ErrorResponse, "description": _ERROR_TEXTS.get(c, "error")} for c in codes}


CONVERSION = (
    "What fitting the upload to the model changed, as compact JSON with the fields of the JSON "
    "answer: `resized`, `resized_from` ([height, width] before resizing), `fit`, "
    "`channels_from` (the upload's channels when they were converted: 1 grey, 3 colour) and "
    "`frames_dropped` (uploaded frames before those the model read). Every answer carries it, "
    "PNG, GIF and .npy included"
)


def conversion_header(per_model: bool = False) -> dict[str, Any]:
    """``headers`` of a 200 answer: ``X-Conversion`` (``per_model``: one report per result key,
    as compare answers)."""
    text = CONVERSION + (
        "; compare: one report per key of `results`, e.g. "
        '{"conv2d_lstm": {...}, "convlstm2d": {...}}'
        if per_model
        else ', e.g. {"resized":true,"resized_from":[32,48],"fit":"stretch",'
        '"channels_from":3,"frames_dropped":0}'
    )
    return {"X-Conversion": {"description": text, "schema": {"type": "string"}}}
