"""The web page: ``GET /`` and the files under ``/static`` (plain HTML/CSS/JS, no build step).

The page only calls the public ``/v1`` routes, so everything it shows a client can also get.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(tags=["ui"])


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"}
    )


def mount_static(app: FastAPI) -> None:
    """Serve ``service/static/`` (page assets and the sample clips) under ``/static``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
