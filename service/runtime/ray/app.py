"""The same FastAPI app on Ray Serve: one ingress deployment, one deployment per model.

``framecast serve --ray``, or ``serve run service.runtime.ray.app:app_builder`` (docs/ray.md).

- ``FramecastIngress`` (``@serve.ingress``) runs ``create_app(settings)`` unchanged: every route,
  ``/v1``, ``/v2``, the page, errors and limits are the plain server's. Its runtime is a
  :class:`RemoteRuntime` whose runners forward ``predict``/``classify`` to the model deployments.
- ``FramecastModel`` (one deployment per model folder) loads its one model with the plain
  :func:`~service.runtime.registry.load_folder`, so each replica has its own worker and
  micro-batcher. Its replicas (fixed, or autoscaled between ``FRAMECAST_RAY_MIN/MAX_REPLICAS``)
  reserve ``FRAMECAST_RAY_CPUS_PER_REPLICA`` CPUs (0.2: fits a small machine) and
  ``FRAMECAST_RAY_GPUS_PER_REPLICA`` GPUs; unset, none, and the replica picks its device where it
  runs (a GPU of its node when it sees one).
- Readiness: each ingress replica's :class:`RemoteRuntime` loads in the background, so ``/readyz``
  answers 503 at once; it turns 200 once Serve reports every replica of the application running.

Ray is imported lazily (``import service.runtime.ray.app`` works without it). Model files: the same
path on every node, or ``FRAMECAST_RAY_MODELS_URI`` (fetched and sha256-checked per node).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.repository import Manifest, discover
from service.config import Settings, SettingsError, load_settings
from service.errors import FramecastError
from service.runtime.batcher import Ticket, Timing
from service.runtime.devices import Placement
from service.runtime.ray.model_fetch import ModelFetchError, fetch, list_models
from service.runtime.runner import ManifestView
from service.runtime.server import Runtime

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
    """The :class:`~service.runtime.runner.Runner` of a model served by a deployment: each call is
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

    def load_runners(self) -> bool:
        _, serve = _ray()
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
            for key in keys - {d.removeprefix("model-") for d in deployments}:
                self.status.models[key] = "loading: not deployed yet"
            for dep_name, dep in sorted(deployments.items()):
                text = _replica_text(dep)
                key = dep_name.removeprefix("model-")
                if key in keys:
                    self.status.models[key] = text
                if dep.status == "DEPLOY_FAILED":
                    failed.append(f"{dep_name}: {dep.message}")
                elif dep.status not in RUNNING_STATES:
                    waiting.append(f"{dep_name} {text}")
            if failed:
                self._fail("deployment failed: " + "; ".join(failed))
                return False
            if not waiting:
                break
            self.status.detail = "waiting for replicas: " + "; ".join(waiting)
            time.sleep(self.poll_s)
        for key, app in self.model_apps.items():
            self.handles[key] = serve.get_deployment_handle(f"model-{key}", app_name=app)
        for _key, handle in sorted(self.handles.items()):
            info = handle.info.remote().result(timeout_s=self.settings.inference_timeout_s)
            runner = RemoteRunner(handle, info)
            self.registry.add(runner)
            self.placement = runner.placement
        return not self._closed


RUNNING_STATES = ("HEALTHY", "UPSCALING", "DOWNSCALING")  # every replica it was asked for ran


def _replica_text(dep: object) -> str:
    """'loading: 1/2 replicas running (STARTING 1)' from Serve's DeploymentStatusOverview."""
    states = dict(getattr(dep, "replica_states", {}) or {})
    running = states.pop("RUNNING", 0)
    if dep.status in RUNNING_STATES:
        return "ready" if not states else f"ready: {running} replicas running"
    others = ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
    text = f"loading: {running}/{running + sum(states.values())} replicas running"
    text += f" ({others})" if others else ""
    message = getattr(dep, "message", "")
    return f"{text}; {message}" if message else text


def _settings_payload(settings: Settings) -> dict:
    return settings.model_dump(mode="json")


# --------------------------------------------------------------------------- the application


MODEL_OPTION_KEYS = (
    "replicas",
    "min_replicas",
    "max_replicas",
    "target_ongoing_requests",
    "cpus",
    "gpus",
)


def model_options(settings: Settings, name: str) -> dict:
    """Serve options of model ``name``'s deployment: replicas or autoscaling, CPUs, GPUs
    (``FRAMECAST_RAY_*``, then ``FRAMECAST_RAY_MODEL_OPTIONS[name]``)."""
    over = dict(settings.ray_model_options.get(name, {}))
    unknown = sorted(set(over) - set(MODEL_OPTION_KEYS))
    if unknown:
        raise SettingsError(
            f"FRAMECAST_RAY_MODEL_OPTIONS[{name!r}]: unknown key(s) {unknown}; "
            f"allowed: {', '.join(MODEL_OPTION_KEYS)}"
        )
    replicas = int(over.get("replicas", settings.ray_replicas))
    mx = over.get("max_replicas", settings.ray_max_replicas)
    gpus = over.get("gpus", settings.ray_gpus_per_replica)
    actor = {"num_cpus": float(over.get("cpus", settings.ray_cpus_per_replica))}
    actor["num_gpus"] = float(gpus or 0)  # unset: no reservation; the replica picks its device
    opts: dict = {"ray_actor_options": actor}
    if mx is None:
        opts["num_replicas"] = replicas
        return opts
    mn = int(over.get("min_replicas", settings.ray_min_replicas or replicas))
    if not mn <= int(mx):
        raise SettingsError(f"model {name!r}: min_replicas {mn} > max_replicas {int(mx)}")
    opts["autoscaling_config"] = {
        "min_replicas": mn,
        "initial_replicas": min(max(replicas, mn), int(mx)),
        "max_replicas": int(mx),
        "target_ongoing_requests": float(
            over.get("target_ongoing_requests", settings.ray_target_ongoing_requests)
        ),
    }
    return opts


def cpus_needed(settings: Settings, names: list[str]) -> float:
    """Logical CPUs the application reserves at start (initial replicas)."""
    total = settings.ray_ingress_replicas * settings.ray_ingress_cpus
    for name in names:
        o = model_options(settings, name)
        n = o.get("num_replicas") or o["autoscaling_config"]["initial_replicas"]
        total += n * o["ray_actor_options"]["num_cpus"]
    return total


def build_app(settings: Settings | None = None, *, models: list[Path] | None = None) -> Application:
    """The Ray Serve application: an ingress bound to one deployment per model folder.

    ``models``: model folders (default: every folder under ``settings.models_dir``); they must
    exist at the same path on every Ray node that may run a replica. Nothing here asks the
    cluster anything: building works before ``ray.init`` (``serve run``) and gives the same
    application wherever it is built.
    """
    ingress, _ = build_apps(settings, models=models, split=False)
    return ingress


def model_app_name(name: str) -> str:
    return f"framecast-model-{name}"


def build_apps(
    settings: Settings | None = None, *, models: list[Path] | None = None, split: bool = True
) -> tuple[Application, dict[str, Application]]:
    """The ingress application and, with ``split``, one application per model (name → app) that
    the ingress finds by name: ``framecast serve --ray`` deploys the ingress first, so that
    ``/readyz`` answers 503 at once (Serve holds requests to a deployment with no running replica)
    while the models start. Without ``split``: one application, the models bound to the ingress.
    """
    _, serve = _ray()
    settings = settings or load_settings()
    if settings.ray_models_uri:  # each replica fetches its folder (ray/model_fetch.py)
        try:
            folders = [Path(n) for n in list_models(settings.ray_models_uri)]
        except ModelFetchError as e:
            raise SettingsError(f"{e} (FRAMECAST_RAY_MODELS_URI)") from None
    else:
        folders = [Path(f).resolve() for f in (models or discover(settings.models_dir))]
    if not folders:
        raise SettingsError(f"no model folders under {settings.models_dir} (FRAMECAST_MODELS_DIR)")
    unknown = sorted(set(settings.ray_model_options) - {f.name for f in folders})
    if unknown:
        raise SettingsError(f"FRAMECAST_RAY_MODEL_OPTIONS names no model folder: {unknown}")
    payload = _settings_payload(settings)
    max_ongoing = max(8, int(getattr(settings, "max_batch_size", 8)))

    @serve.deployment(max_ongoing_requests=settings.max_queue)
    @serve.ingress()
    class FramecastIngress:
        def __init__(self, settings_payload: dict, model_apps: dict | None = None, **handles):
            self.settings = Settings(**settings_payload)
            self.runtime = RemoteRuntime(self.settings, handles, model_apps)

        def __serve_build_asgi_app__(self):
            from service.app import create_app

            return create_app(self.settings, runtime=self.runtime)

    @serve.deployment
    class FramecastModel:
        def __init__(self, folder: str, settings_payload: dict):
            from service.runtime.devices import configure_devices
            from service.runtime.registry import load_folder
            from service.telemetry import Metrics

            settings = Settings(**settings_payload)
            # The device is chosen here, where the replica runs: the GPUs Ray gave it
            # (CUDA_VISIBLE_DEVICES) or, with none reserved, those of its node; else the CPU.
            try:
                placement = configure_devices(settings)
            except ModuleNotFoundError as e:  # [ray] without [cpu] or [gpu] on this node
                raise RuntimeError(f"{e}: pip install 'framecast[cpu]' (or '[gpu]') here") from e
            logging.getLogger("ray.serve").info(  # Serve's logger: set up in every replica
                "replica of %s serving on %s", Path(folder).name, placement.description
            )
            if settings.ray_models_uri:  # this node's sha256-checked copy
                folder = str(fetch(settings.ray_models_uri, Path(folder).name))
            # loads and warms; raises (and the replica fails) on error
            self.runner = load_folder(
                Path(folder), settings=settings, placement=placement, metrics=Metrics()
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

    models = {}
    for folder in folders:
        name = folder.name
        models[name] = FramecastModel.options(
            name=f"model-{name}", max_ongoing_requests=max_ongoing, **model_options(settings, name)
        ).bind(str(folder), payload)
    ingress = FramecastIngress.options(
        name="framecast",
        num_replicas=settings.ray_ingress_replicas,
        ray_actor_options={"num_cpus": settings.ray_ingress_cpus},
    )
    if not split:
        return ingress.bind(payload, **models), {}
    names = {name: model_app_name(name) for name in models}
    return ingress.bind(payload, model_apps=names), models


def app_builder(args: dict | None = None) -> Application:
    """For ``serve run service.runtime.ray.app:app_builder`` and Serve config files: ``args`` are
    setting names (``models_dir``, ``ray_replicas``, …) that override FRAMECAST_* variables."""
    return build_app(load_settings(**(args or {})))


# ------------------------------------------------------------------------ `framecast serve --ray`


def connect(settings: Settings) -> None:
    """Join the cluster at FRAMECAST_RAY_ADDRESS, or start a new local Ray instance: never a
    running cluster by accident (``address="local"`` ignores RAY_ADDRESS and ``ray start``)."""
    ray, _ = _ray()
    if ray.is_initialized():
        return
    if settings.ray_address:
        ray.init(address=settings.ray_address)
        log.info("joined the Ray cluster at %s (FRAMECAST_RAY_ADDRESS)", settings.ray_address)
    else:
        ray.init(address="local")
        log.info("started a local Ray instance (set FRAMECAST_RAY_ADDRESS to join a cluster)")


def serve_on_ray(settings: Settings) -> int:
    """Start a local Ray (or join FRAMECAST_RAY_ADDRESS), deploy, and block until Ctrl-C."""
    try:
        ray, serve = _ray()
    except RayMissing as e:
        print(f"framecast serve --ray: {e}", file=sys.stderr)
        return 2
    from service.http.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    ingress, models = build_apps(settings)  # bad settings fail here, before Ray starts
    connect(settings)
    names = list(models)
    need, have = cpus_needed(settings, names), ray.cluster_resources()
    if need > have.get("CPU", 0) + 1e-9:
        log.warning(
            "the application reserves %.2f CPUs and the cluster has %s: some replicas will wait "
            "for resources (lower FRAMECAST_RAY_CPUS_PER_REPLICA / FRAMECAST_RAY_REPLICAS, or "
            "add nodes)",
            need,
            have.get("CPU", 0),
        )
    serve.start(http_options={"host": settings.host, "port": settings.port})
    log.info(
        "deploying framecast on Ray Serve at http://%s:%d (%d models; %.2f CPUs reserved of "
        "%s); /readyz answers 503 until every replica runs",
        settings.host,
        settings.port,
        len(names),
        need,
        have.get("CPU", 0),
    )
    import signal

    def on_term(signum: int, frame: object) -> None:  # docker stop, systemd: as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        serve.run(ingress, name="framecast", route_prefix="/")  # returns once it runs
        serve.run_many(
            [
                serve.RunTarget(app, name=model_app_name(n), route_prefix=None)
                for n, app in models.items()
            ],
            wait_for_applications_running=False,
        )
        while True:  # until Ctrl-C; /readyz says when every replica runs
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()  # a local instance stops with it; a joined cluster keeps running
    return 0
