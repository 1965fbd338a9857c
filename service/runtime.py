"""The models of one server: load them (in the background or blocking), warm them, look them up.

The pieces live beside this module, one job each: ``devices`` (placement), ``registry``
(discover, load one folder, unload, queries), ``runner`` (the Runner protocol and the in-process
runner), ``batcher`` (queue, buckets, deadlines, cancellation) and ``policies`` (what one step
of a request does). Keras is imported only once models load, never at import.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from models.repository import ManifestError
from service.batcher import Ticket, Timing, bucket_sizes
from service.config import Settings
from service.devices import DeviceError, Placement, configure_devices
from service.errors import NotReady
from service.registry import LoadError, Registry, discover_folders, load_folder
from service.runner import ManifestView, ModelRunner, Runner
from service.telemetry import Metrics

log = logging.getLogger("framecast.runtime")

__all__ = [
    "LoadError",
    "LoadStatus",
    "ManifestView",
    "ModelRunner",
    "Placement",
    "Runner",
    "Runtime",
    "Ticket",
    "Timing",
    "bucket_sizes",
]


@dataclass
class LoadStatus:
    state: str = "starting"  # starting | loading | ready | failed
    detail: str = ""
    models: dict[str, str] = field(
        default_factory=dict
    )  # name -> loading/warming/ready/failed: ...


class Runtime:
    """Every model under ``settings.models_dir``: loads them, warms them, hands out runners.

    ``gate``, when given, is waited on before warm-up begins (tests use it to observe /readyz
    answering 503 while models are not warm).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        gate: threading.Event | None = None,
    ):
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.gate = gate
        self.registry = Registry()
        self.status = LoadStatus()
        self.status.models = self.registry.states
        self.placement: Placement | None = None
        self.ready_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def runners(self) -> dict[str, Runner]:
        return self.registry.runners

    # -- loading ------------------------------------------------------------------------------
    def start(self) -> None:
        """Load in the background (``load_mode=background``) or now (``blocking``; raises).
        Starting twice (an app built twice over one runtime) loads once."""
        if self.status.state != "starting":
            return
        self.status.state = "loading"
        if self.settings.load_mode == "blocking":
            self.load_all()
            if self.status.state != "ready":
                raise LoadError(self.status.detail)
            return
        self._thread = threading.Thread(
            target=self._load_safely, name="framecast-loader", daemon=True
        )
        self._thread.start()

    def _load_safely(self) -> None:
        try:
            self.load_all()
        except Exception as e:  # noqa: BLE001 - reported through /readyz and the log
            log.exception("loading models failed")
            self.status.state, self.status.detail = "failed", f"{type(e).__name__}: {e}"

    def load_all(self) -> None:
        """Load every runner (:meth:`load_runners`), then warm those not warm yet."""
        if not self.load_runners():
            return
        if self.gate is not None:
            self.gate.wait()
        for runner in self.runners.values():
            if self._closed:
                return
            if runner.ready:  # warmed where it runs (a remote replica)
                self.status.models[runner.name] = "ready"
                self.metrics.set_ready(runner.name, True)
                continue
            if not self._warm(runner):
                return
        self.status.state, self.status.detail = "ready", f"{len(self.runners)} model(s) ready"
        self.ready_event.set()

    def load_runners(self) -> bool:
        """Fill the registry from ``settings.models_dir``; False (and status failed) if not all
        load. Another source of runners (Ray deployments) overrides this alone."""
        import keras

        settings = self.settings
        try:
            folders = discover_folders(settings.models_dir)
        except ManifestError as e:
            self._fail(f"{e} (FRAMECAST_MODELS_DIR)")
            return False
        if not folders:
            self._fail(
                f"no model folders (a folder holding manifest.json) under "
                f"{settings.models_dir} (FRAMECAST_MODELS_DIR)"
            )
            return False
        try:
            self.placement = configure_devices(settings)
        except DeviceError as e:
            self._fail(str(e))
            return False
        log.info(
            "loading %d model(s) from %s on %s (Keras %s, %s backend)",
            len(folders),
            settings.models_dir,
            self.placement.description,
            keras.__version__,
            self.placement.backend,
        )
        failures = []
        for folder in folders:
            if self._closed:
                return False
            try:
                runner = self._load_one(folder)
            except (LoadError, ManifestError) as e:
                failures.append(str(e))
                self.status.models[folder.name] = f"failed: {e}"
                log.error("cannot load %s: %s", folder, e)
                continue
            self.registry.add(runner)
            self.metrics.set_ready(runner.name, False)
        if failures:
            self._fail("; ".join(failures))
            return False
        return not self._closed

    def _warm(self, runner: ModelRunner) -> bool:
        self.status.models[runner.name] = "warming"
        try:
            runner.warmup_ms = (
                runner.submit(runner._warmup).result() if self.settings.warmup else 0.0
            )
        except Exception as e:  # noqa: BLE001 - a model that cannot run is a load failure
            self.status.models[runner.name] = f"failed: warm-up: {e}"
            self._fail(
                f"model {runner.name!r} failed its warm-up calls on shapes "
                f"(b,) + {runner.input_shape} for b in {runner.buckets}: "
                f"{type(e).__name__}: {e}"
            )
            return False
        runner.ready = True
        self.status.models[runner.name] = "ready"
        self.metrics.set_ready(runner.name, True)
        m = runner.manifest
        log.info(
            "model %s ready: architecture=%s task=%s input=%dx%dx%dx%d device=%s "
            "params=%d rollout=%s buckets=%s warm-up=%.1f ms",
            m.name,
            m.architecture,
            m.task,
            m.frames,
            m.height,
            m.width,
            m.channels,
            runner.placement.description,
            m.params,
            runner.rollout,
            ",".join(map(str, runner.buckets)),
            runner.warmup_ms,
        )
        return True

    def _fail(self, detail: str) -> None:
        self.status.state, self.status.detail = "failed", detail
        log.error("models not loaded: %s", detail)

    def _load_one(self, folder: Path) -> ModelRunner:
        from models.repository import read_manifest

        manifest = read_manifest(folder)
        if manifest.name in self.runners:
            raise LoadError(
                f"{folder}: model name {manifest.name!r} is already used by "
                f"{self.runners[manifest.name].folder}"
            )
        self.status.models[manifest.name] = "loading"
        return load_folder(
            folder,
            settings=self.settings,
            placement=self.placement,
            metrics=self.metrics,
            manifest=manifest,
        )

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self.ready_event.wait(timeout)

    def close(self) -> None:
        self._closed = True
        if self.gate is not None:
            self.gate.set()
        self.registry.close()

    # -- lookup -------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.status.state == "ready"

    def require_ready(self) -> None:
        if not self.ready:
            if self.status.state == "failed":
                raise NotReady(f"models failed to load: {self.status.detail}")
            raise NotReady("models are still loading or warming up; poll GET /readyz")

    def get(self, name: str) -> Runner:
        self.require_ready()
        return self.registry.get(name)

    def pair(self, task: str, choices: dict[str, str | None]) -> dict[str, Runner]:
        """One runner per architecture slot of a comparison (a registry query)."""
        self.require_ready()
        return self.registry.pair(task, choices, self.settings)
