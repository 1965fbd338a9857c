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
from models.versions import (
    FLAT,
    LABELS,
    VersionPolicy,
    parse_policy,
    read_policy,
    versions_of,
)
from service.config import Settings
from service.errors import LoadError
from service.runtime.costs import counted
from service.runtime.devices import Placement
from service.runtime.priority import Yielding
from service.runtime.runner import ModelRunner
from service.telemetry import Metrics

log = logging.getLogger("framecast.runtime")


def discover_folders(root: str | Path) -> list[Path]:
    """The model folders directly under ``root`` (each holding a manifest.json, a model.keras
    or a model.h5), by name; ManifestError when ``root`` is not a folder."""
    return discover(root)


def stamp(folder: Path) -> tuple:
    """What changes when a model folder's files change: (name, size, mtime) of each file, and
    of each file of its numbered version folders (``"2/model.keras"``). Its labels are not in
    it: a label that moves changes no model."""
    out = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or entry.name == LABELS:
            continue
        if entry.is_file():
            st = entry.stat()
            out.append((entry.name, st.st_size, st.st_mtime_ns))
        elif entry.is_dir() and entry.name.isdigit():
            out.extend((f"{entry.name}/{n}", *rest) for n, *rest in stamp(Path(entry.path)))
    return tuple(out)


def policy_of(folder: Path, settings: Settings) -> VersionPolicy:
    """The version policy of a model folder: its manifest's, else the setting's."""
    try:
        return read_policy(folder, parse_policy(settings.version_policy))
    except ManifestError as e:
        raise LoadError(str(e)) from None


def served_versions(folder: Path, settings: Settings) -> dict[int, Path]:
    """The versions of a model folder its policy serves → their folders (a flat folder: {1:
    itself}); LoadError when the folder is inconsistent or the policy selects none."""
    try:
        found = versions_of(folder)
    except ManifestError as e:
        raise LoadError(str(e)) from None
    if found == {FLAT: folder}:  # flat: one version, whatever the policy
        return found
    policy = policy_of(folder, settings)
    chosen = policy.select(list(found))
    if not chosen:
        raise LoadError(
            f"{folder}: version policy {policy} selects none of its versions "
            f"({', '.join(map(str, found))})"
        )
    return {v: found[v] for v in chosen}


def load_folder(
    folder: Path,
    *,
    settings: Settings,
    placement: Placement,
    metrics: Metrics,
    version: int | None = None,
) -> ModelRunner:
    """Load one model folder (checkpoint, manifest if any, sha256, safe mode, shapes) into a
    runner (not yet warm: ``runner.submit(runner.warm)``): of a folder of numbered versions,
    ``version`` (by default the highest its policy serves). Raises LoadError."""
    import keras

    from models.checkpoint import CheckpointError, open_folder
    from service.runtime.policies import make_policy

    versions = served_versions(folder, settings)
    if version is None:
        version = max(versions)
    elif version not in versions:
        raise LoadError(f"{folder}: version {version} is not one its policy serves")
    home, where = folder, versions[version]
    try:
        with keras.device(placement.device):
            manifest, model = open_folder(where, name=home.name if where != home else None)
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
            f"{where / manifest.checkpoint}: its manifest asks for rollout="
            f"{manifest.rollout!r}, but the model cannot carry its state: {e}"
        ) from None
    runner = ModelRunner(
        where,
        manifest,
        model,
        read_card(where),
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
        version=version,
        home=home,
        direct=settings.direct_calls,
        yielding=Yielding(settings.job_batch_clips, settings.job_yield_ms / 1000.0),
    )
    try:
        runner.costs = counted(runner, model, settings.warm_frames)
    except Exception as e:  # noqa: BLE001 - a fact that cannot be counted never stops a load
        log.warning("model %s: cost facts not counted: %s: %s", manifest.name, type(e).__name__, e)
        why = f"not counted: {type(e).__name__}: {e}"
        runner.costs = {"params": manifest.params, "flops_per_clip": None, "flops_note": why}
    return runner


__all__ = [
    "LoadError",
    "ManifestError",
    "discover_folders",
    "load_folder",
    "policy_of",
    "served_versions",
    "stamp",
]
