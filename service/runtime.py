"""Loaded models, device placement, warm-up, and one runner (one worker thread) per model.

Keras is imported inside functions, never at module import, so ``import service.app`` stays light.

Every call into a model happens on that model's single worker thread (``ModelRunner``): under the
JAX backend ``predict_on_batch`` is not thread-safe, and one thread per model is also the seam
where a micro-batcher will merge concurrent requests later (it would drain the runner's queue and
call the model once per merged batch). Calls use ``predict_on_batch`` with a fixed input shape
``(1, frames, H, W, C)``: the shape warmed up at load is the only shape ever served, so nothing
retraces (under TensorFlow a changing time axis fails inside ``TimeDistributed``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from models.repository import (
    Manifest,
    ManifestError,
    discover,
    read_card,
    read_manifest,
    verify_checkpoint,
)
from service.config import Settings
from service.errors import InvalidInput, ModelNotFound, NotReady, Overloaded, WrongTask
from service.telemetry import Metrics

log = logging.getLogger("framecast.runtime")


class LoadError(RuntimeError):
    """A model folder could not be loaded; the message names the folder and the fault."""


# --------------------------------------------------------------------------- devices


@dataclass(frozen=True)
class Placement:
    device: str  # what keras.device() takes: "cpu:0" / "gpu:0"
    description: str  # for people: "gpu:0 (NVIDIA H100 80GB HBM3)", "cpu:0"
    backend: str


def configure_devices(settings: Settings) -> Placement:
    """Find a GPU the Keras backend sees (enable TF memory growth on each); choose the device."""
    import keras

    backend = keras.backend.backend()
    gpus: list[str] = []
    try:
        if backend == "tensorflow":
            import tensorflow as tf  # only for GPU discovery and memory growth

            found = tf.config.list_physical_devices("GPU")
            for gpu in found:
                if settings.gpu_memory_growth:
                    try:
                        tf.config.experimental.set_memory_growth(gpu, True)
                    except RuntimeError as e:  # already initialised: growth can no longer change
                        log.warning("cannot enable memory growth on %s: %s", gpu.name, e)
                details = tf.config.experimental.get_device_details(gpu)
                gpus.append(details.get("device_name", gpu.name))
        elif backend == "jax":
            import jax

            gpus = [d.device_kind for d in jax.devices() if d.platform == "gpu"]
        elif backend == "torch":
            import torch

            gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception as e:  # noqa: BLE001 - discovery failure means CPU, never a failed start
        log.warning("GPU discovery failed under the %s backend (%s); using the CPU", backend, e)
        gpus = []
    if settings.device == "gpu" and not gpus:
        raise LoadError(f"FRAMECAST_DEVICE=gpu but the {backend} backend sees no GPU")
    if gpus and settings.device != "cpu":
        return Placement("gpu:0", f"gpu:0 ({gpus[0]})", backend)
    return Placement("cpu:0", "cpu:0", backend)


# --------------------------------------------------------------------------- one model


@dataclass
class Timing:
    queued_ms: float = 0.0  # waiting for the worker
    inference_ms: float = 0.0  # inside the model calls
    calls: int = 0


class ModelRunner:
    """One loaded model and the single worker thread that makes every call to it."""

    def __init__(self, folder: Path, manifest: Manifest, model, card: dict | None,
                 placement: Placement, *, metrics: Metrics, max_queue: int, timeout_s: float):
        self.folder = folder
        self.manifest = manifest
        self.model = model
        self.card = card
        self.placement = placement
        self.metrics = metrics
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.warmup_ms: float | None = None
        self.ready = False
        self._pending = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix=f"framecast-{manifest.name}")

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        m = self.manifest
        return (m.frames, m.height, m.width, m.channels)

    # -- worker side (runs on the runner's thread) ------------------------------------------
    def _call(self, batch: np.ndarray, timing: Timing) -> np.ndarray:
        import keras

        t0 = time.perf_counter()
        with keras.device(self.placement.device):
            out = self.model.predict_on_batch(batch)
        out = np.asarray(out, dtype=np.float32)
        dt = time.perf_counter() - t0
        timing.inference_ms += dt * 1000.0
        timing.calls += 1
        self.metrics.observe_inference(self.name, dt, batch.shape[0])
        return out

    def _rollout(self, context: np.ndarray, horizon: int, timing: Timing) -> np.ndarray:
        """context (frames, H, W, C) → the next ``horizon`` frames (horizon, H, W, C).

        Sliding window of fixed length: append the prediction, drop the oldest frame.
        """
        window = context[None].astype(np.float32)  # (1, frames, H, W, C)
        out = []
        for _ in range(horizon):
            y = self._call(window, timing)  # (1, frames, H, W, C); y[:, t] predicts frame t+1
            nxt = y[:, -1:]  # (1, 1, H, W, C)
            out.append(nxt[0, 0])
            window = np.concatenate([window[:, 1:], nxt], axis=1)
        return np.stack(out)

    def _classify(self, context: np.ndarray, timing: Timing) -> np.ndarray:
        return self._call(context[None].astype(np.float32), timing)[0]  # (num_classes,)

    def _warmup(self) -> float:
        timing = Timing()
        t0 = time.perf_counter()
        self._call(np.zeros((1,) + self.input_shape, np.float32), timing)
        return (time.perf_counter() - t0) * 1000.0

    # -- caller side ------------------------------------------------------------------------
    def submit(self, fn: Callable, *args) -> Future:
        """Queue ``fn(*args)`` on the worker; 503 when ``max_queue`` calls are already waiting."""
        with self._lock:
            if self._pending >= self.max_queue:
                raise Overloaded(f"model {self.name!r} has {self._pending} requests queued "
                                 f"(FRAMECAST_MAX_QUEUE={self.max_queue}); retry shortly")
            self._pending += 1
            self.metrics.set_queue(self.name, self._pending)
        fut = self._executor.submit(fn, *args)
        fut.add_done_callback(self._done)
        return fut

    def _done(self, _fut) -> None:
        with self._lock:
            self._pending -= 1
            self.metrics.set_queue(self.name, self._pending)

    @property
    def queue_depth(self) -> int:
        return self._pending

    async def _run(self, fn: Callable, *args):
        fut = self.submit(fn, *args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), timeout=self.timeout_s)
        except asyncio.TimeoutError:
            raise Overloaded(f"model {self.name!r} did not answer within "
                             f"FRAMECAST_INFERENCE_TIMEOUT_S={self.timeout_s:g} s") from None

    def _timed(self, work: Callable, submitted: float):
        def job(*args):
            timing = Timing(queued_ms=(time.perf_counter() - submitted) * 1000.0)
            return work(*args, timing), timing
        return job

    async def predict(self, context: np.ndarray, horizon: int) -> tuple[np.ndarray, Timing]:
        """(frames, H, W, C) → ((horizon, H, W, C), timing); next-frame models only."""
        if self.manifest.task != "next_frame":
            raise WrongTask(f"model {self.name!r} is a {self.manifest.task} model; "
                            f"use POST /v1/models/{self.name}/classify")
        return await self._run(self._timed(self._rollout, time.perf_counter()), context, horizon)

    async def classify(self, context: np.ndarray) -> tuple[np.ndarray, Timing]:
        """(frames, H, W, C) → ((num_classes,), timing); classify models only."""
        if self.manifest.task != "classify":
            raise WrongTask(f"model {self.name!r} is a {self.manifest.task} model; "
                            f"use POST /v1/models/{self.name}/predict")
        return await self._run(self._timed(self._classify, time.perf_counter()), context)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- all models


@dataclass
class LoadStatus:
    state: str = "starting"  # starting | loading | ready | failed
    detail: str = ""
    models: dict[str, str] = field(default_factory=dict)  # name -> loading/warming/ready/failed: ...


class Runtime:
    """Every model under ``settings.models_dir``: loads them, warms them, hands out runners.

    ``gate``, when given, is waited on before warm-up begins (tests use it to observe /readyz
    answering 503 while models are not warm).
    """

    def __init__(self, settings: Settings, *, metrics: Metrics | None = None,
                 gate: threading.Event | None = None):
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.gate = gate
        self.runners: dict[str, ModelRunner] = {}
        self.status = LoadStatus()
        self.placement: Placement | None = None
        self.ready_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- loading ------------------------------------------------------------------------------
    def start(self) -> None:
        """Load in the background (``load_mode=background``) or now (``blocking``; raises)."""
        self.status.state = "loading"
        if self.settings.load_mode == "blocking":
            self.load_all()
            if self.status.state != "ready":
                raise LoadError(self.status.detail)
            return
        self._thread = threading.Thread(target=self._load_safely, name="framecast-loader",
                                        daemon=True)
        self._thread.start()

    def _load_safely(self) -> None:
        try:
            self.load_all()
        except Exception as e:  # noqa: BLE001 - reported through /readyz and the log
            log.exception("loading models failed")
            self.status.state, self.status.detail = "failed", f"{type(e).__name__}: {e}"

    def load_all(self) -> None:
        import keras

        settings = self.settings
        try:
            folders = discover(settings.models_dir)
        except ManifestError as e:
            self._fail(f"{e} (FRAMECAST_MODELS_DIR)")
            return
        if not folders:
            self._fail(f"no model folders (a folder holding manifest.json) under "
                       f"{settings.models_dir} (FRAMECAST_MODELS_DIR)")
            return
        try:
            self.placement = configure_devices(settings)
        except LoadError as e:
            self._fail(str(e))
            return
        log.info("loading %d model(s) from %s on %s (Keras %s, %s backend)", len(folders),
                 settings.models_dir, self.placement.description, keras.__version__,
                 self.placement.backend)
        failures = []
        for folder in folders:
            if self._closed:
                return
            try:
                runner = self._load_one(folder)
            except (LoadError, ManifestError) as e:
                failures.append(str(e))
                self.status.models[folder.name] = f"failed: {e}"
                log.error("cannot load %s: %s", folder, e)
                continue
            self.runners[runner.name] = runner
            self.metrics.set_ready(runner.name, False)
        if failures:
            self._fail("; ".join(failures))
            return
        if self.gate is not None:
            self.gate.wait()
        for runner in self.runners.values():
            if self._closed:
                return
            self.status.models[runner.name] = "warming"
            try:
                runner.warmup_ms = (runner.submit(runner._warmup).result()
                                    if settings.warmup else 0.0)
            except Exception as e:  # noqa: BLE001 - a model that cannot run is a load failure
                self.status.models[runner.name] = f"failed: warm-up: {e}"
                self._fail(f"model {runner.name!r} failed its warm-up call on shape "
                           f"{(1,) + runner.input_shape}: {type(e).__name__}: {e}")
                return
            runner.ready = True
            self.status.models[runner.name] = "ready"
            self.metrics.set_ready(runner.name, True)
            m = runner.manifest
            log.info("model %s ready: architecture=%s task=%s input=%dx%dx%dx%d device=%s "
                     "params=%d warm-up=%.1f ms", m.name, m.architecture, m.task, m.frames,
                     m.height, m.width, m.channels, runner.placement.description, m.params,
                     runner.warmup_ms)
        self.status.state, self.status.detail = "ready", f"{len(self.runners)} model(s) ready"
        self.ready_event.set()

    def _fail(self, detail: str) -> None:
        self.status.state, self.status.detail = "failed", detail
        log.error("models not loaded: %s", detail)

    def _load_one(self, folder: Path) -> ModelRunner:
        import keras

        manifest = read_manifest(folder)
        if manifest.name in self.runners:
            raise LoadError(f"{folder}: model name {manifest.name!r} is already used by "
                            f"{self.runners[manifest.name].folder}")
        self.status.models[manifest.name] = "loading"
        path = verify_checkpoint(folder, manifest)  # sha256 against the manifest
        try:
            with keras.device(self.placement.device):
                model = keras.saving.load_model(path, safe_mode=True, compile=False)
        except Exception as e:  # noqa: BLE001 - any load failure is reported with the file name
            raise LoadError(f"{path}: cannot load with safe_mode=True ({type(e).__name__}: {e})") from None
        want = (None, manifest.frames, manifest.height, manifest.width, manifest.channels)
        got = tuple(model.input_shape)
        if len(got) != 5 or any(g is not None and g != w for g, w in zip(got[1:], want[1:])):
            raise LoadError(f"{path}: model input shape {got} does not match its manifest "
                            f"{want} ({folder / 'manifest.json'})")
        out = tuple(model.output_shape)
        if manifest.task == "classify" and (len(out) != 2 or out[-1] != len(manifest.class_names)):
            raise LoadError(f"{path}: output shape {out} does not match the "
                            f"{len(manifest.class_names)} class_names of its manifest")
        if manifest.task == "next_frame" and (len(out) != 5 or out[-3:] != want[-3:]):
            raise LoadError(f"{path}: output shape {out} is not (batch, time, "
                            f"{manifest.height}, {manifest.width}, {manifest.channels})")
        return ModelRunner(folder, manifest, model, read_card(folder), self.placement,
                           metrics=self.metrics, max_queue=self.settings.max_queue,
                           timeout_s=self.settings.inference_timeout_s)

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self.ready_event.wait(timeout)

    def close(self) -> None:
        self._closed = True
        if self.gate is not None:
            self.gate.set()
        for r in self.runners.values():
            r.close()

    # -- lookup -------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.status.state == "ready"

    def require_ready(self) -> None:
        if not self.ready:
            if self.status.state == "failed":
                raise NotReady(f"models failed to load: {self.status.detail}")
            raise NotReady("models are still loading or warming up; poll GET /readyz")

    def get(self, name: str) -> ModelRunner:
        self.require_ready()
        runner = self.runners.get(name)
        if runner is None:
            known = ", ".join(sorted(self.runners)) or "none"
            raise ModelNotFound(f"no model named {name!r}; loaded models: {known}")
        return runner

    def pair(self, task: str, choices: dict[str, str | None]) -> dict[str, ModelRunner]:
        """The conv2d_lstm and convlstm2d runners of ``task`` (``choices`` names one per arch)."""
        self.require_ready()
        out = {}
        for arch in ("conv2d_lstm", "convlstm2d"):
            chosen = choices.get(arch) or self.settings.compare_choice(arch, task)
            if chosen:
                runner = self.runners.get(chosen)
                if runner is None:
                    raise ModelNotFound(f"no model named {chosen!r} (chosen as the {arch} model "
                                        f"for {task}); loaded: {', '.join(sorted(self.runners))}")
                m = runner.manifest
                if (m.architecture, m.task) != (arch, task):
                    raise WrongTask(f"model {chosen!r} is a {m.architecture} {m.task} model; the "
                                    f"{arch} slot of this comparison needs a {arch} {task} model")
                out[arch] = runner
                continue
            found = [r for r in self.runners.values()
                     if r.manifest.architecture == arch and r.manifest.task == task]
            if not found:
                raise ModelNotFound(f"no {arch} model for the {task} task is loaded; the comparison "
                                    f"needs one of each architecture")
            if len(found) > 1:
                names = ", ".join(sorted(r.name for r in found))
                raise InvalidInput(f"several {arch} {task} models are loaded ({names}); choose one with "
                                f"the query parameter {arch}=NAME or "
                                f"FRAMECAST_COMPARE_{arch.upper()}_{task.upper()}")
            out[arch] = found[0]
        return out
