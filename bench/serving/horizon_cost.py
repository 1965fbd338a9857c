"""What ``horizon=10`` costs against ``horizon=1``, through the running service (issue #28).

    python3 bench/serving/horizon_cost.py [--models conv2d_lstm_next_frame,convlstm2d_next_frame]
        [--repeats 40] [--horizon 10] [--out docs/bench/horizon_cost.json] [--pause-pid PID]

It starts ``framecast serve`` with the bundled models on a free loopback port and posts one
10-frame clip (``application/x-npy``, ``output=npy``) to ``/v1/models/{m}/predict`` one request
at a time, taking turns between ``horizon=1`` and ``horizon=k`` so both see the same machine;
the figure is the ratio of the median end-to-end latencies (HTTP, decode, rollout, encode).
The first two rounds warm up and are dropped.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from harness import HOST, ROOT, Server, free_port, paused_all

from models.repository import atomic_write_text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="conv2d_lstm_next_frame,convlstm2d_next_frame")
    p.add_argument("--repeats", type=int, default=40)
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument(
        "--out", type=os.path.abspath, default=ROOT / "docs" / "bench" / "horizon_cost.json"
    )
    p.add_argument("--pause-pid", type=int, action="append", default=[])
    args = p.parse_args(argv)

    import httpx
    import numpy as np

    clip = np.random.default_rng(0).random((10, 64, 64, 1), dtype=np.float32)
    buf = io.BytesIO()
    np.save(buf, clip)
    body = buf.getvalue()
    port = free_port()
    env = {**os.environ, "FRAMECAST_LOAD_MODE": "blocking", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("FRAMECAST_API_KEYS", None)
    cmd = [sys.executable, "-m", "service.cli", "serve", "--host", HOST, "--port", str(port)]
    cmd += ["--log-level", "warning"]
    results = {}
    with paused_all(args.pause_pid):
        server = Server(cmd, port, "/readyz", env=env, cwd=ROOT)
        try:
            server.wait_ready()
            with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=120.0) as http:
                for model in args.models.split(","):
                    times: dict[int, list[float]] = {1: [], args.horizon: []}
                    for _ in range(args.repeats + 2):
                        for horizon in times:
                            t0 = time.perf_counter()
                            r = http.post(
                                f"/v1/models/{model}/predict?horizon={horizon}&output=npy",
                                content=body,
                                headers={"content-type": "application/x-npy"},
                            )
                            times[horizon].append(time.perf_counter() - t0)
                            if r.status_code != 200:
                                raise SystemExit(
                                    f"{model} horizon={horizon}: {r.status_code} {r.text}"
                                )
                    # The ratio is taken between the rounded medians the JSON prints, so a
                    # reader dividing the two printed figures gets the printed cost.
                    one = round(statistics.median(times[1][2:]) * 1000, 2)
                    k = round(statistics.median(times[args.horizon][2:]) * 1000, 2)
                    results[model] = {
                        "horizon_1_median_ms": one,
                        f"horizon_{args.horizon}_median_ms": k,
                        "cost": round(k / one, 2),
                    }
                    print(f"{model}: horizon=1 {one:.1f} ms, horizon={args.horizon} {k:.1f} ms, "
                          f"{k / one:.2f}x", flush=True)  # fmt: skip
        finally:
            server.stop()
    report = {
        "what": f"end-to-end latency of POST /v1/models/{{m}}/predict, horizon={args.horizon} "
        "against horizon=1, one request at a time, taking turns; medians",
        "command": f"python3 bench/serving/horizon_cost.py --repeats {args.repeats}",
        "machine": f"{os.cpu_count()} CPUs, bundled models, loopback",
        "horizon": args.horizon,
        "repeats": args.repeats,
        "models": results,
    }
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"figures in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
