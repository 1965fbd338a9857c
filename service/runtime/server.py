"""The models of one server: load them (in the background or blocking), warm them, look them up.

The pieces live beside this module, one job each: ``devices`` (placement), ``registry``
(discover, load one folder), ``lifecycle`` (each model's state, the swap, the queries over what
is served), ``runner`` (the Runner protocol and the in-process
runner), ``batcher`` (queue, buckets, deadlines, cancellation) and ``policies`` (what one step
of a request does). Keras is imported only once models load, never at import.

One model that fails to load or warm is listed as failed and the others are served
(``strict_load`` makes any failure fatal). The repository is live: :meth:`Runtime.load_model`
(re)loads one folder and swaps it in only once the new copy is warm (requests in flight finish
on the old copy), :meth:`Runtime.unload_model` takes one out, and with ``model_poll_s`` a thread
does both as folders appear, change and go.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import cast

from models.repository import ManifestError
from service.config import Settings
from service.errors import NotReady
from service.runtime.batcher import Ticket, bucket_sizes
from service.runtime.costs import MemoryProbe
from service.runtime.devices import DeviceError, Placement, configure_devices, import_keras
from service.runtime.items import Timing
from service.runtime.lifecycle import Lifecycle, ModelState, reasons
from service.runtime.live import LiveRepository
from service.runtime.registry import (
    LoadError,
    discover_folders,
    load_folder,
    served_versions,
    stamp,
)
from service.runtime.runner import ManifestView, ModelRunner, Runner
from service.telemetry import Metrics

log = logging.getLogger("framecast.runtime")

__all__ = [
    "LoadError",
    "LoadStatus",
    "Phase",
    "ManifestView",
    "ModelRunner",
    "Placement",
    "Runner",
    "Runtime",
    "Ticket",
    "Timing",
    "bucket_sizes",
]


class Phase(StrEnum):
    """Where start-up is: the server's state in ``/readyz`` (each model's is its own)."""

    STARTING = "starting"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass
class LoadStatus:
    """Start-up's phase and, while loading or after a failure, why; ``models`` is each
    model's state from the lifecycle, as text."""

    state: Phase = Phase.STARTING
    detail: str = ""
    models: dict[str, str] = field(default_factory=dict)


class Runtime(LiveRepository):
    """Every model under ``settings.models_dir``: loads them, warms them, hands out runners.

    Each model's life (loading, warming, ready, failed, unloaded, a swap after warm-up) is kept
    by one :class:`~service.runtime.lifecycle.Lifecycle`, ``models``; this class decides when
    to move a model along (start-up, the repository routes, polling).

    ``gate``, when given, is waited on before warm-up begins (tests use it to observe /readyz
    answering 503 while models are not warm). ``on_fatal(detail)`` is called when start-up ends
    with no model served (``framecast serve`` then exits non-zero).
    """

    live = True  # load_model / unload_model / polling work here (not on Ray)

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        gate: threading.Event | None = None,
        on_fatal: Callable[[str], None] | None = None,
    ):
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.gate = gate
        self.on_fatal = on_fatal
        self.models = Lifecycle(self.metrics)
        self.phase = Phase.STARTING
        self._detail = ""  # why start-up is where it is (loading, failed)
        self.placement: Placement | None = None
        self.ready_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._poller: threading.Thread | None = None
        self._closed = False
        self._closing = threading.Event()  # set by close(): ends FRAMECAST_LOAD_DELAY_S's wait
        self._ops = threading.RLock()  # one repository change at a time
        self._stamps: dict[str, tuple] = {}  # folder name → its files when last (un)loaded
        self._last_scan: dict[str, tuple] = {}  # the poller's previous scan
        self._version_stamps: dict[tuple[str, int], tuple] = {}
        self._label_stamps: dict[str, float] = {}
        self.probe = MemoryProbe(  # each model's peak memory per clip, measured once it serves
            settings.cost_cache_dir,
            settings.measure_memory == "background",
            start_after=self.ready_event,
        )

    @property
    def runners(self) -> dict[str, Runner]:
        """The runners loaded, by name (a copy)."""
        return self.models.runners

    @property
    def status(self) -> LoadStatus:
        """Start-up's phase with every model's state, read from the lifecycle as it is now."""
        detail = self.models.summary() if self.phase is Phase.READY else self._detail
        return LoadStatus(self.phase, detail, self.models.states())

    # -- loading ------------------------------------------------------------------------------
    def start(self) -> None:
        """Load in the background (``load_mode=background``) or now (``blocking``; raises).
        Starting twice (an app built twice over one runtime) loads once."""
        if self.phase is not Phase.STARTING:
            return
        self.phase = Phase.LOADING
        if self.settings.load_mode == "blocking":
            self.load_all()
            if self.phase is not Phase.READY:
                raise LoadError(self._detail)
            self._start_poller()
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
            self._fail(f"{type(e).__name__}: {e}")
        if self.phase is Phase.READY:
            self._start_poller()

    def load_all(self) -> None:
        """Load every runner (:meth:`load_runners`), then warm those not warm yet."""
        delay = self.settings.load_delay_s
        if delay > 0:
            log.info("loading in %g s (FRAMECAST_LOAD_DELAY_S)", delay)
            if self._closing.wait(delay):
                return
        if not self.load_runners():
            return
        if self.gate is not None:
            self.gate.wait()
        for runner in self.models.pending():
            if self._closed:
                return
            if runner.ready:  # warmed where it runs (a remote replica)
                self.models.serve(runner)
                continue
            try:  # not ready: a runner of this process (a ModelRunner) to warm here
                self.models.warm(cast(ModelRunner, runner), enabled=self.settings.warmup)
            except LoadError as e:
                if self.settings.strict_load:
                    self._fail(f"model {runner.name!r}: {e} (FRAMECAST_STRICT_LOAD)")
                    return
                continue
        if not self.models.serving():
            failed = self.models.with_state(ModelState.FAILED)
            self._fail("no model could be served: " + reasons(failed))
            return
        if self.live:
            self.read_all_labels()
        self.phase = Phase.READY
        import gc

        gc.collect()  # the garbage of loading goes first, then what is left is kept out of
        gc.freeze()  # every later GC pass: the frameworks' millions of long-lived objects
        if self.settings.gc_threshold:  # passes seldom: requests' objects die by refcount
            gc.set_threshold(self.settings.gc_threshold, *gc.get_threshold()[1:])
        if self.settings.gil_switch_interval_ms:  # the model's thread gets the GIL back sooner
            sys.setswitchinterval(self.settings.gil_switch_interval_ms / 1000.0)
        self.ready_event.set()

    def load_runners(self) -> bool:
        """Load every folder under ``settings.models_dir`` into the lifecycle; False (and
        start-up failed) when it cannot go on. Another source of runners (Ray deployments)
        overrides this alone."""
        try:
            import_keras(
                quiet=self.settings.log_level != "debug", backend=self.settings.keras_backend
            )
        except DeviceError as e:
            self._fail(str(e))
            return False
        import keras

        settings = self.settings
        try:
            folders = discover_folders(settings.models_dir)
        except ManifestError as e:
            self._fail(f"{e} (FRAMECAST_MODELS_DIR)")
            return False
        if not folders:
            self._fail(
                f"no model folders (a folder holding model.keras, model.h5 or manifest.json) "
                f"under {settings.models_dir} (FRAMECAST_MODELS_DIR)"
            )
            return False
        try:
            self.placement = configure_devices(settings)
        except DeviceError as e:
            self._fail(str(e))
            return False
        self.probe.device = self.placement.device.upper()  # "CPU:0", "GPU:1": as TensorFlow
        log.info(
            "loading %d model(s) from %s on %s (Keras %s, %s backend)",
            len(folders),
            settings.models_dir,
            self.placement.description,
            keras.__version__,
            self.placement.backend,
        )
        for folder in folders:
            if self._closed:
                return False
            self._stamps[folder.name] = stamp(folder)
            try:
                for v, where in served_versions(folder, settings).items():
                    self._version_stamps[(folder.name, v)] = stamp(where)
                    self._load_one(folder, v)
            except LoadError as e:
                self.models.fail(folder.name, str(e))
                if settings.strict_load:
                    self._fail(f"{e} (FRAMECAST_STRICT_LOAD)")
                    return False
        if not self.models.runners:
            failed = self.models.with_state(ModelState.FAILED)
            self._fail("no model could be loaded: " + reasons(failed))
            return False
        return not self._closed

    def _load_one(self, folder: Path, version: int | None = None) -> ModelRunner:
        """Load one folder (one of its versions) into the lifecycle (not yet warm); raises
        LoadError."""
        self.models.loading(folder.name)
        assert self.placement is not None  # configured before any folder loads
        runner = load_folder(
            folder,
            settings=self.settings,
            placement=self.placement,
            metrics=self.metrics,
            version=version,
        )
        try:
            self.models.loaded(runner)
        except LoadError:
            runner.close()
            raise
        self.probe.watch(runner)
        return runner

    def _fail(self, detail: str) -> None:
        self.phase, self._detail = Phase.FAILED, detail
        log.error("models not loaded: %s", detail)
        if self.on_fatal is not None:
            self.on_fatal(detail)

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self.ready_event.wait(timeout)

    def close(self) -> None:
        """Stop: a background load in progress ends its current model first (at most
        FRAMECAST_SHUTDOWN_GRACE_S): TensorFlow work left running in a thread when the
        interpreter exits aborts the process (exit 134) instead of a clean exit."""
        self._closed = True
        self._closing.set()
        if self.gate is not None:
            self.gate.set()
        loader = self._thread
        if loader is not None and loader.is_alive() and loader is not threading.current_thread():
            loader.join(self.settings.shutdown_grace_s)
        self.probe.close()
        self.models.close()

    # -- lookup -------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.phase is Phase.READY

    def require_ready(self) -> None:
        if not self.ready:
            if self.phase is Phase.FAILED:
                raise NotReady(f"models failed to load: {self._detail}")
            raise NotReady("models are still loading or warming up; poll GET /readyz")

    def get(self, name: str, version: str | int | None = None) -> Runner:
        """The runner serving ``name`` (``version``: a number or a label; None: the highest)."""
        self.require_ready()
        return self.models.get(name, version)

    def pair(self, task: str, choices: dict[str, str | None]) -> dict[str, Runner]:
        """One runner per architecture slot of a comparison (a lifecycle query)."""
        self.require_ready()
        return self.models.pair(task, choices, self.settings)
