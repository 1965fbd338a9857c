"""Loaded models, device placement, warm-up, and one runner (one worker thread) per model.

Keras is imported inside functions, never at module import, so ``import service.app`` stays light.

Every call into a model happens on that model's single worker thread (``ModelRunner``): under the
JAX backend ``predict_on_batch`` is not thread-safe. That thread is also the micro-batcher: it
drains the runner's bounded queue, merges concurrent requests (and the steps of concurrent
rollouts) into one call of up to ``max_batch_size`` clips, and pads each call to a fixed bucket
size ``(b, frames, H, W, C)`` with ``b`` in 1, 2, 4, 8, 12, 16, 24, ... ``max_batch_size``. Every bucket is
called once at load (warm-up), so no shape is traced while serving (under TensorFlow a changing
time axis fails inside ``TimeDistributed``; under JAX every new shape is a new compilation).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
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
from service.errors import (
    DeadlineExceeded,
    InferenceError,
    InvalidInput,
    ModelNotFound,
    NotReady,
    Overloaded,
    WrongTask,
)
from service.limits import current_deadline, remaining
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
    """Where one request's time went on the model side (all in milliseconds)."""

    queued_ms: float = 0.0  # submitted → admitted into a batch by the worker
    inference_ms: float = 0.0  # inside the model calls this request took part in
    calls: int = 0  # model calls (rollout steps) it took part in
    batch: int = 0  # clips in the first model call it shared (before padding)
    bucket: int = 0  # the padded (compiled) batch size of that call


def bucket_sizes(max_batch_size: int) -> tuple[int, ...]:
    """The padded batch sizes served: 1, 2, 4, 8, then 1.5x and 2x steps (12, 16, 24, 32, 48,
    64, 96, ...) below ``max_batch_size``, and ``max_batch_size`` itself.

    Padding wastes compute: under load a batch of 23 clips padded to 32 runs at 72 % efficiency,
    padded to 24 at 96 %. The 1.5x steps keep the waste under a third for any batch of 9 or more,
    at the cost of a few more shapes to warm at load (8 instead of 6 up to 32).
    """
    sizes, b = [1, 2, 4, 8], 8
    while b < max_batch_size:
        b = b * 3 // 2 if b & (b - 1) == 0 else b * 4 // 3  # 8 → 12 → 16 → 24 → 32 → 48 → ...
        sizes.append(b)
    return tuple([s for s in sizes if s < max_batch_size] + [max_batch_size])


class _Job:
    """Arbitrary work for the worker thread (warm-up; tests use it to hold the worker)."""

    __slots__ = ("fn", "args", "future", "enqueued")

    def __init__(self, fn: Callable, args: tuple):
        self.fn, self.args, self.future = fn, args, Future()
        self.enqueued = time.perf_counter()


class _Request:
    """One clip waiting for ``steps`` model calls (a rollout of ``steps`` frames, or one class
    score vector); the window slides by the predicted frame after each call."""

    __slots__ = ("window", "steps", "outputs", "future", "timing", "enqueued", "deadline", "gone")

    def __init__(self, window: np.ndarray, steps: int, deadline: float | None = None):
        self.window = window  # (frames, H, W, C) float32
        self.steps = steps
        self.outputs: list[np.ndarray] = []
        self.future: Future = Future()
        self.timing = Timing()
        self.enqueued = time.perf_counter()
        self.deadline = deadline  # time.monotonic() by which it must be answered, or None
        self.gone = False  # its caller stopped waiting: drop it, compute nothing more for it

    def expired(self, now: float) -> bool:
        return self.gone or (self.deadline is not None and now >= self.deadline)


class Ticket:
    """A request on its way to a runner (its upload is being read and decoded).

    While tickets are out, the batcher may wait up to ``max_batch_delay_ms`` for them to join a
    batch; with none out it never waits (so one client alone pays no delay). ``release`` is
    idempotent; :meth:`ModelRunner.predict` releases the ticket it is given as it enqueues.
    """

    __slots__ = ("runner", "live")

    def __init__(self, runner: "ModelRunner"):
        self.runner, self.live = runner, True

    def release(self) -> None:
        with self.runner._cv:
            self._release_locked()

    def _release_locked(self) -> None:
        if self.live:
            self.live = False
            self.runner._incoming -= 1
            self.runner._cv.notify_all()

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class ManifestView:
    """``name`` and the served ``input_shape`` of anything that holds a ``manifest``."""

    manifest: Manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        m = self.manifest
        return (m.frames, m.height, m.width, m.channels)


class ModelRunner(ManifestView):
    """One loaded model, its bounded queue, and the single worker thread that batches requests
    and makes every call to the model.

    The worker loop (``_loop``) admits queued requests into an *active* set of at most
    ``max_batch_size`` clips, pads their windows to the next bucket size (every bucket is warmed
    at load, so nothing is traced while serving) and makes one ``predict_on_batch`` call for all
    of them: one rollout step for each. A request whose horizon is reached is answered at once and
    leaves the set; requests queued meanwhile join at the next step, so requests with different
    horizons share steps (continuous batching). When the set is empty the worker waits for the
    first request and then, while tickets announce more on the way, up to ``max_batch_delay_ms``
    (counted from the first request's arrival) for others to fill the batch.

    A failing model call fails exactly the requests of that call; the worker carries on.
    """

    def __init__(self, folder: Path, manifest: Manifest, model, card: dict | None,
                 placement: Placement, *, metrics: Metrics, max_queue: int, timeout_s: float,
                 max_batch_size: int = 1, max_batch_delay_ms: float = 0.0):
        self.folder = folder
        self.manifest = manifest
        self.model = model
        self.card = card
        self.placement = placement
        self.metrics = metrics
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_ms / 1000.0
        self.buckets = bucket_sizes(max_batch_size)
        self.warmed: set[tuple[int, ...]] = set()  # input shapes called at warm-up
        self.warmup_ms: float | None = None
        self.ready = False
        self._cv = threading.Condition()
        self._queue: deque[_Job | _Request] = deque()
        self._pending = 0  # queued + in the active set: what max_queue bounds
        self._incoming = 0  # live tickets
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"framecast-{manifest.name}",
                                        daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        return self._pending

    def bucket_for(self, n: int) -> int:
        return next(b for b in self.buckets if b >= n)

    # -- worker side (runs on the runner's thread) ------------------------------------------
    def _call(self, batch: np.ndarray) -> tuple[np.ndarray, float]:
        """One model call on a padded batch ``(bucket, frames, H, W, C)`` → (output, seconds)."""
        import keras

        t0 = time.perf_counter()
        with keras.device(self.placement.device):
            out = self.model.predict_on_batch(batch)
        out = np.asarray(out, dtype=np.float32)
        return out, time.perf_counter() - t0

    def _warmup(self) -> float:
        """Call the model once on every bucket shape; returns the time taken (ms)."""
        t0 = time.perf_counter()
        for b in self.buckets:
            shape = (b,) + self.input_shape
            _, dt = self._call(np.zeros(shape, np.float32))
            self.warmed.add(shape)
            log.debug("model %s warmed batch %d in %.1f ms", self.name, b, dt * 1000.0)
        return (time.perf_counter() - t0) * 1000.0

    def _loop(self) -> None:
        active: list[_Request] = []
        while True:
            job, admitted = self._next_work(active)
            if job is _STOP:
                self._fail_all(active)
                return
            if job is not None:
                self._run_job(job)
                continue
            active.extend(admitted)
            if not active:
                continue
            try:
                active = self._step(active)
            except Exception as e:  # noqa: BLE001 - a bug here must not kill the worker
                # (_step accounts for its requests itself; this only keeps the thread alive)
                log.exception("model %s: batch step failed", self.name)
                err = InferenceError(f"model {self.name!r}: {type(e).__name__}: {e}")
                for req in active:
                    if not req.future.done():
                        req.future.set_exception(err)
                active = []

    def _next_work(self, active: list[_Request]):
        """Under the lock: a job to run (only between batches), or the requests to admit."""
        with self._cv:
            if not active:
                while not self._queue and not self._closed:
                    self._cv.wait()
            if self._closed:
                return _STOP, []
            if not active and isinstance(self._queue[0], _Job):
                return self._queue.popleft(), []
            room = self.max_batch_size - len(active)
            admitted = self._admit_locked(room)
            if not active and admitted and self.max_batch_delay_s > 0:
                deadline = admitted[0].enqueued + self.max_batch_delay_s
                while len(admitted) < room and self._incoming > 0 and not self._closed:
                    left = deadline - time.perf_counter()
                    if left <= 0 or (self._queue and isinstance(self._queue[0], _Job)):
                        break
                    self._cv.wait(left)
                    admitted += self._admit_locked(room - len(admitted))
            return None, admitted

    def _admit_locked(self, room: int) -> list[_Request]:
        out: list[_Request] = []
        now = time.perf_counter()
        while room > 0 and self._queue and isinstance(self._queue[0], _Request):
            req = self._queue.popleft()
            if not req.future.set_running_or_notify_cancel():  # its caller gave up
                self._finished_locked()
                continue
            if req.expired(time.monotonic()):  # past its deadline: never computed
                req.future.set_exception(self._late())
                self._finished_locked()
                continue
            req.timing.queued_ms = (now - req.enqueued) * 1000.0
            out.append(req)
            room -= 1
        return out

    def _run_job(self, job: _Job) -> None:
        # The queue count drops before the caller can see the answer, so a caller that got its
        # answer never observes its own request still counted.
        if job.future.set_running_or_notify_cancel():
            try:
                result, error = job.fn(*job.args), None
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                result, error = None, e
            with self._cv:
                self._finished_locked()
            if error is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(error)
        else:
            with self._cv:
                self._finished_locked()

    def _late(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"the request to model {self.name!r} ran past its deadline "
                                "(FRAMECAST_REQUEST_TIMEOUT_S); its model work was dropped")

    def _drop_expired(self, active: list[_Request]) -> list[_Request]:
        """Requests past their deadline (or whose caller left) leave before the next call."""
        now = time.monotonic()
        gone = [r for r in active if r.expired(now)]
        if not gone:
            return active
        with self._cv:
            for _ in gone:
                self._finished_locked()
        for req in gone:
            if not req.future.done():
                req.future.set_exception(self._late())
        return [r for r in active if not r.expired(now)]

    def _step(self, active: list[_Request]) -> list[_Request]:
        """One model call for every active request; returns those with steps left."""
        active = self._drop_expired(active)
        if not active:
            return []
        n = len(active)
        bucket = self.bucket_for(n)
        batch = np.zeros((bucket,) + self.input_shape, np.float32)  # padding rows stay zero
        for i, req in enumerate(active):
            batch[i] = req.window
        try:
            out, dt = self._call(batch)  # (bucket, frames, H, W, C) or (bucket, classes)
        except Exception as e:  # noqa: BLE001 - fails this batch only
            log.error("model %s failed on a batch of %d clip(s) (padded to %d): %s: %s",
                      self.name, n, bucket, type(e).__name__, e)
            err = InferenceError(f"model {self.name!r} failed on a batch of {n} clip(s): "
                                 f"{type(e).__name__}: {e}")
            with self._cv:
                for _ in active:
                    self._finished_locked()
            for req in active:
                req.future.set_exception(err)
            return []
        self.metrics.observe_inference(self.name, dt, n)
        try:
            keep, done = self._advance(active, out, n, bucket, dt)
        except Exception as e:  # noqa: BLE001 - fails this batch only, the worker lives on
            log.exception("model %s: handling the output of a batch failed", self.name)
            err = InferenceError(f"model {self.name!r}: {type(e).__name__}: {e}")
            with self._cv:
                for _ in active:
                    self._finished_locked()
            for req in active:
                if not req.future.done():
                    req.future.set_exception(err)
            return []
        if done:
            with self._cv:
                for _ in done:
                    self._finished_locked()
        for req, result in done:
            req.future.set_result(result)
        return keep

    def _advance(self, active: list[_Request], out: np.ndarray, n: int, bucket: int,
                 dt: float) -> tuple[list[_Request], list[tuple[_Request, tuple]]]:
        """Each request's slice of ``out``: (still rolling out, [(answered, its result)])."""
        keep, done = [], []
        for i, req in enumerate(active):
            t = req.timing
            if t.calls == 0:
                t.batch, t.bucket = n, bucket
            t.calls += 1
            t.inference_ms += dt * 1000.0
            if self.manifest.task == "next_frame":
                nxt = out[i, -1]  # (H, W, C): y[:, t] predicts frame t+1
                req.outputs.append(nxt)
                req.window = np.concatenate([req.window[1:], nxt[None]], axis=0)
                result = np.stack(req.outputs) if len(req.outputs) == req.steps else None
            else:
                result = out[i].copy()  # (num_classes,)
            if result is None:
                keep.append(req)
            else:
                done.append((req, (result, t)))  # answered by _step once the count is down
        return keep, done

    def _finished_locked(self) -> None:
        self._pending -= 1
        self.metrics.set_queue(self.name, self._pending)

    def _fail_all(self, active: list[_Request]) -> None:
        err = NotReady(f"model {self.name!r} is shutting down")
        with self._cv:
            items = list(active) + list(self._queue)
            self._queue.clear()
        for item in items:
            if not item.future.done():
                if item in active or item.future.set_running_or_notify_cancel():
                    item.future.set_exception(err)

    # -- caller side ------------------------------------------------------------------------
    def _check_room_locked(self) -> None:
        if self._closed:
            raise NotReady(f"model {self.name!r} is shutting down")
        if self._pending >= self.max_queue:
            raise Overloaded(f"model {self.name!r} has {self._pending} requests queued "
                             f"(FRAMECAST_MAX_QUEUE={self.max_queue}); retry shortly")

    def expect(self) -> Ticket:
        """Announce a request whose upload is being decoded; 503 at once when the queue is full."""
        with self._cv:
            self._check_room_locked()
            self._incoming += 1
        return Ticket(self)

    def _enqueue(self, item, ticket: Ticket | None = None) -> None:
        with self._cv:
            if ticket is not None:
                ticket._release_locked()
            self._check_room_locked()
            self._pending += 1
            self.metrics.set_queue(self.name, self._pending)
            self._queue.append(item)
            self._cv.notify_all()

    def submit(self, fn: Callable, *args) -> Future:
        """Queue ``fn(*args)`` to run on the worker between batches; 503 when the queue is full."""
        job = _Job(fn, args)
        self._enqueue(job)
        return job.future

    def _abandon(self, item) -> None:
        with self._cv:
            if isinstance(item, _Request):
                item.gone = True  # if a batch has it, the worker drops it before its next step
            try:
                self._queue.remove(item)
            except ValueError:
                return  # admitted (or finished) already: the worker accounts for it
            self._finished_locked()

    async def _run(self, req: _Request, ticket: Ticket | None):
        req.deadline = current_deadline()  # the request's (FRAMECAST_REQUEST_TIMEOUT_S), if any
        left = remaining(req.deadline)
        if left is not None and left <= 0:
            if ticket is not None:
                ticket.release()
            raise self._late()  # never queued
        timeout = self.timeout_s if left is None else min(self.timeout_s, left)
        self._enqueue(req, ticket)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(req.future), timeout=timeout)
        except asyncio.TimeoutError:
            self._abandon(req)
            if left is not None and left <= self.timeout_s:
                raise self._late() from None
            raise Overloaded(f"model {self.name!r} did not answer within "
                             f"FRAMECAST_INFERENCE_TIMEOUT_S={self.timeout_s:g} s") from None
        except asyncio.CancelledError:  # the client went away
            self._abandon(req)
            raise

    async def predict(self, context: np.ndarray, horizon: int, *,
                      ticket: Ticket | None = None) -> tuple[np.ndarray, Timing]:
        """(frames, H, W, C) → ((horizon, H, W, C), timing); next-frame models only."""
        return await self._submit("next_frame", "classify", context, int(horizon), ticket)

    async def classify(self, context: np.ndarray, *,
                       ticket: Ticket | None = None) -> tuple[np.ndarray, Timing]:
        """(frames, H, W, C) → ((num_classes,), timing); classify models only."""
        return await self._submit("classify", "predict", context, 1, ticket)

    async def _submit(self, task: str, other_route: str, context: np.ndarray, steps: int,
                      ticket: Ticket | None) -> tuple[np.ndarray, Timing]:
        """Queue one clip for ``steps`` model calls, after checking the model does ``task``."""
        if self.manifest.task != task:
            if ticket is not None:
                ticket.release()
            raise WrongTask(f"model {self.name!r} is a {self.manifest.task} model; "
                            f"use POST /v1/models/{self.name}/{other_route}")
        window = np.asarray(context, np.float32).reshape(self.input_shape)
        return await self._run(_Request(window, steps), ticket)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()


_STOP = object()


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
                self._fail(f"model {runner.name!r} failed its warm-up calls on shapes "
                           f"(b,) + {runner.input_shape} for b in {runner.buckets}: "
                           f"{type(e).__name__}: {e}")
                return
            runner.ready = True
            self.status.models[runner.name] = "ready"
            self.metrics.set_ready(runner.name, True)
            m = runner.manifest
            log.info("model %s ready: architecture=%s task=%s input=%dx%dx%dx%d device=%s "
                     "params=%d buckets=%s warm-up=%.1f ms", m.name, m.architecture, m.task, m.frames,
                     m.height, m.width, m.channels, runner.placement.description, m.params,
                     ",".join(map(str, runner.buckets)), runner.warmup_ms)
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
                           timeout_s=self.settings.inference_timeout_s,
                           max_batch_size=self.settings.max_batch_size,
                           max_batch_delay_ms=self.settings.max_batch_delay_ms)

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
