"""bench/streams/stream_bench.py in small: one level, one second a run, the JSON written, every
frame answered 2xx; and the committed figures keep the issue's bar (a streamed frame costs the
server at most a third of a 10-frame window request's CPU, at 1, 8 and 32 clients). Needs wrk:
skipped without it, except in CI (``CI`` set), where it fails instead."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_stream_bench_runs_small(tmp_path):
    if shutil.which("wrk") is None:
        if os.environ.get("CI"):
            pytest.fail("wrk is not installed (CI is set, so this fails instead of skipping)")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    out = tmp_path / "stream_bench.json"
    cmd = [sys.executable, str(ROOT / "bench" / "streams" / "stream_bench.py"), "--seconds", "1"]
    cmd += ["--levels", "2", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    level = json.loads(out.read_text())["levels"]["2"]
    for way in ("stream", "window"):
        assert level[way]["frames"] > 0 and level[way]["non_2xx"] == 0, level
        assert level[way]["server_cpu_ms_per_frame"] > 0


def test_committed_stream_figures_meet_the_bar():
    report = json.loads((ROOT / "docs" / "bench" / "stream_bench.json").read_text())
    assert set(report["levels"]) == {"1", "8", "32"}
    for c, level in report["levels"].items():
        s, w = level["stream"], level["window"]
        assert s["non_2xx"] == w["non_2xx"] == 0, c
        assert s["server_cpu_ms_per_frame"] <= w["server_cpu_ms_per_frame"] / 3, c
