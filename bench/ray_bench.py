"""Ray Serve beside the plain server on this machine: req/s and latency under ``wrk``.

    python3 bench/ray_bench.py                       # ~6 minutes; writes docs/bench/ray_bench.json
    python3 bench/ray_bench.py --pause-pid 1234      # SIGSTOP that process while wrk runs

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
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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
LUA = """wrk.method = "POST"
local f = io.open("{body}", "rb"); wrk.body = f:read("*a"); f:close()
wrk.headers["Content-Type"] = "multipart/form-data; boundary={boundary}"
"""


def build_body(tmp: Path) -> Path:
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
    (tmp / "body.bin").write_bytes(body)
    lua = tmp / "post.lua"
    lua.write_text(LUA.format(body=tmp / "body.bin", boundary=boundary))
    return lua


def wait_ready(url: str, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} not ready within {timeout} s")


def parse_wrk(out: str) -> dict:
    def ms(v: str) -> float:
        n, unit = float(re.match(r"[\d.]+", v).group()), re.sub(r"[\d.]", "", v)
        return n * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]

    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50_ms": ms(lat["50"]),
        "p90_ms": ms(lat["90"]),
        "p99_ms": ms(lat["99"]),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sock.group(1).strip() if sock else "",
    }


def run_config(cfg: dict, lua: Path, port: int, args: argparse.Namespace) -> dict:
    env = {**os.environ, **cfg["env"], "FRAMECAST_LOG_LEVEL": "warning"}
    cmd = ["framecast", "serve", "--port", str(port)] + (["--ray"] if cfg["ray"] else [])
    log = open(Path(args.logs) / f"{'ray' if cfg['ray'] else 'plain'}-{port}.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        ready_s = wait_ready(url, 600)
        wrk = ["wrk", "-t2", f"-c{args.connections}", "--latency", "-s", str(lua)]
        paused = args.pause_pid is not None
        if paused:
            os.kill(args.pause_pid, signal.SIGSTOP)
        try:
            subprocess.run(
                [*wrk, "-d5s", f"{url}/v1/models/{MODEL}/classify"], check=True, capture_output=True
            )  # warm-up: not recorded
            out = subprocess.run(
                [*wrk, f"-d{args.seconds}s", f"{url}/v1/models/{MODEL}/classify"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        finally:
            if paused:
                os.kill(args.pause_pid, signal.SIGCONT)
        print(out)
        return {**cfg, "ready_s": round(ready_s, 1), **parse_wrk(out)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
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
    with tempfile.TemporaryDirectory() as tmp:
        lua = build_body(Path(tmp))
        runs = [
            run_config(cfg, lua, args.port + i, args)
            for i, cfg in enumerate(CONFIGS)
            if not args.only or cfg["label"] in args.only
        ]
    result = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python3 bench/ray_bench.py " + " ".join(sys.argv[1:]),
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
