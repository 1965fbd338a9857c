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

The ingress's runtime is in ``ingress.py``, ``framecast serve --ray`` in ``launch.py``. Ray is
imported lazily (``import service.runtime.ray.app`` works without it). Model files: the same
path on every node, or ``FRAMECAST_RAY_MODELS_URI`` (fetched and sha256-checked per node).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.repository import discover
from service.config import Settings, SettingsError, load_settings
from service.runtime.lifecycle import Lifecycle, ModelState
from service.runtime.ray.coalesce import Failed
from service.runtime.ray.ingress import Fed, RayMissing, RemoteRunner, RemoteRuntime, ray_modules
from service.runtime.ray.model_fetch import ModelFetchError, fetch, list_models

if TYPE_CHECKING:  # Ray is optional and imported lazily (see ray_modules)
    from ray.serve import Application

__all__ = [
    "RayMissing",
    "RemoteRunner",
    "RemoteRuntime",
    "app_builder",
    "build_app",
    "build_apps",
    "cpus_needed",
    "model_app_name",
    "model_options",
]


def _settings_payload(settings: Settings) -> dict:
    return settings.model_dump(mode="json")


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
    opts: dict = {"ray_actor_options": actor, "logging_config": serve_logging(settings)}
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


def serve_logging(settings: Settings) -> dict:
    """Serve's logging options of every framecast deployment: its access log (a line per call
    in each replica's log file) only with FRAMECAST_RAY_ACCESS_LOG."""
    return {"enable_access_log": settings.ray_access_log}


def most_replicas(settings: Settings, name: str) -> int:
    """The most replicas model ``name``'s deployment runs (its max_replicas when it
    autoscales)."""
    o = model_options(settings, name)
    return int(o.get("num_replicas") or o["autoscaling_config"]["max_replicas"])


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
    _, serve = ray_modules()
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

            settings = self.settings = Settings(**settings_payload)
            self.name = Path(folder).name  # its deployment's (FRAMECAST_RAY_MODEL_OPTIONS key)
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
                folder = str(
                    fetch(settings.ray_models_uri, Path(folder).name, settings.model_cache)
                )
            # loads and warms (the same life as on the plain server); raises, and the replica
            # fails, on error
            self.models = Lifecycle()
            self.models.loading(Path(folder).name)
            self.runner = load_folder(
                Path(folder), settings=settings, placement=placement, metrics=Metrics()
            )
            self.models.loaded(self.runner)
            self.models.warm(self.runner, enabled=settings.warmup)

        def info(self) -> dict:
            r = self.runner
            return {
                "manifest": dataclasses.asdict(r.manifest),
                "placement": dataclasses.asdict(r.placement),
                "card": r.card,
                "warmup_ms": r.warmup_ms,
                "folder": str(r.folder),
                "version": r.version,  # a versioned folder: the highest its policy serves
                "state_shapes": [list(x) for x in r.state_shapes],  # carried-state streams
                "most_replicas": most_replicas(self.settings, self.name),  # calls in flight
            }

        async def predict(self, context: np.ndarray, horizon: int):
            return await self.runner.predict(context, horizon)

        async def classify(self, context: np.ndarray):
            return await self.runner.classify(context)

        async def feed(self, frames: np.ndarray, steps: int, states: list | None):
            """A stream's step, its state carried in and out (the replica keeps none): the
            predictions made after each frame, the states after the last, the rollout."""
            fed, timing = await self.runner.feed(frames, steps, states)
            return Fed(fed.after, fed.kept, fed.outputs), timing

        async def calls(self, kind: str, items: list[tuple]) -> list:
            """Calls of one kind that an ingress sent together (``coalesce.py``), run at once
            so that this replica's batcher reads them in one model call: each one's answer, or
            its error as :class:`Failed`, in order."""
            run: Any = {
                "predict": self.predict,
                "classify": self.classify,
                "feed": self.feed,
            }[kind]
            got = await asyncio.gather(*(run(*args) for args in items), return_exceptions=True)
            return [Failed(g) if isinstance(g, BaseException) else g for g in got]

        def check_health(self) -> None:
            st = self.models.status(self.runner.name)
            if st is None or st.state is not ModelState.READY:
                raise RuntimeError(f"model {self.runner.name!r} is not ready ({st})")

        def __del__(self):
            runner = getattr(self, "runner", None)
            if runner is not None:
                runner.close()

    # (mypy keeps a class's own type under a class decorator: @serve.deployment made these
    # Deployments, hence the two ignores below)
    deployments: dict[str, Application] = {}  # model name -> its bound deployment
    for folder in folders:
        name = folder.name
        deployments[name] = FramecastModel.options(  # type: ignore[attr-defined]
            name=f"model-{name}",
            max_ongoing_requests=max_ongoing,
            **model_options(settings, name),
        ).bind(str(folder), payload)
    spread = {}
    if settings.ray_ingress_per_node is not None:
        spread["max_replicas_per_node"] = settings.ray_ingress_per_node
    ingress = FramecastIngress.options(  # type: ignore[attr-defined]
        name="framecast",
        num_replicas=settings.ray_ingress_replicas,
        logging_config=serve_logging(settings),
        ray_actor_options={"num_cpus": settings.ray_ingress_cpus},
        **spread,
    )
    if not split:
        return ingress.bind(payload, **deployments), {}
    names = {name: model_app_name(name) for name in deployments}
    return ingress.bind(payload, model_apps=names), deployments


def app_builder(args: dict | None = None) -> Application:
    """For ``serve run service.runtime.ray.app:app_builder`` and Serve config files: ``args`` are
    setting names (``models_dir``, ``ray_replicas``, …) that override FRAMECAST_* variables."""
    return build_app(load_settings(**(args or {})))
