"""docs/ray.md's one-machine example, started ``--runs`` times: seconds until ``/readyz`` is 200.

    python3 bench/ecosystem/ray_start.py                        # 5 runs (~6 minutes here)
    python3 bench/ecosystem/ray_start.py --pause-pid 1234       # SIGSTOP a background job meanwhile

Each run is ``FRAMECAST_RAY_REPLICAS=2 framecast serve --ray --port P`` over the bundled
models, exactly as docs/ray.md gives it, in its own process group; the run records when the
HTTP port first answered and when ``/readyz`` first answered 200 (or that it did not within
``--limit`` seconds, with the log's tail), then stops it with SIGTERM and waits for it to exit.
Writes ``docs/bench/ray_start.json`` (each run, and how many were ready within 180 s, issue #27's
bar) and prints one line per run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from harness import ROOT, Server, child_env, free_port, paused


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:  # a 503 is an answer
        return True
    except OSError:
        return False


def one_run(limit: float, replicas: int) -> dict:
    port = free_port()
    env = {**child_env(), "FRAMECAST_RAY_REPLICAS": str(replicas)}
    cmd = [sys.executable, "-m", "service.cli", "serve", "--ray", "--port", str(port)]
    server = Server(cmd, port, env=env, cwd=ROOT, group=True, name="framecast serve --ray")
    t0, port_s, ready_s, error = time.monotonic(), None, None, None
    try:
        while time.monotonic() - t0 < limit:
            if server.proc.poll() is not None:
                error = f"exited {server.proc.returncode}: {server.log_tail(1500)}"
                break
            if port_s is None and _answers(server.url + "/healthz"):
                port_s = time.monotonic() - t0
            try:
                with urllib.request.urlopen(server.url + "/readyz", timeout=5) as r:
                    if r.status == 200:
                        ready_s = time.monotonic() - t0
                        break
            except OSError:
                pass
            time.sleep(1.0)
        else:
            error = f"not ready within {limit:.0f} s: {server.log_tail(1500)}"
    finally:
        t_stop = time.monotonic()
        code = server.stop(timeout=120)
        stop_s = time.monotonic() - t_stop
    return {
        "port_open_s": None if port_s is None else round(port_s, 1),
        "ready_s": None if ready_s is None else round(ready_s, 1),
        "stop_s": round(stop_s, 1),
        "exit_code": code,
        "error": error,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--limit", type=float, default=300.0, help="seconds a run may take to be ready")
    p.add_argument("--pause-pid", type=int, action="append", default=[])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "ray_start.json")
    args = p.parse_args(argv)
    runs = []
    for i in range(args.runs):
        with ExitStack() as stack:
            for pid in args.pause_pid:  # each --pause-pid stopped during the run
                stack.enter_context(paused(pid))
            run = one_run(args.limit, args.replicas)
        runs.append(run)
        print(
            f"run {i + 1}: port {run['port_open_s']} s, ready {run['ready_s']} s, "
            f"stopped in {run['stop_s']} s (exit {run['exit_code']})"
            + (f"; {run['error'][:200]}" if run["error"] else ""),
            flush=True,
        )
    ready = [r["ready_s"] for r in runs if r["ready_s"] is not None]
    report = {
        "command": f"FRAMECAST_RAY_REPLICAS={args.replicas} framecast serve --ray --port P",
        "bundled models": 4,
        "runs": runs,
        "ready_within_180_s": sum(1 for s in ready if s <= 180.0),
        "of": len(runs),
        "ready_s_max": max(ready) if ready else None,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"ready within 180 s: {report['ready_within_180_s']} of {len(runs)}; wrote {args.out}")
    return 0 if report["ready_within_180_s"] == len(runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
