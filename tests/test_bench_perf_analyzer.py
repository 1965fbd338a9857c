"""bench/perf_analyzer.py in small: Triton's perf_analyzer, unchanged (no ``-x``, no options of
framecast's), against every bundled model over HTTP and over gRPC (the next-frame models as
sequence models: their configuration says ``sequence_batching``, so perf_analyzer sends
``sequence_id``/``sequence_start``/``sequence_end``, and the server's statistics must count
every phase for it to finish). Needs bench/perf_analyzer_setup.sh's folder (FRAMECAST_PERF_ANALYZER
or runs/perf_analyzer): skipped without it, except in CI (``CI`` set; .ci/run makes it), where
it fails instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("conv2d_lstm_classify", "convlstm2d_classify", "conv2d_lstm_next_frame",
          "convlstm2d_next_frame")  # fmt: skip


def test_perf_analyzer_runs_unchanged_on_every_bundled_model(tmp_path):
    folder = Path(os.environ.get("FRAMECAST_PERF_ANALYZER", ROOT / "runs" / "perf_analyzer"))
    if not (folder / "wheel" / "perf_analyzer" / "bin" / "perf_analyzer").is_file():
        why = f"no perf_analyzer in {folder} (bench/perf_analyzer_setup.sh {folder})"
        if os.environ.get("CI"):
            pytest.fail(why + " (CI is set, so this fails instead of skipping)")
        pytest.skip(why)
    out = tmp_path / "perf_analyzer.json"
    cmd = [sys.executable, str(ROOT / "bench" / "perf_analyzer.py"), "--dir", str(folder)]
    cmd += ["--models", ",".join(MODELS), "--concurrency", "1,2", "--interval-ms", "1000"]
    cmd += ["--stability", "100", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["models"]) == set(MODELS)
    for model, by_protocol in report["models"].items():
        assert set(by_protocol) == {"http", "grpc"}, model
        for protocol, rows in by_protocol.items():
            assert [r["concurrency"] for r in rows] == [1, 2], (model, protocol)
            for r in rows:
                assert r["infer_per_s"] > 0 and r["p50_ms"] > 0, (model, protocol, r)
                # the server-side split is framecast's own statistics: the model's time is in it
                assert r["server_compute_infer_ms"] > 0, (model, protocol, r)
