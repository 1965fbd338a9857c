"""bench/recipes.py on a tiny budget: a candidate runs, stops at its CPU budget, its curve and
summary land in the JSON, and a second call skips the finished candidate."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _recipes():
    spec = importlib.util.spec_from_file_location("recipes", ROOT / "bench" / "recipes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_candidate_stops_at_its_cpu_budget_and_is_recorded(tmp_path, synthetic_mnist_npz):
    recipes = _recipes()
    # the same machinery on a tiny stack, so that an epoch fits the small budget
    recipes.CANDIDATES["base"] = ("tiny", ["--config", '{"filters": [4], "kernel_size": 3}'])
    out, runs = tmp_path / "recipes.json", tmp_path / "runs"
    argv = ["--mnist-dir", str(synthetic_mnist_npz), "--only", "base", "--budget-s", "25"]
    argv += ["--steps", "1", "--batch-size", "2", "--val-clips", "2", "--core", "-1"]
    argv += ["--out", str(out), "--runs", str(runs), "--poll-s", "0.5"]
    assert recipes.main(argv) == 0
    rec = json.loads(out.read_text())["candidates"]["base"]
    assert rec["done"] is True and "error" not in rec
    pts = rec["points"]
    assert pts and [p["clips"] for p in pts] == [2 * (i + 1) for i in range(len(pts))]
    assert all(b["cpu_s"] >= a["cpu_s"] for a, b in zip(pts, pts[1:]))
    assert pts[-1]["cpu_s"] < 25 + 30  # stopped near its budget, not at the end of the plan
    assert rec["summary"]["best_val_mse_per_frame"] == min(p["val_mse_per_frame"] for p in pts)
    assert "--forecast" in rec["command"]
    assert recipes.main(argv) == 0  # finished: skipped, the record unchanged
    assert json.loads(out.read_text())["candidates"]["base"]["points"] == pts


def test_an_unknown_candidate_is_refused(capsys):
    import pytest

    with pytest.raises(SystemExit):
        _recipes().main(["--only", "nope"])
    assert "unknown candidate" in capsys.readouterr().err
