"""bench/serving/horizon_cost.py in small: both bundled next-frame models through a running server,
horizon=1 and horizon=10 taking turns, the JSON written (the figures are the bench's, not this
test's: it checks that every row is measured)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_horizon_cost_bench_runs_small(tmp_path):
    out = tmp_path / "horizon_cost.json"
    cmd = [sys.executable, str(ROOT / "bench" / "serving" / "horizon_cost.py"), "--repeats", "3"]
    cmd += ["--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["models"]) == {"conv2d_lstm_next_frame", "convlstm2d_next_frame"}
    for r in report["models"].values():
        assert r["horizon_1_median_ms"] > 0 and r["horizon_10_median_ms"] > 0
        assert r["cost"] == round(r["horizon_10_median_ms"] / r["horizon_1_median_ms"], 2)
