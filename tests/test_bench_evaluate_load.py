"""bench/evaluation/evaluate_load.py in small: online predict requests with and without an
evaluation job, one server, one run, the JSON written (the figures are the bench's, measured in
full on a quiet machine; this test checks that every phase is measured and the ratio is the printed
one)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_evaluate_load_bench_runs_small(tmp_path):
    out = tmp_path / "evaluate_load.json"
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "evaluation" / "evaluate_load.py"),
        "--rate",
        "3",
        "--seconds",
        "2",
        "--rounds",
        "1",
        "--clips",
        "40",
        "--warmup",
        "1",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["non_200"] == 0
    for m in ("conv2d_lstm_next_frame", "convlstm2d_next_frame"):
        r = report["models"][m]
        assert r["without_job"]["requests"] > 0 and r["with_job"]["requests"] > 0
        assert r["p99_ratio"] == round(r["with_job"]["p99_ms"] / r["without_job"]["p99_ms"], 2)
    assert report["job_clips_per_s_under_load"] > 0
    assert report["all"]["met"] == (report["all"]["p99_ratio"] <= report["target_p99_ratio"])
