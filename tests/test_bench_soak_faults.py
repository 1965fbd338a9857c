"""bench/reliability/soak.py --faults (bench/reliability/soak_faults.py): how failures are put down
to causes, and a small fault run (tiny models, 30 s: a worker killed and restarted, a reload, slow
and vanishing clients) that must pass with nothing lost."""

from __future__ import annotations

import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _faults():
    sys.path.insert(0, str(ROOT / "bench" / "reliability"))
    try:
        import soak_faults
    finally:
        sys.path.remove(str(ROOT / "bench" / "reliability"))
    return soak_faults


def _row(t, status=200, problem=None, model="m", seconds=0.01):
    return (t, "predict-npy", model, False, status, seconds, problem)


def test_only_broken_connections_right_after_the_kill_are_the_kills():
    summarise = _faults().summarise
    args = Namespace(minutes=1, concurrency=4, tiny=True, kill_window_s=3.0)
    events = {
        "kill": {"at_s": 10.0, "workers_after": 2},
        "reload": {"model": "m", "at_s": 20.0, "until_s": 21.0, "status": 200},
    }
    rows = [
        _row(5.0),
        _row(10.5, 0, "connection: RemoteProtocolError"),  # in flight on the killed worker
        _row(9.96, 0, "connection: ReadError"),  # cut by a kill at 9.96 s, written "10.0"
        _row(12.9, 0, "connection: ConnectError"),  # sent to its closing socket
        _row(9.9, 0, "connection: ReadError"),  # before the kill: lost
        _row(14.0, 0, "connection: ReadError"),  # too late: lost
        _row(15.0, 500, "500: boom"),  # a 5xx: lost
        _row(16.0, 200, "npy differs from reference"),  # a wrong answer: lost
        _row(20.5, model="other", seconds=0.2),  # another model during the reload
    ]
    f = summarise(args, rows, events, [(0, 100.0), (60, 101.0)], 0, "")
    assert f["failed_by_cause"] == {"killed_worker_in_flight": 3, "lost": 4}
    assert not f["passed"]
    assert f["p99_ms_during_reload_other_models"] == pytest.approx(200.0)
    ok = summarise(args, rows[:4] + rows[-1:], events, [(0, 100.0)], 0, "")
    assert ok["passed"] and ok["failed_by_cause"]["lost"] == 0
    assert not summarise(args, rows[:4], events, [(0, 1.0)], 0, "Traceback (most recent")["passed"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, SO_REUSEPORT, ps")
def test_a_small_fault_run_loses_nothing(tmp_path):
    out = tmp_path / "faults.json"
    cmd = [sys.executable, "bench/reliability/soak.py", "--faults", "--tiny", "--minutes", "0.5"]
    cmd += ["--concurrency", "2", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert out.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    f = json.loads(out.read_text())
    assert proc.returncode == 0 and f["passed"], proc.stdout[-3000:]
    assert f["failed_by_cause"]["lost"] == 0 and f["events"]["kill"]["workers_after"] == 2
    assert f["events"]["reload"]["status"] == 200 and f["events"]["vanished_clients"] > 0
    assert f["server_log"]["disconnect_lines"] > 0 and f["server_log"]["restart_lines"] == 1
    assert f["requests_sent"] > 100
