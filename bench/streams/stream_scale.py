"""Live streams as they scale out, one run: what a streamed frame costs on each stream store.

``convlstm2d_next_frame`` alone; for 1, 32 and 128 open streams (each primed with the model's
10-frame context), ``wrk`` sends one new frame (a 64x64 PNG) per request, round-robin over the
streams (at most 32 connections, one wrk thread each owning its streams, so that a stream's frames
come one after the other as a camera sends them), to:

- **memory**: one ``framecast serve`` process, its streams in its memory (the default);
- **redis-one**: the same process with its streams in Redis (what the store costs alone);
- **folder**: two ``framecast serve`` processes sharing one folder (the ``--workers`` store) behind
  the same nginx: what splitting the work over two processes on this host costs without a
  network store;
- **redis**: two ``framecast serve`` processes sharing one ``redis-server`` and nothing else,
  behind nginx (Debian's) balancing request by request, so a stream's frames alternate between
  them (the state read from Redis and written back with a compare-and-set at every frame);
- **redis-sticky**: the same two servers, nginx balancing by a consistent hash of the path
  (``hash $uri consistent``: the stream id is in it), so each stream's frames go to one server
  while any server can take any stream (the state still read and written at every frame): how
  a load balancer with affinity would send them;
- **ray-carry**: ``framecast serve --ray`` with two ingress replicas sharing the Redis, each
  frame one step of the cells on a model replica with the state sent along;
- **ray-window**: the same, the streams opened with ``past_context=window`` (every frame re-reads
  the last 10 on the replica: what a Ray stream cost before the state travelled);
- **ray-direct-carry**, **ray-direct-window**: both again with Ray Serve's direct ingress
  (FRAMECAST_RAY_DIRECT_INGRESS=true: each ingress replica answers HTTP itself behind Ray's
  HAProxy, no proxy actor passing each request on as a Ray call).

On Ray an ingress replica sends the calls that arrive while its model's replicas are busy
together in one Ray call (FRAMECAST_RAY_COALESCE_ITEMS, the default), carry and window alike.

Read per run: frames/s, p50/p99 per frame (wrk), server CPU per frame (``/proc``: the framecast
process trees and redis-server; not wrk, not nginx), and per frame the bytes to and from Redis,
its commands and round trips (Redis's INFO counters: commands processed, read events), and on
framecast's own servers the model calls a second and the mean batch (their /metrics). The two
Redis servers share this host's two cores (as two machines would not). Targets: redis (and
redis-sticky) ≤ 1.5x memory's server CPU per frame, ray-carry ≤ ½ ray-window's (with Serve's
proxy, and with direct ingress). Each way and level runs ``--rounds`` times (3) and the run with
the median server CPU per frame is kept, every round's figure beside it; on Ray, carry and window
take turns within each round on the same server. Pause a training run meanwhile
(``--pause-pid``).

    python3 bench/streams/stream_scale.py [--seconds 10] [--levels 1 32 128] [--rounds 3]
    [--no-ray] [--pause-pid PID]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
import harness  # noqa: F401 - puts the repository on sys.path
from harness import ROOT, Server, child_env, free_port, parse_wrk, paused, tree_cpu_s
from stream_bench import MODEL, STREAM_LUA, _frames_png, _post

LEVELS = (1, 32, 128)
MAX_CONNECTIONS = 32
OUT = ROOT / "docs" / "bench" / "stream_scale.json"
TARGETS = {
    "redis_over_memory": 1.5,
    "redis_one_over_memory": 1.5,
    "redis_sticky_over_memory": 1.5,
    "ray_carry_over_window": 0.5,
    "ray_direct_carry_over_window": 0.5,
}

NGINX = """
user root;
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  upstream framecast {{ {balance}server 127.0.0.1:{a}; server 127.0.0.1:{b}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 64m;
    location / {{
      proxy_pass http://framecast;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def _redis(tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


def _redis_counters(port: int) -> dict[str, int]:
    import redis

    with redis.Redis(port=port) as r:
        stats = r.info("stats")
    keys = ("total_net_input_bytes", "total_net_output_bytes", "total_commands_processed")
    keys += ("total_reads_processed",)  # read events: the clients' round trips
    return {k: int(stats[k]) for k in keys}


def _batches(url: str) -> tuple[float, float]:
    """The clips and model calls of MODEL counted so far by the server at ``url`` (its
    ``framecast_batch_size`` histogram's sum and count)."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    got = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for part in got:
            if line.startswith(f"framecast_batch_size_{part}{{") and f'"{MODEL}"' in line:
                got[part] += float(line.rsplit(" ", 1)[1])
    return got["sum"], got["count"]


def _serve(tmp: Path, name: str, env: dict, extra: list[str] | None = None) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), *(extra or [])]
    return Server(cmd, port, env=env, cwd=ROOT, log=tmp / f"{name}.log", name=name, group=True)


def _all_ready(url: str, times: int = 20, timeout_s: float = 300.0) -> None:
    """Until /readyz answers 200 ``times`` in a row: every ingress replica behind the balancer
    ready, not only the first one asked."""
    deadline, ok = time.monotonic() + timeout_s, 0
    while ok < times:
        try:
            urllib.request.urlopen(f"{url}/readyz", timeout=5).close()
            ok += 1
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{url}/readyz did not answer 200 {times} times in a row"
                ) from None
            ok = 0
            time.sleep(0.5)


def _wrk(url: str, script: str, connections: int, seconds: float) -> dict:
    """wrk with one thread per connection: each thread owns its streams (STREAM_LUA deals them
    out by thread), so a stream's frames are sent one after the other, as a camera sends them
    (two frames of one stream never race each other to two servers)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script.replace("{threads}", str(connections)))
    try:
        cmd = ["wrk", f"-t{connections}", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
        cmd += ["--latency", "--timeout", "30s", "-s", f.name, url]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    return parse_wrk(out)


def _open(url: str, frames: list[bytes], n: int, mode: str | None) -> list[str]:
    ids = []
    q = f"?past_context={mode}" if mode else ""
    for _ in range(n):
        sid = _post(f"{url}/v1/models/{MODEL}/streams{q}", b"", "application/json")["id"]
        for p in frames[:10]:
            _post(f"{url}/v1/streams/{sid}/frames", p, "image/png")
        ids.append(sid)
    return ids


def _close(url: str, ids: list[str]) -> None:
    for sid in ids:
        req = urllib.request.Request(f"{url}/v1/streams/{sid}", method="DELETE")
        urllib.request.urlopen(req, timeout=60).close()


def _measure(
    url: str,
    pids: list[int],
    frames: list[bytes],
    n: int,
    seconds: float,
    tmp: Path,
    redis_port: int | None,
    mode: str | None = None,
    servers: list[str] | None = None,
) -> dict:
    one = tmp / "frame.png"
    one.write_bytes(frames[10])
    ids = _open(url, frames, n, mode)
    script = STREAM_LUA.format(body=one, ids=",".join(ids), threads="{threads}")
    before = _redis_counters(redis_port) if redis_port else None
    calls0 = [_batches(u) for u in servers or []]
    each0, t0 = [tree_cpu_s(p) for p in pids], time.monotonic()
    r = _wrk(url + "/", script, min(n, MAX_CONNECTIONS), seconds)
    each = [tree_cpu_s(p) - c for p, c in zip(pids, each0)]
    cpu, wall = sum(each), time.monotonic() - t0
    done = max(1, r["requests"])
    out = {
        "streams": n,
        "connections": min(n, MAX_CONNECTIONS),
        "frames": r["requests"],
        "frames_s": round(r["req_s"], 1),
        "p50_ms": round(r["latency_ms"][50], 2),
        "p99_ms": round(r["latency_ms"][99], 2),
        "non_2xx": r["non_2xx"],
        "socket_errors": r["socket_errors"],
        "server_cpu_ms_per_frame": round(cpu * 1000.0 / done, 3),
        "server_cpu_share": round(cpu / wall, 3),
    }
    if servers:  # the model calls the frames made, from each framecast server's /metrics
        calls = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(calls0, [_batches(u) for u in servers])]
        clips, n_calls = sum(c[0] for c in calls), sum(c[1] for c in calls)
        out["model_calls_per_s"] = round(n_calls / wall, 1)
        out["mean_batch"] = round(clips / max(1.0, n_calls), 2)
    if before is not None:
        after = _redis_counters(redis_port)  # type: ignore[arg-type]
        d = {k: after[k] - before[k] for k in after}
        out["store_bytes_in_per_frame"] = round(d["total_net_input_bytes"] / done)
        out["store_bytes_out_per_frame"] = round(d["total_net_output_bytes"] / done)
        out["store_commands_per_frame"] = round(d["total_commands_processed"] / done, 2)
        out["store_round_trips_per_frame"] = round(d["total_reads_processed"] / done, 2)
        out["store_cpu_ms_per_frame"] = round(each[-1] * 1000.0 / done, 3)  # redis-server
    _close(url, ids)
    return out


def _median(runs: list[dict]) -> dict:
    """The run whose server CPU per frame is the median of ``runs`` (an odd count: one of them),
    with every run's figure beside it."""
    order = sorted(runs, key=lambda m: m["server_cpu_ms_per_frame"])
    out = dict(order[(len(order) - 1) // 2])
    out["server_cpu_ms_per_frame_per_round"] = [m["server_cpu_ms_per_frame"] for m in runs]
    return out


def _rounds(args: argparse.Namespace, *measure: object) -> dict:
    """``_measure(*measure)`` ``args.rounds`` times: the median run (:func:`_median`)."""
    return _median([_measure(*measure) for _ in range(args.rounds)])  # type: ignore[arg-type]


def _two(
    tmp: Path,
    way: str,
    env: dict,
    frames: list[bytes],
    args: argparse.Namespace,
    rdb: tuple[subprocess.Popen, int] | None,
    sticky: bool = False,
) -> list[dict]:
    """Two servers on one store, behind nginx balancing request by request (``sticky``: by a
    consistent hash of the path, so each stream's frames go to one of them)."""
    a, b = _serve(tmp, f"{way}-a", env), _serve(tmp, f"{way}-b", env)
    lb_port = free_port()
    conf = tmp / f"nginx-{way}.conf"
    balance = "hash $uri consistent; " if sticky else ""
    conf.write_text(NGINX.format(tmp=tmp, a=a.port, b=b.port, port=lb_port, balance=balance))
    lb = subprocess.Popen(["nginx", "-c", str(conf)], stderr=open(tmp / "nginx.log", "a"))
    out = []
    try:
        a.wait_ready()
        b.wait_ready()
        url = f"http://127.0.0.1:{lb_port}"
        for n in args.levels:
            pids = [a.proc.pid, b.proc.pid] + ([rdb[0].pid] if rdb else [])
            m = _rounds(
                args,
                url,
                pids,
                frames,
                n,
                args.seconds,
                tmp,
                rdb[1] if rdb else None,
                None,
                [a.url, b.url],
            )
            out.append(m)
            _print(way, m)
    finally:
        lb.terminate()
        lb.wait(30)
        a.stop()
        b.stop()
    return out


def _print(way: str, m: dict) -> None:
    extra = (
        f" ({m['store_cpu_ms_per_frame']} in redis-server), Redis "
        f"{m['store_round_trips_per_frame']} round trips, {m['store_commands_per_frame']} "
        "commands and "
        f"{(m['store_bytes_in_per_frame'] + m['store_bytes_out_per_frame']) / 1024:.0f} KB/frame"
        if "store_round_trips_per_frame" in m
        else ""
    )
    print(
        f"{way:10s} {m['streams']:4d} streams: {m['frames_s']} frames/s, p50 {m['p50_ms']} ms, "
        f"p99 {m['p99_ms']} ms, {m['server_cpu_ms_per_frame']} ms CPU/frame{extra}"
        + (f", mean batch {m['mean_batch']}" if "mean_batch" in m else ""),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="each wrk run (default 10)")
    p.add_argument("--levels", type=int, nargs="+", default=list(LEVELS))
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs of each way and level, the median counted (odd; default 3)",
    )
    p.add_argument("--no-ray", action="store_true", help="skip the Ray rows (no ray[serve])")
    p.add_argument("--pause-pid", type=int, help="a process to SIGSTOP meanwhile (a training)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    if args.rounds < 1 or args.rounds % 2 == 0:
        p.error("--rounds must be odd (the median is one of the runs)")
    for tool in ("wrk", "redis-server", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: apt-get install {tool}")
    frames = _frames_png()
    results: dict[str, list] = {}
    most = str(max(args.levels) * 2 + 8)
    with tempfile.TemporaryDirectory(prefix="framecast-stream-scale-") as t, paused(args.pause_pid):
        tmp = Path(t)
        (tmp / "models").mkdir()
        (tmp / "models" / MODEL).symlink_to(ROOT / "models" / MODEL)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / sub).mkdir()
        env = {**child_env(), "FRAMECAST_LOAD_MODE": "blocking", "FRAMECAST_LOG_LEVEL": "warning"}
        env.update(
            FRAMECAST_MODELS_DIR=str(tmp / "models"),
            FRAMECAST_STREAM_MAX_PER_MODEL=most,
            FRAMECAST_STREAM_MAX_TOTAL=most,
        )
        redis, redis_port = _redis(tmp)
        store = f"redis://127.0.0.1:{redis_port}/0"
        try:
            # one process, memory
            one = _serve(tmp, "memory", env)
            try:
                one.wait_ready()
                results["memory"] = []
                for n in args.levels:
                    m = _rounds(
                        args,
                        one.url,
                        [one.proc.pid],
                        frames,
                        n,
                        args.seconds,
                        tmp,
                        None,
                        None,
                        [one.url],
                    )
                    results["memory"].append(m)
                    _print("memory", m)
            finally:
                one.stop()
            # one process on Redis: what the store costs, apart from splitting the work in two
            one = _serve(tmp, "redis-one", {**env, "FRAMECAST_STREAM_STORE": store})
            try:
                one.wait_ready()
                results["redis-one"] = []
                for n in args.levels:
                    pids = [one.proc.pid, redis.pid]
                    m = _rounds(
                        args,
                        one.url,
                        pids,
                        frames,
                        n,
                        args.seconds,
                        tmp,
                        redis_port,
                        None,
                        [one.url],
                    )
                    results["redis-one"].append(m)
                    _print("redis-one", m)
            finally:
                one.stop()
            for way, where in (
                ("folder", f"file://{tmp}/streams"),
                ("redis", store),
                ("redis-sticky", store),
            ):
                rdb = (redis, redis_port) if way.startswith("redis") else None
                results[way] = _two(
                    tmp,
                    way,
                    {**env, "FRAMECAST_STREAM_STORE": where},
                    frames,
                    args,
                    rdb,
                    sticky=way.endswith("sticky"),
                )
            if not args.no_ray:
                ray_env = {
                    **env,
                    "FRAMECAST_STREAM_STORE": store,
                    "FRAMECAST_RAY_INGRESS_REPLICAS": "2",
                    "RAY_USAGE_STATS_ENABLED": "0",
                }
                for prefix, direct in (("ray", "false"), ("ray-direct", "true")):
                    ray = _serve(
                        tmp, prefix, {**ray_env, "FRAMECAST_RAY_DIRECT_INGRESS": direct}, ["--ray"]
                    )
                    try:
                        ray.wait_ready(timeout=900)
                        _all_ready(ray.url)
                        # carry and window take turns within each round, on the same server
                        for mode in ("carry", "window"):
                            results[f"{prefix}-{mode}"] = []
                        pids = [ray.proc.pid, redis.pid]
                        for n in args.levels:
                            runs: dict[str, list[dict]] = {"carry": [], "window": []}
                            for _ in range(args.rounds):
                                for mode in runs:
                                    runs[mode].append(
                                        _measure(
                                            ray.url,
                                            pids,
                                            frames,
                                            n,
                                            args.seconds,
                                            tmp,
                                            redis_port,
                                            mode,
                                        )
                                    )
                            for mode, got in runs.items():
                                m = _median(got)
                                results[f"{prefix}-{mode}"].append(m)
                                _print(f"{prefix}-{mode}", m)
                    finally:
                        ray.stop()
        finally:
            redis.terminate()
            redis.wait(30)

    def cpu(way: str) -> list[float]:
        return [m["server_cpu_ms_per_frame"] for m in results.get(way, [])]

    ratios: dict[str, list[float]] = {
        "redis_over_memory": [round(r / m, 3) for r, m in zip(cpu("redis"), cpu("memory"))],
        "redis_one_over_memory": [round(r / m, 3) for r, m in zip(cpu("redis-one"), cpu("memory"))],
        "redis_sticky_over_memory": [
            round(r / m, 3) for r, m in zip(cpu("redis-sticky"), cpu("memory"))
        ],
    }
    for prefix in ("ray", "ray-direct"):
        if f"{prefix}-carry" in results:
            ratios[f"{prefix.replace('-', '_')}_carry_over_window"] = [
                round(c / w, 3) for c, w in zip(cpu(f"{prefix}-carry"), cpu(f"{prefix}-window"))
            ]
    met = {k: all(v <= TARGETS[k] for v in vs) for k, vs in ratios.items()}
    for k, vs in ratios.items():
        print(f"{k}: {vs} (target <= {TARGETS[k]}): {'met' if met[k] else 'NOT met'}")
    body = {
        "what": "one PNG frame per request to one of N open live streams of "
        f"{MODEL}, round-robin, by wrk (at most {MAX_CONNECTIONS} connections); server CPU "
        "is the framecast process trees and redis-server from /proc (not wrk, not nginx)",
        "model": MODEL,
        "command": "python3 bench/streams/stream_scale.py"
        + (f" --seconds {args.seconds:g}" if args.seconds != 10 else "")
        + (" --levels " + " ".join(map(str, args.levels)) if args.levels != list(LEVELS) else "")
        + (f" --rounds {args.rounds}" if args.rounds != 3 else "")
        + (" --no-ray" if args.no_ray else ""),
        "host": f"{platform.machine()}, {os.cpu_count()} cores",
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "ways": results,
        "ratios": ratios,
        "targets": TARGETS,
        "targets_met": met,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(body, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
