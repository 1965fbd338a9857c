"""The ingress side of framecast on Ray Serve: the runtime whose runners are deployments.

Each ingress replica runs the plain app (``create_app``) over a :class:`RemoteRuntime`: its
models live in the lifecycle as on the plain server, but loading means waiting for Serve to
report every replica running and asking each deployment what it serves, and a call is
forwarded to a replica (:class:`RemoteRunner`). Ray is imported lazily (:func:`ray_modules`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.repository import Manifest
from service.config import Settings
from service.errors import FramecastError, InferenceError
from service.runtime.batcher import Ticket
from service.runtime.devices import Placement
from service.runtime.items import Timing
from service.runtime.ray.coalesce import Coalescer
from service.runtime.runner import ManifestView
from service.runtime.server import Runtime

if TYPE_CHECKING:  # Ray is optional and imported lazily (see ray_modules)
    from ray.serve.handle import DeploymentHandle

log = logging.getLogger("framecast.ray")

INSTALL_HINT = (
    "Ray Serve is not installed: pip install 'framecast[ray]' (or pip install 'ray[serve]')"
)


class RayMissing(RuntimeError):
    pass


def ray_modules() -> tuple[Any, Any]:
    try:
        import ray
        from ray import serve
    except ModuleNotFoundError as e:
        raise RayMissing(f"{INSTALL_HINT} ({e})") from None
    return ray, serve


@dataclass
class Fed:
    """What a replica's stream step gives back (a :class:`~models.rollout.Feed`'s results): the
    prediction made after each frame read, the states after the last, the rollout."""

    after: list[np.ndarray]
    kept: list[np.ndarray] | None
    outputs: list[np.ndarray]


class RemoteRunner(ManifestView):
    """The :class:`~service.runtime.runner.Runner` of a model served by a deployment: each call is
    forwarded to one of its replicas, whose own batcher queues it. Calls that arrive while
    enough are on their way wait and go together in one Ray call (:class:`Coalescer`,
    FRAMECAST_RAY_COALESCE_ITEMS): the replicas' queues are the queues, so ``queue_depth`` is 0
    and ``expect`` gives no ticket; Serve bounds each replica with ``max_ongoing_requests``.
    A carried-state model's stream steps travel with their state
    (:meth:`feed`): any replica takes any stream's next frame, and none keeps a stream."""

    queue_depth = 0
    idle = True  # nothing queued here (the Runner protocol's idle)

    def __init__(
        self,
        handle: DeploymentHandle,
        info: dict,
        coalesce_items: int = 1,
        calls_in_flight: int | None = None,
    ):
        self.handle = handle
        self.manifest = Manifest(**info["manifest"])
        self.placement = Placement(**info["placement"])
        self.card = info["card"]
        self.warmup_ms = info["warmup_ms"]
        self.folder = Path(info["folder"])
        self.version = int(info.get("version", 1))
        self.state_shapes = [tuple(x) for x in info.get("state_shapes") or []]
        self.ready = True
        # calls sent together while the replicas are busy (coalesce.py): one per kind
        in_flight = calls_in_flight or 2 * max(1, int(info.get("most_replicas", 1)))
        self.coalescers = {
            kind: Coalescer(self._sender(kind), coalesce_items, in_flight)
            for kind in ("predict", "classify", "feed")
        }

    def _sender(self, kind: str) -> Callable[[list], Awaitable[list]]:
        async def send(items: list) -> list:
            if len(items) == 1:  # alone: the method itself (no list to wrap)
                return [await _unwrap(getattr(self.handle, kind).remote(*items[0]))]
            return await _unwrap(self.handle.calls.remote(kind, items))

        return send

    @property
    def carries(self) -> bool:
        return self.rollout == "carried_state" and bool(self.state_shapes)

    def expect(self) -> AbstractContextManager:
        return nullcontext(None)

    async def predict(
        self,
        context: np.ndarray,
        horizon: int,
        *,
        ticket: Ticket | None = None,
        background: bool = False,  # no priority levels on Ray: a job's clip is a request
    ) -> tuple[np.ndarray, Timing]:
        return await self.coalescers["predict"].call(
            (np.asarray(context, np.float32), int(horizon))
        )

    async def classify(
        self, context: np.ndarray, *, ticket: Ticket | None = None, background: bool = False
    ) -> tuple[np.ndarray, Timing]:
        return await self.coalescers["classify"].call((np.asarray(context, np.float32),))

    async def feed(
        self,
        frames: np.ndarray,
        steps: int,
        states: list[np.ndarray] | None,
        *,
        ticket: Ticket | None = None,
        background: bool = False,
    ) -> tuple[Fed, Timing]:
        """A stream's frames and its states to a replica, the predictions and new states back
        (:meth:`ModelRunner.feed <service.runtime.runner.ModelRunner.feed>` there)."""
        frames = np.asarray(frames, np.float32)
        return await self.coalescers["feed"].call((frames, int(steps), states))

    def close(self) -> None:
        pass


async def _unwrap(response: Any) -> Any:
    """Await a deployment's answer; a domain error raised there is raised here as itself.
    ``response``: a DeploymentResponse (Ray types ``.remote()`` as that or, for a streaming
    handle, a DeploymentResponseGenerator; these handles do not stream)."""
    try:
        return await response
    except Exception as e:
        cause = getattr(e, "cause", None)  # ray.exceptions.RayTaskError keeps the original
        if isinstance(cause, FramecastError):
            raise cause from None
        if _refused_as_too_large(e):  # not a bug here: a node's setting (docs/ray.md)
            raise InferenceError(
                "a call to the model's replicas was refused by gRPC as larger than a replica "
                "takes (RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH, gRPC's 4 MiB unless set): "
                "set it on every Ray node as docs/ray.md says; nothing of this request was "
                "applied"
            ) from None
        raise


def _refused_as_too_large(e: BaseException) -> bool:
    """Whether ``e`` is gRPC's RESOURCE_EXHAUSTED (a message past the receiver's limit), as
    Ray Serve's calls over gRPC (RAY_SERVE_USE_GRPC_BY_DEFAULT) raise it."""
    code = getattr(e, "code", None)
    try:
        return callable(code) and getattr(code(), "name", None) == "RESOURCE_EXHAUSTED"
    except Exception:  # noqa: BLE001 - not a gRPC error after all
        return False


class RemoteRuntime(Runtime):
    """A :class:`Runtime` whose runners are deployments (``handles``: name → handle).

    Loading means waiting until Serve reports every replica of the application running (the
    models' and the ingress's), then asking each deployment what it serves. It runs on the loader
    thread (the replica's event loop never blocks on it), so ``/readyz`` answers 503 at once, with
    each model's replica states, until then; a deployment that fails makes it ``failed``.
    """

    live = False  # deployments are fixed when the application is built
    poll_s = 1.0

    def __init__(self, settings: Settings, handles: dict, model_apps: dict | None = None, **kwargs):
        super().__init__(settings.model_copy(update={"load_mode": "background"}), **kwargs)
        self.handles = handles
        self.model_apps = model_apps or {}  # name → application (`framecast serve --ray`)
        self._loop: asyncio.AbstractEventLoop | None = None  # the app's (see start)

    def start(self) -> None:
        """Load in the background, asking the deployments from the app's event loop: with
        Serve's router on the replica's loop (RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0) a
        handle is used from that loop only."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # started outside an event loop (tests): ask from the loader
            self._loop = None
        super().start()

    def _ask(self, handle: Any) -> dict:
        """What a deployment serves (its ``info``), asked from the app's loop when known."""
        timeout = self.settings.inference_timeout_s
        if self._loop is None:
            return handle.info.remote().result(timeout_s=timeout)

        async def ask() -> dict:
            return await handle.info.remote()

        return asyncio.run_coroutine_threadsafe(ask(), self._loop).result(timeout=timeout)

    def load_runners(self) -> bool:
        """Wait until every model deployment exists and runs (or one fails), then ask each what
        it serves. Serve's view settles in steps (an application listed before its
        deployments, a handle asked for a moment before it exists): a step that raises is
        retried after a back-off doubling from ``poll_s`` up to 10 s, at most
        FRAMECAST_RAY_START_RETRIES times, and only then is start-up failed."""
        _, serve = ray_modules()
        for attempt in range(self.settings.ray_start_retries + 1):
            try:
                if not self._wait_for_deployments(serve):
                    return False
                self._connect(serve)
                return not self._closed
            except Exception as e:  # noqa: BLE001 - retried, then reported through /readyz
                if attempt == self.settings.ray_start_retries or self._closed:
                    self._fail(
                        f"Ray Serve start failed after {attempt + 1} attempt(s): "
                        f"{type(e).__name__}: {e}"
                    )
                    return False
                delay = min(self.poll_s * 2**attempt, 10.0)
                log.warning(
                    "Ray Serve not settled yet (%s: %s); retrying in %.1f s (%d/%d)",
                    type(e).__name__,
                    e,
                    delay,
                    attempt + 1,
                    self.settings.ray_start_retries,
                )
                time.sleep(delay)
        return False

    def _wait_for_deployments(self, serve: Any) -> bool:
        """Poll Serve until every model's deployment is listed and running; False once one
        failed (start-up is then failed) or the runtime closed."""
        apps = {serve.get_replica_context().app_name, *self.model_apps.values()}
        keys = set(self.handles) | set(self.model_apps)
        while not self._closed:
            waiting, failed, deployments = [], [], {}
            status = serve.status().applications
            for app in sorted(apps):
                if app in status:
                    deployments.update(status[app].deployments)
                else:
                    waiting.append(f"application {app} is not deployed yet")
            for key in sorted(keys - {d.removeprefix("model-") for d in deployments}):
                self.models.loading(key, "not deployed yet")  # listed app, no deployment yet
                waiting.append(f"model-{key} is not deployed yet")
            for dep_name, dep in sorted(deployments.items()):
                text = _replica_text(dep)
                key = dep_name.removeprefix("model-")
                if key in keys:
                    self.models.loading(key, text)
                if dep.status == "DEPLOY_FAILED":
                    failed.append(f"{dep_name}: {dep.message}")
                    if key in keys:
                        self.models.fail(key, f"deployment failed: {dep.message}")
                elif dep.status not in RUNNING_STATES:
                    waiting.append(f"{dep_name} {text}")
            if failed:
                self._fail("deployment failed: " + "; ".join(failed))
                return False
            if not waiting:
                return True
            self._detail = "waiting for replicas: " + "; ".join(waiting)
            time.sleep(self.poll_s)
        return False

    def _connect(self, serve: Any) -> None:
        """A handle per model deployment, and what each serves, into the lifecycle."""
        for key, app in self.model_apps.items():
            self.handles[key] = serve.get_deployment_handle(f"model-{key}", app_name=app)
        for _key, handle in sorted(self.handles.items()):
            info = self._ask(handle)
            s = self.settings
            runner = RemoteRunner(handle, info, s.ray_coalesce_items, s.ray_calls_in_flight)
            self.models.loaded(runner)
            self.placement = runner.placement


RUNNING_STATES = ("HEALTHY", "UPSCALING", "DOWNSCALING")  # every replica it was asked for ran


def _replica_text(dep: Any) -> str:
    """'1/2 replicas running (STARTING 1)' from Serve's DeploymentStatusOverview (the
    model is LOADING, as the ingress sees it, until it has asked the deployment what it
    serves)."""
    states = dict(getattr(dep, "replica_states", {}) or {})
    running = states.pop("RUNNING", 0)
    if dep.status in RUNNING_STATES:
        return "replicas running" if not states else f"{running} replicas running"
    others = ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
    text = f"{running}/{running + sum(states.values())} replicas running"
    text += f" ({others})" if others else ""
    message = getattr(dep, "message", "")
    return f"{text}; {message}" if message else text
