"""The CPU a request costs outside the model: framecast against LitServe and the bare model.

    python3 bench/frontend/frontend.py                                  # full run (~10 minutes
    here) python3 bench/frontend/frontend.py --duration 5 --cases classify    # a quick look
    python3 bench/frontend/frontend.py --pause-pid $(pgrep -f "framecast train")   # pause a
    training

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
as multipart PNG files and as one uint8 ``.npy`` (LitServe takes the JSON form only). With
``--keys`` a one-worker framecast row runs with API keys on as a tenant would meet them: a keys
file (``FRAMECAST_API_KEYS_FILE``) whose key has the ``infer`` scope and per-key limits (a rate
and a cap on requests in flight, both far above the load), every wrk request sending
``Authorization: Bearer``. A framecast row of one process also has ``gc_us_per_request``: its
garbage-collector passes (``framecast_gc_seconds_total`` in its /metrics) per request.
``"layers"`` in the JSON is what each pure-ASGI layer costs a request
in CPU microseconds, each alone, in-process (``bench/frontend/frontend_layers.py``; ``--layers 0``
skips it): the keys off, FRAMECAST_API_KEYS, and a keys file with and without limits.

Cases: ``classify`` (``conv2d_lstm_classify``: cheap on this CPU, the front end dominates) and
``predict`` (``convlstm2d_next_frame``, horizon 1: the model dominates). Servers: framecast with
``--workers`` 1 (and each count in ``--framecast-workers``), and LitServe 0.2.x serving the same
checkpoint with the same batching (``bench/frontend/litserve_app.py``, ``max_batch_size=32``,
``batch_timeout=5 ms``). LitServe is not a framecast dependency; give the Python that has it
with ``--litserve-python`` (e.g. a venv made with ``--system-site-packages`` and
``pip install litserve``), or ``--no-litserve``.

Writes ``--out`` (default ``docs/bench/frontend.json``) and prints a table.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from frontend_bare import Bare, bare_serve, bare_sizings, bare_summary
from frontend_layers import SECRET, layer_costs
from harness import ROOT, Server, free_port, parse_wrk, paused, thread_cpu_s, tree_cpu_s, wrk_post

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


def wrk(
    url: str,
    body: bytes,
    connections: int,
    duration: float,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> dict:
    """One wrk run (2 threads) POSTing ``body``: requests, req/s, p50/p99 ms, non-2xx answers
    and socket errors."""
    r = parse_wrk(wrk_post(url, body, content_type, connections, duration, headers=headers))
    return {
        "requests": r["requests"],
        "req_s": r["req_s"],
        "p50_ms": r["latency_ms"][50],
        "p99_ms": r["latency_ms"][99],
        "non_2xx": r["non_2xx"],
        "socket_errors": r["socket_errors"],
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
    for _, server, url, _, (body, ctype, *head) in servers:
        server.wait_ready()
        wrk(url, body, args.connections, 3, ctype, *head)  # warm: every batch shape, pools
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
                key, server, url, loop, (body, ctype, *head) = entry
                pid = server.proc.pid
                cpu0, loop0 = tree_cpu_s(pid), thread_cpu_s(pid) if loop else 0.0
                gc0 = gc_seconds(url) if loop else None
                r = wrk(url, body, args.connections, per_run, ctype, *head)
                r["cpu_s"] = tree_cpu_s(pid) - cpu0
                if loop:  # one process: its main thread is the event loop (HTTP, decode, encode)
                    r["loop_s"] = thread_cpu_s(pid) - loop0
                    gc1 = gc_seconds(url) if gc0 is not None else None
                    if gc1 is not None:
                        r["gc_s"] = gc1 - gc0  # type: ignore[operator]
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
        if runs and all("gc_s" in r for r in runs):  # framecast_gc_seconds_total, in /metrics
            row["gc_us_per_request"] = round(1e6 * sum(r["gc_s"] for r in runs) / n, 2)
        out[key] = row
    return out


def gc_seconds(url: str) -> float | None:
    """The seconds a framecast server at ``url`` (any of its paths) has spent in garbage-collector
    passes (``framecast_gc_seconds_total`` in its /metrics), or None: another server, an earlier
    framecast without the counter, or /metrics behind a key."""
    parts = urllib.parse.urlsplit(url)
    try:
        with urllib.request.urlopen(f"{parts.scheme}://{parts.netloc}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return None
    got = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("framecast_gc_seconds_total{")
    ]
    return sum(got) if got else None


def framecast_server(
    root: Path, port: int, workers: int, extra: dict | None = None, tree: Path | None = None
) -> Server:
    """framecast serving the models in ``root``: this checkout's, or ``tree``'s (another
    checkout of framecast, e.g. an earlier release's worktree, run from its own folder)."""
    cmd = [sys.executable, "-m", "service.cli", "serve", "--models-dir", str(root)]
    cmd += ["--port", str(port), "--log-level", "warning", "--workers", str(workers)]
    env = {**os.environ, "FRAMECAST_MAX_QUEUE": "512", **(extra or {})}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return Server(cmd, port, "/readyz", env=env, cwd=tree, group=True)


def litserve_server(python: str, folder: Path, port: int, env: dict | None = None) -> Server:
    cmd = [
        python,
        str(ROOT / "bench" / "frontend" / "litserve_app.py"),
        str(folder),
        "--port",
        str(port),
    ]
    return Server(cmd, port, "/health", env={**os.environ, **(env or {})}, group=True)


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
    p.add_argument(
        "--keys",
        action="store_true",
        help="one more one-worker framecast row with API keys on: a keys file whose key has the "
        "infer scope and per-key limits, every request sending its Authorization header",
    )
    p.add_argument(
        "--layers",
        type=int,
        default=20000,
        help="requests per round of the in-process cost of each layer "
        "(bench/frontend/frontend_layers.py; 0: not measured)",
    )
    p.add_argument(
        "--also-tree",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="one more one-worker framecast row (JSON body) served from another checkout, e.g. "
        "an earlier release's worktree: two commits compared in one run",
    )
    p.add_argument("--pause-pid", type=int, help="SIGSTOP this process during the run")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "frontend.json")
    p.add_argument("--bare-only", type=Path, help=argparse.SUPPRESS)  # a Bare process
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    report: dict = {
        "command": "python3 bench/frontend/frontend.py " + " ".join(sys.argv[1:]),
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
            if args.keys:  # the keys and limits in place, as a tenant meets them
                keys_env = {"FRAMECAST_API_KEYS_FILE": str(keys_file(root))}
                variants.append((" keys", keys_env))
            for suffix, env in variants:
                for workers in [int(w) for w in args.framecast_workers.split(",")]:
                    if suffix == " keys" and workers != 1:
                        continue
                    port = free_port()
                    srv = framecast_server(root, port, workers, env)
                    url = f"http://127.0.0.1:{port}{path}"
                    key = f"framecast_w{workers}{suffix}"
                    head = AUTH if suffix == " keys" else {}
                    servers.append((key, srv, url, workers == 1, (*forms["json"], head)))
                    if suffix or workers != 1:
                        continue
                    for form in args.bodies.split(","):  # the same server, another upload form
                        if form != "json":
                            servers.append((f"{key} body={form}", srv, url, True, forms[form]))
            for spec in args.also_tree:  # another commit, the same load and turns
                tree_name, _, tree = spec.partition("=")
                port = free_port()
                srv = framecast_server(root, port, 1, None, Path(tree).resolve())
                url = f"http://127.0.0.1:{port}{path}"
                servers.append((f"framecast_w1 tree={tree_name}", srv, url, True, forms["json"]))
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
    if args.layers:
        report["layers"] = layer_costs(args.layers)
    return report


AUTH = {"Authorization": f"Bearer {SECRET}"}


def keys_file(folder: Path) -> Path:
    """A keys file of one key (infer scope, per-key limits far above the load)."""
    import hashlib

    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    path = folder / "keys.toml"
    path.write_text(
        f'[[keys]]\nid = "bench"\nsha256 = "{digest}"\nscopes = ["infer"]\n'
        "rate_per_s = 1000000\nmax_concurrent = 100000\n"
    )
    return path


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
        print("bench/frontend/frontend.py needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    with paused(args.pause_pid):
        report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    layers = report.get("layers")
    if layers:
        print("CPU µs per request in each layer alone (in-process):")
        for name, us in layers["us_per_request"].items():
            print(f"  {name:32} {us:8.2f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
