"""The same FastAPI app on Ray Serve: one ingress deployment, one deployment per model.

::

    framecast serve --ray                       # or, with a Serve config file:
    serve run service.ray_app:app_builder       # serve deploy config.yaml (docs/ray.md)

- ``FramecastIngress`` (``@serve.ingress``) runs ``create_app(settings)`` unchanged: every route,
  ``/v1``, ``/v2``, the page, errors and limits are the plain server's. Its runtime is a
  :class:`RemoteRuntime` whose runners forward ``predict``/``classify`` to the model deployments.
- ``FramecastModel`` (one deployment per model folder, ``FRAMECAST_RAY_REPLICAS`` replicas, each
  reserving ``FRAMECAST_RAY_GPUS_PER_REPLICA`` GPUs) loads its one model with the plain
  :func:`~service.registry.load_folder`, so each replica has its own worker and micro-batcher.

Ray is imported lazily: ``import service.ray_app`` works without it; building the application or
``framecast serve --ray`` says how to install it (``pip install 'framecast[ray]'``).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.repository import Manifest, discover
from service.batcher import Ticket, Timing
from service.config import Settings, SettingsError, load_settings
from service.devices import Placement
from service.errors import FramecastError
from service.runner import ManifestView
from service.runtime import Runtime

if TYPE_CHECKING:  # Ray is optional and imported lazily (see _ray)
    from ray.serve import Application
    from ray.serve.handle import DeploymentHandle, DeploymentResponse

log = logging.getLogger("framecast.ray")

INSTALL_HINT = (
    "Ray Serve is not installed: pip install 'framecast[ray]' (or pip install 'ray[serve]')"
)


class RayMissing(RuntimeError):
    pass


def _ray():
    try:
        import ray
        from ray import serve
    except ModuleNotFoundError as e:
        raise RayMissing(f"{INSTALL_HINT} ({e})") from None
    return ray, serve


# --------------------------------------------------------------------------- the ingress side


class RemoteRunner(ManifestView):
    """The :class:`~service.runner.Runner` of a model served by a deployment: each call is
    forwarded to one of its replicas, whose own batcher queues it. The ingress holds no queue, so
    its ``queue_depth`` is 0 and ``expect`` gives no ticket; Serve bounds each replica with
    ``max_ongoing_requests``."""

    queue_depth = 0

    def __init__(self, handle: DeploymentHandle, info: dict):
        self.handle = handle
        self.manifest = Manifest(**info["manifest"])
        self.placement = Placement(**info["placement"])
        self.card = info["card"]
        self.warmup_ms = info["warmup_ms"]
        self.folder = Path(info["folder"])
        self.ready = True

    def expect(self) -> AbstractContextManager:
        return nullcontext(None)

    async def predict(
        self, context: np.ndarray, horizon: int, *, ticket: Ticket | None = None
    ) -> tuple[np.ndarray, Timing]:
        return await _unwrap(
            self.handle.predict.remote(np.asarray(context, np.float32), int(horizon))
        )

    async def classify(
        self, context: np.ndarray, *, ticket: Ticket | None = None
    ) -> tuple[np.ndarray, Timing]:
        return await _unwrap(self.handle.classify.remote(np.asarray(context, np.float32)))

    def close(self) -> None:
        pass


async def _unwrap(response: DeploymentResponse) -> tuple[np.ndarray, Timing]:
    """Await a deployment's answer; a domain error raised there is raised here as itself."""
    try:
        return await response
    except Exception as e:
        cause = getattr(e, "cause", None)  # ray.exceptions.RayTaskError keeps the original
        if isinstance(cause, FramecastError):
            raise cause from None
        raise


class RemoteRuntime(Runtime):
    """A :class:`Runtime` whose runners are deployments (``handles``: name → handle).

    Loading means asking each deployment what it serves; it always happens on the loader thread
    (the replica's event loop must not block on a handle), so ``/readyz`` answers 503 until every
    model answered.
    """

    live = False  # deployments are fixed when the application is built

    def __init__(self, settings: Settings, handles: dict, **kwargs):
        super().__init__(settings.model_copy(update={"load_mode": "background"}), **kwargs)
        self.handles = handles

    def load_runners(self) -> bool:
        for key, handle in sorted(self.handles.items()):
            self.status.models[key] = "loading"
            info = handle.info.remote().result(timeout_s=self.settings.inference_timeout_s * 10)
            runner = RemoteRunner(handle, info)
            self.registry.add(runner)
            self.placement = runner.placement
        return True


def _settings_payload(settings: Settings) -> dict:
    return settings.model_dump(mode="json")


# --------------------------------------------------------------------------- the application


def build_app(settings: Settings | None = None, *, models: list[Path] | None = None) -> Application:
    """The Ray Serve application: an ingress bound to one deployment per model folder.

    ``models``: model folders (default: every folder under ``settings.models_dir``); they must
    exist at the same path on every Ray node that may run a replica.
    """
    ray, serve = _ray()
    settings = settings or load_settings()
    folders = [Path(f).resolve() for f in (models or discover(settings.models_dir))]
    if not folders:
        raise SettingsError(f"no model folders under {settings.models_dir} (FRAMECAST_MODELS_DIR)")
    gpus = settings.ray_gpus_per_replica
    if gpus is None:
        have = ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0
        gpus = 1.0 if have and settings.device != "cpu" else 0.0
    payload = _settings_payload(settings)
    max_ongoing = max(8, int(getattr(settings, "max_batch_size", 8)))

    @serve.deployment(max_ongoing_requests=settings.max_queue)
    @serve.ingress()
    class FramecastIngress:
        def __init__(self, settings_payload: dict, **handles):
            self.settings = Settings(**settings_payload)
            self.runtime = RemoteRuntime(self.settings, handles)

        def __serve_build_asgi_app__(self):
            from service.app import create_app

            return create_app(self.settings, runtime=self.runtime)

    @serve.deployment
    class FramecastModel:
        def __init__(self, folder: str, settings_payload: dict):
            from service.devices import configure_devices
            from service.registry import load_folder
            from service.telemetry import Metrics

            settings = Settings(**settings_payload)
            # loads and warms; raises (and the replica fails) on error
            self.runner = load_folder(
                Path(folder),
                settings=settings,
                placement=configure_devices(settings),
                metrics=Metrics(),
            )
            self.runner.warmup_ms = (
                self.runner.submit(self.runner._warmup).result() if settings.warmup else 0.0
            )
            self.runner.ready = True

        def info(self) -> dict:
            r = self.runner
            return {
                "manifest": dataclasses.asdict(r.manifest),
                "placement": dataclasses.asdict(r.placement),
                "card": r.card,
                "warmup_ms": r.warmup_ms,
                "folder": str(r.folder),
            }

        async def predict(self, context: np.ndarray, horizon: int):
            return await self.runner.predict(context, horizon)

        async def classify(self, context: np.ndarray):
            return await self.runner.classify(context)

        def check_health(self) -> None:
            if not self.runner.ready:
                raise RuntimeError(f"model {self.runner.name!r} is not ready")

        def __del__(self):
            runner = getattr(self, "runner", None)
            if runner is not None:
                runner.close()

    handles = {}
    for folder in folders:
        name = folder.name
        handles[name] = FramecastModel.options(
            name=f"model-{name}",
            num_replicas=settings.ray_replicas,
            max_ongoing_requests=max_ongoing,
            ray_actor_options={"num_gpus": gpus},
        ).bind(str(folder), payload)
    return FramecastIngress.options(name="framecast").bind(payload, **handles)


def app_builder(args: dict | None = None) -> Application:
    """For ``serve run service.ray_app:app_builder`` and Serve config files: ``args`` are setting
    names (``models_dir``, ``ray_replicas``, …) that override FRAMECAST_* variables."""
    return build_app(load_settings(**(args or {})))


# ------------------------------------------------------------------------ `framecast serve --ray`


def serve_on_ray(settings: Settings) -> int:
    """Start (or join, FRAMECAST_RAY_ADDRESS / RAY_ADDRESS) Ray, deploy, and block until Ctrl-C."""
    try:
        ray, serve = _ray()
    except RayMissing as e:
        print(f"framecast serve --ray: {e}", file=sys.stderr)
        return 2
    ray.init(address=settings.ray_address, ignore_reinit_error=True)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    app = build_app(settings)
    log.info("deploying framecast on Ray Serve at http://%s:%d", settings.host, settings.port)
    try:
        serve.run(app, name="framecast", route_prefix="/", blocking=True)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
    return 0
