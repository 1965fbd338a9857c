"""The CPU a request costs outside the model: framecast against LitServe and the bare model.

    python3 bench/frontend.py                                  # full run (~10 minutes here)
    python3 bench/frontend.py --duration 5 --cases classify    # a quick look
    python3 bench/frontend.py --pause-pid $(pgrep -f "framecast train")   # pause a training

Every request is the same JSON body, ``{"frames": [10 base64 PNGs]}`` (a held-out 64x64 clip from
``service/static/samples/``), a format both servers take, sent by ``wrk`` (Debian's C load
generator, ``apt-get install wrk``: it costs the server's machine little) with
``--connections`` keep-alive connections for ``--duration`` seconds per server. Every server of a
case runs at once and they take turns: ``--rounds`` interleaved runs of duration / rounds seconds,
the order rotating each round, so a slow minute of a shared machine falls on all of them alike.
During a server's turn the others are stopped (SIGSTOP to their process groups): an idle LitServe
polls its queues (about 0.15 core here, reported as ``idle_cpu_cores``), which would otherwise
be taken from whichever server is measured. For each server it reports
req/s, p50/p99 latency, non-2xx answers and the server's CPU time per request (user + system of
the server and all its child processes, read from ``/proc`` before and after the run), beside the
bare batched compute of the same checkpoint (``predict_on_batch`` at the batch size, no HTTP, in
a process with TensorFlow's default pools and in one with the intra-op pool at cores - 1, as
``FRAMECAST_CPU_THREADS=auto`` sizes it: the faster is the bare figure) in clips/s and CPU ms
per clip, each bare process taking its turn in every round like the servers. The front end's CPU
per request is the server's CPU per request minus the bare CPU per clip. For framecast with one
worker it also reports the CPU of the event loop alone (the process's main thread: HTTP,
decoding, answers, logs, metrics), which does not depend on how well the model's threads use
the cores at the batch sizes the load forms.

With ``--bodies json,multipart,npy`` the one-worker framecast server is also sent the same clip
as multipart PNG files and as one uint8 ``.npy`` (LitServe takes the JSON form only).

Cases: ``classify`` (``conv2d_lstm_classify``: cheap on this CPU, the front end dominates) and
``predict`` (``convlstm2d_next_frame``, horizon 1: the model dominates). Servers: framecast with
``--workers`` 1 (and each count in ``--framecast-workers``), and LitServe 0.2.x serving the same
checkpoint with the same batching (``bench/litserve_app.py``, ``max_batch_size=32``,
``batch_timeout=5 ms``). LitServe is not a framecast dependency; give the Python that has it
with ``--litserve-python`` (e.g. a venv made with ``--system-site-packages`` and
``pip install litserve``), or ``--no-litserve``.

Writes ``--out`` (default ``docs/bench/frontend.json``) and prints a table.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = {
    "classify": ("conv2d_lstm_classify", "/v1/models/{name}/classify"),
    "predict": ("convlstm2d_next_frame", "/v1/models/{name}/predict"),
}
SAMPLE = ROOT / "service" / "static" / "samples" / "classify_0000.gif"


def sample_frames(frames: int = 10) -> list[bytes]:
    """The sample clip's first ``frames`` frames as grey PNG files."""
    from PIL import Image

    img = Image.open(SAMPLE)
    out = []
    for i in range(frames):
        img.seek(i)
        buf = io.BytesIO()
        img.convert("L").save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def body_json(frames: int = 10) -> bytes:
    pngs = [base64.b64encode(p).decode("ascii") for p in sample_frames(frames)]
    return json.dumps({"frames": pngs}).encode()


def bodies(frames: int = 10) -> dict[str, tuple[bytes, str]]:
    """The same clip as each upload form framecast takes: JSON (base64 PNGs, the form both
    servers take), multipart PNG files, and one .npy (uint8, (T, H, W, 1))."""
    pngs = sample_frames(frames)
    boundary = "framecastbench"
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
        f'filename="f{i}.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
        + png
        + b"\r\n"
        for i, png in enumerate(pngs)
    )
    from PIL import Image

    arr = np.stack([np.asarray(Image.open(io.BytesIO(p))) for p in pngs])[..., None]
    buf = io.BytesIO()
    np.save(buf, arr)
    return {
        "json": (body_json(frames), "application/json"),
        "multipart": (
            parts + f"--{boundary}--\r\n".encode(),
            f"multipart/form-data; boundary={boundary}",
        ),
        "npy": (buf.getvalue(), "application/x-npy"),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every live descendant."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        p = int(entry)
        children.setdefault(int(fields[1]), []).append(p)
        stats[p] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, 0.0)
        todo += children.get(p, [])
    return total


class Server:
    def __init__(self, cmd: list[str], port: int, ready_path: str, env: dict | None = None):
        self.port, self.ready_path = port, ready_path
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def wait_ready(self, timeout: float = 600.0) -> None:
        end = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}{self.ready_path}"
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited: {self.log.read()[-3000:].decode()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{url} not ready in {timeout} s")

    def pause(self, on: bool) -> None:
        """SIGSTOP (or SIGCONT) the server's process group, children included."""
        os.killpg(self.proc.pid, signal.SIGSTOP if on else signal.SIGCONT)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.killpg(self.proc.pid, signal.SIGKILL)


def main_thread_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid``'s main thread: a uvicorn server's event loop."""
    with open(f"/proc/{pid}/task/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str,
    body: bytes,
    connections: int,
    duration: float,
    content_type: str = "application/json",
) -> dict:
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(body)
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "{content_type}"\n'
        f'local f = io.open("{f.name}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
    )
    script.close()
    cmd = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "-s",
        script.name,
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(f.name)
    os.unlink(script.name)

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000.0 if unit == "us" else v * 1000.0 if unit == "s" else v

    done = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests": done,
        "req_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def measure_rounds(
    servers: list[tuple], args: argparse.Namespace, bares: dict[str, Bare] | None = None
) -> dict:
    """Every server of ``servers`` (key, Server, url, report its event loop, (body, content
    type)) warmed, then measured in ``--rounds`` interleaved turns of ``--duration / --rounds``
    seconds, the order rotating each round, so that a slow minute of this shared machine falls
    on all of them alike; each bare process of ``bares`` takes its turn in every round too
    (``--bare-seconds / --rounds`` seconds), so the bare figure comes from the same minutes.
    Requests, CPU and non-2xx answers add up over the rounds; p50 is the median of the
    rounds' p50s and p99 the worst round's."""
    per_run = args.duration / args.rounds
    bares = bares or {}
    for _, server, url, _, (body, ctype) in servers:
        server.wait_ready()
        wrk(url, body, args.connections, 3, ctype)  # warm: every batch shape, connection pools
    for bare in bares.values():
        bare.wait_ready()
    distinct = list({id(t[1]): t[1] for t in servers}.values())  # one server, many rows
    idle0 = {id(srv): tree_cpu_s(srv.proc.pid) for srv in distinct}
    time.sleep(3.0)
    idle = {id(srv): (tree_cpu_s(srv.proc.pid) - idle0[id(srv)]) / 3.0 for srv in distinct}
    acc: dict[str, dict] = {key: {"runs": []} for key, *_ in servers}
    turns = list(servers) + list(bares.values())
    for k in range(args.rounds):
        for entry in turns[k % len(turns) :] + turns[: k % len(turns)]:
            measured = entry if isinstance(entry, Bare) else entry[1]
            others = [p for p in distinct + list(bares.values()) if p is not measured]
            for p in others:  # idle servers may poll (LitServe's workers: ~0.15 core here)
                p.pause(True)
            try:
                if isinstance(entry, Bare):
                    entry.measure(args.bare_seconds / args.rounds)
                    continue
                key, server, url, loop, (body, ctype) = entry
                pid = server.proc.pid
                cpu0, loop0 = tree_cpu_s(pid), main_thread_cpu_s(pid) if loop else 0.0
                r = wrk(url, body, args.connections, per_run, ctype)
                r["cpu_s"] = tree_cpu_s(pid) - cpu0
                if loop:  # one process: its main thread is the event loop (HTTP, decode, encode)
                    r["loop_s"] = main_thread_cpu_s(pid) - loop0
                acc[key]["runs"].append(r)
            finally:
                for p in others:
                    p.pause(False)
    out = {}
    for key, server, _, loop, _ in servers:
        runs = acc[key]["runs"]
        n = max(1, sum(r["requests"] for r in runs))
        cpu = sum(r["cpu_s"] for r in runs)
        row = {
            "requests": n,
            "req_s": round(sum(r["req_s"] for r in runs) / len(runs), 2),
            "req_s_per_round": [r["req_s"] for r in runs],
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": max(r["p99_ms"] for r in runs),
            "non_2xx": sum(r["non_2xx"] for r in runs),
            "socket_errors": "; ".join(r["socket_errors"] for r in runs if r["socket_errors"]),
            "server_cpu_s": round(cpu, 2),
            "server_cpu_ms_per_request": round(1000.0 * cpu / n, 3),
            "idle_cpu_cores": round(idle[id(server)], 3),
        }
        if loop:
            loop_s = sum(r["loop_s"] for r in runs)
            row["event_loop_cpu_ms_per_request"] = round(1000.0 * loop_s / n, 3)
        out[key] = row
    return out


BARE_BATCHES = (8, 16, 32, 64)


def bare_serve(folder: Path) -> None:
    """The bare process (``--bare-only``): the checkpoint's own ``predict_on_batch`` (for a
    next-frame model on the 10-frame window: its last output is the next frame, what horizon=1
    answers), each batch size warmed, then one measurement per line read from stdin (its
    seconds, split over the batch sizes), each answered with one JSON line: per batch, the clips
    done, the wall and the process's CPU seconds (every thread: TensorFlow's pools too)."""
    from models.checkpoint import open_folder

    manifest, model = open_folder(folder)
    shape = (manifest.frames, manifest.height, manifest.width, manifest.channels)
    xs = {b: np.random.default_rng(0).random((b,) + shape, np.float32) for b in BARE_BATCHES}
    for x in xs.values():
        for _ in range(3):
            model.predict_on_batch(x)
    print("ready", flush=True)
    for line in sys.stdin:
        seconds, out = float(line), {}
        for batch, x in xs.items():
            n, t0 = 0, time.perf_counter()
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            while time.perf_counter() - t0 < seconds / len(xs):
                model.predict_on_batch(x)
                n += 1
            wall = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            out[batch] = {"clips": n * batch, "wall_s": wall, "cpu_s": cpu}
        print(json.dumps(out), flush=True)


class Bare:
    """A bare process (:func:`bare_serve`) with one sizing of TensorFlow's pools, measured in
    the rounds like a server: stopped (SIGSTOP) while it is not its turn."""

    def __init__(self, folder: Path, env: dict):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--bare-only", str(folder)]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
            start_new_session=True,
        )
        self.runs: list[dict] = []

    def wait_ready(self) -> None:
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the bare process exited ({self.proc.wait()})")

    def measure(self, seconds: float) -> dict:
        try:
            self.proc.stdin.write(f"{seconds}\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            raise RuntimeError(f"the bare process exited ({self.proc.wait()}) mid-measurement")
        run = {int(k): v for k, v in json.loads(line).items()}
        self.runs.append(run)
        return run

    pause = Server.pause

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self.proc.pid, signal.SIGCONT)
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()  # its cue to exit
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc.stdout.close()


def bare_sizings() -> dict[str, dict]:
    """TensorFlow's default pools, and the intra-op pool at cores - 1, as
    ``FRAMECAST_CPU_THREADS=auto`` sizes it for a lone worker."""
    from service.runtime.devices import cores

    intra = max(1, cores() - 1)
    return {"default": {}, f"intra-op {intra}": {"TF_NUM_INTRAOP_THREADS": str(intra)}}


def bare_summary(bares: dict[str, Bare]) -> dict:
    """Each sizing's best batch over all its rounds (clips/s: clips over wall seconds; CPU ms a
    clip: CPU over clips); the faster sizing is the bare figure, both are kept (``by_pools``)."""
    by_pools = {}
    for label, bare in bares.items():
        rows = []
        for batch in BARE_BATCHES:
            runs = [r[batch] for r in bare.runs]
            clips = sum(r["clips"] for r in runs)
            rows.append(
                {
                    "batch": batch,
                    "clips_s": round(clips / sum(r["wall_s"] for r in runs), 1),
                    "cpu_ms_per_clip": round(1000.0 * sum(r["cpu_s"] for r in runs) / clips, 3),
                    "clips_s_per_round": [round(r["clips"] / r["wall_s"], 1) for r in runs],
                }
            )
        by_pools[label] = max(rows, key=lambda r: r["clips_s"])
    best = max(by_pools, key=lambda k: by_pools[k]["clips_s"])
    return {**by_pools[best], "tf_pools": best, "by_pools": by_pools}


def framecast_server(root: Path, port: int, workers: int, extra: dict | None = None) -> Server:
    cmd = [sys.executable, "-m", "service.cli", "serve", "--models-dir", str(root)]
    cmd += ["--port", str(port), "--log-level", "warning", "--workers", str(workers)]
    env = {**os.environ, "FRAMECAST_MAX_QUEUE": "512", **(extra or {})}
    return Server(cmd, port, "/readyz", env)


def litserve_server(python: str, folder: Path, port: int, env: dict | None = None) -> Server:
    cmd = [python, str(ROOT / "bench" / "litserve_app.py"), str(folder), "--port", str(port)]
    return Server(cmd, port, "/health", {**os.environ, **(env or {})})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models-dir", type=Path, default=ROOT / "models")
    p.add_argument("--cases", default="classify,predict")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of wrk per server")
    p.add_argument(
        "--rounds", type=int, default=4, help="interleaved turns the duration is split into"
    )
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--framecast-workers", default="1,2", help="worker counts to measure")
    p.add_argument("--litserve-python", default=sys.executable)
    p.add_argument("--no-litserve", action="store_true")
    p.add_argument(
        "--bodies",
        default="json",
        help="upload forms sent to framecast (one worker): json,multipart,npy; LitServe and "
        "the other rows always get the JSON body",
    )
    p.add_argument(
        "--also-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="more framecast rows (one per --framecast-workers count) with this setting, e.g. "
        "FRAMECAST_CPU_THREADS=1",
    )
    p.add_argument(
        "--litserve-tf-threads",
        type=int,
        default=0,
        help="one more LitServe row with TensorFlow's intra-op pool at this size "
        "(TF_NUM_INTRAOP_THREADS; inter-op left at TensorFlow's default): what "
        "FRAMECAST_CPU_THREADS=auto gives framecast, cores - 1 (1 on 2 cores)",
    )
    p.add_argument(
        "--bare-seconds",
        type=float,
        default=16.0,
        help="per pool sizing, over the rounds and the 4 batch sizes",
    )
    p.add_argument("--pause-pid", type=int, help="SIGSTOP this process during the run")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "frontend.json")
    p.add_argument("--bare-only", type=Path, help=argparse.SUPPRESS)  # a Bare process
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    report: dict = {
        "command": "python3 bench/frontend.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "wrk": {
            "connections": args.connections,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "threads": 2,
        },
        "body": "JSON, 10 base64 PNG frames 64x64 (service/static/samples/classify_0000.gif); "
        "rows marked body= send the same clip as multipart PNG files or one uint8 .npy",
        "cases": {},
    }
    for case in args.cases.split(","):
        name, route = CASES[case]
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            shutil.copytree(args.models_dir / name, root / name)
            row: dict = {"model": name}
            bares = {label: Bare(root / name, env) for label, env in bare_sizings().items()}
            path = route.format(name=name)
            forms = bodies()
            servers: list[tuple] = []
            variants = [("", None)] + [(" " + s, dict([s.split("=", 1)])) for s in args.also_env]
            for suffix, env in variants:
                for workers in [int(w) for w in args.framecast_workers.split(",")]:
                    port = free_port()
                    srv = framecast_server(root, port, workers, env)
                    url = f"http://127.0.0.1:{port}{path}"
                    key = f"framecast_w{workers}{suffix}"
                    servers.append((key, srv, url, workers == 1, forms["json"]))
                    if suffix or workers != 1:
                        continue
                    for form in args.bodies.split(","):  # the same server, another upload form
                        if form != "json":
                            servers.append((f"{key} body={form}", srv, url, True, forms[form]))
            litserve_runs = [] if args.no_litserve else [("litserve", None)]
            if litserve_runs and args.litserve_tf_threads:
                n = str(args.litserve_tf_threads)
                env = {"TF_NUM_INTRAOP_THREADS": n}
                litserve_runs.append((f"litserve TF_NUM_INTRAOP_THREADS={n}", env))
            for key, env in litserve_runs:
                port = free_port()
                srv = litserve_server(args.litserve_python, root / name, port, env)
                url = f"http://127.0.0.1:{port}/predict"
                servers.append((key, srv, url, False, forms["json"]))
            try:
                row.update(measure_rounds(servers, args, bares))
            finally:
                for srv in {id(t[1]): t[1] for t in servers}.values():  # one server, many rows
                    srv.stop()
                for bare in bares.values():
                    bare.stop()
            row = {"model": name, "bare": bare_summary(bares), **row}
        for r in row.values():
            if isinstance(r, dict) and "req_s" in r:
                r["front_end_cpu_ms_per_request"] = round(
                    r["server_cpu_ms_per_request"] - row["bare"]["cpu_ms_per_clip"], 3
                )
                r["share_of_bare"] = round(r["req_s"] / row["bare"]["clips_s"], 3)
        report["cases"][case] = row
    return report


def print_table(report: dict) -> None:
    print(
        f"{'case':9} {'server':34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non2xx':>6} "
        f"{'CPU ms/req':>10} {'front-end':>9} {'of bare':>8}"
    )
    for case, row in report["cases"].items():
        b = row["bare"]
        label = f"bare b={b['batch']}"
        print(
            f"{case:9} {label:34} {b['clips_s']:8.1f} {'':>8} {'':>8} {'':>6} "
            f"{b['cpu_ms_per_clip']:10.3f}"
        )
        for key, r in row.items():
            if isinstance(r, dict) and "req_s" in r:
                print(
                    f"{case:9} {key:34} {r['req_s']:8.1f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} "
                    f"{r['non_2xx']:6d} {r['server_cpu_ms_per_request']:10.3f} "
                    f"{r['front_end_cpu_ms_per_request']:9.3f} {r['share_of_bare']:8.1%}"
                )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bare_only:
        bare_serve(args.bare_only)
        return 0
    if shutil.which("wrk") is None:
        print("bench/frontend.py needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    if args.pause_pid:
        os.kill(args.pause_pid, signal.SIGSTOP)
    try:
        report = run(args)
    finally:
        if args.pause_pid:
            os.kill(args.pause_pid, signal.SIGCONT)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
