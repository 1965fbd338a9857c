"""Triton's perf_analyzer against framecast, unchanged (issue #26, item 7).

    bench/perf_analyzer_setup.sh runs/perf_analyzer          # once: the binary and a C runtime
    python3 bench/ecosystem/perf_analyzer.py [--dir runs/perf_analyzer] [--concurrency 1,2,4,8]
        [--models conv2d_lstm_classify,convlstm2d_classify] [--interval-ms 5000]
        [--protocols http,grpc] [--out docs/bench/perf_analyzer.json] [--pause-pid PID]
        [--models-dir DIR]                                    # a models folder of your own

It starts ``framecast serve`` with the bundled models on a free loopback port (and gRPC on
another, ``--grpc-port``) and runs perf_analyzer over HTTP and over gRPC (``-i grpc``) for each
classifier at each concurrency (``--concurrency-range``),
``--input-data zero`` (perf_analyzer's random FP32 bytes include NaN, which framecast refuses
with a 400), batch 1, its own stabilisation (``time_windows`` of ``--interval-ms``). perf_analyzer
reads the model's configuration (``/v2/models/{m}/config``) first and the server's statistics
(``/v2/models/{m}/stats``) around each window, so its server-side split (queue, compute input,
infer, output) is framecast's own. The figures come from its ``-f`` CSV; JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from harness import HOST, ROOT, Server, free_port, paused_all

from models.repository import atomic_write_text


def perf_analyzer_cmd(folder: Path) -> list[str]:
    """How to start perf_analyzer from bench/perf_analyzer_setup.sh's folder (through the newer
    loader when there is one), or from PATH."""
    binary = folder / "wheel" / "perf_analyzer" / "bin" / "perf_analyzer"
    loader = folder / "runtime" / "usr" / "lib64" / "ld-linux-x86-64.so.2"
    if binary.is_file() and loader.is_file():
        libs = folder / "runtime" / "usr" / "lib" / "x86_64-linux-gnu"
        return [str(loader), "--library-path", str(libs), str(binary)]
    if binary.is_file():
        return [str(binary)]
    return ["perf_analyzer"]


def parse_csv(text: str) -> list[dict]:
    rows = []
    for r in csv.DictReader(io.StringIO(text)):
        rows.append(
            {
                "concurrency": int(r["Concurrency"]),
                "infer_per_s": round(float(r["Inferences/Second"]), 1),
                "p50_ms": round(int(r["p50 latency"]) / 1000, 2),
                "p99_ms": round(int(r["p99 latency"]) / 1000, 2),
                "server_queue_ms": round(int(r["Server Queue"]) / 1000, 2),
                "server_compute_input_ms": round(int(r["Server Compute Input"]) / 1000, 2),
                "server_compute_infer_ms": round(int(r["Server Compute Infer"]) / 1000, 2),
                "server_compute_output_ms": round(int(r["Server Compute Output"]) / 1000, 2),
            }
        )
    return rows


def measure(pa: list[str], model: str, protocol: str, port: int, level: int, args) -> list[dict]:
    """One perf_analyzer run at one concurrency: its CSV's rows."""
    with tempfile.NamedTemporaryFile(suffix=".csv") as f:
        run = subprocess.run(
            [*pa, "-m", model, "-u", f"{HOST}:{port}", "-i", protocol,
             "--concurrency-range", f"{level}:{level}",
             "--measurement-interval", str(args.interval_ms),
             "--input-data", "zero", "--max-trials", "20",
             "--stability-percentage", str(args.stability), "-f", f.name],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if run.returncode != 0:
            print(run.stdout[-3000:], run.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"perf_analyzer failed on {model} over {protocol} at {level}")
        return parse_csv(Path(f.name).read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", type=Path, default=ROOT / "runs" / "perf_analyzer")
    p.add_argument("--models", default="conv2d_lstm_classify,convlstm2d_classify")
    p.add_argument("--concurrency", default="1,2,4,8")
    p.add_argument("--interval-ms", type=int, default=5000)
    p.add_argument("--stability", type=int, default=15, help="perf_analyzer's stability %%")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "perf_analyzer.json")
    p.add_argument("--protocols", default="http,grpc")
    p.add_argument(
        "--models-dir", type=Path, default=None, help="serve this models folder (default: bundled)"
    )
    p.add_argument("--pause-pid", type=int, action="append", default=[])
    args = p.parse_args(argv)
    protocols = args.protocols.split(",")
    pa = perf_analyzer_cmd(args.dir)
    levels = [int(c) for c in args.concurrency.split(",")]
    port, grpc_port = free_port(), free_port()
    ports = {"http": port, "grpc": grpc_port}
    env = {**os.environ, "FRAMECAST_LOAD_MODE": "blocking", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("FRAMECAST_API_KEYS", None)
    if args.models_dir is not None:
        env["FRAMECAST_MODELS_DIR"] = str(args.models_dir)
    cmd = [sys.executable, "-m", "service.cli", "serve", "--host", HOST, "--port", str(port)]
    cmd += ["--grpc-port", str(grpc_port), "--log-level", "warning"]
    results: dict[str, dict] = {}
    with paused_all(args.pause_pid):
        server = Server(cmd, port, "/readyz", env=env, cwd=ROOT)
        try:
            server.wait_ready()
            for model in args.models.split(","):
                results[model] = {}
                for protocol in protocols:
                    rows = []
                    for level in levels:
                        rows += measure(pa, model, protocol, ports[protocol], level, args)
                        r = rows[-1]
                        print(f"{model} {protocol} c={level}: {r['infer_per_s']} infer/s, p50 "
                              f"{r['p50_ms']} ms, p99 {r['p99_ms']} ms", flush=True)  # fmt: skip
                    results[model][protocol] = rows
        finally:
            server.stop()
    version = subprocess.run([*pa, "--version"], capture_output=True, text=True).stdout.strip()
    report = {
        "what": "perf_analyzer (Triton's load tool) against framecast serve, unchanged, over "
        + " and ".join(p.upper().replace("GRPC", "gRPC") for p in protocols),
        "command": "python3 bench/ecosystem/perf_analyzer.py --concurrency " + args.concurrency,
        "perf_analyzer": version or "perf_analyzer 2.60.0 (PyPI perf-analyzer)",
        "options": f"-i {'|'.join(protocols)} --input-data zero "
        f"--measurement-interval {args.interval_ms} "
        f"--stability-percentage {args.stability} --max-trials 20, batch 1",
        "machine": f"{os.cpu_count()} CPUs, "
        + (f"models from {args.models_dir}" if args.models_dir else "bundled models"),
        "models": results,
    }
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"figures in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
