"""Soak test: a real `framecast serve` on loopback under a long mixed load with a phase of overload.

    python3 bench/soak.py                               # 5,000 requests, bundled models
    python3 bench/soak.py --requests 500 --tiny         # a quick check on tiny untrained models
    python3 bench/soak.py --models-dir /path/to/models --out runs/soak.json

It starts the server as a child process (127.0.0.1 only, a free port, ``FRAMECAST_MAX_QUEUE`` =
``--max-queue``), records reference answers one request at a time, then sends ``--requests``
requests with ``--concurrency`` workers in three phases:

1. steady: a mix of predict (raw .npy, multipart PNG, JSON base64), classify, V2 infer, compare,
   models/health/metrics;
2. overload (``--overload`` of the requests): ``--overload-factor`` x the workers send long
   rollouts (``horizon`` = ``--overload-horizon``) to one model, so its queue fills and the
   server must answer 503 with ``Retry-After`` at once;
3. steady again (the server must be back to normal).

A share ``--malformed`` (2 %) of the requests in every phase are malformed (truncated PNG, NaN
.npy, garbage, bad JSON, a huge horizon, ...). Every answer is checked: valid requests must get
200 with the reference answer (``atol``) or a deliberate 503 with ``Retry-After`` ("told to
retry"); malformed ones a 4xx, or the same deliberate 503 when they reach a full queue (the
server refuses before it reads the body). Any other 5xx, a wrong answer, a failed connection or
a 4xx for a valid request is a failure. The server's RSS is sampled from /proc every 0.5 s; it is
"stable" when it grew less than ``--rss-growth-mb`` from the end of the first steady 10 % to the
end.

It prints its figures, writes them as JSON to ``--out`` and exits 0 only when everything passed.
The run is bounded: ``--max-seconds`` stops it (counted as a failure), then the server gets
SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"  # loopback only, never configurable


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--requests", type=int, default=5000, help="requests in all (default 5000)")
    p.add_argument("--concurrency", type=int, default=32, help="workers in steady phases")
    p.add_argument(
        "--models-dir", default=None, help="model folders to serve (default: the bundled models/)"
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="serve tiny untrained fixture models built in a temporary folder",
    )
    p.add_argument("--malformed", type=float, default=0.02, help="share of malformed requests")
    p.add_argument(
        "--overload", type=float, default=0.2, help="share of requests in the overload phase"
    )
    p.add_argument(
        "--overload-factor",
        type=int,
        default=4,
        help="workers in the overload phase = this x --concurrency",
    )
    p.add_argument("--overload-horizon", type=int, default=10)
    p.add_argument("--max-queue", type=int, default=32, help="the server's FRAMECAST_MAX_QUEUE")
    p.add_argument("--atol", type=float, default=1e-4, help="tolerance against the references")
    p.add_argument("--rss-growth-mb", type=float, default=64.0)
    p.add_argument("--max-seconds", type=float, default=1800.0, help="hard stop of the run")
    p.add_argument("--out", default="runs/soak.json", help="JSON figures (default runs/soak.json)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def make_tiny(root: Path) -> Path:
    from tests.service.conftest import save_tiny

    for arch in ("conv2d_lstm", "convlstm2d"):
        for task in ("next_frame", "classify"):
            save_tiny(root, f"{arch}_{task}", arch, task)
    return root


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        return None
    return None


def start_server(models_dir: Path, port: int, max_queue: int, log_path: Path):
    env = {
        **os.environ,
        "FRAMECAST_LOAD_MODE": "blocking",
        "FRAMECAST_MAX_QUEUE": str(max_queue),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "FRAMECAST_MAX_HORIZON": "30",
    }
    env.pop("FRAMECAST_API_KEYS", None)
    cmd = [
        sys.executable,
        "-m",
        "service.cli",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--models-dir",
        str(models_dir),
        "--log-level",
        "warning",
    ]
    log = open(log_path, "w")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), log


# --------------------------------------------------------------------------- requests


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def png_bytes(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Spec:
    kind: str  # what it is, for the figures
    method: str
    path: str
    malformed: bool = False
    content: bytes | None = None
    files: list | None = None
    headers: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    check: tuple | None = None  # how to check a 200: ("npy"|"scores"|"v2"|"json-shape", key)
    phase: str = "steady"


class Load:
    """The clips, the reference answers and the request mix for one set of models."""

    def __init__(self, models: list[dict], seed: int, overload_horizon: int):
        self.rng = random.Random(seed)
        self.models = {m["name"]: m for m in models}
        self.next_frame = [m for m in models if m["task"] == "next_frame"]
        self.classify = [m for m in models if m["task"] == "classify"]
        if not self.next_frame:
            raise SystemExit("soak: the models folder holds no next-frame model")
        self.overload_model = self.next_frame[0]["name"]
        self.overload_horizon = overload_horizon
        self.clips: dict[str, list[np.ndarray]] = {}
        rs = np.random.default_rng(seed)
        for m in models:
            i = m["input"]
            shape = (i["frames"], i["height"], i["width"]) + (
                (i["channels"],) if i["channels"] > 1 else ()
            )
            self.clips[m["name"]] = [(rs.random(shape) * 255).astype(np.uint8) for _ in range(4)]
        self.refs: dict[tuple, np.ndarray] = {}
        pair = {m["architecture"]: m for m in self.next_frame}
        self.can_compare = (
            {"conv2d_lstm", "convlstm2d"} <= set(pair)
            and len(
                {
                    (
                        m["input"]["frames"],
                        m["input"]["height"],
                        m["input"]["width"],
                        m["input"]["channels"],
                    )
                    for m in pair.values()
                }
            )
            == 1
            and len(self.next_frame) == 2
        )

    # -- reference answers, one request at a time
    def reference_specs(self) -> list[tuple[tuple, Spec]]:
        out = []
        for m in self.next_frame:
            for c in range(4):
                for h in sorted({1, 2, 3, self.overload_horizon}):
                    if m["name"] != self.overload_model and h == self.overload_horizon:
                        continue
                    out.append(((m["name"], c, h), self._predict_npy(m["name"], c, h, None)))
        for m in self.classify:
            for c in range(4):
                out.append(((m["name"], c, "scores"), self._classify(m["name"], c, None)))
        return out

    def _predict_npy(self, name, c, horizon, check=("npy",)) -> Spec:
        return Spec(
            "predict-npy",
            "POST",
            f"/v1/models/{name}/predict",
            content=npy_bytes(self.clips[name][c]),
            headers={"content-type": "application/x-npy"},
            params={"horizon": horizon, "output": "npy"},
            check=None if check is None else ("npy", (name, c, horizon)),
        )

    def _classify(self, name, c, check=("scores",)) -> Spec:
        return Spec(
            "classify",
            "POST",
            f"/v1/models/{name}/classify",
            content=npy_bytes(self.clips[name][c]),
            headers={"content-type": "application/x-npy"},
            params={"top_k": 2},
            check=None if check is None else ("scores", (name, c, "scores")),
        )

    # -- the mix
    def valid(self) -> Spec:
        r = self.rng.random()
        m = self.rng.choice(self.next_frame)["name"]
        c = self.rng.randrange(4)
        h = self.rng.choice((1, 2, 3))
        if r < 0.30:
            return self._predict_npy(m, c, h)
        if r < 0.45:
            frames = self.clips[m][c]
            return Spec(
                "predict-png",
                "POST",
                f"/v1/models/{m}/predict",
                files=[
                    ("files", (f"f{i}.png", png_bytes(f), "image/png"))
                    for i, f in enumerate(frames)
                ],
                params={"horizon": h},
                check=("json-shape", (m, c, h)),
            )
        if r < 0.55:
            body = {"frames": [base64.b64encode(png_bytes(f)).decode() for f in self.clips[m][c]]}
            return Spec(
                "predict-json",
                "POST",
                f"/v1/models/{m}/predict",
                content=json.dumps(body).encode(),
                headers={"content-type": "application/json"},
                params={"horizon": h},
                check=("json-shape", (m, c, h)),
            )
        if r < 0.70 and self.classify:
            k = self.rng.choice(self.classify)["name"]
            return self._classify(k, self.rng.randrange(4))
        if r < 0.82:
            clip = self.clips[m][c].astype(np.float32) / 255.0
            i = self.models[m]["input"]
            shape = [1, i["frames"], i["height"], i["width"], i["channels"]]
            body = {
                "inputs": [
                    {
                        "name": "frames",
                        "shape": shape,
                        "datatype": "FP32",
                        "data": clip.reshape(-1).tolist(),
                    }
                ],
                "parameters": {"horizon": h},
                "outputs": [{"name": "rollout"}],
            }
            return Spec(
                "v2-infer",
                "POST",
                f"/v2/models/{m}/infer",
                content=json.dumps(body).encode(),
                headers={"content-type": "application/json"},
                check=("v2", (m, c, h)),
            )
        if r < 0.88 and self.can_compare:
            frames = self.clips[self.next_frame[0]["name"]][c]
            return Spec(
                "compare",
                "POST",
                "/v1/compare/next-frame",
                content=npy_bytes(frames),
                headers={"content-type": "application/x-npy"},
                params={"horizon": 1},
                check=("compare", None),
            )
        path = self.rng.choice(
            (
                "/v1/models",
                "/healthz",
                "/readyz",
                "/metrics",
                f"/v1/models/{m}",
                f"/v2/models/{m}/ready",
            )
        )
        return Spec("get", "GET", path, check=("ok", None))

    def overload(self) -> Spec:
        s = self._predict_npy(self.overload_model, self.rng.randrange(4), self.overload_horizon)
        s.kind, s.phase = "overload-rollout", "overload"
        return s

    def malformed(self) -> Spec:
        m = self.rng.choice(self.next_frame)["name"]
        frames = self.clips[m][0]
        good = png_bytes(frames[0])
        nan = np.full(frames.shape, np.nan, np.float32)
        kind, content, ctype, params = self.rng.choice(
            [
                ("truncated-png", good[: len(good) // 2], "image/png", {}),
                ("nan-npy", npy_bytes(nan), "application/x-npy", {}),
                ("garbage", os.urandom(512), "application/octet-stream", {}),
                ("bad-json", b'{"frames": [', "application/json", {}),
                (
                    "base64-garbage",
                    json.dumps({"frames": ["%%%"] * 4}).encode(),
                    "application/json",
                    {},
                ),
                ("huge-horizon", npy_bytes(frames), "application/x-npy", {"horizon": 10**9}),
                ("wrong-type", b"hello", "text/plain", {}),
                (
                    "nested-json",
                    b'{"frames":' + b"[" * 5000 + b"]" * 5000 + b"}",
                    "application/json",
                    {},
                ),
            ]
        )
        return Spec(
            "malformed-" + kind,
            "POST",
            f"/v1/models/{m}/predict",
            malformed=True,
            content=content,
            headers={"content-type": ctype},
            params=params,
        )


# --------------------------------------------------------------------------- checking


def check(spec: Spec, r, refs: dict, atol: float) -> str | None:
    """None when the answer is right; else what is wrong."""
    if spec.malformed:
        if r.status_code == 503:  # a full queue is refused before the body is read, by design
            return None if "retry-after" in r.headers else "503 without Retry-After"
        return None if 400 <= r.status_code < 500 else f"malformed got {r.status_code}"
    if r.status_code == 503:
        return None if "retry-after" in r.headers else "503 without Retry-After"
    if r.status_code != 200:
        return f"{r.status_code}: {r.text[:200]}"
    how, key = spec.check
    try:
        if how == "npy":
            got = np.load(io.BytesIO(r.content))
            return None if np.allclose(got, refs[key], atol=atol) else "npy differs from reference"
        if how == "scores":
            scores = {s["class_name"]: s["score"] for s in r.json()["scores"]}
            want = refs[key]
            ok = all(abs(scores[n] - float(v)) <= atol for n, v in want.items())
            return None if ok else "scores differ from reference"
        if how == "json-shape":
            name, c, h = key
            body = r.json()
            ref = refs[(name, c, h)]
            return (
                None
                if body["shape"] == list(ref.shape) and len(body["frames"]) == h
                else f"shape {body['shape']} != {list(ref.shape)}"
            )
        if how == "v2":
            name, c, h = key
            out = r.json()["outputs"][0]
            got = np.asarray(out["data"], np.float32).reshape(out["shape"])[0]
            return None if np.allclose(got, refs[(name, c, h)], atol=atol) else "v2 differs"
        if how == "compare":
            body = r.json()
            return None if set(body["results"]) == {"conv2d_lstm", "convlstm2d"} else "compare"
        return None
    except Exception as e:  # noqa: BLE001 - a malformed answer is a failure, not a crash
        return f"unreadable answer: {type(e).__name__}: {e}"


# --------------------------------------------------------------------------- the run


async def send(client, spec: Spec):
    return await client.request(
        spec.method,
        spec.path,
        content=spec.content,
        files=spec.files,
        headers=spec.headers,
        params=spec.params,
    )


async def run(args) -> dict:
    import httpx

    tmp = tempfile.TemporaryDirectory(prefix="framecast-soak-")
    if args.tiny:
        models_dir = make_tiny(Path(tmp.name) / "models")
    else:
        from models.repository import BUNDLED_DIR

        models_dir = Path(args.models_dir) if args.models_dir else BUNDLED_DIR
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc, log = start_server(models_dir, port, args.max_queue, out.with_suffix(".server.log"))
    url = f"http://{HOST}:{port}"
    rss: list[tuple[float, float]] = []
    t_start = time.monotonic()
    try:
        async with httpx.AsyncClient(
            base_url=url,
            timeout=120,
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=1000),
        ) as client:
            while True:  # wait for readiness
                if proc.poll() is not None:
                    raise SystemExit(
                        f"soak: the server exited ({proc.returncode}); see "
                        f"{out.with_suffix('.server.log')}"
                    )
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() - t_start > 600:
                    raise SystemExit("soak: the server was not ready within 600 s")
                await asyncio.sleep(0.5)
            models = (await client.get("/v1/models")).json()["models"]
            load = Load(models, args.seed, args.overload_horizon)
            for key, spec in load.reference_specs():  # one at a time: unbatched references
                r = await send(client, spec)
                r.raise_for_status()
                load.refs[key] = (
                    np.load(io.BytesIO(r.content))
                    if key[2] != "scores"
                    else {s["class_name"]: s["score"] for s in r.json()["scores"]}
                )

            async def sample_rss():
                while True:
                    v = rss_mb(proc.pid)
                    if v is not None:
                        rss.append((time.monotonic() - t_start, v))
                    await asyncio.sleep(0.5)

            sampler = asyncio.create_task(sample_rss())
            n_over = int(args.requests * args.overload)
            n_steady = args.requests - n_over
            phases = [
                ("steady-1", n_steady // 2, args.concurrency, False),
                ("overload", n_over, args.concurrency * args.overload_factor, True),
                ("steady-2", n_steady - n_steady // 2, args.concurrency, False),
            ]
            results = []  # (phase, kind, malformed, status, seconds, problem)
            marks = {}
            deadline = time.monotonic() + args.max_seconds
            timed_out = False
            for phase, n, workers, over in phases:
                specs = []
                for _ in range(n):
                    if load.rng.random() < args.malformed:
                        s = load.malformed()
                    else:
                        s = load.overload() if over else load.valid()
                    s.phase = phase
                    specs.append(s)
                queue = iter(specs)
                t_phase = time.monotonic()

                async def worker(queue=queue):  # bound now: each phase has its own queue
                    nonlocal timed_out
                    for spec in queue:
                        if time.monotonic() > deadline:
                            timed_out = True
                            return
                        t0 = time.perf_counter()
                        try:
                            r = await send(client, spec)
                            problem = check(spec, r, load.refs, args.atol)
                            status = r.status_code
                        except Exception as e:  # noqa: BLE001 - a failed connection is a failure
                            status, problem = 0, f"{type(e).__name__}: {e}"
                        results.append(
                            (
                                spec.phase,
                                spec.kind,
                                spec.malformed,
                                status,
                                time.perf_counter() - t0,
                                problem,
                            )
                        )

                await asyncio.gather(*(worker() for _ in range(workers)))
                marks[phase] = {
                    "seconds": round(time.monotonic() - t_phase, 2),
                    "rss_mb": rss_mb(proc.pid),
                    "requests": n,
                    "workers": workers,
                }
                if phase == "steady-1":
                    marks["rss_after_warm_mb"] = rss_mb(proc.pid)
            sampler.cancel()
    finally:
        alive = proc.poll() is None
        if alive:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        log.close()
        tmp.cleanup()
    return summarize(args, results, marks, rss, timed_out, alive, code, time.monotonic() - t_start)


def pct(values, q):
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))] * 1000.0, 1)


def summarize(args, results, marks, rss, timed_out, alive, exit_code, seconds) -> dict:
    statuses = Counter(r[3] for r in results)
    problems = [r for r in results if r[5]]
    valid = [r for r in results if not r[2]]
    malformed = [r for r in results if r[2]]
    ok = [r for r in valid if r[3] == 200 and not r[5]]
    retry = [r for r in valid if r[3] == 503 and not r[5]]
    other_5xx = [r for r in results if r[3] >= 500 and r[3] != 503]
    by_phase = {}
    for phase in ("steady-1", "overload", "steady-2"):
        rs = [r for r in results if r[0] == phase]
        by_phase[phase] = {
            "requests": len(rs),
            "status": dict(sorted(Counter(r[3] for r in rs).items())),
            "p50_ms": pct([r[4] for r in rs if r[3] == 200], 0.5),
            "p99_ms": pct([r[4] for r in rs if r[3] == 200], 0.99),
            **marks.get(phase, {}),
        }
    base = marks.get("rss_after_warm_mb")
    end = rss[-1][1] if rss else None
    growth = None if base is None or end is None else round(end - base, 1)
    stable = growth is not None and growth < args.rss_growth_mb
    figures = {
        "requests": len(results),
        "planned": args.requests,
        "concurrency": args.concurrency,
        "overload_workers": args.concurrency * args.overload_factor,
        "max_queue": args.max_queue,
        "seconds": round(seconds, 1),
        "status": {str(k): v for k, v in sorted(statuses.items())},
        "valid": len(valid),
        "valid_correct": len(ok),
        "valid_told_to_retry": len(retry),
        "malformed": len(malformed),
        "malformed_4xx": sum(1 for r in malformed if 400 <= r[3] < 500),
        "other_5xx": len(other_5xx),
        "problems": len(problems),
        "problem_examples": [f"{r[1]} {r[3]} {r[5]}" for r in problems[:10]],
        "kinds": dict(sorted(Counter(r[1] for r in results).items())),
        "p50_ms": pct([r[4] for r in ok], 0.5),
        "p95_ms": pct([r[4] for r in ok], 0.95),
        "p99_ms": pct([r[4] for r in ok], 0.99),
        "phases": by_phase,
        "rss_mb": {
            "after_warm": base,
            "end": end,
            "peak": max((v for _, v in rss), default=None),
            "growth": growth,
            "stable": stable,
            "samples": len(rss),
        },
        "timed_out": timed_out,
        "server_alive_at_end": alive,
        "server_exit_code": exit_code,
    }
    figures["passed"] = (
        not problems
        and not other_5xx
        and not timed_out
        and alive
        and stable
        and len(results) == args.requests
        and exit_code == 0
    )
    return figures


def main(argv=None) -> int:
    args = parse_args(argv)
    figures = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(figures, indent=2))
    f = figures
    print(
        f"soak: {f['requests']} requests in {f['seconds']} s (concurrency {f['concurrency']}, "
        f"overload {f['overload_workers']} workers, max queue {f['max_queue']})"
    )
    print(f"  status: {f['status']}")
    print(
        f"  valid: {f['valid']} ({f['valid_correct']} correct, {f['valid_told_to_retry']} told "
        f"to retry with 503)  malformed: {f['malformed']} ({f['malformed_4xx']} got 4xx)"
    )
    print(f"  other 5xx: {f['other_5xx']}  problems: {f['problems']}")
    for p in f["problem_examples"]:
        print(f"    {p}")
    print(
        f"  latency of correct answers: p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms, "
        f"p99 {f['p99_ms']} ms"
    )
    for name, ph in f["phases"].items():
        print(
            f"  {name}: {ph['requests']} requests, {ph.get('workers')} workers, "
            f"{ph.get('seconds')} s, status {ph['status']}, p50 {ph['p50_ms']} ms, "
            f"p99 {ph['p99_ms']} ms, RSS {ph.get('rss_mb')} MB"
        )
    r = f["rss_mb"]
    print(
        f"  RSS: {r['after_warm']} MB after warm-up, {r['end']} MB at the end, peak {r['peak']} "
        f"MB, growth {r['growth']} MB: {'stable' if r['stable'] else 'NOT stable'}"
    )
    print(f"  server exit code after SIGTERM: {f['server_exit_code']}")
    print(f"  {'PASS' if f['passed'] else 'FAIL'}; figures in {args.out}")
    return 0 if f["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
