"""Evaluation jobs: models compared on a whole data set (service/jobs/).

``POST /v1/evaluations?models=a,b&holdout=k`` with the data set as the body (or a form file
``dataset``) → 202 ``{"id", "state", "location"}``; ``GET /v1/evaluations[/{id}]``; ``DELETE``
cancels; ``/events`` streams progress as Server-Sent Events; ``/report`` (HTML),
``/report.json``, ``/clips.csv`` and ``/plot.png`` once it is done. Any worker sharing
FRAMECAST_JOB_DIR answers for any job. The data set's body may be FRAMECAST_JOB_MAX_DATASET_BYTES
and take FRAMECAST_JOB_UPLOAD_TIMEOUT_S (service/http/limits.py widens them for this path).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from service.auth.principals import principal_of
from service.deps import RuntimeDep
from service.errors import InvalidInput, JobNotDone
from service.inference import Fit
from service.jobs.manager import UPLOAD, JobManager, view
from service.jobs.plots import plot_png
from service.jobs.report import render_html
from service.media.fitting import FitMode
from service.routes.openapi import error_responses
from service.routes.v1.predict import FitQuery, ResizeQuery

router = APIRouter(prefix="/v1/evaluations", tags=["evaluations"])
PATH = "/v1/evaluations"  # the body limit and deadline of this path are the job settings'
CHUNK = 1 << 20

_DATASET_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"dataset": {"type": "string", "format": "binary"}},
                    "required": ["dataset"],
                }
            },
        },
    }
}


def jobs_of(request: Request) -> JobManager:
    return request.app.state.jobs


async def save_body(request: Request, path: Path) -> None:
    """The data set into ``path``: a form's ``dataset`` file, or the raw body (never held in
    memory whole; its size is bounded by the body limit)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=8)
        try:
            upload = form.get("dataset")
            if not isinstance(upload, UploadFile):
                raise InvalidInput("send the data set as the form file 'dataset' (or as the body)")
            with open(path, "wb") as out:
                await asyncio.to_thread(shutil.copyfileobj, upload.file, out, CHUNK)
        finally:
            await form.close()
    elif ctype in ("application/json", "application/x-www-form-urlencoded"):
        raise InvalidInput(
            f"Content-Type {ctype!r}: send the data set's file as the body (e.g. "
            "application/octet-stream) or as the multipart form file 'dataset'"
        )
    else:
        with open(path, "wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
    if path.stat().st_size == 0:
        raise InvalidInput("no data set was sent (the body is empty)")


@router.post(
    "",
    status_code=202,
    summary="Evaluate models on a whole data set (a job)",
    description="Every clip of the data set through each model, by the path predict and "
    "classify take, at a lower priority than online requests; answers 202 with the job's id "
    "and location. Next-frame models: the last `holdout` frames of each clip are the truth. "
    "Classifiers: labels given with the data (an .npz `labels` array, folder names or a "
    "labels.csv). Data sets: an .npy of clips (N, T, H, W[, C]), an .npz (clips, labels), a "
    ".zip or .tar(.gz) of clips (videos, GIFs, .npy, folders of images), or one video cut "
    "into clips by `window` and `stride`.",
    openapi_extra=_DATASET_BODY,
    responses=error_responses(404, 409, 413, 415, 422, 429, 503),
)
async def create(
    request: Request,
    runtime: RuntimeDep,
    models: str = Query(description="models of one task, comma-separated", examples=["a,b"]),
    holdout: int | None = Query(None, ge=1, description="next frame: frames of truth per clip"),
    window: int | None = Query(None, ge=1, le=10_000, description="a video: frames per clip"),
    stride: int | None = Query(
        None, ge=1, le=100_000, description="a video: frames between clip starts (default window)"
    ),
    top_k: int = Query(2, ge=1, le=1000, description="classifiers: the k of top-k accuracy"),
    name: str | None = Query(None, max_length=200, description="a name for the job"),
    resize: bool = ResizeQuery,
    fit: FitMode = FitQuery,
) -> Response:
    jobs = jobs_of(request)
    caller = principal_of(request.scope)
    plan, runners = jobs.plan(models, holdout, Fit(resize, fit), top_k)  # before the body
    await asyncio.to_thread(jobs.check_key, caller)  # its max_jobs: before the body too
    job_id, folder = await asyncio.to_thread(jobs.new)
    try:
        await save_body(request, folder / UPLOAD)
        dataset = await asyncio.to_thread(jobs.open, folder, window, stride)
        await jobs.check(plan, runners, dataset)
        body = await jobs.start(job_id, plan, dataset, name, caller)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    short = {"id": body["id"], "state": body["state"], "location": body["location"]}
    return Response(json.dumps(short), 202, {"Location": body["location"]}, "application/json")


@router.get(
    "",
    summary="Every evaluation job, newest first",
    description="With API keys on, the jobs the caller's key submitted (every job for an admin "
    "key).",
)
async def list_jobs(request: Request) -> dict[str, Any]:
    rows = await asyncio.to_thread(jobs_of(request).listing, principal_of(request.scope))
    return {"jobs": [view(j, full=False) for j in rows]}


async def _job(request: Request, job_id: str) -> dict[str, Any]:
    """The job, if the caller may see it (404 as for an unknown id otherwise)."""
    return await asyncio.to_thread(jobs_of(request).get, job_id, principal_of(request.scope))


@router.get(
    "/{job_id}",
    summary="One job: state, progress, partial results, the result",
    responses=error_responses(404),
)
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    return view(await _job(request, job_id))


@router.delete(
    "/{job_id}",
    summary="Cancel a queued or running job (delete a finished one)",
    responses=error_responses(404),
)
async def delete_job(request: Request, job_id: str) -> dict[str, Any]:
    job = await asyncio.to_thread(jobs_of(request).cancel, job_id, principal_of(request.scope))
    return view(job, full=False)


@router.get(
    "/{job_id}/events",
    summary="The job's progress as Server-Sent Events",
    description="`event: progress` with the job (as GET answers it, without its result) each "
    "time it moves; then one `event: done`, `failed` or `cancelled` with the whole job, and the "
    "stream ends. A comment line every 15 s keeps proxies from closing it.",
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **error_responses(404),
    },
)
async def events(request: Request, job_id: str) -> StreamingResponse:
    jobs, caller = jobs_of(request), principal_of(request.scope)
    first = await _job(request, job_id)
    interval = jobs.settings.job_progress_interval_s
    drain = getattr(request.app.state, "drain", None)

    async def stream() -> AsyncIterator[str]:
        job, last, quiet = first, None, 0.0
        while True:
            state = job["state"]
            if state in ("done", "failed", "cancelled"):
                yield f"event: {state}\ndata: {json.dumps(view(job))}\n\n"
                return
            seen = (state, json.dumps(job.get("progress")))
            if seen != last:
                yield f"event: progress\ndata: {json.dumps(view(job, full=False))}\n\n"
                last, quiet = seen, 0.0
            elif quiet >= 15.0:
                yield ": still running\n\n"
                quiet = 0.0
            if await request.is_disconnected():
                return
            if drain is not None and drain.draining:  # SIGTERM: let the server stop
                yield ": the server is stopping; GET the job, or its events, again\n\n"
                return
            await asyncio.sleep(interval)
            quiet += interval
            job = await asyncio.to_thread(jobs.get, job_id, caller)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def _result(request: Request, job_id: str) -> dict[str, Any]:
    job = await _job(request, job_id)
    if job["state"] != "done" or not job.get("result"):
        why = f": {job['error']}" if job.get("error") else ""
        raise JobNotDone(
            f"evaluation {job_id} is {job['state']}{why}; its report exists once it is done "
            f"(GET {PATH}/{job_id} or /events says when)"
        )
    return job


@router.get(
    "/{job_id}/report",
    summary="The report, as a page",
    responses={
        200: {"content": {"text/html": {"schema": {"type": "string"}}}},
        **error_responses(404, 409),
    },
)
async def report(request: Request, job_id: str) -> HTMLResponse:
    job = await _result(request, job_id)
    html = await asyncio.to_thread(render_html, view(job))
    return HTMLResponse(html)


@router.get(
    "/{job_id}/report.json",
    summary="The result as JSON (the report's source)",
    responses=error_responses(404, 409),
)
async def report_json(request: Request, job_id: str) -> dict[str, Any]:
    return view(await _result(request, job_id))


@router.get(
    "/{job_id}/clips.csv",
    summary="Per-clip scores as CSV",
    responses={200: {"content": {"text/csv": {}}}, **error_responses(404, 409)},
)
async def clips_csv(request: Request, job_id: str) -> Response:
    await _result(request, job_id)
    path = jobs_of(request).folder(job_id) / "clips.csv"
    data = await asyncio.to_thread(path.read_bytes) if path.is_file() else b""
    headers = {"Content-Disposition": f'attachment; filename="evaluation_{job_id}_clips.csv"'}
    return Response(data, media_type="text/csv; charset=utf-8", headers=headers)


@router.get(
    "/{job_id}/plot.png",
    summary="Per-step curves with their intervals, as PNG",
    responses={200: {"content": {"image/png": {}}}, **error_responses(404, 409)},
)
async def plot(request: Request, job_id: str) -> Response:
    job = await _result(request, job_id)
    return Response(await asyncio.to_thread(plot_png, job["result"]), media_type="image/png")
