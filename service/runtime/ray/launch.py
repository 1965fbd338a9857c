"""``framecast serve --ray``: start a local Ray (or join a cluster), deploy, serve until Ctrl-C."""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path

from service.config import Settings
from service.runtime.ray.app import build_apps, cpus_needed, model_app_name
from service.runtime.ray.ingress import RayMissing, ray_modules
from service.streams.folder import make_stream_dir

log = logging.getLogger("framecast.ray")


def connect(settings: Settings) -> None:
    """Join the cluster at FRAMECAST_RAY_ADDRESS, or start a new local Ray instance: never a
    running cluster by accident (``address="local"`` ignores RAY_ADDRESS and ``ray start``)."""
    ray, _ = ray_modules()
    if ray.is_initialized():
        return
    if settings.ray_address:
        ray.init(address=settings.ray_address)
        log.info("joined the Ray cluster at %s (FRAMECAST_RAY_ADDRESS)", settings.ray_address)
    else:  # a stream's states travel with each step: passed inline, not via the object store
        config = {"max_direct_call_object_size": settings.ray_inline_bytes}
        ray.init(address="local", _system_config=config)
        log.info("started a local Ray instance (set FRAMECAST_RAY_ADDRESS to join a cluster)")


def share_streams(settings: Settings) -> tuple[Settings, str | None]:
    """With more than one ingress replica the live streams must live where every replica reads
    them: FRAMECAST_STREAM_STORE (Redis, for replicas on several nodes) or FRAMECAST_STREAM_DIR
    when set; on a local Ray, a new folder in memory (returned, to remove at the end). Joining a
    cluster without one, a replica's streams are its own: said in the log, since a frame sent
    through another replica then answers 404."""
    shared = settings.stream_dir is not None or settings.stream_store not in (None, "memory")
    if settings.ray_ingress_replicas < 2 or shared:
        return settings, None
    if settings.ray_address:
        log.warning(
            "%d ingress replicas and no FRAMECAST_STREAM_STORE: each replica keeps its own live "
            "streams, and a stream's frames that reach another replica answer 404; set "
            "FRAMECAST_STREAM_STORE=redis://HOST:PORT/DB (a Redis every ingress node reaches) "
            "or use one ingress replica",
            settings.ray_ingress_replicas,
        )
        return settings, None
    made = make_stream_dir()
    log.info(
        "live streams shared by the %d ingress replicas in %s", settings.ray_ingress_replicas, made
    )
    return settings.model_copy(update={"stream_dir": Path(made)}), made


def serve_on_ray(settings: Settings) -> int:
    """Start a local Ray (or join FRAMECAST_RAY_ADDRESS), deploy, and block until Ctrl-C."""
    try:
        ray, serve = ray_modules()
    except RayMissing as e:
        print(f"framecast serve --ray: {e}", file=sys.stderr)
        return 2
    from service.http.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    settings, made_dir = share_streams(settings)
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
        from service.cli.sockets import served_urls

        log.info(
            "serving at %s; the models deploy (GET /readyz answers 200 once every replica runs)",
            served_urls(settings),
        )
        while True:  # until Ctrl-C; /readyz says when every replica runs
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()  # a local instance stops with it; a joined cluster keeps running
        if made_dir is not None:  # the live streams end with the server
            shutil.rmtree(made_dir, ignore_errors=True)
    return 0
