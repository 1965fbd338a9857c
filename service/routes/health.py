"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.deps import RuntimeDep
from service.schemas import ErrorResponse, HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get(
    "/healthz", response_model=HealthResponse, summary="Liveness: 200 while the process lives"
)
async def healthz() -> HealthResponse:
    return HealthResponse()


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    summary="Readiness: 200 once every model is loaded and warm, else 503",
    responses={
        503: {
            "model": ReadyResponse,
            "description": "loading, warming or failed",
            "content": {
                "application/json": {
                    "example": {
                        "ready": False,
                        "state": "loading",
                        "detail": "",
                        "models": {"convlstm2d_next_frame": "warming"},
                    }
                }
            },
        }
    },
)
async def readyz(runtime: RuntimeDep):
    st = runtime.status
    body = ReadyResponse(
        ready=runtime.ready, state=st.state, detail=st.detail, models=dict(st.models)
    )
    return JSONResponse(
        body.model_dump(),
        status_code=200 if runtime.ready else 503,
        headers=None if runtime.ready else {"Retry-After": "5"},
    )


__all__ = ["router", "ErrorResponse"]
