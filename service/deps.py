"""FastAPI dependency providers: what a route asks for by type (``runtime: RuntimeDep``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.config import Settings
from service.runtime.lifecycle import ModelState
from service.runtime.server import Runtime
from service.streams.store import StreamStore


async def get_runtime(request: Request) -> Runtime:
    """The app's :class:`~service.runtime.server.Runtime` (its models, queues and status).
    ``async``: FastAPI runs a plain ``def`` dependency in a worker thread, a hop per request."""
    return request.app.state.runtime


async def get_settings(request: Request) -> Settings:
    """The app's :class:`~service.config.Settings`."""
    return request.app.state.settings


async def get_streams(request: Request) -> StreamStore:
    """The app's :class:`~service.streams.store.StreamStore` (its open live streams)."""
    return request.app.state.streams


__all__ = ["ModelState", "Runtime", "RuntimeDep", "Settings", "SettingsDep", "StreamsDep"]

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StreamsDep = Annotated[StreamStore, Depends(get_streams)]
