"""`framecast serve`: the command that starts the HTTP service (the app is in service/app.py).

``service.cli`` registers it with :func:`add_serve_subcommand`. The app and the Ray deployment are
imported when the command runs, so building the CLI parser stays light. Once it answers, it logs
the addresses it serves (``service.cli.sockets.served_urls``): the page, the API docs, the REST
API and, when on, gRPC; while the models load in the background it says so first, and the
addresses follow once they are ready. The command blocks until it is stopped (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only
    from service.config import Settings
    from service.runtime.server import Runtime

log = logging.getLogger("framecast")


def add_serve_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``serve [--host --port --models-dir --log-level]`` on an argparse subparsers."""
    p = subparsers.add_parser(
        "serve",
        help="start the HTTP service",
        description="Start the framecast HTTP service (the web page, the REST API, its docs and, "
        "with --grpc-port, gRPC) and serve until stopped; it logs its addresses once ready. "
        "Flags override FRAMECAST_* settings.",
    )
    p.add_argument("--host", help="interface to bind (FRAMECAST_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (FRAMECAST_PORT, default 8000)")
    p.add_argument(
        "--grpc-port",
        type=int,
        help="also serve the V2 protocol over gRPC on this port (FRAMECAST_GRPC_PORT; Triton's "
        "convention 8001; default: no gRPC)",
    )
    p.add_argument(
        "--models-dir",
        help="folder of model folders (FRAMECAST_MODELS_DIR, default: the bundled models/)",
    )
    p.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug"],
        help="FRAMECAST_LOG_LEVEL (default info)",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="server processes on the port (FRAMECAST_WORKERS, default 1): use them on a "
        "machine with more cores than one process's front end fills; each holds its own copy "
        "of every model (memory x N) and batches only its own requests",
    )
    p.add_argument(
        "--ray",
        action="store_true",
        help="deploy on Ray Serve instead: one deployment per model, "
        "FRAMECAST_RAY_REPLICAS replicas each (needs pip install 'framecast[ray]'; "
        "see docs/ray.md)",
    )
    p.set_defaults(func=serve_command)
    return p


def serve_command(args: argparse.Namespace) -> int:
    """Run the service until it is stopped (exit 0 after SIGTERM); 2 for bad settings."""
    from service.config import SettingsError, load_settings
    from service.errors import LoadError

    try:
        settings = load_settings(
            host=args.host,
            port=args.port,
            grpc_port=getattr(args, "grpc_port", None),
            models_dir=args.models_dir,
            log_level=args.log_level,
            workers=getattr(args, "workers", None),
        )
    except SettingsError as e:
        print(f"framecast serve: {e}", file=sys.stderr)
        return 2
    if getattr(args, "ray", False):
        from service.runtime.ray.launch import serve_on_ray  # imports ray lazily, or says why not

        return serve_on_ray(settings)
    from models.repository import ManifestError
    from service.runtime.registry import discover_folders

    try:
        if not discover_folders(settings.models_dir):
            raise ManifestError(
                f"no model folders (a folder holding model.keras, model.h5 or manifest.json) "
                f"under {settings.models_dir}"
            )
    except ManifestError as e:
        print(f"framecast serve: {e} (--models-dir / FRAMECAST_MODELS_DIR)", file=sys.stderr)
        return 1
    from service.cli.sockets import ListenError, check_free, listening_socket

    try:  # before anything loads: a port in use or a bad host is said at once
        if settings.grpc_port is not None and not settings.reuse_port:
            check_free(settings.host, settings.grpc_port)  # a worker's: the supervisor's check
        if settings.workers > 1:  # the supervisor; each worker binds with SO_REUSEPORT
            check_free(settings.host, settings.port)
            sockets = None
        else:
            sock = listening_socket(settings.host, settings.port, reuse_port=settings.reuse_port)
            sockets = [sock]
    except ListenError as e:
        print(f"framecast serve: {e}", file=sys.stderr)
        return 1
    if settings.workers > 1:
        from service.cli.workers import run_workers

        return run_workers(settings)
    import signal

    from service.app import create_app
    from service.http.connections import server_config
    from service.http.drain import DrainingServer
    from service.runtime.server import Runtime

    fatal: list[str] = []
    server: DrainingServer | None = None

    def on_fatal(detail: str) -> None:  # start-up ended with no model served: stop, exit 1
        fatal.append(detail)
        if server is not None:
            server.should_exit = True

    runtime = Runtime(settings, on_fatal=on_fatal)
    app = create_app(settings, runtime=runtime)

    def on_term(signum: int, frame: object) -> None:  # uvicorn re-raises SIGTERM after its
        log.info("stopped after signal %d", signum)  # graceful shutdown...

    signal.signal(signal.SIGTERM, on_term)  # ...so exit 0 then, instead of dying by the signal
    # SIGHUP: read the keys file again, with no restart (without one: nothing to do)
    signal.signal(signal.SIGHUP, lambda *_: app.state.keys.reload("SIGHUP"))
    # SIGTERM drains first (new requests 503 until those in flight are answered, at most
    # shutdown_grace_s: service/http/drain.py), then uvicorn stops: socket, connections,
    # lifespan. Connections are guarded below ASGI (header timeout, connection cap, keep-alive
    # limits: service/http/connections.py).
    server = DrainingServer(
        server_config(app, settings, runtime.metrics),
        app.state.drain,
        settings.shutdown_grace_s,
        on_serving=lambda: _on_serving(settings, runtime),
    )
    try:
        server.run(sockets=sockets)
    except LoadError as e:  # load_mode=blocking: start-up raised
        fatal.append(str(e))
    except SystemExit:  # uvicorn's exit 3 after a failed lifespan start-up (load_mode=blocking)
        if not fatal:  # one that did not come from loading: uvicorn's word stands
            raise
    if fatal or (settings.load_mode == "blocking" and not runtime.ready):
        print(f"framecast serve: {fatal[0] if fatal else 'start-up failed'}", file=sys.stderr)
        return 1
    return 0


def _on_serving(settings: Settings, runtime: Runtime) -> None:
    """The sockets listen: a worker of ``--workers`` tells its supervisor (which logs the
    addresses); a server on its own logs them now, or once its models are ready."""
    from service.cli.sockets import served_urls

    if settings.ready_fd is not None:  # a worker of --workers: the supervisor says where
        _tell_ready(settings.ready_fd)
        return
    if runtime.ready:
        log.info("serving at %s", served_urls(settings))
        return
    log.info(
        "listening on %s; loading the models (GET /readyz answers 200 once they are ready)",
        served_urls(settings).split(" ", 1)[0],
    )

    def when_ready() -> None:
        if runtime.wait_ready():
            log.info("serving at %s", served_urls(settings))

    threading.Thread(target=when_ready, name="framecast-ready-log", daemon=True).start()


def _tell_ready(fd: int | None) -> None:
    """Tell the supervisor of ``--workers`` that this worker takes connections now (one byte on
    its pipe, FRAMECAST_READY_FD); a supervisor gone meanwhile is no error of ours."""
    if fd is None:
        return
    try:
        os.write(fd, b"1")
        os.close(fd)
    except OSError:
        pass
