"""The fault run of bench/reliability/soak.py (``--faults``, issue #27 item 8): load on every model
for ``--minutes`` against ``framecast serve --workers 2`` while things go wrong on schedule.

    python3 bench/reliability/soak.py --faults [--minutes 10] [--concurrency 8] [--tiny]
        [--out docs/bench/soak_faults.json] [--pause-pid PID]

The load is soak.py's valid mix (predict as .npy, PNG and JSON, classify, V2 infer, compare),
``--concurrency`` clients, every answer checked against a reference taken one request at a time
before the run, plus the malformed share (each must get its 4xx). On a schedule, as fractions of
the run:

- 0.20: one worker is killed with SIGKILL; the supervisor starts it again;
- 0.40: a model is reloaded (``POST /v2/repository/models/{m}/load``: load, warm, swap);
- 0.55-0.75: 50 slow clients hold connections trickling header lines
  (bench/reliability/slow_clients.py);
- from 0.10 on, every 5 s: a client sends half a declared body and vanishes.

A failed request is put down to the kill when it is a broken or refused connection ending within
``--kill-window-s`` of the kill (a request in flight on that worker, or sent to its socket as it
closed), and counted against that worker's possible share (at most ``--concurrency``); anything
else that is not the right answer (a wrong answer, a 5xx, a broken connection at another time)
is lost. The RSS of the whole process tree is sampled; p99 of the models not being reloaded is
measured during the reload beside the run's steady p99. It passes when nothing was lost, the
killed worker came back, the server's log has no traceback, and SIGTERM ended it with 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from harness import HOST, ROOT, Server, free_port, paused_all
from slow_clients import Slowloris
from soak_requests import Load, check, models_dir_for, take_references

from models.repository import atomic_write_text


def tree_rss_mb(pid: int) -> float:
    """RSS of ``pid`` and its children (the supervisor and its workers), MB."""
    out = subprocess.run(["ps", "-o", "rss=", "--ppid", str(pid)], capture_output=True, text=True)
    kids = sum(int(x) for x in out.stdout.split())
    own = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True)
    return round((kids + sum(int(x) for x in own.stdout.split())) / 1024.0, 1)


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return sorted(int(x) for x in out.stdout.split())


def vanish(port: int, path: str) -> None:
    """Declare a 100 kB body, send 1 kB of it, and leave."""
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
            "Content-Length: 100000\r\n\r\n".encode()
            + b"\x00" * 1000
        )


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(np.array(values) * 1000.0, q)), 1)


async def fault_run(args) -> dict:
    import httpx

    tmp = tempfile.TemporaryDirectory(prefix="framecast-faults-")
    models_dir = models_dir_for(args, Path(tmp.name))
    out = Path(args.out)
    log_path = Path(tmp.name) / "server.log"
    port = free_port()
    env = {
        **os.environ,
        "FRAMECAST_LOAD_MODE": "blocking",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "FRAMECAST_MAX_QUEUE": str(args.max_queue),
    }
    env.pop("FRAMECAST_API_KEYS", None)
    cmd = [sys.executable, "-m", "service.cli", "serve", "--host", HOST, "--port", str(port)]
    cmd += ["--models-dir", str(models_dir), "--workers", "2", "--log-level", "info"]
    server = Server(cmd, port, "/readyz", env=env, cwd=ROOT, log=log_path)
    duration = args.minutes * 60.0
    results: list[tuple] = []  # (t_end, kind, model, malformed, status, seconds, problem)
    events: dict = {}
    rss: list[tuple[float, float]] = []
    try:
        await asyncio.to_thread(server.wait_ready, 600)
        while log_path.read_text().count("Application startup complete") < 2:
            await asyncio.sleep(0.5)
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            models = (await client.get("/v1/models")).json()["models"]
            load = Load(models, args.seed, 10)
            await take_references(client, load)
            reload_model = load.next_frame[-1]["name"]
            t0 = time.monotonic()
            end = t0 + duration

            def model_of(spec) -> str:
                parts = spec.path.split("/")
                return parts[3] if len(parts) > 3 and parts[2] == "models" else "-"

            async def worker() -> None:
                while time.monotonic() < end:
                    spec = load.malformed() if load.rng.random() < args.malformed else load.valid()
                    t = time.perf_counter()
                    try:
                        r = await client.request(
                            spec.method, spec.path, content=spec.content, files=spec.files,
                            headers=spec.headers, params=spec.params,
                        )  # fmt: skip
                        status, problem = r.status_code, check(spec, r, load.refs, args.atol)
                    except httpx.TransportError as e:
                        status, problem = 0, f"connection: {type(e).__name__}"
                    results.append(
                        (time.monotonic() - t0, spec.kind, model_of(spec), spec.malformed,
                         status, time.perf_counter() - t, problem)
                    )  # fmt: skip

            async def kill_one(now: float) -> None:
                pids = children(server.proc.pid)
                started = log_path.read_text().count("Application startup complete")
                os.kill(pids[0], 9)
                events["kill"] = {"at_s": round(now - t0, 1), "pid": pids[0]}
                while log_path.read_text().count("Application startup complete") <= started:
                    await asyncio.sleep(0.2)
                events["kill"]["back_after_s"] = round(time.monotonic() - now, 1)
                events["kill"]["workers_after"] = len(children(server.proc.pid))

            tasks: list[asyncio.Task] = []

            async def faults() -> None:
                nf = load.next_frame[0]["name"]
                vanished, slow = 0, None
                next_vanish = t0 + 0.10 * duration
                todo = {"kill": 0.20, "reload": 0.40, "slow_on": 0.55, "slow_off": 0.75}
                while time.monotonic() < end:
                    now = time.monotonic()
                    frac = (now - t0) / duration
                    if now >= next_vanish:
                        await asyncio.to_thread(vanish, port, f"/v1/models/{nf}/predict")
                        vanished += 1
                        next_vanish += 5.0
                    if "kill" in todo and frac >= todo["kill"]:
                        del todo["kill"]
                        tasks.append(asyncio.create_task(kill_one(now)))
                    if "reload" in todo and frac >= todo["reload"]:
                        del todo["reload"]
                        r = await client.post(f"/v2/repository/models/{reload_model}/load")
                        events["reload"] = {
                            "model": reload_model,
                            "at_s": round(now - t0, 1),
                            "until_s": round(time.monotonic() - t0, 1),
                            "status": r.status_code,
                        }
                    if "slow_on" in todo and frac >= todo["slow_on"]:
                        del todo["slow_on"]
                        slow = Slowloris(port, 50, 2.0)
                        slow.start()
                        events["slow_clients"] = {"at_s": round(now - t0, 1), "count": 50}
                    if "slow_off" in todo and frac >= todo["slow_off"] and slow is not None:
                        del todo["slow_off"]
                        events["slow_clients"].update(slow.stop(), until_s=round(now - t0, 1))
                    rss.append((round(now - t0, 1), tree_rss_mb(server.proc.pid)))
                    await asyncio.sleep(0.5)
                events["vanished_clients"] = vanished
                await asyncio.gather(*tasks)

            await asyncio.gather(faults(), *(worker() for _ in range(args.concurrency)))
    finally:
        code = server.stop(timeout=90)
        log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
        (ROOT / "runs").mkdir(exist_ok=True)  # the server's log, out of git (runs/ is ignored)
        (ROOT / "runs" / (out.stem + ".server.log")).write_text(log_text[-200_000:])
        tmp.cleanup()
    return summarise(args, results, events, rss, code, log_text)


def summarise(args, results, events, rss, code, log_text) -> dict:
    # at_s is rounded to 0.1 s: the kill may have come up to 0.05 s before it, and a request cut
    # by it then ends before at_s (a connection ReadError at 6.17 s for a kill at 6.16 s, "6.2")
    kill_at = events.get("kill", {}).get("at_s", -1e9)
    ok, told, lost, killed = [], [], [], []
    for r in results:
        t_end, kind, model, malformed, status, seconds, problem = r
        if not problem:
            (told if status == 503 else ok).append(r)
        elif status == 0 and kill_at - 0.05 <= t_end <= kill_at + args.kill_window_s:
            killed.append(r)
        else:
            lost.append(r)
    rl = events.get("reload", {})
    during = [r[5] for r in ok if rl and rl["at_s"] <= r[0] <= rl["until_s"] + 0.5]
    others = [
        r[5] for r in ok if rl and rl["at_s"] <= r[0] <= rl["until_s"] + 0.5 and r[2] != rl["model"]
    ]
    steady = [r[5] for r in ok if r[0] < min(kill_at, rl.get("at_s", 1e9)) - 1]
    figures = {
        "what": f"{args.minutes:g} min of load on every model, framecast serve --workers 2, "
        "a worker SIGKILLed, a model reloaded, slow clients, clients vanishing mid-body",
        "command": "python3 bench/reliability/soak.py --faults "
        + " ".join(
            f"--{k} {v}" for k, v in (("minutes", args.minutes), ("concurrency", args.concurrency))
        )
        + (" --tiny" if args.tiny else ""),  # fmt: skip
        "machine": f"{os.cpu_count()} CPUs",
        "requests_sent": len(results),
        "answered_as_expected": len(ok),  # right answers, and 4xx for malformed ones
        "told_to_retry_503": len(told),
        "status": {str(k): v for k, v in sorted(Counter(r[4] for r in results).items())},
        "failed_by_cause": {
            "killed_worker_in_flight": len(killed),
            "lost": len(lost),
        },
        "lost_examples": [f"{r[1]} {r[4]} {r[6]} at {r[0]:.1f} s" for r in lost[:10]],
        "killed_allowance": args.concurrency,
        "p50_ms": pct([r[5] for r in ok], 50),
        "p99_ms": pct([r[5] for r in ok], 99),
        "p99_ms_steady_before_faults": pct(steady, 99),
        "p99_ms_during_reload_all": pct(during, 99),
        "p99_ms_during_reload_other_models": pct(others, 99),
        "requests_during_reload_other_models": len(others),
        "events": events,
        "rss_mb": {
            "start": rss[0][1] if rss else None,
            "end": rss[-1][1] if rss else None,
            "peak": max((v for _, v in rss), default=None),
        },  # fmt: skip
        "server_log": {
            "tracebacks": log_text.count("Traceback"),
            "disconnect_lines": log_text.count("client disconnected after"),
            "restart_lines": log_text.count("started it again as pid"),
        },
        "server_exit_code": code,
    }
    kill = events.get("kill", {})
    figures["passed"] = (
        not lost
        and len(killed) <= args.concurrency
        and kill.get("workers_after") == 2
        and events.get("reload", {}).get("status") == 200
        and figures["server_log"]["tracebacks"] == 0
        and code == 0
    )
    return figures


def main_faults(args) -> int:
    with paused_all(args.pause_pid):
        figures = asyncio.run(fault_run(args))
    atomic_write_text(Path(args.out), json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k != "lost_examples"}, indent=2))
    for line in figures["lost_examples"]:
        print("  lost:", line)
    print(f"{'PASS' if figures['passed'] else 'FAIL'}; figures in {args.out}")
    return 0 if figures["passed"] else 1
