"""bench/streams/stream_scale.py in small: two levels, one second a run, no Ray; every frame
answered 2xx on each store (two servers balanced request by request, and by stream), the Redis rows
with their store traffic counted; and the committed JSON
has every way at 1, 32 and 128 streams with its targets computed from its own figures. Needs wrk,
redis-server and nginx (Debian's): skipped without them, except in CI (``CI`` set)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_stream_scale_bench_runs_small(tmp_path):
    missing = [t for t in ("wrk", "redis-server", "nginx") if shutil.which(t) is None]
    if missing:
        message = f"not installed: {', '.join(missing)} (apt-get install wrk redis-server nginx)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path / "stream_scale.json"
    cmd = [sys.executable, str(ROOT / "bench" / "streams" / "stream_scale.py"), "--seconds", "1"]
    cmd += ["--levels", "1", "3", "--rounds", "3", "--no-ray", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["ways"]) == {"memory", "redis-one", "folder", "redis", "redis-sticky"}
    for way, rows in report["ways"].items():
        assert [r["streams"] for r in rows] == [1, 3]
        for r in rows:
            assert r["frames"] > 0 and r["non_2xx"] == 0 and not r["socket_errors"], (way, r)
            assert r["server_cpu_ms_per_frame"] > 0
            rounds = r["server_cpu_ms_per_frame_per_round"]  # the median of three runs is kept
            assert len(rounds) == 3 and sorted(rounds)[1] == r["server_cpu_ms_per_frame"]
            assert r["mean_batch"] >= 1 and r["model_calls_per_s"] > 0, (way, r)
            if way not in ("memory", "folder"):
                assert r["store_round_trips_per_frame"] >= 2, r  # a read and a write at least
                assert r["store_bytes_in_per_frame"] > 0 and r["store_bytes_out_per_frame"] > 0
    cpu = {w: [r["server_cpu_ms_per_frame"] for r in rows] for w, rows in report["ways"].items()}
    for name, way in (("redis_over_memory", "redis"), ("redis_sticky_over_memory", "redis-sticky")):
        got = report["ratios"][name]
        assert got == [round(r / m, 3) for r, m in zip(cpu[way], cpu["memory"])], name


def test_committed_stream_scale_figures_are_whole():
    report = json.loads((ROOT / "docs" / "bench" / "stream_scale.json").read_text())
    ways = report["ways"]
    assert set(ways) >= {"memory", "redis", "ray-carry", "ray-window"}
    for way, rows in ways.items():
        assert [r["streams"] for r in rows] == [1, 32, 128], way
        assert all(r["frames"] > 0 and r["non_2xx"] == 0 for r in rows), way
    for name, values in report["ratios"].items():
        assert report["targets_met"][name] == all(v <= report["targets"][name] for v in values)
