"""The store the settings name (``FRAMECAST_STREAM_STORE``): one of the three behind
:class:`~service.streams.store.StreamStore`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.streams.store import MemoryStore, StreamStore


def open_store(settings: Any) -> StreamStore:
    """FRAMECAST_STREAM_STORE, else FRAMECAST_STREAM_DIR (a folder), else this process's
    memory."""
    url = settings.stream_store
    if url is None or url == "memory":
        if settings.stream_dir is None:
            return MemoryStore(settings)
        url = f"file://{settings.stream_dir}"
    if url.startswith("file://"):
        from service.streams.folder import FolderStore

        return FolderStore(settings, Path(url.removeprefix("file://")))
    from service.streams.redis_store import RedisStore

    return RedisStore(settings, url)
