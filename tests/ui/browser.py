"""Helpers for the browser tests: the real server in a thread, Debian's Chromium under Playwright.

Playwright's own browser download does not work on these machines: it drives the system
Chromium (``/usr/bin/chromium``, Debian package ``chromium``; ``FRAMECAST_CHROMIUM`` overrides).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CHROMIUM = Path(os.environ.get("FRAMECAST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def save_page_model(
    root: Path,
    name: str,
    arch: str,
    task: str,
    *,
    frames: int = 10,
    size: int = 64,
    channels: int = 1,
    class_names: list[str] | None = None,
    display_name: str = "",
) -> Path:
    """One tiny untrained model folder (``class_names``: classify only; default the
    directions)."""
    from models.architectures import build
    from models.data import DIRECTIONS
    from models.repository import Manifest, save_model_folder

    if task == "classify":
        class_names = list(class_names or DIRECTIONS)
    kw = dict(task=task, time_steps=frames, height=size, width=size, channels=channels)
    if task == "classify":
        kw.update(num_classes=len(class_names))
    if arch == "convlstm2d":
        kw.update(filters=(4,))
    else:
        kw.update(conv_filters=(4, 4, 4), lstm_units=8)
    folder = Path(root) / name
    save_model_folder(
        folder,
        build(arch, name=name, **kw),
        Manifest(
            name=name,
            architecture=arch,
            task=task,
            frames=frames,
            height=size,
            width=size,
            channels=channels,
            class_names=class_names,
            display_name=display_name,
        ),
    )
    return folder


def save_page_models(root: Path, frames: int = 10, size: int = 64) -> Path:
    """Four tiny untrained models (both architectures x both tasks) at the samples' shape."""
    for arch in ("conv2d_lstm", "convlstm2d"):
        for task in ("next_frame", "classify"):
            save_page_model(root, f"{arch}_{task}", arch, task, frames=frames, size=size)
    return Path(root)


def missing_browser() -> list[str]:
    """What the browser tests need and this machine lacks (empty: all there)."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the Python package 'playwright' (pip install playwright)")
    if not CHROMIUM.is_file():
        missing.append(f"{CHROMIUM} (apt-get install -y chromium)")
    return missing


def require_browser() -> None:
    """Skip the calling test without the browser; in CI (``CI`` set) fail instead."""
    import pytest

    missing = missing_browser()
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this fails instead of skipping)")
        pytest.skip(message)


@contextlib.contextmanager
def serve(settings):
    """Run ``create_app(settings)`` under uvicorn on 127.0.0.1 and a free port; yields the base
    URL."""
    from service.app import create_app
    from tests.service.live import live_server

    with live_server(create_app(settings), timeout=300) as url:
        yield url


@contextlib.contextmanager
def chromium(extra_args: tuple[str, ...] = ()):
    """A headless Debian Chromium driven by Playwright (``extra_args``: more switches, e.g. a
    fake camera)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args], headless=True
        )
        try:
            yield browser
        finally:
            browser.close()
