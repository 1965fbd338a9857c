"""bench/serving/gil_copies.py in small: both ways of building a batch timed alone and beside a busy
thread, the JSON written (its figures are what the README quotes, from the full run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gil_copies_bench_runs_small(tmp_path):
    out = tmp_path / "gil.json"
    cmd = [sys.executable, str(ROOT / "bench" / "serving" / "gil_copies.py"), "--seconds", "0.1"]
    done = subprocess.run(
        cmd + ["--batch", "4", "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    for cond in ("alone_ms", "beside_busy_thread_ms"):
        assert set(report[cond]) == {"np.stack", "bytes.join (stacked)"}
        assert all(v > 0 for v in report[cond].values())
    assert report["command"].endswith("--batch 4 --out " + str(out))
