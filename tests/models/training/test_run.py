"""`framecast train` (models/training/run.py) end to end on a tiny budget: resuming, refusals,
lineage from a parent, the objective flags and the training precision."""

import json

import keras
import numpy as np
import pytest

from models.repository import read_manifest
from service.cli import main
from tests.models.helpers import TINY, train_tiny


def test_resume_continues_from_last_epoch(tmp_path, synthetic_mnist_npz, capsys):
    out = tmp_path / "run"
    assert train_tiny(out, "convlstm2d", "classify", synthetic_mnist_npz, epochs=1) == 0
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1 and (out / "checkpoints" / state["checkpoint"]).is_file()
    capsys.readouterr()
    assert train_tiny(out, "convlstm2d", "classify", synthetic_mnist_npz, epochs=2) == 0
    assert "resuming from epoch-0001.keras" in capsys.readouterr().out
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 2 and state["clips_seen"] == 8
    # only the newest epoch checkpoint is kept, and no temporary file is left behind
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "epoch-0002.keras",
        "state.json",
    ]
    assert read_manifest(out).training["clips_seen"] == 8


def test_resume_refuses_another_model(tmp_path, synthetic_mnist_npz, capsys):
    out = tmp_path / "run"
    assert train_tiny(out, "convlstm2d", "classify", synthetic_mnist_npz) == 0
    capsys.readouterr()
    assert train_tiny(out, "conv2d_lstm", "classify", synthetic_mnist_npz) == 2
    err = capsys.readouterr().err
    assert "framecast train: error:" in err and "holds a convlstm2d/classify run" in err


def test_rollout_training_from_a_parent_records_lineage(tmp_path, synthetic_mnist_npz, capsys):
    parent = tmp_path / "parent"
    assert train_tiny(parent, "convlstm2d", "next_frame", synthetic_mnist_npz) == 0
    child = tmp_path / "child"
    args = [
        "train",
        "--arch",
        "convlstm2d",
        "--task",
        "next_frame",
        "--epochs",
        "1",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--val-clips",
        "2",
        "--mnist-dir",
        str(synthetic_mnist_npz),
        "--seed",
        "3",
        "--rollout",
        "2",
        "--loss",
        "mse",
        "--init-from",
        str(parent),
        "--out",
        str(child),
        "--quiet",
    ]
    assert main(args) == 0
    man, pman = read_manifest(child), read_manifest(parent)
    t = man.training
    assert t["clips_seen"] == 8 and t["clips_seen_this_run"] == 4  # 4 in the parent + 4 here
    assert t["init_from"]["sha256"] == pman.sha256 and t["init_from"]["clips_seen"] == 4
    assert "closed loop" in t["objective"] and t["train_time_steps"] == 10
    assert man.builder_kwargs == pman.builder_kwargs
    # the served model is the plain fixed-window one, and training changed its weights
    model = keras.models.load_model(child / "model.keras")
    before = keras.models.load_model(parent / "model.keras")
    assert model.input_shape == (None, 10, 64, 64, 1) and model.output_shape[1] == 10
    assert any(not np.allclose(a, b) for a, b in zip(model.get_weights(), before.get_weights()))
    # resuming with another objective is refused
    capsys.readouterr()
    again = list(args)
    again[again.index("--rollout") + 1] = "3"
    again[again.index("--epochs") + 1] = "2"
    assert main(again) == 2
    assert "--rollout 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--task", "classify", "--rollout", "2"], "next_frame only"),
        (["--task", "next_frame", "--rollout", "11"], "between 0 and 10"),
    ],
)
def test_rollout_argument_errors(tmp_path, synthetic_mnist_npz, capsys, extra, message):
    rc = main(
        [
            "train",
            "--arch",
            "convlstm2d",
            "--out",
            str(tmp_path / "x"),
            "--mnist-dir",
            str(synthetic_mnist_npz),
            "--quiet",
        ]
        + extra
    )
    assert rc == 2 and message in capsys.readouterr().err


def test_init_from_refuses_another_task(tmp_path, synthetic_mnist_npz, capsys):
    parent = tmp_path / "parent"
    assert train_tiny(parent, "convlstm2d", "classify", synthetic_mnist_npz) == 0
    capsys.readouterr()
    rc = main(
        [
            "train",
            "--arch",
            "convlstm2d",
            "--task",
            "next_frame",
            "--init-from",
            str(parent),
            "--out",
            str(tmp_path / "c"),
            "--mnist-dir",
            str(synthetic_mnist_npz),
            "--quiet",
            "--steps",
            "1",
            "--batch-size",
            "1",
            "--val-clips",
            "1",
        ]
    )
    assert rc == 2
    assert "convlstm2d/classify model, not convlstm2d/next_frame" in capsys.readouterr().err


def test_bfloat16_training_with_the_l1l2_loss_writes_a_float32_model(tmp_path, synthetic_mnist_npz):
    """--precision mixed_bfloat16 trains under the mixed policy (the forecaster's metric and loss
    accept bfloat16 predictions), and the model it writes computes in float32 as served."""
    out = tmp_path / "bf16"
    argv = ["train", "--arch", "convlstm2d", "--task", "next_frame", "--forecast"]
    argv += ["--epochs", "1", "--steps", "2", "--batch-size", "2", "--val-clips", "2"]
    argv += ["--mnist-dir", str(synthetic_mnist_npz), "--seed", "3", "--config", TINY["convlstm2d"]]
    argv += ["--precision", "mixed_bfloat16", "--loss", "l1l2", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    man = read_manifest(out)
    assert man.training["precision"] == "mixed_bfloat16" and man.training["loss"] == "l1l2"
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert np.isfinite(state["history"][-1]["val_rollout_mse"])
    model = keras.saving.load_model(out / man.checkpoint, safe_mode=True, compile=False)
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    y = model(np.zeros((1, 10, 64, 64, 1), np.float32))
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
