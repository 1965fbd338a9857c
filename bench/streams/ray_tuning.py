"""Ray Serve's throughput settings on and off, one run: what ``FRAMECAST_RAY_SERVE_TUNING`` saves.

``framecast serve --ray`` (two ingress replicas, the streams in one ``redis-server``,
``convlstm2d_next_frame`` alone) is started four times, one after the other: with Serve's proxy
and with direct ingress, each with ``FRAMECAST_RAY_SERVE_TUNING=false`` (Ray Serve's own
defaults) and ``true`` (the default: user code and routing on each replica's event loop, gRPC
between the proxy and the deployments; docs/ray.md). On each, for 1 and 32 open streams, ``wrk``
sends one PNG frame per request round-robin over the streams (``stream_scale.py``'s load and
measure), the streams carrying their state (``carry``) and re-reading a 10-frame window
(``window``) in turns, ``--rounds`` times; the median round's server CPU per frame is kept (the
framecast process tree, Ray's processes with it, and redis-server, from ``/proc``), every round's
beside it.

    python3 bench/streams/ray_tuning.py [--seconds 8] [--levels 1 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from harness import ROOT, child_env
from stream_bench import MODEL, _frames_png
from stream_scale import _all_ready, _measure, _median, _redis, _serve

OUT = ROOT / "docs" / "bench" / "ray_tuning.json"
MODES = ("carry", "window")


def parser(doc: str, *, seconds: float, out: Path) -> argparse.ArgumentParser:
    """The options of a Ray streams bench (this one, ray_where.py): wrk's seconds, the levels of
    open streams, the rounds (odd: the median is kept), the JSON written."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument(
        "--seconds", type=float, default=seconds, help=f"each wrk run (default {seconds:g})"
    )
    p.add_argument("--levels", type=int, nargs="+", default=[1, 32])
    p.add_argument("--rounds", type=int, default=3, help="odd; the median is kept (default 3)")
    p.add_argument("--out", type=Path, default=out)
    return p


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = p.parse_args(argv)
    if args.rounds < 1 or args.rounds % 2 == 0:
        p.error("--rounds must be odd (the median is one of the runs)")
    return args


def ray_env(tmp: Path, redis_port: int, levels: list[int]) -> dict:
    """``serve --ray``'s environment for a Ray streams bench: ``MODEL`` alone (a folder in
    ``tmp``), two ingress replicas, the streams in the Redis at ``redis_port``, room for the most
    streams of ``levels`` (those of a round and the next's, opened before the last closed)."""
    (tmp / "models").mkdir()
    (tmp / "models" / MODEL).symlink_to(ROOT / "models" / MODEL)
    most = str(max(levels) * 2 + 8)
    return {
        **child_env(),
        "FRAMECAST_LOAD_MODE": "blocking",
        "FRAMECAST_LOG_LEVEL": "warning",
        "FRAMECAST_MODELS_DIR": str(tmp / "models"),
        "FRAMECAST_STREAM_MAX_PER_MODEL": most,
        "FRAMECAST_STREAM_MAX_TOTAL": most,
        "FRAMECAST_STREAM_STORE": f"redis://127.0.0.1:{redis_port}/0",
        "FRAMECAST_RAY_INGRESS_REPLICAS": "2",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, seconds=8.0, out=OUT)
    args = parse(p, argv)
    frames = _frames_png()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="framecast-ray-tuning-") as t:
        tmp = Path(t)
        redis, port = _redis(tmp)
        env = ray_env(tmp, port, args.levels)
        try:
            for front, direct in (("proxy", "false"), ("direct ingress", "true")):
                for tuning in ("false", "true"):
                    name = f"{front.split()[0]}-{tuning}"
                    server = _serve(
                        tmp,
                        name,
                        {
                            **env,
                            "FRAMECAST_RAY_DIRECT_INGRESS": direct,
                            "FRAMECAST_RAY_SERVE_TUNING": tuning,
                        },
                        ["--ray"],
                    )
                    try:
                        server.wait_ready(timeout=900)
                        _all_ready(server.url)
                        pids = [server.proc.pid, redis.pid]
                        for n in args.levels:
                            runs: dict[str, list[dict]] = {m: [] for m in MODES}
                            for _ in range(args.rounds):
                                for mode in MODES:
                                    got = _measure(
                                        server.url, pids, frames, n, args.seconds, tmp, port, mode
                                    )
                                    runs[mode].append(got)
                            for mode, got in runs.items():
                                m = _median(got)
                                row = {"front": front, "tuning": tuning == "true", "mode": mode}
                                row.update(m)
                                rows.append(row)
                                print(
                                    f"{front:14s} tuning={tuning:5s} {n:3d} streams {mode:6s}: "
                                    f"{m['frames_s']} frames/s, {m['server_cpu_ms_per_frame']} "
                                    f"ms CPU/frame {m['server_cpu_ms_per_frame_per_round']}",
                                    flush=True,
                                )
                    finally:
                        server.stop()
        finally:
            redis.terminate()
            redis.wait(30)

    def cpu(front: str, tuning: bool, mode: str, n: int) -> float:
        (r,) = (
            r
            for r in rows
            if (r["front"], r["tuning"], r["mode"], r["streams"]) == (front, tuning, mode, n)
        )
        return r["server_cpu_ms_per_frame"]

    tuned_over_default = {
        f"{front}, {n} streams, {mode}": round(
            cpu(front, True, mode, n) / cpu(front, False, mode, n), 3
        )
        for front in ("proxy", "direct ingress")
        for n in args.levels
        for mode in MODES
    }
    carry_over_window = {
        f"{front}, {n} streams, tuning {'on' if tuning else 'off'}": round(
            cpu(front, tuning, "carry", n) / cpu(front, tuning, "window", n), 3
        )
        for front in ("proxy", "direct ingress")
        for n in args.levels
        for tuning in (False, True)
    }
    for k, v in tuned_over_default.items():
        print(f"tuned / Ray's defaults, {k}: {v}")
    for k, v in carry_over_window.items():
        print(f"carry / window, {k}: {v}")
    cmd = "python3 bench/streams/ray_tuning.py"
    cmd += f" --seconds {args.seconds:g}" if args.seconds != 8 else ""
    cmd += " --levels " + " ".join(map(str, args.levels)) if args.levels != [1, 32] else ""
    cmd += f" --rounds {args.rounds}" if args.rounds != 3 else ""
    body = {
        "what": f"one PNG frame per request to one of N open live streams of {MODEL} on "
        "`framecast serve --ray` (2 ingress replicas, Redis), FRAMECAST_RAY_SERVE_TUNING off "
        "and on; server CPU is the framecast process tree (Ray's processes with it) and "
        "redis-server from /proc",
        "command": cmd,
        "host": f"{platform.machine()}, {os.cpu_count()} cores",
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "rows": rows,
        "tuned_over_default": tuned_over_default,
        "carry_over_window": carry_over_window,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(body, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
