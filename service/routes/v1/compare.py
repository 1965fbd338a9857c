"""Side by side: models of one task on the same clip.

By default the Conv2D+LSTM and the ConvLSTM2D model of the task (results keyed by architecture);
with ``?models=a[,b…]`` any models of the task (results keyed by model name), each fed the upload
fitted to its own input (frames, size, channels). One model is one model's output with its errors
against the truth, and no winner.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from service import inference
from service.checks import require_horizon
from service.deps import Runtime, RuntimeDep, SettingsDep
from service.errors import InvalidInput, WrongTask
from service.http.uploads import read_upload
from service.inference import Fit, Runner, Ticket, Timing
from service.media import encode as codecs
from service.media.fitting import FitMode, resize_frame, to_channels
from service.media.montages import montage_gif, montage_png
from service.routes import params
from service.routes.openapi import conversion_header, error_responses, upload_openapi
from service.routes.v1.models import cost_facts
from service.routes.v1.predict import FitQuery, ResizeQuery, predicted_frames, ranked
from service.routes.v1.scores import LOWER_IS_BETTER, frame_metrics, pick
from service.schemas import CompareModelResult, CompareResponse, Converted
from service.telemetry import server_timing

router = APIRouter(prefix="/v1/compare", tags=["compare"])

ARCHS = ("conv2d_lstm", "convlstm2d")
ROW_LABELS = {"conv2d_lstm": "Conv2D+LSTM", "convlstm2d": "ConvLSTM2D"}


def choose(
    runtime: Runtime, task: str, models: str | None, slots: dict[str, str | None]
) -> dict[str, Runner]:
    """The runners to compare, by result key: ``models`` (names) when given, else the default
    pair of architecture slots."""
    if models is None:
        return runtime.pair(task, slots)
    if any(slots.values()):
        raise InvalidInput("send either models=a,b or conv2d_lstm=/convlstm2d=, not both")
    names = [n.strip() for n in models.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise InvalidInput(
            f"models={models!r}: name one or more different models of the {task} task, "
            "comma-separated"
        )
    runners = {n: runtime.get(n) for n in names}
    for n, r in runners.items():
        if r.manifest.task != task:
            raise WrongTask(f"model {n!r} is a {r.manifest.task} model; this compares {task}")
    return runners


def _label(key: str, r: Runner) -> str:
    return ROW_LABELS.get(key) or getattr(r.manifest, "display_name", "") or r.name


def _shown(runners: dict[str, Runner]) -> Runner:
    """The runner whose frame size the montage and ``context_png`` use (the first; RGB wins)."""
    first = next(iter(runners.values()))
    rgb = [r for r in runners.values() if r.manifest.channels == 3]
    return rgb[0] if rgb and first.manifest.channels != 3 else first


def _reads(runners: dict[str, Runner], uploaded: int) -> int:
    return max(min(r.manifest.reads or uploaded, uploaded) for r in runners.values())


def _finish(
    runtime: Runtime,
    runners: dict[str, Runner],
    timings: list[Timing],
    convs: dict[str, Converted],
    t: tuple[float, float, float],
) -> dict[str, str]:
    """Each model's phases into /metrics and the V2 statistics; the answer's headers:
    ``Server-Timing`` (decode, the models (concurrently), the rest) and ``X-Conversion`` (what
    fitting changed, per result key). ``t``: the request began, its upload was fitted, the
    models answered (perf_counter seconds)."""
    t_start, t_decoded, t_models = t
    inference.observe_compared(runtime.metrics, list(zip(runners.values(), timings)), *t)
    now = time.perf_counter()
    timing = {
        "decode": (t_decoded - t_start) * 1000.0,
        "models": (t_models - t_decoded) * 1000.0,
        "metrics_encode": (now - t_models) * 1000.0,
        "total": (now - t_start) * 1000.0,
    }
    conversion = {k: c.model_dump() for k, c in convs.items()}
    return {
        "Server-Timing": server_timing(timing),
        "X-Conversion": json.dumps(conversion, separators=(",", ":")),
    }


def _pngs(frames: np.ndarray) -> list[str]:
    return [codecs.png_b64(f) for f in frames]


async def _timed(
    runner: Runner, context: np.ndarray, horizon: int, ticket: Ticket | None
) -> tuple[np.ndarray, Timing, float]:
    answer = await inference.call(runner, context, horizon=horizon, ticket=ticket)
    return answer.output, answer.timing, answer.latency_ms


def _display(frames: np.ndarray | None, h: int, w: int, c: int) -> np.ndarray | None:
    if frames is None:
        return None
    return (
        np.stack([to_channels(resize_frame(f, h, w), c) for f in frames]) if len(frames) else None
    )


@router.post(
    "/next-frame",
    response_model=CompareResponse,
    summary="Both next-frame models on one clip, concurrently, with metrics when truth is known",
    description="Runs the Conv2D+LSTM and the ConvLSTM2D next-frame model on the same context. "
    "`holdout=k` keeps the last k uploaded frames back as ground truth (horizon k); "
    "or upload `truth` files. With truth, each model gets MSE/MAE per frame (sums over "
    "a frame's pixels, OpenSTL convention), PSNR and SSIM, and `winner` names the "
    "architecture with the lower MSE. `output=png|gif` returns one montage with rows "
    "context, truth, Conv2D+LSTM, ConvLSTM2D. What fitting the clip to each model changed is in "
    "each result's `conversion` and, for every answer (montages too), in the `X-Conversion` "
    "header.",
    openapi_extra=upload_openapi(with_truth=True),
    responses={
        200: {
            "content": {
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "image/gif": {"schema": {"type": "string", "format": "binary"}},
            },
            "headers": conversion_header(per_model=True),
        },
        **error_responses(404, 413, 415, 422, 503, 504),
    },
)
async def compare_next_frame(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    settings: SettingsDep,
    horizon: int | None = params.COMPARE_HORIZON.query(),
    holdout: int = params.HOLDOUT.query(),
    output: Literal["json", "png", "gif"] = params.COMPARE_OUTPUT.query(),
    resize: bool = ResizeQuery,
    fit: FitMode = FitQuery,
    conv2d_lstm: str | None = params.CONV2D_LSTM.query(),
    convlstm2d: str | None = params.CONVLSTM2D.query(),
    models: str | None = params.MODELS.query(),
    with_frames: bool = params.WITH_FRAMES.query(),
    inputs: bool = params.INPUTS.query(),
) -> CompareResponse | Response:
    t_start = time.perf_counter()
    slots = {"conv2d_lstm": conv2d_lstm, "convlstm2d": convlstm2d}
    runners = choose(runtime, "next_frame", models, slots)
    with inference.reserve(*runners.values()) as tickets:  # 503 at once when one is full
        upload = await read_upload(request, settings, allow_truth=True)
        source: Literal["holdout", "upload"] | None  # where the truth came from
        frames, truth_frames, source = upload.frames, None, None
        if holdout and upload.truth is not None:
            raise InvalidInput("send either holdout=k or truth files, not both")
        if holdout:
            if holdout >= len(frames):
                raise InvalidInput(
                    f"holdout={holdout} keeps back {holdout} of the {len(frames)} "
                    "uploaded frames and leaves no context; upload more frames"
                )
            frames, truth_frames, source = frames[:-holdout], frames[-holdout:], "holdout"
        elif upload.truth is not None:
            if not upload.truth:
                raise InvalidInput("the truth part holds no frames")
            truth_frames, source = upload.truth, "upload"
        if truth_frames is not None:
            if horizon is not None and horizon != len(truth_frames):
                raise InvalidInput(
                    f"horizon={horizon} but {len(truth_frames)} truth frame(s) were "
                    "given; leave horizon out or make them equal"
                )
            horizon = len(truth_frames)
        horizon = require_horizon(horizon or 1, settings.max_horizon)

        contexts, truths, convs = {}, {}, {}
        for key, runner in runners.items():
            prepared = await inference.prepare(runner, frames, Fit(resize, fit), held_back=holdout)
            contexts[key], convs[key] = prepared.context, Converted(**prepared.report())
            if truth_frames is not None:
                truths[key] = await inference.fit_frames(
                    truth_frames, runner, resize, len(frames) if source == "holdout" else 0, fit
                )
        t_decoded = time.perf_counter()
        keys = list(runners)
        outs = await asyncio.gather(
            *(_timed(runners[k], contexts[k], horizon, ticket) for k, ticket in zip(keys, tickets))
        )
    t_models = time.perf_counter()
    t, timings = (t_start, t_decoded, t_models), [timing for _, timing, _ in outs]

    results: dict[str, CompareModelResult] = {}
    preds = {}
    for key, (pred, timing, latency_ms) in zip(keys, outs):
        preds[key] = pred
        r: Runner = runners[key]
        metrics = (
            await run_in_threadpool(frame_metrics, pred, truths[key])
            if truth_frames is not None
            else None
        )
        results[key] = CompareModelResult(
            model=r.name,
            architecture=r.manifest.architecture,
            params=r.manifest.params,
            cost=cost_facts(r),
            context_frames=len(contexts[key]),
            conversion=convs[key],
            latency_ms=round(latency_ms, 3),
            inference_ms=round(timing.inference_ms, 3),
            frames=await run_in_threadpool(predicted_frames, pred, False)
            if output == "json" and with_frames
            else None,
            metrics=metrics,
        )
    winner, winners = None, {}
    if truth_frames is not None:
        for metric, lower in LOWER_IS_BETTER.items():
            best = pick({k: getattr(results[k].metrics, metric) for k in keys}, lower)
            if best is not None:
                winners[metric] = best
        winner = winners.get("mse_per_frame")
    if len(keys) < 2:  # one model: its errors, nothing to win against
        winner, winners = None, {}

    shown = _shown(runners)
    shown_key = next(k for k, r in runners.items() if r is shown)
    n_ctx = _reads(runners, len(frames))
    if output in ("png", "gif"):
        base = shown.manifest
        h, w, c = base.height, base.width, base.channels
        ctx_display = await inference.fit_frames(frames[-n_ctx:], shown, True, fit=fit)
        truth_display = truths.get(shown_key)
        rows = [("truth", truth_display)] + [
            (_label(k, runners[k]), _display(preds[k], h, w, c)) for k in keys
        ]
        if output == "png":
            image = await run_in_threadpool(montage_png, [("context", ctx_display)] + rows)
        else:
            image = await run_in_threadpool(montage_gif, ctx_display, rows)
        headers = {"X-Winner": winner or "unknown", **_finish(runtime, runners, timings, convs, t)}
        return Response(image, media_type=f"image/{output}", headers=headers)

    context_png = truth_png = None
    if inputs:
        context_png = await run_in_threadpool(
            _pngs, await inference.fit_frames(frames[-n_ctx:], shown, True)
        )
        if truth_frames is not None:
            truth_png = await run_in_threadpool(_pngs, truths[shown_key])
    response.headers.update(_finish(runtime, runners, timings, convs, t))
    return CompareResponse(
        task="next_frame",
        horizon=horizon,
        truth=source,
        context_frames=n_ctx,
        results=results,
        winner=winner,
        winners=winners,
        context_png=context_png,
        truth_png=truth_png,
    )


@router.post(
    "/classify",
    response_model=CompareResponse,
    summary="Both classification models on one clip, concurrently",
    description="Runs the Conv2D+LSTM and the ConvLSTM2D classifier on the same clip. With "
    "`label=<true class>` each result says whether it was right and its score for the "
    "true class, and `winner` names the architecture with the higher true-class score.",
    openapi_extra=upload_openapi(with_truth=False),
    responses={
        200: {"headers": conversion_header(per_model=True)},
        **error_responses(404, 413, 415, 422, 503, 504),
    },
)
async def compare_classify(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    settings: SettingsDep,
    top_k: int = params.COMPARE_TOP_K.query(),
    label: str | None = params.LABEL.query(),
    resize: bool = ResizeQuery,
    fit: FitMode = FitQuery,
    conv2d_lstm: str | None = params.CONV2D_LSTM.query(),
    convlstm2d: str | None = params.CONVLSTM2D.query(),
    models: str | None = params.MODELS.query(),
    inputs: bool = params.INPUTS.query(),
) -> CompareResponse:
    slots = {"conv2d_lstm": conv2d_lstm, "convlstm2d": convlstm2d}
    runners = choose(runtime, "classify", models, slots)
    if label is not None and not any(
        label in (r.manifest.class_names or []) for r in runners.values()
    ):
        raise InvalidInput(
            f"label={label!r} is not a class of any compared model ("
            + "; ".join(
                f"{r.name}: {', '.join(r.manifest.class_names or [])}" for r in runners.values()
            )
            + ")"
        )
    t_start = time.perf_counter()
    with inference.reserve(*runners.values()) as tickets:
        upload = await read_upload(request, settings, allow_truth=False)
        contexts, convs = {}, {}
        for key, runner in runners.items():
            prepared = await inference.prepare(runner, upload.frames, Fit(resize, fit))
            contexts[key], convs[key] = prepared.context, Converted(**prepared.report())
        t_decoded = time.perf_counter()
        keys = list(runners)
        outs = await asyncio.gather(
            *(_timed(runners[k], contexts[k], 1, ticket) for k, ticket in zip(keys, tickets))
        )
    t_models = time.perf_counter()
    t, timings = (t_start, t_decoded, t_models), [timing for _, timing, _ in outs]
    results, true_scores = {}, {}
    for key, (scores, timing, latency_ms) in zip(keys, outs):
        r = runners[key]
        names = r.manifest.class_names
        assert names is not None, "a classify model has class_names (Manifest.validate)"
        ordered = ranked(scores, names)
        # the label's class index (None: no label, or not a class of this model)
        at = names.index(label) if label is not None and label in names else None
        true_score = float(scores[at]) if at is not None else None
        true_scores[key] = true_score
        results[key] = CompareModelResult(
            model=r.name,
            architecture=r.manifest.architecture,
            params=r.manifest.params,
            cost=cost_facts(r),
            context_frames=len(contexts[key]),
            conversion=convs[key],
            class_names=list(names),
            latency_ms=round(latency_ms, 3),
            inference_ms=round(timing.inference_ms, 3),
            # ClassScore fields as plain dicts, which pydantic validates (see ranked)
            scores=ordered[: min(top_k, len(ordered))],  # type: ignore[arg-type]
            label=ordered[0]["class_name"],
            correct=(ordered[0]["class_name"] == label) if at is not None else None,
            true_class_score=true_score,
        )
    winner, winners = None, {}
    if label is not None:
        winner = pick({k: v for k, v in true_scores.items() if v is not None}, False)
        if winner is not None:  # always: label is a class of at least one model (checked above)
            winners["true_class_score"] = winner
    if len(runners) < 2:  # one model: its score, nothing to win against
        winner, winners = None, {}
    n_ctx = _reads(runners, len(upload.frames))
    context_png = (
        await run_in_threadpool(
            _pngs, await inference.fit_frames(upload.frames[-n_ctx:], _shown(runners), True)
        )
        if inputs
        else None
    )
    response.headers.update(_finish(runtime, runners, timings, convs, t))
    return CompareResponse(
        task="classify",
        truth="label" if label else None,
        true_label=label,
        context_frames=n_ctx,
        results=results,
        winner=winner,
        winners=winners,
        context_png=context_png,
    )
