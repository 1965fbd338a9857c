"""Online latency with an evaluation job running beside it, and without, in one run (issue #39).

    python3 bench/evaluation/evaluate_load.py [--rate 10] [--seconds 20] [--rounds 3] [--clips 2000]
        [--mnist-dir DIR] [--out docs/bench/evaluate_load.json] [--pause-pid PID]

It starts ``framecast serve`` with the bundled models on a free loopback port, then sends online
``POST /v1/models/{m}/predict`` requests (a 10-frame clip as ``.npy``, ``horizon=1``, both
next-frame models in turn) at ``--rate`` requests per second per model, at Poisson times (an
open loop: a request's latency counts from the moment it was due, so a slow server cannot slow
the load down and hide its own delay). Rounds alternate: ``--seconds`` without a job, then
``--seconds`` with an evaluation job over both next-frame models running (``--clips`` 20-frame
Moving MNIST clips, ``holdout=10``; cancelled at the end of its phase), so both phases see the
same machine. The target (issue #39): online p99 with the job at most 1.5x without. The JSON
also has how many clips a second the job got through while the online load ran: what yielding
costs it.

Run it on a quiet machine: on a shared one, other work moves both phases' figures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from harness import HOST, ROOT, Server, free_port, paused_all

from models.repository import atomic_write_text

MODELS = ("conv2d_lstm_next_frame", "convlstm2d_next_frame")
TARGET = 1.5


def _npy(a) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def clips(n: int, mnist_dir: str | None):
    """``n`` 20-frame Moving MNIST clips, uint8 (real digits with ``mnist_dir``, else blobs)."""
    import numpy as np

    from models import data as D

    if mnist_dir:
        digits = D.load_mnist(mnist_dir).digits("test")
    else:  # bright rectangles where digits would be: the same shapes and costs
        rng = np.random.default_rng(0)
        digits = np.zeros((64, 28, 28), np.uint8)
        for d in digits:
            h, w = rng.integers(8, 20, 2)
            d[4 : 4 + h, 6 : 6 + w] = 255
    x = D.next_frame_clips(digits, n, seed=1234)
    return (x[..., 0] * 255).round().astype(np.uint8)


class Load:
    """Open-loop online requests: Poisson arrivals at ``rate`` per second per model."""

    def __init__(self, url: str, rate: float, body: bytes, seed: int = 0):
        import numpy as np

        self.url, self.rate, self.body = url, rate, body
        self.rng = np.random.default_rng(seed)
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(max_workers=64)

    def _client(self):
        import httpx

        if not hasattr(self.local, "http"):
            self.local.http = httpx.Client(base_url=self.url, timeout=60.0)
        return self.local.http

    def _one(self, model: str, due: float) -> tuple[float, int]:
        r = self._client().post(
            f"/v1/models/{model}/predict?horizon=1&output=npy",
            content=self.body,
            headers={"content-type": "application/x-npy"},
        )
        return time.perf_counter() - due, r.status_code

    def run(self, seconds: float) -> dict[str, list]:
        """Send the load for ``seconds``; each request's latency (s) and status, by model."""
        t0 = time.perf_counter()
        plan = []
        for model in MODELS:
            t, n = 0.0, 0
            while True:
                t += float(self.rng.exponential(1.0 / self.rate))
                if t >= seconds:
                    break
                plan.append((t, model))
                n += 1
            if not n:  # a short phase at a low rate: one request all the same
                plan.append((seconds / 2, model))
        plan.sort()
        futures = []
        for t, model in plan:
            due = t0 + t
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            futures.append((model, self.pool.submit(self._one, model, due)))
        out: dict[str, list] = {m: [] for m in MODELS}
        for model, f in futures:
            out[model].append(f.result())
        return out


def _stats(latencies: list[float]) -> dict:
    import numpy as np

    a = np.asarray(latencies) * 1000.0
    return {
        "requests": len(a),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "mean_ms": round(float(a.mean()), 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=10.0, help="online requests/s per model")
    p.add_argument("--seconds", type=float, default=20.0, help="each phase's length")
    p.add_argument("--rounds", type=int, default=3, help="without-job, with-job pairs")
    p.add_argument("--clips", type=int, default=2000, help="clips in the job's data set")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring")
    p.add_argument("--mnist-dir", default=None)
    p.add_argument(
        "--out", type=os.path.abspath, default=ROOT / "docs" / "bench" / "evaluate_load.json"
    )
    p.add_argument("--pause-pid", type=int, action="append", default=[])
    args = p.parse_args(argv)

    import httpx

    data = _npy(clips(args.clips, args.mnist_dir))
    online = _npy(clips(1, args.mnist_dir)[0, :10])
    port = free_port()
    jobs = tempfile.mkdtemp(prefix="framecast-bench-jobs-")
    env = {
        **os.environ,
        "FRAMECAST_LOAD_MODE": "blocking",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "FRAMECAST_JOB_DIR": jobs,
        "FRAMECAST_MEASURE_MEMORY": "off",
    }
    env.pop("FRAMECAST_API_KEYS", None)
    cmd = [sys.executable, "-m", "service.cli", "serve", "--host", HOST, "--port", str(port)]
    cmd += ["--log-level", "warning"]
    phases: dict[str, dict[str, list[float]]] = {"without_job": {}, "with_job": {}}
    job_rates, errors = [], 0
    with paused_all(args.pause_pid):
        server = Server(cmd, port, "/readyz", env=env, cwd=ROOT)
        try:
            server.wait_ready()
            load = Load(server.url, args.rate, online)
            load.run(args.warmup)
            with httpx.Client(base_url=server.url, timeout=600.0) as http:
                for rnd in range(args.rounds):
                    for phase in ("without_job", "with_job"):
                        job = None
                        if phase == "with_job":
                            r = http.post(
                                f"/v1/evaluations?models={','.join(MODELS)}&holdout=10",
                                content=data,
                                headers={"content-type": "application/octet-stream"},
                            )
                            if r.status_code != 202:
                                raise SystemExit(f"the job was refused: {r.status_code} {r.text}")
                            job = r.json()["location"]
                            start = http.get(job).json()["progress"]["done"]
                        t0 = time.perf_counter()
                        got = load.run(args.seconds)
                        elapsed = time.perf_counter() - t0
                        if job is not None:
                            done = http.get(job).json()["progress"]["done"]
                            job_rates.append((done - start) / elapsed)
                            http.delete(job)
                        for model, rows in got.items():
                            errors += sum(1 for _, s in rows if s != 200)
                            phases[phase].setdefault(model, []).extend(t for t, _ in rows)
                        print(
                            f"round {rnd + 1} {phase}: "
                            + ", ".join(
                                f"{m} p99 {_stats([t for t, _ in v])['p99_ms']} ms"
                                for m, v in got.items()
                            ),
                            flush=True,
                        )
        finally:
            server.stop()
    models = {}
    for model in MODELS:
        without = _stats(phases["without_job"][model])
        with_job = _stats(phases["with_job"][model])
        ratio = round(with_job["p99_ms"] / without["p99_ms"], 2)
        models[model] = {"without_job": without, "with_job": with_job, "p99_ratio": ratio}
        print(
            f"{model}: p99 {without['p99_ms']} ms without a job, {with_job['p99_ms']} ms with "
            f"one: {ratio}x (target <= {TARGET}x)"
        )
    every = {ph: _stats([t for v in phases[ph].values() for t in v]) for ph in phases}
    ratio = round(every["with_job"]["p99_ms"] / every["without_job"]["p99_ms"], 2)
    rate = round(sum(job_rates) / len(job_rates), 2) if job_rates else None
    print(f"all online requests: p99 {ratio}x with a job; the job went on at {rate} clips/s")
    report = {
        "what": "online predict latency (open loop, Poisson arrivals) with an evaluation job over "
        "both next-frame models running beside it, and without, alternating in one run",
        "command": "python3 bench/evaluation/evaluate_load.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{os.cpu_count()} CPUs, bundled models, loopback",
        "rate_per_model": args.rate,
        "seconds_per_phase": args.seconds,
        "rounds": args.rounds,
        "target_p99_ratio": TARGET,
        "models": models,
        "all": {**every, "p99_ratio": ratio, "met": ratio <= TARGET},
        "job_clips_per_s_under_load": rate,
        "non_200": errors,
    }
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"figures in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
