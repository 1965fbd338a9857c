"""Soak test: a real `framecast serve` on loopback under a long mixed load with a phase of overload.

    python3 bench/reliability/soak.py                               # 5,000 requests, bundled models
    python3 bench/reliability/soak.py --requests 500 --tiny         # a quick check on tiny
    untrained models python3 bench/reliability/soak.py --models-dir /path/to/models --out
    runs/soak.json python3 bench/reliability/soak.py --faults --minutes 10 --concurrency 8  # the
    fault run (soak_faults.py)

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
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from harness import HOST, ROOT, Server, free_port, rss_mb
from soak_requests import Load, check, models_dir_for, send, take_references


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
    p.add_argument(
        "--out",
        default=None,
        help="JSON figures (default runs/soak.json; with --faults docs/bench/soak_faults.json)",
    )
    p.add_argument(
        "--faults",
        action="store_true",
        help="the fault run instead (bench/reliability/soak_faults.py): "
        "--workers 2 under load for --minutes with a worker killed, a model reloaded, slow "
        "and vanishing clients",
    )
    p.add_argument("--minutes", type=float, default=10.0, help="length of the fault run")
    p.add_argument(
        "--kill-window-s",
        type=float,
        default=3.0,
        help="fault run: broken connections ending this soon after the kill are the kill's",
    )
    p.add_argument(
        "--pause-pid",
        type=int,
        action="append",
        default=[],
        help="a background job to SIGSTOP during the run (repeatable)",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.out is None:
        args.out = "docs/bench/soak_faults.json" if args.faults else "runs/soak.json"
    return args


# --------------------------------------------------------------------------- the server


def start_server(models_dir: Path, port: int, max_queue: int, log_path: Path) -> Server:
    env = {
        **os.environ,
        "FRAMECAST_LOAD_MODE": "blocking",
        "FRAMECAST_MAX_QUEUE": str(max_queue),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "FRAMECAST_MAX_HORIZON": "30",
    }
    env.pop("FRAMECAST_API_KEYS", None)
    cmd = [sys.executable, "-m", "service.cli", "serve", "--host", HOST, "--port", str(port)]
    cmd += ["--models-dir", str(models_dir), "--log-level", "warning"]
    return Server(cmd, port, "/readyz", env=env, cwd=ROOT, log=log_path)


def server_rss(server: Server) -> float | None:
    """The server's RSS in MB, to 0.1 MB (None when it cannot be read)."""
    v = rss_mb(server.proc.pid)
    return None if v is None else round(v, 1)


# --------------------------------------------------------------------------- the run


async def run(args) -> dict:
    import httpx

    tmp = tempfile.TemporaryDirectory(prefix="framecast-soak-")
    models_dir = models_dir_for(args, Path(tmp.name))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = start_server(models_dir, port, args.max_queue, out.with_suffix(".server.log"))
    rss: list[tuple[float, float]] = []
    t_start = time.monotonic()
    try:
        try:
            await asyncio.to_thread(server.wait_ready, 600)
        except RuntimeError:
            raise SystemExit(
                f"soak: the server exited ({server.proc.returncode}); see "
                f"{out.with_suffix('.server.log')}"
            ) from None
        except TimeoutError:
            raise SystemExit("soak: the server was not ready within 600 s") from None
        async with httpx.AsyncClient(
            base_url=server.url,
            timeout=120,
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=1000),
        ) as client:
            models = (await client.get("/v1/models")).json()["models"]
            load = Load(models, args.seed, args.overload_horizon)
            await take_references(client, load)

            async def sample_rss():
                while True:
                    v = server_rss(server)
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
                    "rss_mb": server_rss(server),
                    "requests": n,
                    "workers": workers,
                }
                if phase == "steady-1":
                    marks["rss_after_warm_mb"] = server_rss(server)
            sampler.cancel()
    finally:
        alive = server.proc.poll() is None
        code = server.stop()  # SIGTERM, SIGKILL after 60 s
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
    if args.faults:
        from soak_faults import main_faults

        return main_faults(args)
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
