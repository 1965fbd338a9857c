"""The same checkpoints give the same outputs under KERAS_BACKEND=tensorflow and jax."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.architectures import build
from models.repository import BUNDLED_DIR, Manifest, discover, save_model_folder

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="jax is not installed (pip install -e '.[dev]')"
)

_PREDICT = """
import sys, numpy as np, keras
work = sys.argv[1]
for i, path in enumerate(sys.argv[2:]):
    model = keras.models.load_model(path, safe_mode=True)
    x = np.load(f"{work}/x{i}.npy")
    np.save(f"{work}/y{i}_{keras.backend.backend()}.npy", np.asarray(model.predict_on_batch(x)))
print(keras.backend.backend())
"""


def _run_under(backend: str, *args: str) -> str:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    res = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def _folders(tmp_path: Path) -> list[Path]:
    out = []
    for arch, kw in (
        ("convlstm2d", {"filters": (4,)}),
        ("conv2d_lstm", {"conv_filters": (4, 4), "lstm_units": 8}),
    ):
        for task in ("next_frame", "classify"):
            folder = tmp_path / f"{arch}_{task}"
            model = build(arch, task=task, time_steps=4, height=16, width=16, **kw)
            save_model_folder(
                folder,
                model,
                Manifest(
                    name=folder.name,
                    architecture=arch,
                    task=task,
                    frames=4,
                    height=16,
                    width=16,
                    channels=1,
                    class_names=[str(i) for i in range(8)] if task == "classify" else None,
                ),
            )
            out.append(folder)
    bundled = discover(BUNDLED_DIR) if BUNDLED_DIR.is_dir() else []
    return out + bundled


def test_tensorflow_and_jax_agree(tmp_path):
    script = tmp_path / "predict.py"
    script.write_text(_PREDICT)
    folders = _folders(tmp_path)
    for i, folder in enumerate(folders):
        man = json.loads((folder / "manifest.json").read_text())
        x = (
            np.random.default_rng(i)
            .random((2, man["frames"], man["height"], man["width"], man["channels"]))
            .astype("float32")
        )
        np.save(tmp_path / f"x{i}.npy", x)
    paths = [str(f / "model.keras") for f in folders]
    for backend in ("tensorflow", "jax"):
        assert _run_under(backend, str(script), str(tmp_path), *paths).strip().endswith(backend)
    for i, folder in enumerate(folders):
        tf_out, jax_out = (np.load(tmp_path / f"y{i}_{b}.npy") for b in ("tensorflow", "jax"))
        assert tf_out.shape[0] == 2
        np.testing.assert_allclose(
            jax_out, tf_out, atol=2e-5, err_msg=f"{folder.name}: backends disagree"
        )


def test_evaluate_runs_under_jax(tmp_path, synthetic_mnist_npz):
    folder = tmp_path / "m"
    model = build("convlstm2d", task="next_frame", time_steps=10, filters=(4,))
    save_model_folder(
        folder,
        model,
        Manifest(
            name="m",
            architecture="convlstm2d",
            task="next_frame",
            frames=10,
            height=64,
            width=64,
            channels=1,
        ),
    )
    _run_under(
        "jax",
        "-m",
        "service.cli",
        "evaluate",
        str(folder),
        "--clips",
        "3",
        "--batch-size",
        "2",
        "--mnist-dir",
        str(synthetic_mnist_npz),
    )
    card = json.loads((folder / "card.json").read_text())
    assert card["evaluated_with"]["backend"] == "jax"
    assert np.isfinite(card["metrics"]["rollout"]["mse_per_frame"])


_CARRIED = """
import sys, numpy as np, keras
from models.architectures import build
from models.carried import ContextPass, Step, stepper
keras.utils.set_random_seed(0)
out = {}
for arch, kw in (("convlstm2d", {"filters": (4, 4)}),
                 ("conv2d_lstm", {"conv_filters": (4, 4), "lstm_units": 8})):
    m = build(arch, task="next_frame", time_steps=None, height=16, width=16, **kw)
    m.load_weights(sys.argv[1] + f"/{arch}.weights.h5")
    x = np.load(sys.argv[1] + "/x.npy")
    ctx = ContextPass(m).predict_on_batch(x[:, :3])
    states, frames = list(ctx[1:]), [np.asarray(ctx[0])]
    for t in (3, 4):
        o = Step(m).predict_on_batch([x[:, t:t + 1]] + states)
        states, _ = list(o[1:]), frames.append(np.asarray(o[0]))
    whole = ContextPass(m).predict_on_batch(x)
    same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(whole[1:], states))
    same = same and np.array_equal(np.asarray(whole[0]), frames[-1])
    out[arch] = (same, stepper(m).rollout(x[:, :3], 4))
    np.save(sys.argv[1] + f"/roll_{arch}_{keras.backend.backend()}.npy", out[arch][1])
    print(arch, "split-equal" if same else "split-DIFFERS")
"""


def test_carried_state_rollout_under_both_backends(tmp_path):
    """3 + 1 + 1 frames with the state carried equal 5 at once under each backend, and the
    rollouts of the two backends agree."""
    keras_models = {}
    for arch, kw in (
        ("convlstm2d", {"filters": (4, 4)}),
        ("conv2d_lstm", {"conv_filters": (4, 4), "lstm_units": 8}),
    ):
        m = build(arch, task="next_frame", time_steps=None, height=16, width=16, **kw)
        m.save_weights(tmp_path / f"{arch}.weights.h5")
        keras_models[arch] = m
    np.save(tmp_path / "x.npy", np.random.default_rng(5).random((2, 5, 16, 16, 1), np.float32))
    script = tmp_path / "carried.py"
    script.write_text(_CARRIED)
    root = str(Path(__file__).resolve().parents[2])
    for backend in ("tensorflow", "jax"):
        env_path = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = root + (os.pathsep + env_path if env_path else "")
        try:
            text = _run_under(backend, str(script), str(tmp_path))
        finally:
            if env_path is None:
                os.environ.pop("PYTHONPATH")
            else:
                os.environ["PYTHONPATH"] = env_path
        assert text.count("split-equal") == 2, text
    for arch in keras_models:
        np.testing.assert_allclose(
            np.load(tmp_path / f"roll_{arch}_tensorflow.npy"),
            np.load(tmp_path / f"roll_{arch}_jax.npy"),
            atol=1e-5,
        )
