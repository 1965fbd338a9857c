"""bench/frontend/frontend.py in small: two framecast servers and two bare processes taking turns
(the others stopped during each turn), every row measured, the JSON written. Needs wrk (Debian:
apt-get install wrk): skipped without it, except in CI (``CI`` set), where it fails instead."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_frontend_bench_runs_small(tmp_path):
    if shutil.which("wrk") is None:
        if os.environ.get("CI"):
            pytest.fail("wrk is not installed (CI is set, so this fails instead of skipping)")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    out = tmp_path / "frontend.json"
    cmd = [sys.executable, str(ROOT / "bench" / "frontend" / "frontend.py"), "--cases", "classify"]
    cmd += ["--no-litserve", "--framecast-workers", "1", "--duration", "2", "--rounds", "2"]
    cmd += ["--bare-seconds", "1"]
    cmd += ["--bodies", "json,npy", "--also-env", "FRAMECAST_CPU_THREADS=1", "--out", str(out)]
    cmd += ["--keys", "--layers", "500", "--also-tree", f"here={ROOT}"]  # a checkout's own row
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    case = report["cases"]["classify"]
    rows = {k: v for k, v in case.items() if isinstance(v, dict) and "req_s" in v}
    assert set(rows) == {
        "framecast_w1",
        "framecast_w1 body=npy",
        "framecast_w1 FRAMECAST_CPU_THREADS=1",
        "framecast_w1 keys",  # keys on, a scoped key with limits: every request answered 200
        "framecast_w1 tree=here",  # served from a checkout's folder (another commit's, in use)
    }
    layers = report["layers"]["us_per_request"]  # what each layer costs a request
    assert {"request_log", "metrics", "keys_env", "keys_file_scoped_with_limits"} <= set(layers)
    assert all(v >= 0 for v in layers.values()) and report["layers"]["app_alone_us"] > 0
    bare = case["bare"]
    assert bare["clips_s"] == max(r["clips_s"] for r in bare["by_pools"].values()) > 0
    assert len(bare["by_pools"]) == 2 and bare["tf_pools"] in bare["by_pools"]
    for sizing in bare["by_pools"].values():  # measured in every round, beside the servers
        assert len(sizing["clips_s_per_round"]) == 2 and min(sizing["clips_s_per_round"]) > 0
        assert sizing["cpu_ms_per_clip"] > 0
    for key, row in rows.items():
        assert row["requests"] > 0 and row["non_2xx"] == 0, (key, row)
        assert len(row["req_s_per_round"]) == 2
        assert row["server_cpu_ms_per_request"] > 0
        assert row["idle_cpu_cores"] >= 0
    assert rows["framecast_w1"]["event_loop_cpu_ms_per_request"] > 0
    # its garbage-collector time, from framecast_gc_seconds_total in its /metrics
    assert 0 <= rows["framecast_w1"]["gc_us_per_request"] < 1000
    assert "framecast_w1" in done.stdout  # the printed table


def test_a_bare_process_that_dies_is_reported_and_stopping_it_is_quiet():
    import signal
    import time

    sys.path.insert(0, str(ROOT / "bench" / "frontend"))
    import frontend_bare

    bare = frontend_bare.Bare(ROOT / "models" / "conv2d_lstm_classify", {})
    try:
        bare.wait_ready()
        run = bare.measure(0.2)
        assert set(run) == set(frontend_bare.BARE_BATCHES)
        assert all(r["clips"] > 0 and r["wall_s"] > 0 for r in run.values())
        os.kill(bare.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while bare.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(RuntimeError, match="bare process exited"):
            bare.measure(0.2)
    finally:
        bare.stop()  # already gone: no error
