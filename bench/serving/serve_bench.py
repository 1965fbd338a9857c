"""framecast vs. the common FastAPI server, side by side on loopback,
with the bare model as ceiling.

    python3 bench/serving/serve_bench.py                       # full run: both next-frame models
    python3 bench/serving/serve_bench.py --quick               # ~2-3 minutes: ConvLSTM2D,
    concurrency 1, 32 python3 bench/serving/serve_bench.py --make-untrained /tmp/untrained   #
    untrained default-shape models

For each next-frame model (default: ``convlstm2d_next_frame`` and ``conv2d_lstm_next_frame``
under ``--models-dir``) it

1. measures the bare model (a child process, no HTTP): ``predict_on_batch`` clips/s at batch
   1 ... 64 (the best is the *ceiling*) and the median latency of one clip;
2. starts the baseline (``bench/serving/baseline_server.py``: FastAPI, ``model.predict`` per
request),
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
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from harness import ROOT, Server, child_env, free_port, rss_mb
from serve_load import drive, http_requests
from serve_models import DEFAULT_MODELS, bare_compute, make_untrained, run_bare, sample_clips
from serve_report import LABELS, TARGET_MODEL, plot, print_table, targets

# --------------------------------------------------------------------------- servers


def start_server(kind: str, folder: Path, models_root: Path, port: int) -> Server:
    """The baseline (bench/serving/baseline_server.py on ``folder``) or framecast (``service.app``
    on ``models_root``, settings from the ``FRAMECAST_*`` environment)."""
    if kind == "baseline":
        cmd = [sys.executable, str(ROOT / "bench" / "serving" / "baseline_server.py")]
        cmd += ["--model-dir", str(folder), "--port", str(port)]
        ready_path = "/healthz"
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
        ready_path = "/readyz"
    return Server(cmd, port, ready_path, env=child_env(), cwd=ROOT, name=f"{kind} server")


def server_rss(server: Server) -> float:
    v = rss_mb(server.proc.pid)
    return float("nan") if v is None else v


class RSSSampler:
    """Peak RSS of a server while a level runs (sampled every 50 ms)."""

    def __init__(self, server: Server):
        self.server, self.peak = server, server_rss(server)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, server_rss(self.server))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, server_rss(self.server))


# --------------------------------------------------------------------------- one server


def bench_server(kind: str, model: str, folder: Path, root: Path, clips: np.ndarray, args) -> dict:
    port = free_port()
    server = start_server(kind, folder, root, port)
    try:
        ready_s = server.wait_ready(interval=0.25)
        reqs = http_requests(model, port, clips)
        top = max(args.concurrency)
        asyncio.run(drive(port, reqs, 1, 4, 60))  # warm-up: one at a time, then the top level
        warm = asyncio.run(drive(port, reqs, top, top if args.quick else 2 * top, 120))
        rss_warm = server_rss(server)
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
                "rss_end_mb": server_rss(server),
                "errors": extra["errors"],
            }
        elif kind == "framecast":
            peak = max(lv["peak_rss_mb"] for lv in levels)
            out["rss_check"] = {
                "requests": sent,
                "rss_after_warmup_mb": rss_warm,
                "peak_rss_mb": peak,
                "rss_end_mb": server_rss(server),
                "errors": 0,
            }
        return out
    finally:
        server.stop(signal.SIGINT, timeout=20)


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
