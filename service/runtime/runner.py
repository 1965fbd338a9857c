"""What the routes call a model through: the :class:`Runner` protocol, and the in-process runner.

:class:`ModelRunner` joins one loaded model, its task policy (``service/runtime/policies.py``) and
its micro-batcher (``service/runtime/batcher.py``, one worker thread that makes every call into the
model: under JAX ``predict_on_batch`` is not thread-safe). Every bucket shape is called once at
warm-up, so no shape is traced while serving (under TensorFlow a changing time axis fails inside
``TimeDistributed``; under JAX every new shape is a new compilation). The Ray runner
(``service/runtime/ray/app.py``) implements the same protocol by forwarding to a deployment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from models.repository import Manifest
from models.rollout import Feed
from service.checks import require_task
from service.errors import WrongTask
from service.media.frames import scaled
from service.runtime.batcher import Batcher, Ticket
from service.runtime.devices import Placement
from service.runtime.items import Item, Timing
from service.runtime.policies import CarriedState, Policy, make_policy
from service.runtime.priority import Yielding
from service.telemetry import Metrics

log = logging.getLogger("framecast.runtime")


@runtime_checkable
class Runner(Protocol):
    """One served model, wherever it runs."""

    manifest: Manifest
    placement: Placement
    card: dict | None
    folder: Path
    version: int  # its numbered version (a flat model folder's is 1)
    ready: bool
    warmup_ms: float | None

    @property
    def name(self) -> str: ...

    @property
    def input_shape(self) -> tuple[int | None, int, int, int]: ...

    @property
    def rollout(self) -> str: ...

    @property
    def queue_depth(self) -> int: ...

    @property
    def idle(self) -> bool: ...

    def expect(self) -> AbstractContextManager: ...

    async def predict(
        self,
        context: np.ndarray,
        horizon: int,
        *,
        ticket: Ticket | None = None,
        background: bool = False,
    ) -> tuple[np.ndarray, Timing]: ...

    async def classify(
        self, context: np.ndarray, *, ticket: Ticket | None = None, background: bool = False
    ) -> tuple[np.ndarray, Timing]: ...

    def close(self) -> None: ...


class ManifestView:
    """``name``, the served ``input_shape`` and ``rollout`` of anything holding a ``manifest``."""

    manifest: Manifest
    version: int = 1  # the model's numbered version (a flat folder's is 1)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def input_shape(self) -> tuple[int | None, int, int, int]:
        m = self.manifest
        return (m.frames, m.height, m.width, m.channels)

    @property
    def rollout(self) -> str:
        m = self.manifest
        return "none" if m.task != "next_frame" else getattr(m, "rollout", "sliding_window")


def _exact(n: int) -> int:
    return n


def _forward(attr: str) -> property:
    """A property reading and writing ``self.batcher.<attr>``."""
    return property(
        lambda self: getattr(self.batcher, attr),
        lambda self, value: setattr(self.batcher, attr, value),
    )


class ModelRunner(ManifestView):
    """One loaded model in this process: its policy, its batcher and the one worker thread.

    ``callables`` (name → Keras model) are what the policy calls; by default the model itself
    under ``"model"``. A failing call fails exactly the requests of that call.
    """

    def __init__(
        self,
        folder: Path,
        manifest: Manifest,
        model: Any,
        card: dict | None,
        placement: Placement,
        *,
        metrics: Metrics,
        max_queue: int,
        timeout_s: float,
        max_batch_size: int = 1,
        max_batch_delay_ms: float = 0.0,
        policy: Policy | None = None,
        callables: dict[str, Any] | None = None,
        pad_batches: bool = True,
        version: int = 1,
        home: Path | None = None,
        yielding: Yielding | None = None,
        direct: bool = True,
    ):
        self.folder = folder  # where the checkpoint is (a version's own folder)
        self.home = home or folder  # the model folder (of every version)
        self.version = version
        self.manifest = manifest
        self.model = model
        self.card = card
        self.placement = placement
        self.metrics = metrics
        if policy is None:
            policy, callables = make_policy(manifest, model)
        self.policy = policy
        self.callables = callables or {"model": model}
        self.pad_batches = pad_batches  # False: exact batches (TF: warm-up freed the batch axis)
        self.warmed: set[tuple[int, ...]] = set()  # input shapes called at warm-up
        # True once warm-up found the model's uint8 entry ("model_u8") giving the very numbers
        # of its float32 one: the classify route then sends a clip's bytes, not floats
        self.accepts_u8 = False
        self.try_direct = direct  # FRAMECAST_DIRECT_CALLS: Direct tried at warm-up
        self.direct: dict[str, Any] = {}  # callables called without predict_on_batch (Direct)
        self.warmup_ms: float | None = None
        self.ready = False
        self.batcher = Batcher(
            manifest.name,
            self._step,
            max_queue=max_queue,
            timeout_s=timeout_s,
            max_batch_size=max_batch_size,
            max_batch_delay_ms=max_batch_delay_ms,
            on_queue=lambda depth: metrics.set_queue(manifest.name, depth),
            yielding=yielding,
        )
        self.costs: dict[str, Any] = {}  # cost facts (service/runtime/costs.py), set at load

    # settings the batcher owns, readable (and adjustable, for tests) here
    max_queue = _forward("max_queue")
    timeout_s = _forward("timeout_s")
    max_batch_size = _forward("max_batch_size")

    @property
    def buckets(self) -> tuple[int, ...]:
        return self.batcher.buckets

    @property
    def queue_depth(self) -> int:
        return self.batcher.depth

    @property
    def idle(self) -> bool:
        return self.batcher.idle

    # -- worker side ------------------------------------------------------------------------
    def _call(self, batch: Any, which: str = "model") -> tuple[Any, float]:
        """One call of ``callables[which]`` on a padded batch → (numpy output, seconds)."""
        import keras

        t0 = time.perf_counter()
        with keras.device(self.placement.device):
            direct = self.direct.get(which)  # exact at warm-up: predict_on_batch's work skipped
            if direct is not None:
                return direct(batch), time.perf_counter() - t0
            out = self.callables[which].predict_on_batch(batch)
        if isinstance(out, (list, tuple)):
            out = [np.asarray(o, dtype=np.float32) for o in out]
        else:
            out = np.asarray(out, dtype=np.float32)
        return out, time.perf_counter() - t0

    def _step(self, items: list[Item], bucket: int) -> list[Any]:
        """The batcher's step: the policy's calls, timed into every item's Timing."""
        spent = [0.0, 0]

        def timed(which: str) -> Callable[[Any], Any]:
            def call(batch: Any) -> Any:
                out, dt = self._call(batch) if which == "model" else self._call(batch, which)
                spent[0] += dt
                spent[1] += 1
                return out

            return call

        calls = {which: timed(which) for which in self.callables}
        rows = self.batcher.bucket_for if self.pad_batches else _exact
        results = self.policy.step([it.payload for it in items], rows, calls)
        n = len(items)
        self.metrics.observe_inference(self.name, spent[0], n, str(self.version))
        for it in items:
            t = it.timing
            if t.calls == 0:
                t.batch, t.bucket = n, bucket
            t.calls += 1
            t.inference_ms += spent[0] * 1000.0
        return results

    def warm(self) -> float:
        """Call every callable once on every bucket shape; returns the time taken (ms)."""
        import keras

        from models.interop.adapters import Direct

        t0 = time.perf_counter()
        trials = {w: Direct.trial(c) for w, c in self.callables.items() if self.try_direct}
        for b in self.buckets:
            for which, batch in self.policy.warm_inputs(b).items():
                if which not in self.callables:
                    continue
                out, dt = self._call(batch) if which == "model" else self._call(batch, which)
                if (trial := trials.get(which)) is not None:
                    with keras.device(self.placement.device):
                        trial.check(batch, out)
                if which == "model":
                    self.warmed.add(tuple(batch.shape))
                log.debug(
                    "model %s warmed %s batch %d in %.1f ms", self.name, which, b, dt * 1000.0
                )
        self.direct = {w: t for w, t in trials.items() if t is not None and t.exact}
        if "model_u8" in self.callables:
            self.accepts_u8 = self._same_from_bytes()
        return (time.perf_counter() - t0) * 1000.0

    def _same_from_bytes(self) -> bool:
        """Whether the uint8 entry answers exactly as the float32 one on frames scaled by numpy
        (a random clip at each of two batch sizes); if not, it is dropped and frames are scaled
        before the call, as before."""
        frames, height, width, channels = self.input_shape
        assert frames is not None, "a uint8 entry is made for a fixed time axis only"
        shape = (frames, height, width, channels)
        for b in self.buckets[:2]:
            raw = np.random.default_rng(b).integers(0, 256, (b,) + shape, dtype=np.uint8)
            got, _ = self._call(raw, "model_u8")
            want, _ = self._call(scaled(raw))
            if not np.array_equal(got, want):
                diff = float(np.max(np.abs(np.asarray(got) - np.asarray(want))))
                log.warning(
                    "model %s: scaling frames in its graph changed its output (max %g); "
                    "frames are scaled before the call",
                    self.name,
                    diff,
                )
                del self.callables["model_u8"]
                return False
        return True

    # -- caller side ------------------------------------------------------------------------
    def expect(self) -> Ticket:
        """Announce a request whose upload is being decoded; 503 at once when the queue is full."""
        return self.batcher.expect()

    def submit(self, fn: Callable, *args: Any) -> Future:
        """Queue ``fn(*args)`` to run on the worker between batches; 503 when the queue is full."""
        return self.batcher.submit(fn, *args)

    async def predict(
        self,
        context: np.ndarray,
        horizon: int,
        *,
        ticket: Ticket | None = None,
        background: bool = False,
    ) -> tuple[np.ndarray, Timing]:
        """(frames, H, W, C) → ((horizon, H, W, C), timing); next-frame models only
        (``background``: an evaluation job's clip, served after online requests)."""
        return await self._submit("next_frame", context, int(horizon), ticket, background)

    async def classify(
        self, context: np.ndarray, *, ticket: Ticket | None = None, background: bool = False
    ) -> tuple[np.ndarray, Timing]:
        """(frames, H, W, C) → ((num_classes,), timing); classify models only."""
        return await self._submit("classify", context, 1, ticket, background)

    @property
    def carries(self) -> bool:
        """Whether a stream's frames can each be read in one step with the state carried."""
        return isinstance(self.policy, CarriedState)

    @property
    def state_shapes(self) -> list[tuple[int, ...]]:
        """Per-clip shapes of the recurrent states a stream carries ([] when it cannot)."""
        return list(self.policy.state_shapes) if isinstance(self.policy, CarriedState) else []

    async def feed(
        self,
        frames: np.ndarray,
        steps: int,
        states: list[np.ndarray] | None,
        *,
        ticket: Ticket | None = None,
        background: bool = False,
    ) -> tuple[Feed, Timing]:
        """A stream's new frames (T, H, W, C), read one single-frame step each from ``states``
        (None: a new stream), then ``steps`` frames predicted; batched with every other call
        of the step (:class:`~models.rollout.Feed`). Carried-state models only."""
        try:
            if not isinstance(self.policy, CarriedState):
                raise WrongTask(
                    f"model {self.name!r} rolls out by {self.rollout}: it has no state to carry"
                )
            payload = self.policy.feed(frames, steps, states)
        except BaseException:
            if ticket is not None:
                ticket.release()
            raise
        return await self.batcher.run(payload, ticket, background=background)

    async def _submit(
        self, task: str, context: np.ndarray, steps: int, ticket: Ticket | None, bg: bool = False
    ) -> tuple[np.ndarray, Timing]:
        try:
            require_task(self.name, self.manifest.task, task)
            payload = self.policy.begin(context, steps)
        except BaseException:
            if ticket is not None:
                ticket.release()
            raise
        return await self.batcher.run(payload, ticket, background=bg)

    def close(self) -> None:
        self.batcher.close()
