"""The model registry: discover model folders, load one folder, unload, look models up.

:func:`load_folder` is the one public way to turn a model folder into a running
:class:`~service.runtime.runner.ModelRunner` (the plain server and each Ray replica use it).
:class:`Registry` holds the runners by name with each model's load state, and answers queries
(``find``, ``pair``) instead of hard-coding which models go together.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from models.repository import ManifestError, discover, read_card
from service.config import Settings
from service.errors import InvalidInput, LoadError, ModelNotFound, WrongTask
from service.runtime.devices import Placement
from service.runtime.runner import ModelRunner, Runner
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
    runner (not yet warm: ``runner.submit(runner._warmup)``). Raises LoadError."""
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


class Registry:
    """Runners by name, and each model's state (``loading``, ``warming``, ``ready``,
    ``failed: …``) for ``/readyz``."""

    def __init__(self) -> None:
        self.runners: dict[str, Runner] = {}
        self.states: dict[str, str] = {}

    def add(self, runner: Runner) -> None:
        if runner.name in self.runners:
            raise LoadError(
                f"{runner.folder}: model name {runner.name!r} is already used by "
                f"{self.runners[runner.name].folder}"
            )
        self.runners[runner.name] = runner

    def unload(self, name: str) -> None:
        runner = self.runners.pop(name, None)
        self.states.pop(name, None)
        if runner is not None:
            runner.close()

    def close(self) -> None:
        for r in self.runners.values():
            r.close()

    def get(self, name: str) -> Runner:
        runner = self.runners.get(name)
        if runner is None:
            known = ", ".join(sorted(self.runners)) or "none"
            raise ModelNotFound(f"no model named {name!r}; loaded models: {known}")
        return runner

    def find(self, *, task: str | None = None, architecture: str | None = None) -> list[Runner]:
        """The runners doing ``task`` with ``architecture`` (either may be None: any), by name."""
        return [
            r
            for _, r in sorted(self.runners.items())
            if (task is None or r.manifest.task == task)
            and (architecture is None or r.manifest.architecture == architecture)
        ]

    def pair(
        self, task: str, choices: dict[str, str | None], settings: Settings | None = None
    ) -> dict[str, Runner]:
        """One runner per architecture slot in ``choices`` (slot → chosen name or None): the
        chosen model, else the setting's choice, else the only ``task`` model of that slot's
        architecture."""
        out = {}
        for arch, chosen in choices.items():
            chosen = chosen or (settings.compare_choice(arch, task) if settings else None)
            if chosen:
                runner = self.runners.get(chosen)
                if runner is None:
                    raise ModelNotFound(
                        f"no model named {chosen!r} (chosen as the {arch} model "
                        f"for {task}); loaded: {', '.join(sorted(self.runners))}"
                    )
                m = runner.manifest
                if (m.architecture, m.task) != (arch, task):
                    raise WrongTask(
                        f"model {chosen!r} is a {m.architecture} {m.task} model; the "
                        f"{arch} slot of this comparison needs a {arch} {task} model"
                    )
                out[arch] = runner
                continue
            found = self.find(task=task, architecture=arch)
            if not found:
                raise ModelNotFound(
                    f"no {arch} model for the {task} task is loaded; the "
                    f"comparison needs one of each architecture"
                )
            if len(found) > 1:
                names = ", ".join(r.name for r in found)
                raise InvalidInput(
                    f"several {arch} {task} models are loaded ({names}); choose "
                    f"one with the query parameter {arch}=NAME or "
                    f"FRAMECAST_COMPARE_{arch.upper()}_{task.upper()}"
                )
            out[arch] = found[0]
        return out


__all__ = ["LoadError", "ManifestError", "Registry", "load_folder"]
