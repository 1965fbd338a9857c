"""Ray Serve beside the plain server on this machine: req/s and latency under ``wrk``.

    python3 bench/ecosystem/ray_bench.py                       # ~6 minutes; writes
    docs/bench/ray_bench.json python3 bench/ecosystem/ray_bench.py --pause-pid 1234      # SIGSTOP
    that process while wrk runs

For each configuration it starts the server (the bundled ``models/``, ``FRAMECAST_*`` settings as
given), waits for ``/readyz`` 200, warms it up for 5 s, then runs
``wrk -t2 -c16 -d20s --latency -s <post.lua>``: every request POSTs one prebuilt multipart body
(``service/static/samples/classify_0000.gif``, 20 frames) to
``/v1/models/conv2d_lstm_classify/classify``. Configurations: the plain server
(``framecast serve``), and ``framecast serve --ray`` with 1 and 2 replicas per model (the docs'
one-machine example). A process given with ``--pause-pid`` (a background job sharing the cores)
is stopped with SIGSTOP during the warm-up and the measurement and always continued
(SIGCONT, in ``finally``). ``--table`` prints the Markdown table of docs/ray.md from the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from harness import ROOT, Server, parse_wrk, paused, wrk_post

MODEL = "conv2d_lstm_classify"
SAMPLE = ROOT / "service/static/samples/classify_0000.gif"
CONFIGS = [
    {"label": "plain server", "ray": False, "env": {}},
    {
        "label": "Ray Serve, 1 replica per model",
        "ray": True,
        "env": {"FRAMECAST_RAY_REPLICAS": "1"},
    },
    {
        "label": "Ray Serve, 2 replicas per model",
        "ray": True,
        "env": {"FRAMECAST_RAY_REPLICAS": "2"},
    },
]


def build_body() -> tuple[bytes, str]:
    boundary = "framecastbench"
    data = SAMPLE.read_bytes()
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{SAMPLE.name}"\r\nContent-Type: image/gif\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def figures(out: str) -> dict:
    r = parse_wrk(out)
    return {
        "requests_per_s": r["req_s"],
        "requests": r["requests"],
        "p50_ms": r["latency_ms"][50],
        "p90_ms": r["latency_ms"][90],
        "p99_ms": r["latency_ms"][99],
        "non_2xx": r["non_2xx"],
        "socket_errors": r["socket_errors"],
    }


def run_config(cfg: dict, body: tuple[bytes, str], port: int, args: argparse.Namespace) -> dict:
    env = {**os.environ, **cfg["env"], "FRAMECAST_LOG_LEVEL": "warning"}
    cmd = ["framecast", "serve", "--port", str(port)] + (["--ray"] if cfg["ray"] else [])
    log = Path(args.logs) / f"{'ray' if cfg['ray'] else 'plain'}-{port}.log"
    server = Server(cmd, port, "/readyz", env=env, cwd=ROOT, log=log)
    url = f"{server.url}/v1/models/{MODEL}/classify"
    try:
        ready_s = server.wait_ready(600, interval=1, probe_timeout=5)
        with paused(args.pause_pid):
            wrk_post(url, *body, args.connections, 5)  # warm-up: not recorded
            out = wrk_post(url, *body, args.connections, args.seconds)
        print(out)
        return {**cfg, "ready_s": round(ready_s, 1), **figures(out)}
    finally:
        server.stop()
        time.sleep(3)


def table(result: dict) -> str:
    rows = [
        "| server | replicas per model | ready after (s) | req/s | p50 (ms) | p99 (ms) | non-2xx |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["runs"]:
        reps = r["env"].get("FRAMECAST_RAY_REPLICAS", "1 (in-process)")
        rows.append(
            f"| {r['label']} | {reps} | {r['ready_s']:.0f} | {r['requests_per_s']:.1f} | "
            f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['non_2xx']} |"
        )
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs/bench/ray_bench.json"))
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--port", type=int, default=8100)
    ap.add_argument("--pause-pid", type=int, default=None)
    ap.add_argument("--logs", default=tempfile.gettempdir())
    ap.add_argument("--only", nargs="*", help="labels of the configurations to run")
    ap.add_argument("--table", action="store_true", help="print the table of --out and exit")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(Path(args.out).read_text())))
        return 0
    body = build_body()
    runs = [
        run_config(cfg, body, args.port + i, args)
        for i, cfg in enumerate(CONFIGS)
        if not args.only or cfg["label"] in args.only
    ]
    result = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python3 bench/ecosystem/ray_bench.py " + " ".join(sys.argv[1:]),
        "host": {"cpus": os.cpu_count()},
        "load": f"wrk -t2 -c{args.connections} -d{args.seconds}s --latency, POST "
        f"/v1/models/{MODEL}/classify, body: {SAMPLE.relative_to(ROOT)} as multipart",
        "background_job_paused": args.pause_pid is not None,
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
