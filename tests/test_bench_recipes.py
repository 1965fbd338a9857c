"""bench/training/recipes.py on a tiny budget: a candidate runs, stops at its CPU budget, its curve
and summary land in the JSON, and a second call skips the finished candidate."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _recipes():
    spec = importlib.util.spec_from_file_location(
        "recipes", ROOT / "bench" / "training" / "recipes.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TINY_RUN = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("recipes", sys.argv[1])
recipes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipes)
# the same machinery on a tiny stack, so that an epoch fits the small budget
recipes.CANDIDATES["base"] = ("tiny", ["--config", '{"filters": [4], "kernel_size": 3}'])
raise SystemExit(recipes.main(sys.argv[2:]))
"""


def _run_in_background(argv: list[str]) -> int:
    """As ``nohup python3 bench/training/recipes.py ... &`` runs it: SIGINT ignored, inherited."""
    proc = subprocess.run(
        [sys.executable, "-c", TINY_RUN, str(ROOT / "bench" / "training" / "recipes.py"), *argv],
        cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        timeout=300,
    )
    return proc.returncode


def test_a_candidate_stops_at_its_cpu_budget_and_is_recorded(tmp_path, synthetic_mnist_npz):
    out, runs = tmp_path / "recipes.json", tmp_path / "runs"
    argv = ["--mnist-dir", str(synthetic_mnist_npz), "--only", "base", "--budget-s", "25"]
    argv += ["--steps", "1", "--batch-size", "2", "--val-clips", "2", "--core", "-1"]
    argv += ["--out", str(out), "--runs", str(runs), "--poll-s", "0.5"]
    assert _run_in_background(argv) == 0
    rec = json.loads(out.read_text())["candidates"]["base"]
    assert rec["done"] is True and "error" not in rec
    pts = rec["points"]
    assert pts and [p["clips"] for p in pts] == [2 * (i + 1) for i in range(len(pts))]
    assert all(b["cpu_s"] >= a["cpu_s"] for a, b in zip(pts, pts[1:]))
    assert pts[-1]["cpu_s"] < 25 + 30  # stopped near its budget, not at the end of the plan
    assert rec["summary"]["best_val_mse_per_frame"] == min(p["val_mse_per_frame"] for p in pts)
    assert "--forecast" in rec["command"]
    assert _run_in_background(argv) == 0  # finished: skipped, the record unchanged
    assert json.loads(out.read_text())["candidates"]["base"]["points"] == pts


def test_an_unknown_candidate_is_refused(capsys):
    import pytest

    with pytest.raises(SystemExit):
        _recipes().main(["--only", "nope"])
    assert "unknown candidate" in capsys.readouterr().err
