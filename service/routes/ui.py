"""The web page: ``GET /`` and the files under ``/static`` (plain HTML/CSS and JavaScript ES
modules under ``static/js/``, no build step), and the site's icon at ``/favicon.ico`` (which
browsers ask for on every page, the API docs' too).

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


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> FileResponse:
    """framecast's icon (an SVG, which browsers take at this address too)."""
    return FileResponse(
        STATIC_DIR / "favicon.svg",
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


def mount_static(app: FastAPI) -> None:
    """Serve ``service/static/`` (page assets and the sample clips) under ``/static``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
