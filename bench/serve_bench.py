"""framecast vs. the common FastAPI server, side by side on loopback,
with the bare model as ceiling.

    python3 bench/serve_bench.py                       # full run: both next-frame models
    python3 bench/serve_bench.py --quick               # ~2-3 minutes: ConvLSTM2D, concurrency 1, 32
    python3 bench/serve_bench.py --make-untrained /tmp/untrained   # untrained default-shape models

For each next-frame model (default: ``convlstm2d_next_frame`` and ``conv2d_lstm_next_frame``
under ``--models-dir``) it

1. measures the bare model (a child process, no HTTP): ``predict_on_batch`` clips/s at batch
   1 ... 64 (the best is the *ceiling*) and the median latency of one clip;
2. starts the baseline (``bench/baseline_server.py``: FastAPI, ``model.predict`` per request),
   warms it, and drives it at each concurrency with the same load generator;
3. does the same for framecast (``service.app``, settings from the ``FRAMECAST_*`` environment),
   then sends more requests until ``--rss-requests`` in all, for the memory check.

Both servers load the same checkpoint (a folder holding only that model). Every request is a
multipart upload of 10 real 64x64 PNG frames (Moving MNIST clips from MNIST test digits when
``FRAMECAST_MNIST_DIR`` or ``--mnist-dir`` finds them, else moving squares), rotating over 16
clips. The load generator is closed-loop: ``c`` workers on keep-alive connections, each sending
its next request when the previous answer is in, bounded by ``--requests`` per level and
``--seconds`` per level. It reports req/s (answers with status 200 / wall time), p50/p95/p99
latency, errors (any other status or a failed connection), peak RSS of the server process (sampled
every 50 ms from /proc), framecast's Server-Timing phases (mean decode/queue/model/encode ms) and
its mean batch size, and the ratio framecast/baseline from the same run.

It prints a table, checks the targets of issue 5 (PASS/FAIL each) and writes JSON and a PNG plot
(drawn with Pillow) to ``--out`` (default ``runs/bench/``).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_MODELS = ("convlstm2d_next_frame", "conv2d_lstm_next_frame")
TARGET_MODEL = "convlstm2d_next_frame"
LABELS = {"convlstm2d_next_frame": "ConvLSTM2D", "conv2d_lstm_next_frame": "Conv2D+LSTM"}
BARE_BATCHES = (1, 2, 4, 8, 16, 32, 64)
FRAMES, SIZE = 10, 64


# --------------------------------------------------------------------------- models and data


def make_untrained(out: Path) -> Path:
    """Untrained next-frame models of the default shapes (models.train.DEFAULT_CONFIGS)."""
    from models.architectures import build, count_flops
    from models.repository import Manifest, save_model_folder
    from models.train import DEFAULT_CONFIGS

    for name in DEFAULT_MODELS:
        arch = name.replace("_next_frame", "")
        kwargs = dict(DEFAULT_CONFIGS[(arch, "next_frame")])
        model = build(
            arch,
            task="next_frame",
            time_steps=FRAMES,
            height=SIZE,
            width=SIZE,
            channels=1,
            name=name,
            **kwargs,
        )
        try:
            flops = count_flops(model)
        except Exception:  # noqa: BLE001 - informational only
            flops = 0
        manifest = Manifest(
            name=name,
            architecture=arch,
            task="next_frame",
            frames=FRAMES,
            height=SIZE,
            width=SIZE,
            channels=1,
            flops_per_clip=flops,
            builder_kwargs=kwargs,
            training={"note": "untrained (bench/serve_bench.py --make-untrained)"},
        )
        save_model_folder(out / name, model, manifest)
        print(f"wrote untrained {name} ({manifest.params:,} params) to {out / name}", flush=True)
    return out


def sample_clips(n: int, mnist_dir: str | None) -> tuple[np.ndarray, str]:
    """(n, 10, 64, 64) uint8 clips and where they came from."""
    from models import data

    candidates = [
        mnist_dir,
        os.environ.get("FRAMECAST_MNIST_DIR"),
        ROOT / "shared/data/mnist",
        ROOT.parent / "shared/data/mnist",
    ]
    for c in candidates:
        if c and Path(c).exists():
            try:
                digits = data.load_mnist(c).digits("test")  # held out from training
                clips = data.next_frame_clips(digits, n, seed=1234, length=FRAMES)
                return (clips[..., 0] * 255).astype(np.uint8), f"Moving MNIST ({c})"
            except Exception as e:  # noqa: BLE001 - fall back to squares
                print(f"note: cannot make Moving MNIST clips from {c}: {e}", file=sys.stderr)
    rng = np.random.default_rng(0)
    clips = np.zeros((n, FRAMES, SIZE, SIZE), np.uint8)
    for i in range(n):
        y, x = rng.integers(0, SIZE - 16, 2)
        dy, dx = rng.integers(-3, 4, 2)
        for t in range(FRAMES):
            yy, xx = (y + dy * t) % (SIZE - 16), (x + dx * t) % (SIZE - 16)
            clips[i, t, yy : yy + 16, xx : xx + 16] = 255
    return clips, "moving squares (no MNIST found)"


def multipart(frames: np.ndarray) -> tuple[bytes, str]:
    from PIL import Image

    boundary = "framecastbench" + os.urandom(6).hex()
    out = io.BytesIO()
    for i, f in enumerate(frames):
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="PNG")
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="f{i}.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
        )
        out.write(buf.getvalue())
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def http_requests(model: str, port: int, clips: np.ndarray) -> list[bytes]:
    reqs = []
    for c in clips:
        body, ctype = multipart(c)
        head = (
            f"POST /v1/models/{model}/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: keep-alive\r\n\r\n"
        ).encode()
        reqs.append(head + body)
    return reqs


# --------------------------------------------------------------------------- bare compute


def bare_compute(folder: Path, seconds: float) -> dict:
    """Runs in a child process: predict_on_batch at each batch size; clips/s and latency."""
    import keras

    from models.repository import read_manifest

    m = read_manifest(folder)
    model = keras.saving.load_model(folder / m.checkpoint, compile=False)
    rng = np.random.default_rng(0)
    per = {}
    for b in BARE_BATCHES:
        x = rng.random((b, m.frames, m.height, m.width, m.channels), dtype=np.float32)
        for _ in range(2):
            np.asarray(model.predict_on_batch(x))
        times, t_end = [], time.perf_counter() + seconds / len(BARE_BATCHES)
        while len(times) < 3 or time.perf_counter() < t_end:
            t0 = time.perf_counter()
            np.asarray(model.predict_on_batch(x))
            times.append(time.perf_counter() - t0)
            if len(times) >= 200:
                break
        med = statistics.median(times)
        per[b] = {"median_ms": med * 1000.0, "clips_per_s": b / med, "calls": len(times)}
    best = max(per, key=lambda b: per[b]["clips_per_s"])
    return {
        "per_batch": per,
        "ceiling_clips_per_s": per[best]["clips_per_s"],
        "best_batch": best,
        "one_clip_ms": per[1]["median_ms"],
        "backend": keras.backend.backend(),
    }


def run_bare(folder: Path, seconds: float) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--internal-bare", str(folder), "--bare-seconds", str(seconds)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
    )
    if out.returncode != 0:
        raise RuntimeError(f"bare compute failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["per_batch"] = {int(k): v for k, v in res["per_batch"].items()}
    return res


# --------------------------------------------------------------------------- servers


def child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, kind: str, folder: Path, models_root: Path, port: int):
        self.kind, self.port = kind, port
        if kind == "baseline":
            cmd = [
                sys.executable,
                str(ROOT / "bench" / "baseline_server.py"),
                "--model-dir",
                str(folder),
                "--port",
                str(port),
            ]
            self.ready_path = "/healthz"
        else:
            code = (
                "import uvicorn\nfrom service.app import create_app\n"
                "from service.config import load_settings\n"
                f"s = load_settings(models_dir={str(models_root)!r}, load_mode='blocking', "
                "log_level='warning')\n"
                f"uvicorn.run(create_app(s), host='127.0.0.1', port={port}, "
                "log_level='warning', access_log=False)\n"
            )
            cmd = [sys.executable, "-c", code]
            self.ready_path = "/readyz"
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=child_env(), stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 600.0) -> float:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(
                    f"{self.kind} server exited:\n"
                    f"{self.log.read().decode(errors='replace')[-3000:]}"
                )
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=2
                ) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.kind} server not ready after {timeout:.0f} s")

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


class RSSSampler:
    """Peak RSS of a server while a level runs (sampled every 50 ms)."""

    def __init__(self, server: Server):
        self.server, self.peak = server, server.rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.server.rss_mb())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.server.rss_mb())


# --------------------------------------------------------------------------- load generator


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = await reader.read()
    return status, headers, body


async def drive(
    port: int,
    reqs: list[bytes],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    timeout: float = 60.0,
) -> dict:
    """Closed loop: ``concurrency`` keep-alive connections, bounded in requests and time."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    phases: dict[str, list[float]] = {}
    batches: list[int] = []
    counter = itertools.count()
    deadline = time.perf_counter() + max_seconds

    async def worker():
        reader = writer = None
        while True:
            i = next(counter)
            if i >= max_requests or time.perf_counter() > deadline:
                break
            t0 = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(reqs[i % len(reqs)])
                await writer.drain()
                status, headers, _ = await asyncio.wait_for(_read_response(reader), timeout)
            except Exception as e:  # noqa: BLE001 - counted as an error
                statuses[type(e).__name__] = statuses.get(type(e).__name__, 0) + 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            dt = time.perf_counter() - t0
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status == 200:
                latencies.append(dt)
                for part in headers.get("server-timing", "").split(","):
                    if ";dur=" in part:
                        k, v = part.strip().split(";dur=")
                        phases.setdefault(k, []).append(float(v))
                if "x-batch-size" in headers:
                    batches.append(int(headers["x-batch-size"]))
            if headers.get("connection", "").lower() == "close":
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    ok = len(latencies)
    lat = np.array(latencies) * 1000.0 if latencies else np.array([float("nan")])
    return {
        "concurrency": concurrency,
        "requests": sum(statuses.values()),
        "ok": ok,
        "errors": sum(v for k, v in statuses.items() if k != "200"),
        "statuses": statuses,
        "wall_s": wall,
        "rps": ok / wall if wall else 0.0,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
        "mean_ms": float(lat.mean()),
        "phases_ms": {k: float(np.mean(v)) for k, v in phases.items()},
        "mean_batch": float(np.mean(batches)) if batches else None,
    }


# --------------------------------------------------------------------------- one server


def bench_server(kind: str, model: str, folder: Path, root: Path, clips: np.ndarray, args) -> dict:
    port = free_port()
    server = Server(kind, folder, root, port)
    try:
        ready_s = server.wait_ready()
        reqs = http_requests(model, port, clips)
        top = max(args.concurrency)
        asyncio.run(drive(port, reqs, 1, 4, 60))  # warm-up: one at a time, then the top level
        warm = asyncio.run(drive(port, reqs, top, top if args.quick else 2 * top, 120))
        rss_warm = server.rss_mb()
        print(
            f"  {kind:9s} ready in {ready_s:5.1f} s; warm-up errors {warm['errors']}; "
            f"RSS after warm-up {rss_warm:.0f} MB",
            flush=True,
        )
        levels, sent = [], 0
        for c in args.concurrency:
            with RSSSampler(server) as s:
                r = asyncio.run(drive(port, reqs, c, args.requests, args.seconds))
            r["peak_rss_mb"] = s.peak
            sent += r["requests"]
            levels.append(r)
            print(
                f"  {kind:9s} c={c:<3d} {r['rps']:8.1f} req/s  p50 {r['p50_ms']:8.1f} ms  "
                f"p99 {r['p99_ms']:8.1f} ms  errors {r['errors']}  peak RSS "
                f"{s.peak:.0f} MB"
                + (f"  mean batch {r['mean_batch']:.1f}" if r["mean_batch"] else ""),
                flush=True,
            )
        out = {"ready_s": ready_s, "rss_after_warmup_mb": rss_warm, "levels": levels}
        if kind == "framecast" and args.rss_requests > sent:
            with RSSSampler(server) as s:
                extra = asyncio.run(
                    drive(port, reqs, min(32, top), args.rss_requests - sent, args.rss_seconds)
                )
            sent += extra["requests"]
            peak = max([s.peak] + [lv["peak_rss_mb"] for lv in levels])
            out["rss_check"] = {
                "requests": sent,
                "rss_after_warmup_mb": rss_warm,
                "peak_rss_mb": peak,
                "rss_end_mb": server.rss_mb(),
                "errors": extra["errors"],
            }
        elif kind == "framecast":
            peak = max(lv["peak_rss_mb"] for lv in levels)
            out["rss_check"] = {
                "requests": sent,
                "rss_after_warmup_mb": rss_warm,
                "peak_rss_mb": peak,
                "rss_end_mb": server.rss_mb(),
                "errors": 0,
            }
        return out
    finally:
        server.stop()


# --------------------------------------------------------------------------- report


def targets(results: dict, rss_requests: int) -> list[dict]:
    out = []
    r = results["models"].get(TARGET_MODEL)
    if r is None:
        return out
    bare = r["bare"]
    fc = {lv["concurrency"]: lv for lv in r["framecast"]["levels"]}
    base = {lv["concurrency"]: lv for lv in r["baseline"]["levels"]} if r.get("baseline") else {}
    for c in (32, 64):
        if c not in fc:
            continue
        lv = fc[c]
        ceil = bare["ceiling_clips_per_s"]
        out.append(
            {
                "target": f"c={c}: framecast >= 80% of bare batched compute",
                "value": f"{lv['rps']:.1f} req/s vs {0.8 * ceil:.1f} (80% of {ceil:.1f})",
                "pass": lv["rps"] >= 0.8 * ceil,
            }
        )
        if c in base:
            b = base[c]["rps"]
            out.append(
                {
                    "target": f"c={c}: framecast >= 4x the common server",
                    "value": f"{lv['rps']:.1f} vs {4 * b:.1f} (4 x {b:.1f}) req/s",
                    "pass": lv["rps"] >= 4 * b,
                }
            )
        out.append(
            {"target": f"c={c}: zero errors", "value": str(lv["errors"]), "pass": lv["errors"] == 0}
        )
    if 1 in fc:
        limit = 1.2 * bare["one_clip_ms"] + 3.0
        out.append(
            {
                "target": "c=1: p50 <= 1.2 x bare one-clip + 3 ms",
                "value": f"{fc[1]['p50_ms']:.1f} ms vs {limit:.1f} ms (bare "
                f"{bare['one_clip_ms']:.1f} ms)",
                "pass": fc[1]["p50_ms"] <= limit,
            }
        )
    rc = r["framecast"].get("rss_check")
    if rc:
        ok = rc["peak_rss_mb"] <= 1.10 * rc["rss_after_warmup_mb"]
        note = "" if rc["requests"] >= rss_requests else f" (only {rc['requests']} sent)"
        out.append(
            {
                "target": f"peak RSS over {rc['requests']} requests within 10% of warm-up",
                "value": f"{rc['peak_rss_mb']:.0f} MB vs {rc['rss_after_warmup_mb']:.0f} MB "
                f"(+{100 * (rc['peak_rss_mb'] / rc['rss_after_warmup_mb'] - 1):.1f}%)" + note,
                "pass": ok,
            }
        )
    return out


def print_table(results: dict) -> None:
    print()
    hdr = (
        f"{'model':12s} {'server':9s} {'c':>3s} {'req/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s} "
        f"{'p99 ms':>8s} {'err':>4s} {'RSS MB':>7s} {'fc/base':>7s} {'batch':>5s}"
    )
    print(hdr)
    print("-" * len(hdr))
    for model, r in results["models"].items():
        base = (
            {lv["concurrency"]: lv for lv in r["baseline"]["levels"]} if r.get("baseline") else {}
        )
        for kind in ("baseline", "framecast"):
            if not r.get(kind):
                continue
            for lv in r[kind]["levels"]:
                c = lv["concurrency"]
                ratio = (
                    f"{lv['rps'] / base[c]['rps']:7.2f}"
                    if kind == "framecast" and c in base and base[c]["rps"]
                    else f"{'':7s}"
                )
                batch = f"{lv['mean_batch']:5.1f}" if lv.get("mean_batch") else f"{'':5s}"
                print(
                    f"{LABELS.get(model, model)[:12]:12s} {kind:9s} {c:3d} {lv['rps']:8.1f} "
                    f"{lv['p50_ms']:8.1f} {lv['p95_ms']:8.1f} {lv['p99_ms']:8.1f} "
                    f"{lv['errors']:4d} {lv['peak_rss_mb']:7.0f} {ratio} {batch}"
                )
        b = r["bare"]
        print(
            f"{LABELS.get(model, model)[:12]:12s} {'bare':9s}     ceiling "
            f"{b['ceiling_clips_per_s']:.1f} clips/s (batch {b['best_batch']}); one clip "
            f"{b['one_clip_ms']:.1f} ms"
        )
        fc = r.get("framecast") or {}
        for lv in fc.get("levels", []):
            if lv["phases_ms"]:
                ph = "  ".join(f"{k} {v:.1f}" for k, v in lv["phases_ms"].items())
                print(
                    f"{'':12s} framecast c={lv['concurrency']:<3d} Server-Timing means (ms): {ph}"
                )
    print()


def plot(results: dict, path: Path) -> None:
    """Throughput and latency per concurrency, one row per model (Pillow, no matplotlib)."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=14)
    except TypeError:
        font = ImageFont.load_default()
    models = list(results["models"])
    pw, ph, pad = 560, 330, 60
    img = Image.new("RGB", (2 * pw + 40, len(models) * (ph + 40) + 50), "white")
    d = ImageDraw.Draw(img)
    d.text(
        (20, 12),
        f"framecast vs common FastAPI server - {results['started']} - "
        f"{results['host']['cpus']} CPUs, {results['backend']}",
        fill="black",
        font=font,
    )
    colours = {"baseline": (200, 90, 60), "framecast": (40, 110, 190)}
    for row, model in enumerate(models):
        r = results["models"][model]
        y0 = 45 + row * (ph + 40)
        kinds = [k for k in ("baseline", "framecast") if r.get(k)]
        levels = [lv["concurrency"] for lv in r[kinds[-1]]["levels"]]
        for col, (metric, title, log) in enumerate(
            [
                ("rps", "req/s (dashed: bare batched ceiling)", False),
                ("p50_ms", "latency ms, log scale (bar p50, tick p99)", True),
            ]
        ):
            x0 = 20 + col * (pw + 10)
            d.rectangle([x0, y0, x0 + pw, y0 + ph], outline=(180, 180, 180))
            d.text(
                (x0 + 8, y0 + 6), f"{LABELS.get(model, model)}: {title}", fill="black", font=font
            )
            vals = [lv[metric] for k in kinds for lv in r[k]["levels"]]
            if metric == "p50_ms":
                vals += [lv["p99_ms"] for k in kinds for lv in r[k]["levels"]]
            ceiling = r["bare"]["ceiling_clips_per_s"] if metric == "rps" else None
            top = max([v for v in vals if v == v] + ([ceiling] if ceiling else []) + [1e-3])
            lo = min([v for v in vals if v == v and v > 0] + [1.0])
            gx0, gx1, gy0, gy1 = x0 + pad, x0 + pw - 15, y0 + 30, y0 + ph - 35

            def ypos(v, _top=top, _lo=lo, _log=log, _gy0=gy0, _gy1=gy1):
                if _log:
                    a, b = np.log10(max(_lo / 2, 1e-3)), np.log10(_top * 1.3)
                    f = (np.log10(max(v, 1e-3)) - a) / (b - a)
                else:
                    f = v / (_top * 1.15)
                return _gy1 - f * (_gy1 - _gy0)

            for i in range(5):  # axis labels
                if log:
                    a, b = np.log10(max(lo / 2, 1e-3)), np.log10(top * 1.3)
                    v = 10 ** (a + (b - a) * i / 4)
                else:
                    v = top * 1.15 * i / 4
                y = ypos(v)
                d.line([gx0, y, gx1, y], fill=(235, 235, 235))
                d.text(
                    (x0 + 4, y - 7),
                    f"{v:,.0f}" if v >= 10 else f"{v:.2g}",
                    fill=(90, 90, 90),
                    font=font,
                )
            slot = (gx1 - gx0) / len(levels)
            bw = slot / (len(kinds) + 1)
            for li, c in enumerate(levels):
                d.text(
                    (gx0 + li * slot + slot / 2 - 12, gy1 + 6), f"c={c}", fill="black", font=font
                )
                for ki, k in enumerate(kinds):
                    lv = next((x for x in r[k]["levels"] if x["concurrency"] == c), None)
                    if lv is None or lv[metric] != lv[metric]:
                        continue
                    bx = gx0 + li * slot + bw * (ki + 0.5)
                    d.rectangle([bx, ypos(lv[metric]), bx + bw * 0.9, gy1], fill=colours[k])
                    if metric == "p50_ms":
                        yt = ypos(lv["p99_ms"])
                        d.line([bx, yt, bx + bw * 0.9, yt], fill="black", width=2)
            if ceiling:
                y = ypos(ceiling)
                for xs in range(int(gx0), int(gx1), 14):
                    d.line([xs, y, xs + 7, y], fill=(20, 150, 60), width=2)
            for ki, k in enumerate(kinds):
                lx = gx1 - 190 + ki * 95
                d.rectangle([lx, y0 + 30, lx + 12, y0 + 42], fill=colours[k])
                d.text((lx + 16, y0 + 28), k, fill="black", font=font)
    img.save(path)


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument(
        "--models-dir",
        type=Path,
        default=ROOT / "models",
        help="folder holding the next-frame model folders (default: models/)",
    )
    p.add_argument(
        "--make-untrained",
        type=Path,
        metavar="DIR",
        help="write untrained models of the default shapes to DIR and benchmark them",
    )
    p.add_argument(
        "--models",
        nargs="+",
        help=f"model names (default: {' '.join(DEFAULT_MODELS)}; --quick: {TARGET_MODEL})",
    )
    p.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        help="comma-separated levels (default 1,8,32,64; --quick 1,32)",
    )
    p.add_argument(
        "--requests", type=int, help="most requests per level (default 1000; --quick 80)"
    )
    p.add_argument("--seconds", type=float, help="most seconds per level (default 60; --quick 12)")
    p.add_argument(
        "--rss-requests",
        type=int,
        help="framecast requests in all before the RSS check (default 2000; --quick 200)",
    )
    p.add_argument(
        "--rss-seconds",
        type=float,
        default=300.0,
        help="most seconds for the RSS top-up run (default 300)",
    )
    p.add_argument(
        "--bare-seconds",
        type=float,
        help="seconds of bare compute per model (default 20; --quick 5)",
    )
    p.add_argument("--skip-baseline", action="store_true", help="only framecast and bare compute")
    p.add_argument("--mnist-dir", help="MNIST IDX folder for real Moving MNIST clips")
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "runs" / "bench",
        help="folder for the JSON and PNG (default runs/bench/)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a short run to check the script (ConvLSTM2D, c=1,32, few requests)",
    )
    p.add_argument("--internal-bare", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    q = args.quick
    args.models = args.models or ([TARGET_MODEL] if q else list(DEFAULT_MODELS))
    args.concurrency = args.concurrency or ([1, 32] if q else [1, 8, 32, 64])
    args.requests = args.requests or (80 if q else 1000)
    args.seconds = args.seconds or (12.0 if q else 60.0)
    args.rss_requests = args.rss_requests if args.rss_requests is not None else (200 if q else 2000)
    args.bare_seconds = args.bare_seconds or (5.0 if q else 20.0)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.internal_bare:
        print(json.dumps(bare_compute(args.internal_bare, args.bare_seconds)))
        return 0
    # `timeout`/`kill` send SIGTERM: unwind so every server started here is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.make_untrained:
        args.models_dir = make_untrained(args.make_untrained)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    clips, source = sample_clips(16, args.mnist_dir)
    results = {
        "started": started,
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "clips": source,
        "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "host": {
            "cpus": os.cpu_count(),
            "platform": sys.platform,
            "python": sys.version.split()[0],
        },
        "settings": {k: v for k, v in os.environ.items() if k.startswith("FRAMECAST_")},
        "load": {
            "concurrency": args.concurrency,
            "requests_per_level": args.requests,
            "seconds_per_level": args.seconds,
            "rss_requests": args.rss_requests,
        },
        "models": {},
    }
    print(
        f"serve_bench {started}: models {', '.join(args.models)}; concurrency "
        f"{args.concurrency}; <= {args.requests} requests / {args.seconds:g} s per level; "
        f"clips: {source}",
        flush=True,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"serve_bench-{started.replace(':', '')}"

    def save() -> None:  # after every model, so an interrupted run keeps what it measured
        stem.with_suffix(".json").write_text(json.dumps(results, indent=2))

    with tempfile.TemporaryDirectory(prefix="framecast-bench-") as tmp:
        for model in args.models:
            folder = (args.models_dir / model).resolve()
            if not (folder / "manifest.json").exists():
                print(
                    f"skip {model}: no {folder / 'manifest.json'} (train it, or pass "
                    f"--models-dir / --make-untrained DIR)",
                    file=sys.stderr,
                )
                continue
            root = Path(tmp) / model  # a models dir holding only this model
            root.mkdir()
            (root / model).symlink_to(folder, target_is_directory=True)
            print(f"{model}: bare compute ...", flush=True)
            bare = run_bare(folder, args.bare_seconds)
            print(
                f"  bare      ceiling {bare['ceiling_clips_per_s']:.1f} clips/s at batch "
                f"{bare['best_batch']}; one clip {bare['one_clip_ms']:.1f} ms",
                flush=True,
            )
            entry = results["models"][model] = {"bare": bare, "folder": str(folder)}
            if not args.skip_baseline:
                entry["baseline"] = bench_server("baseline", model, folder, root, clips, args)
                save()
            entry["framecast"] = bench_server("framecast", model, folder, root, clips, args)
            save()
    if not results["models"]:
        print("no model was benchmarked", file=sys.stderr)
        return 2
    print_table(results)
    checks = targets(results, args.rss_requests)
    results["targets"] = checks
    if checks:
        print(f"targets (issue 5, {LABELS[TARGET_MODEL]} next-frame):")
        for t in checks:
            print(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {t['value']}")
    save()
    plot(results, stem.with_suffix(".png"))
    print(f"\nwrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
