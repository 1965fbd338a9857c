"""bench/ecosystem/perf_analyzer.py in small: Triton's perf_analyzer, unchanged (no ``-x``, no
options of framecast's), against every bundled model over HTTP and over gRPC (the next-frame models
as sequence models: their configuration says ``sequence_batching``, so perf_analyzer sends
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


def _perf_analyzer() -> Path:
    folder = Path(os.environ.get("FRAMECAST_PERF_ANALYZER", ROOT / "runs" / "perf_analyzer"))
    if not (folder / "wheel" / "perf_analyzer" / "bin" / "perf_analyzer").is_file():
        why = f"no perf_analyzer in {folder} (bench/perf_analyzer_setup.sh {folder})"
        if os.environ.get("CI"):
            pytest.fail(why + " (CI is set, so this fails instead of skipping)")
        pytest.skip(why)
    return folder


def _bench(tmp_path: Path, models: tuple[str, ...], *more: str) -> dict:
    out = tmp_path / "perf_analyzer.json"
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "ecosystem" / "perf_analyzer.py"),
        "--dir",
        str(_perf_analyzer()),
    ]
    cmd += ["--models", ",".join(models), "--concurrency", "1,2", "--interval-ms", "1000"]
    cmd += ["--stability", "100", "--out", str(out), *more]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["models"]) == set(models)
    return report


def test_perf_analyzer_runs_unchanged_on_a_users_versioned_model(tmp_path):
    """The textbook Conv2D+LSTM classifier (RGB, Dense(1, sigmoid)), a checkpoint alone, in
    two numbered versions, both served: perf_analyzer (no -x) measures the highest."""
    _perf_analyzer()
    from tests.service import own_models as om

    root = tmp_path / "models"
    om.write_folder(root / "mine", "1", om.conv2d_lstm_binary(3))
    om.write_folder(root / "mine", "2", om.conv2d_lstm_binary(3))
    (root / "mine" / "manifest.json").write_text('{"version_policy": "all"}')
    report = _bench(tmp_path, ("mine",), "--models-dir", str(root))
    for protocol, rows in report["models"]["mine"].items():
        assert [r["concurrency"] for r in rows] == [1, 2], protocol
        assert all(r["infer_per_s"] > 0 and r["server_compute_infer_ms"] > 0 for r in rows)


def test_perf_analyzer_runs_unchanged_on_every_bundled_model(tmp_path):
    report = _bench(tmp_path, MODELS)
    for model, by_protocol in report["models"].items():
        assert set(by_protocol) == {"http", "grpc"}, model
        for protocol, rows in by_protocol.items():
            assert [r["concurrency"] for r in rows] == [1, 2], (model, protocol)
            for r in rows:
                assert r["infer_per_s"] > 0 and r["p50_ms"] > 0, (model, protocol, r)
                # the server-side split is framecast's own statistics: the model's time is in it
                assert r["server_compute_infer_ms"] > 0, (model, protocol, r)
