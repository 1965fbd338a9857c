"""The API docs with no CDN: Swagger UI at ``/docs``, ReDoc at ``/redoc``.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, and framecast's hosts are often offline.
These are the same FastAPI pages, pointed at the files that the ``fastapi-offline`` package ships
(Swagger UI's bundle and CSS, ReDoc's standalone bundle, a favicon), which framecast serves itself
under ``/docs/assets``. Like ``/openapi.json`` they need no API key (service/http/security.py guards
only ``/v1`` and ``/v2``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
ASSETS_URL = "/docs/assets"
# The pages may load nothing from another origin: the browser enforces it. ReDoc's sidebar asks
# a CDN for the Redocly logo (and hides it when that fails); this stops the request itself.
# Inline script and styles: FastAPI's page starts Swagger UI inline, both UIs style inline.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "frame-ancestors 'self'; form-action 'self'; base-uri 'self'"
)

router = APIRouter(include_in_schema=False)


def assets_dir() -> Path:
    """The folder of Swagger UI and ReDoc files inside the installed ``fastapi_offline``."""
    return Path(str(files("fastapi_offline") / "static"))


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


@router.get(DOCS_URL)
async def swagger_ui(request: Request) -> HTMLResponse:
    app, root = request.app, _root(request)
    page = get_swagger_ui_html(
        openapi_url=root + app.openapi_url,
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
        init_oauth=app.swagger_ui_init_oauth,
        swagger_ui_parameters=app.swagger_ui_parameters,
    )
    page.headers["Content-Security-Policy"] = CSP
    return page


@router.get(OAUTH2_REDIRECT_URL)
async def swagger_ui_oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get(REDOC_URL)
async def redoc(request: Request) -> HTMLResponse:
    app, root = request.app, _root(request)
    page = get_redoc_html(
        openapi_url=root + app.openapi_url,
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        with_google_fonts=False,  # fonts.googleapis.com: the page uses its fallback fonts
    )
    page.headers["Content-Security-Policy"] = CSP
    return page


def mount_assets(app: FastAPI) -> None:
    """Serve the Swagger UI and ReDoc files under ``/docs/assets``; call with ``docs_url=None``
    and ``redoc_url=None`` given to ``FastAPI(...)`` and :data:`router` included."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
