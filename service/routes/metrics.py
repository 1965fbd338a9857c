"""Prometheus metrics in the text exposition format."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

router = APIRouter(tags=["metrics"])

_EXAMPLE = (
    "# HELP framecast_requests_total HTTP requests by route, model and status code\n"
    "# TYPE framecast_requests_total counter\n"
    'framecast_requests_total{route="/v1/models/{name}/predict",'
    'model="convlstm2d_next_frame",status="200"} 12\n'
)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics: requests, latency, inference time, batch sizes, queues",
    responses={200: {"content": {"text/plain": {"example": _EXAMPLE}}}},
)
async def metrics(request: Request) -> PlainTextResponse:
    return PlainTextResponse(
        request.app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
