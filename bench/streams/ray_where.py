"""Where a streamed frame's CPU goes on Ray, process by process, carried and windowed.

``framecast serve --ray`` as it comes (Serve's proxy in front unless ``--direct``, Ray Serve's
throughput settings, two ingress replicas, the streams in one ``redis-server``,
``convlstm2d_next_frame`` alone). For each level of open streams, ``wrk`` sends one PNG frame per
request round-robin over them (``stream_scale.py``'s load), the streams carrying their state
(``carry``) and re-reading a 10-frame window (``window``) in turns, ``--rounds`` times. Each run
reads, from ``/proc`` before and after, the CPU of every process of the server's tree and of
redis-server, summed by role:

- ``proxy``: Serve's proxy actor (absent with direct ingress: HAProxy is ``other``);
- ``ingress``: framecast's ingress replicas (HTTP, the stream store, the call to the model);
- ``model``: the model's replicas (the step or the window, and Ray's side of each call);
- ``controller``: Serve's controller;
- ``redis``: redis-server;
- ``other``: Ray's own daemons (raylet, GCS, dashboard agents), the driver, HAProxy.

The median round (by total CPU per frame) of each mode is kept, every round's total beside it.
What it answers: how much of a frame is the model's work and how much each Ray hop costs, which
decides how far carrying the state (one step) can fall below re-reading the window (ten).

    python3 bench/streams/ray_where.py [--seconds 10] [--levels 1 32] [--rounds 3] [--direct]
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from harness import ROOT, _cpu_s, _stat_fields
from ray_tuning import parse, parser, ray_env
from stream_bench import MODEL, STREAM_LUA, _frames_png
from stream_scale import MAX_CONNECTIONS, _all_ready, _close, _open, _redis, _serve, _wrk

OUT = ROOT / "docs" / "bench" / "ray_where.json"
MODES = ("carry", "window")
ROLES = ("proxy", "ingress", "model", "controller", "redis", "other")


def role(cmdline: str) -> str:
    """The role of one process from its command line (Ray names its actors' processes)."""
    if cmdline.startswith("ray::ProxyActor"):
        return "proxy"
    if cmdline.startswith("ray::ServeController"):
        return "controller"
    if cmdline.startswith("ray::ServeReplica:"):  # ray::ServeReplica:<app>:<deployment>
        deployment = cmdline.split()[0].split(":")[-1]
        return "model" if deployment.startswith("model-") else "ingress"
    return "other"


def tree(root: int) -> dict[int, tuple[str, float]]:
    """pid → (role, CPU seconds) for ``root`` and every live descendant."""
    children: dict[int, list[int]] = {}
    seen: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(f"/proc/{entry}/stat")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        seen[pid] = (role(cmd), _cpu_s(fields))
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in seen:
            out[pid] = seen[pid]
        todo += children.get(pid, [])
    return out


def by_role(before: dict, after: dict, redis_s: float) -> dict[str, float]:
    """CPU seconds spent by each role between two :func:`tree` readings (a process that started
    in between counts from zero; one that ended is lost, which a steady server does not do)."""
    spent = dict.fromkeys(ROLES, 0.0)
    for pid, (r, cpu) in after.items():
        spent[r] += cpu - before.get(pid, (r, 0.0))[1]
    spent["redis"] = redis_s
    return spent


def measure(url: str, server_pid: int, redis_pid: int, frames: list, n: int, seconds: float,
            tmp: Path, mode: str) -> dict:  # fmt: skip
    one = tmp / "frame.png"
    one.write_bytes(frames[10])
    ids = _open(url, frames, n, mode)
    script = STREAM_LUA.format(body=one, ids=",".join(ids), threads="{threads}")
    redis0 = _cpu_s(_stat_fields(f"/proc/{redis_pid}/stat"))
    before, t0 = tree(server_pid), time.monotonic()
    r = _wrk(url + "/", script, min(n, MAX_CONNECTIONS), seconds)
    after, wall = tree(server_pid), time.monotonic() - t0
    spent = by_role(before, after, _cpu_s(_stat_fields(f"/proc/{redis_pid}/stat")) - redis0)
    _close(url, ids)
    done = max(1, r["requests"])
    ms = {k: round(v * 1000.0 / done, 3) for k, v in spent.items()}
    return {
        "streams": n,
        "frames": r["requests"],
        "frames_s": round(r["req_s"], 1),
        "p50_ms": round(r["latency_ms"][50], 2),
        "non_2xx": r["non_2xx"],
        "cpu_ms_per_frame": round(sum(spent.values()) * 1000.0 / done, 3),
        "cpu_ms_per_frame_by_role": ms,
        "cpu_share": round(sum(spent.values()) / wall, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, seconds=10.0, out=OUT)
    p.add_argument("--direct", action="store_true", help="FRAMECAST_RAY_DIRECT_INGRESS=true")
    args = parse(p, argv)
    frames = _frames_png()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="framecast-ray-where-") as t:
        tmp = Path(t)
        redis, port = _redis(tmp)
        env = ray_env(tmp, port, args.levels)
        env["FRAMECAST_RAY_DIRECT_INGRESS"] = "true" if args.direct else "false"
        server = _serve(tmp, "ray", env, ["--ray"])
        try:
            server.wait_ready(timeout=900)
            _all_ready(server.url)
            for n in args.levels:
                runs: dict[str, list[dict]] = {m: [] for m in MODES}
                for _ in range(args.rounds):
                    for mode in MODES:
                        runs[mode].append(
                            measure(
                                server.url,
                                server.proc.pid,
                                redis.pid,
                                frames,
                                n,
                                args.seconds,
                                tmp,
                                mode,
                            )  # fmt: skip
                        )
                for mode, got in runs.items():
                    got.sort(key=lambda g: g["cpu_ms_per_frame"])
                    row = {"mode": mode, **got[len(got) // 2]}
                    row["cpu_ms_per_frame_per_round"] = [g["cpu_ms_per_frame"] for g in got]
                    row["non_2xx_per_round"] = [g["non_2xx"] for g in got]
                    rows.append(row)
                    parts = ", ".join(
                        f"{k} {v}" for k, v in row["cpu_ms_per_frame_by_role"].items()
                    )
                    print(
                        f"{n:3d} streams {mode:6s}: {row['frames_s']} frames/s, "
                        f"{row['cpu_ms_per_frame']} ms CPU/frame ({parts})",
                        flush=True,
                    )
        finally:
            server.stop()
            redis.terminate()
            redis.wait(30)

    def row(mode: str, n: int) -> dict:
        (r,) = (r for r in rows if (r["mode"], r["streams"]) == (mode, n))
        return r

    carry_over_window = {
        str(n): round(row("carry", n)["cpu_ms_per_frame"] / row("window", n)["cpu_ms_per_frame"], 3)
        for n in args.levels
    }
    for n, v in carry_over_window.items():
        print(f"carry / window, {n} streams: {v}")
    cmd = "python3 bench/streams/ray_where.py"
    cmd += f" --seconds {args.seconds:g}" if args.seconds != 10 else ""
    cmd += " --levels " + " ".join(map(str, args.levels)) if args.levels != [1, 32] else ""
    cmd += f" --rounds {args.rounds}" if args.rounds != 3 else ""
    cmd += " --direct" if args.direct else ""
    body = {
        "what": f"one PNG frame per request to one of N open live streams of {MODEL} on "
        "`framecast serve --ray` (2 ingress replicas, Redis, "
        + ("direct ingress" if args.direct else "Serve's proxy")
        + ", Ray Serve's throughput settings): server CPU per frame by process role, from /proc",
        "command": cmd,
        "host": f"{platform.machine()}, {os.cpu_count()} cores",
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "front": "direct ingress" if args.direct else "proxy",
        "rows": rows,
        "carry_over_window": carry_over_window,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(body, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
