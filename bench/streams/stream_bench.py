"""Live streams against window requests, one run: what a frame costs the server each way.

A ``framecast serve`` child process with ``convlstm2d_next_frame`` alone; for 1, 8 and 32
concurrent clients, ``wrk`` sends either

- **stream**: one new frame (a 64x64 PNG) per request to one of N open live streams (each primed
  with the model's 10-frame context; the model reads the frame in one step of its cells, the
  state carried), or
- **window**: the same frame with the 9 before it, ten PNGs in one multipart predict request
  (the model reads all ten),

and the script reads wrk's frames/s and latency percentiles and the server's CPU seconds from
``/proc`` (the whole process tree) over each run: server CPU per predicted frame, each way.
Frames come from a held-out sample clip. Pause a training run meanwhile (``--pause-pid``).

    python3 bench/streams/stream_bench.py [--seconds 10] [--pause-pid PID]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
import harness  # noqa: F401 - puts the repository on sys.path
from harness import ROOT, Server, child_env, free_port, parse_wrk, paused, tree_cpu_s

MODEL = "convlstm2d_next_frame"
LEVELS = (1, 8, 32)
SAMPLE = ROOT / "service" / "static" / "samples" / "next_frame_0000.gif"
OUT = ROOT / "docs" / "bench" / "stream_bench.json"

STREAM_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "image/png"
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
local made = 0
function setup(thread)
  thread:set("tid", made)
  made = made + 1
end
function init(args)
  mine, n = {{}}, 0
  local i = 0
  for id in string.gmatch("{ids}", "[^,]+") do
    if i % {threads} == tid then table.insert(mine, id) end
    i = i + 1
  end
end
function request()
  n = n + 1
  return wrk.format(nil, "/v1/streams/" .. mine[(n - 1) % #mine + 1] .. "/frames")
end
"""

POST_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "{ctype}"
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
"""


def _frames_png() -> list[bytes]:
    from PIL import Image, ImageSequence

    out = []
    for page in ImageSequence.Iterator(Image.open(SAMPLE)):
        buf = io.BytesIO()
        page.convert("L").save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def _multipart(parts: list[bytes]) -> tuple[bytes, str]:
    boundary = "framecastbench"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{i}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + p
        + b"\r\n"
        for i, p in enumerate(parts)
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _post(url: str, body: bytes, ctype: str) -> dict:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def _wrk(url: str, script: str, connections: int, seconds: float) -> dict:
    import subprocess

    threads = 1 if connections == 1 else 2
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script.replace("{threads}", str(threads)))
    try:
        cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
        cmd += ["--latency", "--timeout", "30s", "-s", f.name, url]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    return parse_wrk(out)


def measure(server: Server, frames: list[bytes], c: int, seconds: float, tmp: Path) -> dict:
    url = server.url
    one = tmp / "frame.png"
    one.write_bytes(frames[10])
    ids = []
    for _ in range(c):  # N streams, each primed with the model's context
        sid = _post(f"{url}/v1/models/{MODEL}/streams", b"", "application/json")["id"]
        for p in frames[:10]:
            _post(f"{url}/v1/streams/{sid}/frames", p, "image/png")
        ids.append(sid)
    window, ctype = _multipart(frames[1:11])
    (tmp / "window.bin").write_bytes(window)
    out = {}
    for way, script, path in (
        ("stream", STREAM_LUA.format(body=one, ids=",".join(ids), threads="{threads}"), "/"),
        (
            "window",
            POST_LUA.format(body=tmp / "window.bin", ctype=ctype),
            f"/v1/models/{MODEL}/predict",
        ),
    ):
        cpu0, t0 = tree_cpu_s(server.proc.pid), time.monotonic()
        r = _wrk(url + path, script, c, seconds)
        cpu, wall = tree_cpu_s(server.proc.pid) - cpu0, time.monotonic() - t0
        out[way] = {
            "frames": r["requests"],
            "frames_s": round(r["req_s"], 1),
            "p50_ms": round(r["latency_ms"][50], 2),
            "p99_ms": round(r["latency_ms"][99], 2),
            "non_2xx": r["non_2xx"],
            "socket_errors": r["socket_errors"],
            "server_cpu_ms_per_frame": round(cpu * 1000.0 / max(1, r["requests"]), 3),
            "server_cpu_share": round(cpu / wall, 3),
        }
    for sid in ids:
        req = urllib.request.Request(f"{url}/v1/streams/{sid}", method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()
    out["stream_over_window_cpu"] = round(
        out["stream"]["server_cpu_ms_per_frame"] / out["window"]["server_cpu_ms_per_frame"], 3
    )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="each wrk run (default 10)")
    p.add_argument("--levels", type=int, nargs="+", default=list(LEVELS))
    p.add_argument("--pause-pid", type=int, help="a process to SIGSTOP meanwhile (a training)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    frames = _frames_png()
    with tempfile.TemporaryDirectory(prefix="framecast-stream-bench-") as t:
        tmp = Path(t)
        (tmp / "models").mkdir()
        (tmp / "models" / MODEL).symlink_to(ROOT / "models" / MODEL)
        port = free_port()
        env = {**child_env(), "FRAMECAST_LOAD_MODE": "blocking", "FRAMECAST_LOG_LEVEL": "warning"}
        env["FRAMECAST_MODELS_DIR"] = str(tmp / "models")
        cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(port)]
        with paused(args.pause_pid):
            server = Server(cmd, port, env=env, cwd=ROOT, name="framecast")
            try:
                server.wait_ready()
                levels = {}
                for c in args.levels:
                    levels[str(c)] = measure(server, frames, c, args.seconds, tmp)
                    s, w = levels[str(c)]["stream"], levels[str(c)]["window"]
                    print(
                        f"c={c}: stream {s['frames_s']} frames/s, {s['server_cpu_ms_per_frame']} "
                        f"ms CPU/frame (p50 {s['p50_ms']} ms); window {w['frames_s']} frames/s, "
                        f"{w['server_cpu_ms_per_frame']} ms CPU/frame (p50 {w['p50_ms']} ms); "
                        f"ratio {levels[str(c)]['stream_over_window_cpu']}"
                    )
            finally:
                server.stop()
    body = {
        "what": "live stream frames (one PNG each, the state carried) against 10-frame window "
        "predict requests (ten PNGs), same server, same run",
        "model": MODEL,
        "command": "python3 bench/streams/stream_bench.py"
        + (f" --seconds {args.seconds:g}" if args.seconds != 10 else ""),
        "host": f"{platform.machine()}, {os.cpu_count()} cores",
        "seconds_per_run": args.seconds,
        "levels": levels,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(body, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
