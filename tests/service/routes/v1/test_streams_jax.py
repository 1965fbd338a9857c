"""Streams under JAX: fed frame by frame, a stream on a carried-state model and on a window model
predicts what predict answers for the same frames, as under TensorFlow (test_streams.py)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.repository import read_manifest, write_manifest
from tests.service import own_models as om
from tests.service.conftest import save_tiny

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="jax is not installed (pip install -e '.[dev]')"
)

_SCRIPT = """
import io, sys, numpy as np, keras
from fastapi.testclient import TestClient
from service.app import create_app
from service.config import Settings

def npy(a):
    b = io.BytesIO(); np.save(b, a); return b.getvalue()

H = {"content-type": "application/x-npy"}
worst = 0.0
with TestClient(create_app(Settings(models_dir=sys.argv[1], load_mode="blocking"))) as c:
    for name, side in (("carry_nf", 16), ("window_nf", 16), ("user_free", 16)):
        info = c.get(f"/v1/models/{name}").json()
        sid = c.post(f"/v1/models/{name}/streams").json()["id"]
        ctx = c.get(f"/v1/streams/{sid}").json()["context"]
        frames = np.random.default_rng(1).random((max(ctx, 3), side, side, 1), dtype=np.float32)
        for i in range(len(frames)):
            a = c.post(f"/v1/streams/{sid}/frames", params={"raw": True},
                       content=npy(frames[i:i + 1]), headers=H).json()
            if not a["frames"]:
                continue
            seen = frames[: i + 1][-ctx:] if info["input"]["frames"] else frames[: i + 1]
            want = c.post(f"/v1/models/{name}/predict", params={"output": "npy"},
                          content=npy(seen), headers=H)
            got = np.array(a["frames"][0]["values"], np.float32)
            worst = max(worst, float(np.abs(got - np.load(io.BytesIO(want.content))[0]).max()))
        print(name, a["mode"], info["rollout"])
print(keras.backend.backend(), "worst", worst)
"""


def test_streams_equal_predict_under_jax(tmp_path):
    root = tmp_path / "models"
    for name, rollout in (("carry_nf", "carried_state"), ("window_nf", "sliding_window")):
        folder = save_tiny(root, name, "convlstm2d", "next_frame")
        m = read_manifest(folder)
        m.rollout = rollout
        write_manifest(folder, m)
    om.write_folder(root, "user_free", om.free_sequence_next_frame())
    script = tmp_path / "streams_jax.py"
    script.write_text(_SCRIPT)
    repo = str(Path(__file__).resolve().parents[4])
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=repo)
    res = subprocess.run(
        [sys.executable, str(script), str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert "carry_nf carry carried_state" in out and "window_nf window" in out, out
    assert "user_free carry carried_state" in out, out
    backend, _, worst = out.strip().splitlines()[-1].split()
    assert backend == "jax" and float(worst) < 2e-5, out
