"""Slow clients against a real `framecast serve` (issue #27, item 2): does a well-behaved client
stay served while one client holds hundreds of connections that trickle their headers?

    python3 bench/reliability/slow_clients.py [--slow 200] [--seconds 30] [--models-dir DIR]
        [--out docs/bench/slow_clients.json] [--pause-pid PID]

It starts ``framecast serve`` on loopback with its default limits (header timeout, connection cap,
keep-alive limits: service/http/connections.py), then measures a normal client (one request at a
time, a new connection each: ``POST /v1/models/{classifier}/classify`` with a 10-frame .npy clip)
for ``--seconds`` alone, then for ``--seconds`` while ``--slow`` connections from the same host
send a request line and then one header line every ``--every`` seconds, never the blank line that
ends the headers (slowloris). Each slow connection the server closes is replaced at once, so the
attacker holds ``--slow`` open all the time. It records the normal client's latency (p50, p99,
max) and errors in both phases, and for the slow connections how many were opened, answered 408,
closed without an answer, still open at the end, and how long the server held them.

Loopback only, bounded in count (``--slow`` <= 1000) and time. It prints the figures, writes
them as JSON to ``--out``, and exits 1 when the normal client failed a request or its p99 under
the slow connections exceeded ``--p99-factor`` x its p99 alone (plus 20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import io
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from harness import HOST, ROOT, Server, free_port, paused_all, rss_mb

from models.repository import atomic_write_text

CLASSIFIER = "conv2d_lstm_classify"


def clip_npy(frames: int = 10, size: int = 64) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.save(buf, rng.integers(0, 256, (frames, size, size, 1), dtype=np.uint8))
    return buf.getvalue()


def normal_client(port: int, body: bytes, seconds: float) -> dict:
    """Requests one at a time, each on a new connection, for ``seconds``: latencies and errors."""
    times, errors = [], []
    path = f"/v1/models/{CLASSIFIER}/classify"
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=30)
            conn.request("POST", path, body, {"Content-Type": "application/x-npy"})
            r = conn.getresponse()
            r.read()
            conn.close()
            if r.status != 200:
                errors.append(f"status {r.status}")
                continue
        except OSError as e:
            errors.append(f"{type(e).__name__}: {e}")
            continue
        times.append(time.monotonic() - t0)
    ms = np.array(times) * 1000 if times else np.array([float("nan")])
    return {
        "requests": len(times) + len(errors),
        "ok": len(times),
        "errors": errors[:10],
        "error_count": len(errors),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


class Slowloris:
    """``count`` connections that trickle header lines and are replaced when the server closes
    them (asyncio, in its own thread)."""

    def __init__(self, port: int, count: int, every: float):
        self.port, self.count, self.every = port, count, every
        self.stats = {"opened": 0, "answered_408": 0, "answered_other": 0, "closed_silently": 0}
        self.held_s: list[float] = []
        self.open = 0
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _one(self) -> None:
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(HOST, self.port)
            except OSError:
                self.refused += 1
                await asyncio.sleep(0.1)
                continue
            self.stats["opened"] += 1
            self.open += 1
            t0 = time.monotonic()
            answer = b""
            try:
                writer.write(b"GET /v1/models HTTP/1.1\r\nHost: slow\r\n")
                await writer.drain()
                i = 0
                while not self._stop.is_set():
                    try:
                        answer = await asyncio.wait_for(reader.read(256), self.every)
                        break  # the server answered or closed
                    except TimeoutError:
                        writer.write(f"X-Slow-{i}: 1\r\n".encode())
                        await writer.drain()
                        i += 1
            except OSError:
                pass
            finally:
                self.open -= 1
                writer.close()
            if self._stop.is_set() and not answer:
                break
            self.held_s.append(time.monotonic() - t0)
            if answer.startswith(b"HTTP/1.1 408"):
                self.stats["answered_408"] += 1
            elif answer:
                self.stats["answered_other"] += 1
            else:
                self.stats["closed_silently"] += 1

    async def _main(self) -> None:
        tasks = []
        for _ in range(self.count):  # ramp up over ~1 s
            tasks.append(asyncio.create_task(self._one()))
            await asyncio.sleep(1.0 / self.count)
        while not self._stop.is_set():
            await asyncio.sleep(0.1)
        await asyncio.gather(*tasks, return_exceptions=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict:
        still_open = self.open
        self._stop.set()
        self._thread.join(30)
        held = np.array(self.held_s)
        return {
            **self.stats,
            "refused_at_connect": self.refused,
            "open_at_end": still_open,
            "held_s_median": round(float(np.median(held)), 2) if held.size else None,
            "held_s_max": round(float(held.max()), 2) if held.size else None,
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slow", type=int, default=200, help="slow connections held (<= 1000)")
    p.add_argument("--every", type=float, default=2.0, help="seconds between header lines")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "slow_clients.json")
    p.add_argument("--p99-factor", type=float, default=2.0)
    p.add_argument("--pause-pid", type=int, action="append", default=[])
    args = p.parse_args(argv)
    if not 1 <= args.slow <= 1000:
        p.error("--slow must be 1..1000")
    port = free_port()
    env = {**os.environ, "FRAMECAST_LOAD_MODE": "blocking", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("FRAMECAST_API_KEYS", None)
    cmd = [sys.executable, "-m", "service.cli", "serve", "--host", HOST, "--port", str(port)]
    cmd += ["--models-dir", args.models_dir]
    body = clip_npy()
    with paused_all(args.pause_pid):
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"framecast-slow-clients-{port}.log"
        server = Server(cmd, port, "/readyz", env=env, cwd=ROOT, log=log)
        try:
            server.wait_ready()
            normal_client(port, body, 3.0)  # warm
            alone = normal_client(port, body, args.seconds)
            rss_before = rss_mb(server.proc.pid)
            slow = Slowloris(port, args.slow, args.every)
            slow.start()
            time.sleep(2.0)  # all of them open
            during = normal_client(port, body, args.seconds)
            slow_stats = slow.stop()
            rss_after = rss_mb(server.proc.pid)
        finally:
            code = server.stop()
        log_text = log.read_text(errors="replace")
    settings = _defaults()
    bar = args.p99_factor * alone["p99_ms"] + 20.0
    report = {
        "what": "a normal client (one request at a time, new connection each) alone and while "
        f"{args.slow} connections from the same host trickle header lines every {args.every} s",
        "command": " ".join(
            ["python3", "bench/reliability/slow_clients.py", *_without_pause(argv)]
        ),
        "machine": f"{os.cpu_count()} CPUs",
        "server_limits": settings,
        "normal_alone": alone,
        "normal_during_slow": during,
        "slow_connections": slow_stats,
        "server_rss_mb": {"before": rss_before, "after": rss_after},
        "server_log": {
            "header_timeout_lines": log_text.count("request headers not complete"),
            "tracebacks": log_text.count("Traceback"),
            "exit_code": code,
        },
        "p99_bar_ms": round(bar, 2),
        "passed": during["error_count"] == 0
        and alone["error_count"] == 0
        and during["p99_ms"] <= bar
        and log_text.count("Traceback") == 0,
    }
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


def _without_pause(argv: list[str] | None) -> list[str]:
    """The arguments as given, less --pause-pid and its value (a pid says nothing later)."""
    args, out = list(sys.argv[1:] if argv is None else argv), []
    while args:
        a = args.pop(0)
        if a == "--pause-pid":
            args = args[1:]
        elif not a.startswith("--pause-pid="):
            out.append(a)
    return out


def _defaults() -> dict:
    from service.config import Settings

    s = Settings()
    keys = ("header_timeout_s", "max_connections", "keep_alive_timeout_s")
    return {k: getattr(s, k) for k in (*keys, "keep_alive_max_requests", "body_idle_timeout_s")}


if __name__ == "__main__":
    raise SystemExit(main())
