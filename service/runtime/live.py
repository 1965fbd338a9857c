"""The live repository of the plain server: load, reload and unload models while serving.

:class:`LiveRepository` is a part of :class:`~service.runtime.server.Runtime`: the repository
routes (V2 load, unload, labels) and the folder poller call it. A model folder may hold
numbered versions (``models/versions.py``): a (re)load serves the versions its policy selects,
loads and warms those new or changed, swaps each in once warm (requests in flight finish on
the copy they started on), and only once every selected version serves unloads the versions
the policy no longer selects. Labels (``labels.json``) point at served versions.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from models.repository import ManifestError, is_model_folder
from models.versions import LABELS, check_label, is_versioned, read_labels, write_labels
from service.errors import InvalidInput, ModelNotFound
from service.runtime.registry import LoadError, discover_folders, served_versions, stamp

if TYPE_CHECKING:
    from service.config import Settings
    from service.runtime.lifecycle import Lifecycle
    from service.runtime.runner import ModelRunner, Runner

log = logging.getLogger("framecast.runtime")


class LiveRepository:
    """Load, reload, unload, label and poll (the Runtime provides the state it uses)."""

    settings: Settings
    models: Lifecycle
    live: bool
    _ops: threading.RLock
    _closed: bool
    _poller: threading.Thread | None
    _stamps: dict[str, tuple]  # folder name → its files when last (un)loaded
    _last_scan: dict[str, tuple]  # the poller's previous scan
    _version_stamps: dict[tuple[str, int], tuple]  # (name, version) → its files when loaded
    _label_stamps: dict[str, float]  # name → labels.json's mtime when read

    def require_ready(self) -> None:  # pragma: no cover - the Runtime's
        raise NotImplementedError

    def _load_one(self, folder: Path, version: int | None = None) -> ModelRunner:
        raise NotImplementedError  # pragma: no cover - the Runtime's

    def _folder(self, name: str) -> Path:
        folder = Path(self.settings.models_dir) / name
        if "/" in name or name.startswith(".") or not is_model_folder(folder):
            raise ModelNotFound(
                f"no model folder {name!r} under {self.settings.models_dir} "
                "(a folder holding model.keras, model.h5 or manifest.json, or numbered "
                "version folders that do)"
            )
        return folder

    def _require_live(self) -> None:
        if not self.live:
            raise InvalidInput("loading and unloading models is not supported on Ray Serve")
        self.require_ready()

    def load_model(self, name: str, *, changed_only: bool = False) -> None:
        """Load (or reload) ``name``'s versions from its folder, warm each, then swap it in; on
        failure an old copy keeps serving and LoadError says why. ``changed_only`` (the
        poller): versions whose files did not change stay as they are. Blocking."""
        self._require_live()
        retire: list[Runner] = []
        errors: list[str] = []
        with self._ops:
            folder = self._folder(name)
            self._stamps[name] = stamp(folder)
            served = self.models.versions(name)
            self.models.loading(name)
            fresh: list[ModelRunner] = []
            try:
                wanted = served_versions(folder, self.settings)
                for v, where in wanted.items():
                    files = stamp(where)
                    if (
                        changed_only
                        and v in served
                        and self._version_stamps.get((name, v)) == files
                    ):
                        continue
                    self._version_stamps[(name, v)] = files
                    fresh.append(self._load_one(folder, v))
            except Exception as e:  # noqa: BLE001 - LoadError, or anything a load raised
                for r in fresh:
                    r.close()
                detail = str(e) if isinstance(e, LoadError) else f"{type(e).__name__}: {e}"
                if not served:
                    self.models.fail(name, detail)
                    raise LoadError(detail) from None
                log.error("reload of %s failed; the old copy keeps serving: %s", name, detail)
                raise LoadError(f"{detail}; the previous copy keeps serving") from None
            for runner in fresh:
                try:
                    old: Runner | None = self.models.warm(runner, enabled=self.settings.warmup)
                except LoadError as e:  # closed; an old copy of that version keeps serving
                    errors.append(
                        f"version {runner.version}: {e}" if is_versioned(folder) else str(e)
                    )
                    continue
                if old is not None:
                    retire.append(old)
                what = "reloaded" if runner.version in served else "loaded"
                log.info("model %s %s from %s", name, what, runner.folder)
            now = self.models.versions(name)
            if all(v in now for v in wanted):  # every chosen version serves: drop the rest
                dropped = [self.models.drop(name, v) for v in now if v not in wanted]
                retire += [r for r in dropped if r is not None]
            elif set(now) - set(wanted):
                log.warning(
                    "model %s keeps serving version(s) %s: version(s) %s of its policy failed",
                    name,
                    ", ".join(str(v) for v in now if v not in wanted),
                    ", ".join(str(v) for v in wanted if v not in now),
                )
            self._read_labels(name, folder)
        for done in retire:
            self._retire(done)
        if errors:
            raise LoadError("; ".join(errors))
        if not self.models.versions(name):  # pragma: no cover - a warm that neither served
            raise LoadError(f"model {name!r} serves no version")  # nor raised

    def unload_model(self, name: str) -> None:
        """Stop serving ``name`` (every version); requests in flight finish first. Polling
        loads it again only once its folder changes."""
        self._require_live()
        with self._ops:
            runners = self.models.unload(name)
        for r in runners:
            self._retire(r)

    def set_label(self, name: str, label: str, version: int) -> bool:
        """Point ``name``'s ``label`` at a served ``version`` and write ``labels.json`` (True)
        when the folder is writable; else the label holds until the server stops (False)."""
        self._require_live()
        try:
            check_label(label)
        except ManifestError as e:
            raise InvalidInput(str(e)) from None
        with self._ops:
            folder = self._folder(name)
            held = self.models.labels(name)
            most = self.settings.max_labels
            if label not in held and len(held) >= most:
                raise InvalidInput(
                    f"model {name!r} holds {len(held)} labels, at most {most} "
                    "(FRAMECAST_MAX_LABELS); move one of them instead"
                )
            labels = {**held, label: version}
            self.models.set_labels(name, labels)  # InvalidInput: that version is not served
            try:
                write_labels(folder, labels)
            except OSError as e:
                log.warning("model %s: label %s kept in memory only: %s", name, label, e)
                return False
            self._label_stamps[name] = (folder / LABELS).stat().st_mtime
            return True

    def _read_labels(self, name: str, folder: Path) -> None:
        """``labels.json`` into the lifecycle (labels at versions not served: dropped, logged)."""
        path = folder / LABELS
        self._label_stamps[name] = path.stat().st_mtime if path.is_file() else 0.0
        try:
            labels = read_labels(folder)
        except ManifestError as e:
            log.error("model %s: labels not read: %s", name, e)
            return
        served = self.models.versions(name)
        gone = {k: v for k, v in labels.items() if v not in served}
        if gone:
            log.warning(
                "model %s: label(s) %s point at versions not served; ignored",
                name,
                ", ".join(f"{k}→{v}" for k, v in sorted(gone.items())),
            )
        self.models.set_labels(name, {k: v for k, v in labels.items() if k not in gone})

    def read_all_labels(self) -> None:
        """Every served model's labels (at start-up, once warm)."""
        for name, runner in self.models.serving().items():
            self._read_labels(name, getattr(runner, "home", runner.folder))

    def _retire(self, runner: Runner) -> None:
        """Close ``runner`` once nothing is queued, in decoding or running on it (bounded by the
        request deadline), in a thread of its own."""
        limit = self.settings.request_timeout_s + self.settings.inference_timeout_s

        def wait_then_close() -> None:
            end, quiet = time.monotonic() + limit, 0
            while time.monotonic() < end and quiet < 5:
                quiet = quiet + 1 if runner.idle else 0
                time.sleep(0.1)
            runner.close()

        threading.Thread(target=wait_then_close, name="framecast-retire", daemon=True).start()

    def index(self) -> list[dict]:
        """Every model folder and known model: name, version, state (READY, LOADING,
        UNAVAILABLE), reason."""
        try:
            names = [f.name for f in discover_folders(self.settings.models_dir)]
        except ManifestError:
            names = []
        return self.models.index(names)

    def poll_once(self) -> None:
        """One scan: load new folders, load new and reload changed versions, unload removed
        folders, re-read labels files that changed. A folder is acted on once its files are
        the same on two scans in a row (not mid-copy)."""
        try:
            folders = {f.name: f for f in discover_folders(self.settings.models_dir)}
        except ManifestError as e:
            log.error("model poll: %s", e)
            return
        seen = {name: stamp(f) for name, f in folders.items()}
        settled, self._last_scan = self._last_scan, seen
        for name, st in seen.items():
            if settled.get(name) != st or self._stamps.get(name) == st:
                self._poll_labels(name, folders[name])
                continue  # still changing, or (un)loaded as it is
            try:
                self.load_model(name, changed_only=True)
            except Exception as e:  # noqa: BLE001 - logged; polling goes on
                log.error("model poll: %s: %s", name, e)
        for name in self.models.serving():
            if name not in seen and self.live:
                self.unload_model(name)
        for name in set(self.models.table()) - set(seen):
            self.models.forget(name)
            self._stamps.pop(name, None)

    def _poll_labels(self, name: str, folder: Path) -> None:
        path = folder / LABELS
        mtime = path.stat().st_mtime if path.is_file() else 0.0
        if name in self.models.serving() and mtime != self._label_stamps.get(name, 0.0):
            with self._ops:
                self._read_labels(name, folder)

    def _start_poller(self) -> None:
        if self.settings.model_poll_s <= 0 or not self.live or self._poller is not None:
            return

        def loop() -> None:
            while not self._closed:
                time.sleep(self.settings.model_poll_s)
                if not self._closed:
                    self.poll_once()

        self._poller = threading.Thread(target=loop, name="framecast-poll", daemon=True)
        self._poller.start()


__all__ = ["LiveRepository"]
