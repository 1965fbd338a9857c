"""The bundled models compared as a user would compare theirs: an evaluation job over held-out
Moving MNIST clips, through the running service (issue #39, item 5).

    python3 bench/evaluation/evaluate_mnist.py --mnist-dir ../shared/data/mnist [--clips 1000]
        [--out docs/bench/evaluate_mnist.json] [--png docs/evaluate_mnist.png]

It makes the test clips exactly as ``framecast evaluate`` does (``models.data.test_set``: digits
8000-9999 of the MNIST test split, the fixed test seeds): ``--clips`` 20-frame next-frame clips
and ``--clips`` direction clips with their labels. It starts ``framecast serve`` with the bundled
models on a free loopback port, waits until each model's peak memory has been measured, then
runs two jobs, one after the other: both next-frame models with ``holdout=10`` (10 frames of
context, 10 rolled out), and both classifiers. The JSON holds each job's result (its strips of
example clips left out) and the command; the PNG is the next-frame job's plot.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from harness import HOST, ROOT, Server, child_env, free_port

from models.repository import atomic_write_text

NEXT = "conv2d_lstm_next_frame,convlstm2d_next_frame"
CLASSIFY = "conv2d_lstm_classify,convlstm2d_classify"


def _npy(**arrays) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    if len(arrays) == 1:
        np.save(buf, next(iter(arrays.values())))
    else:
        np.savez(buf, **arrays)
    return buf.getvalue()


def _job(http, query: str, body: bytes, deadline_s: float = 7200.0) -> dict:
    r = http.post(
        f"/v1/evaluations?{query}",
        content=body,
        headers={"content-type": "application/octet-stream"},
    )
    if r.status_code != 202:
        raise SystemExit(f"the job was refused: {r.status_code} {r.text}")
    location, t0, last = r.json()["location"], time.monotonic(), -1
    while time.monotonic() - t0 < deadline_s:
        job = http.get(location).json()
        done = job["progress"]["done"]
        if done != last and done % 100 == 0:
            print(f"  {done}/{job['progress']['total']} clips", flush=True)
            last = done
        if job["state"] in ("done", "failed", "cancelled"):
            if job["state"] != "done":
                raise SystemExit(f"the job {job['state']}: {job['error']}")
            job["plot_png"] = http.get(location + "/plot.png").content
            return job
        time.sleep(1.0)
    raise SystemExit("the job did not finish in time")


def _wait_memory(http, names: list[str], deadline_s: float = 600.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        models = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
        if all((models[n].get("cost") or {}).get("peak_memory_bytes") for n in names):
            return
        time.sleep(2.0)
    print("peak memory not measured in time: the jobs go on without it", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mnist-dir", default=None)
    p.add_argument("--clips", type=int, default=1000)
    p.add_argument(
        "--out", type=os.path.abspath, default=ROOT / "docs" / "bench" / "evaluate_mnist.json"
    )
    p.add_argument("--png", type=os.path.abspath, default=ROOT / "docs" / "evaluate_mnist.png")
    args = p.parse_args(argv)

    import httpx
    import numpy as np

    from models import data as D

    mnist = D.load_mnist(args.mnist_dir)
    nf = D.test_set(mnist, "next_frame", args.clips)
    cl, labels = D.test_set(mnist, "classify", args.clips)
    to_u8 = lambda x: np.rint(x[..., 0] * 255).astype(np.uint8)  # noqa: E731 - exact: x = u8 / 255
    port = free_port()
    state = tempfile.mkdtemp(prefix="framecast-evaluate-mnist-")
    env = {
        **child_env(),
        "FRAMECAST_LOAD_MODE": "blocking",
        "FRAMECAST_JOB_DIR": state,
        "FRAMECAST_COST_CACHE_DIR": os.path.join(state, "costs"),
        "FRAMECAST_MEASURE_MEMORY": "background",
    }
    env.pop("FRAMECAST_API_KEYS", None)
    cmd = [sys.executable, "-m", "service.cli", "serve", "--host", HOST, "--port", str(port)]
    cmd += ["--log-level", "warning"]
    server = Server(cmd, port, "/readyz", env=env, cwd=ROOT)
    jobs = {}
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=600.0) as http:
            _wait_memory(http, [*NEXT.split(","), *CLASSIFY.split(",")])
            print(f"next frame: {args.clips} clips", flush=True)
            jobs["next_frame"] = _job(http, f"models={NEXT}&holdout=10", _npy(clips=to_u8(nf)))
            print(f"classify: {args.clips} clips", flush=True)
            body = _npy(clips=to_u8(cl), labels=labels)
            jobs["classify"] = _job(http, f"models={CLASSIFY}", body)
    finally:
        server.stop()
    png = jobs["next_frame"].pop("plot_png")
    jobs["classify"].pop("plot_png")
    for job in jobs.values():
        job["result"].pop("examples", None)  # base64 strips: in the HTML report, not here
        print(job["result"]["verdict"])
    report = {
        "what": "evaluation jobs through the running service: the bundled models on held-out "
        "Moving MNIST test clips (MNIST digits 8000-9999, models.data.test_set)",
        "command": "python3 bench/evaluation/evaluate_mnist.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{os.cpu_count()} CPUs shared with other work while it ran: timings (clips/s, "
        "latency, model ms) move with the machine's load; the metrics and intervals do not",
        "clips": args.clips,
        "mnist_source": mnist.source,
        "jobs": jobs,
    }
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    with open(args.png, "wb") as f:
        f.write(png)
    print(f"figures in {args.out}, plot in {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
