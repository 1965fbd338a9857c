"""The model folders: discover them, see when their files change, load one.

:func:`load_folder` is the one public way to turn a model folder into a running
:class:`~service.runtime.runner.ModelRunner` (the plain server and each Ray replica use it);
what happens to it next (warm-up, serving, unloading) is the
:class:`~service.runtime.lifecycle.Lifecycle`'s.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from models.repository import ManifestError, discover, read_card
from service.config import Settings
from service.errors import LoadError
from service.runtime.devices import Placement
from service.runtime.runner import ModelRunner
from service.telemetry import Metrics

log = logging.getLogger("framecast.runtime")


def discover_folders(root: str | Path) -> list[Path]:
    """The model folders directly under ``root`` (each holding a manifest.json, a model.keras
    or a model.h5), by name; ManifestError when ``root`` is not a folder."""
    return discover(root)


def stamp(folder: Path) -> tuple:
    """What changes when a model folder's files change: (name, size, mtime) of each file."""
    out = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_file() and not entry.name.startswith("."):
            st = entry.stat()
            out.append((entry.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def load_folder(
    folder: Path,
    *,
    settings: Settings,
    placement: Placement,
    metrics: Metrics,
) -> ModelRunner:
    """Load one model folder (checkpoint, manifest if any, sha256, safe mode, shapes) into a
    runner (not yet warm: ``runner.submit(runner.warm)``). Raises LoadError."""
    import keras

    from models.checkpoint import CheckpointError, open_folder
    from service.runtime.runner import make_policy

    try:
        with keras.device(placement.device):
            manifest, model = open_folder(folder)
    except (CheckpointError, ManifestError) as e:
        raise LoadError(str(e)) from None
    try:
        with keras.device(placement.device):
            policy, callables = make_policy(
                manifest,
                model,
                warm_frames=settings.warm_frames,
                keep_lengths=settings.max_compiled_lengths,
            )
    except ValueError as e:  # models.carried.NotSteppable
        raise LoadError(
            f"{folder / manifest.checkpoint}: its manifest asks for rollout="
            f"{manifest.rollout!r}, but the model cannot carry its state: {e}"
        ) from None
    return ModelRunner(
        folder,
        manifest,
        model,
        read_card(folder),
        placement,
        metrics=metrics,
        max_queue=settings.max_queue,
        timeout_s=settings.inference_timeout_s,
        max_batch_size=settings.max_batch_size,
        max_batch_delay_ms=settings.max_batch_delay_ms,
        policy=policy,
        callables=callables,
        pad_batches=settings.pad_batches == "always"
        or (settings.pad_batches == "auto" and placement.backend != "tensorflow"),
    )


__all__ = ["LoadError", "ManifestError", "discover_folders", "load_folder", "stamp"]
