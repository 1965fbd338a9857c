"""`framecast train` and `framecast evaluate` end to end on a tiny budget, for all four models."""

import json

import keras
import numpy as np
import pytest

from models.repository import read_manifest, sha256_file
from service.cli import main

TINY = {
    "convlstm2d": '{"filters": [4], "kernel_size": 3}',
    "conv2d_lstm": '{"conv_filters": [4, 4, 4], "lstm_units": 8}',
}


def _train(out, arch, task, mnist, epochs=1):
    return main(
        [
            "train",
            "--arch",
            arch,
            "--task",
            task,
            "--epochs",
            str(epochs),
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--val-clips",
            "2",
            "--mnist-dir",
            str(mnist),
            "--seed",
            "3",
            "--config",
            TINY[arch],
            "--out",
            str(out),
            "--quiet",
        ]
    )


@pytest.mark.parametrize("arch", ["convlstm2d", "conv2d_lstm"])
@pytest.mark.parametrize("task", ["next_frame", "classify"])
def test_train_then_evaluate_writes_full_card(tmp_path, synthetic_mnist_npz, arch, task):
    out = tmp_path / f"{arch}_{task}"
    assert _train(out, arch, task, synthetic_mnist_npz) == 0
    man = read_manifest(out)
    assert (man.architecture, man.task, man.frames, man.height) == (arch, task, 10, 64)
    assert man.sha256 == sha256_file(out / "model.keras")
    assert man.training["clips_seen"] == 4 and man.training["seed"] == 3
    assert "framecast train" in man.training["command"] and man.flops_per_clip > 0
    model = keras.models.load_model(out / "model.keras", safe_mode=True)
    assert model.input_shape == (None, 10, 64, 64, 1)

    assert (
        main(
            [
                "evaluate",
                str(out),
                "--clips",
                "4",
                "--mnist-dir",
                str(synthetic_mnist_npz),
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    card = json.loads((out / "card.json").read_text())
    md = (out / "card.md").read_text()
    assert card["params"] == man.params and card["flops_per_clip"] == man.flops_per_clip
    assert card["training"]["command"] == man.training["command"]
    m = card["metrics"]
    if task == "next_frame":
        for part in ("t_plus_1", "rollout"):
            for key in ("mse_per_frame", "mae_per_frame", "psnr", "ssim"):
                assert np.isfinite(m[part][key])
        assert len(m["rollout"]["per_step"]["mse_per_frame"]) == 10
        assert set(m["baselines"]) == {"copy_last_frame", "all_black"}
        assert m["latency_ms"]["one_clip_next_frame"] > 0
        assert "10→10 MSE" in md and "all black" in md
    else:
        assert 0 <= m["accuracy"] <= 1
        counts = np.array(m["confusion_matrix"]["counts"])
        assert counts.shape == (8, 8) and counts.sum() == 4
        assert "Confusion matrix" in md
    assert "Quality bar" in md


def test_resume_continues_from_last_epoch(tmp_path, synthetic_mnist_npz, capsys):
    out = tmp_path / "run"
    assert _train(out, "convlstm2d", "classify", synthetic_mnist_npz, epochs=1) == 0
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1 and (out / "checkpoints" / state["checkpoint"]).is_file()
    capsys.readouterr()
    assert _train(out, "convlstm2d", "classify", synthetic_mnist_npz, epochs=2) == 0
    assert "resuming from epoch-0001.keras" in capsys.readouterr().out
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 2 and state["clips_seen"] == 8
    # only the newest epoch checkpoint is kept, and no temporary file is left behind
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "epoch-0002.keras",
        "state.json",
    ]
    assert read_manifest(out).training["clips_seen"] == 8


def test_resume_refuses_another_model(tmp_path, synthetic_mnist_npz):
    out = tmp_path / "run"
    assert _train(out, "convlstm2d", "classify", synthetic_mnist_npz) == 0
    with pytest.raises(SystemExit, match="holds a convlstm2d/classify run"):
        _train(out, "conv2d_lstm", "classify", synthetic_mnist_npz)


def test_evaluate_rejects_tampered_checkpoint(tmp_path, synthetic_mnist_npz, capsys):
    out = tmp_path / "run"
    assert _train(out, "conv2d_lstm", "classify", synthetic_mnist_npz) == 0
    with open(out / "model.keras", "ab") as f:
        f.write(b"tampered")
    assert (
        main(["evaluate", str(out), "--clips", "2", "--mnist-dir", str(synthetic_mnist_npz)]) == 2
    )
    assert "sha256" in capsys.readouterr().err


def test_bad_mnist_dir_is_one_clear_line(tmp_path, capsys):
    rc = main(
        ["data", "preview", "--mnist-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "p")]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "missing" in err and "Traceback" not in err


def test_data_preview_writes_png_and_gif(tmp_path, synthetic_mnist_npz):
    from PIL import Image

    assert (
        main(
            [
                "data",
                "preview",
                "--clips",
                "2",
                "--mnist-dir",
                str(synthetic_mnist_npz),
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    png = Image.open(tmp_path / "next_frame_clips.png")
    assert png.size == (2 * (20 * 66 - 2), 2 * (2 * 66 - 2))
    gif = Image.open(tmp_path / "next_frame_clips.gif")
    assert gif.n_frames == 20


def test_rollout_figure(tmp_path, synthetic_mnist_npz):
    from PIL import Image

    a, b = tmp_path / "a", tmp_path / "b"
    assert _train(a, "convlstm2d", "next_frame", synthetic_mnist_npz) == 0
    assert _train(b, "conv2d_lstm", "next_frame", synthetic_mnist_npz) == 0
    out = tmp_path / "fig.png"
    assert (
        main(
            [
                "data",
                "figure",
                str(a),
                str(b),
                "--mnist-dir",
                str(synthetic_mnist_npz),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    img = Image.open(out)
    assert img.height == 2 * (4 * 66 - 2)  # context, truth, two model rows
    assert (
        main(
            [
                "data",
                "figure",
                str(tmp_path / "nope"),
                "--out",
                str(out),
                "--mnist-dir",
                str(synthetic_mnist_npz),
            ]
        )
        == 2
    )


def test_rollout_keeps_window_fixed():
    from models.evaluate import rollout

    calls = []

    class Fake:
        def predict_on_batch(self, x):
            calls.append(x.shape)
            return x + 0.1  # "prediction" of frame t+1 = frame t + 0.1

    ctx = np.zeros((3, 4, 8, 8, 1), dtype=np.float32)
    out = rollout(Fake(), ctx, horizon=5, batch_size=2)
    assert out.shape == (3, 5, 8, 8, 1)
    np.testing.assert_allclose(out[:, :, 0, 0, 0], [[0.1, 0.2, 0.3, 0.4, 0.5]] * 3, atol=1e-6)
    assert set(calls) == {(2, 4, 8, 8, 1)}  # fixed batch (padded) and fixed window length


def test_closed_loop_matches_the_served_rollout():
    """The training wrapper rolls out exactly as evaluation and serving do."""
    from models.architectures import build, closed_loop, step_model
    from models.evaluate import rollout

    step = build("convlstm2d", task="next_frame", time_steps=10, filters=[4], kernel_size=3)
    wrapped = closed_loop(step, 3)
    assert step_model(wrapped) is step and wrapped.output_shape == (None, 3, 64, 64, 1)
    x = np.random.default_rng(0).random((2, 10, 64, 64, 1)).astype("float32")
    got = keras.ops.convert_to_numpy(wrapped(x))
    np.testing.assert_allclose(got, rollout(step, x, 3), atol=1e-5)
    with pytest.raises(ValueError, match="fixed number of input frames"):
        closed_loop(build("convlstm2d", task="next_frame", filters=[4]), 2)


def test_rollout_training_from_a_parent_records_lineage(tmp_path, synthetic_mnist_npz, capsys):
    parent = tmp_path / "parent"
    assert _train(parent, "convlstm2d", "next_frame", synthetic_mnist_npz) == 0
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
    with pytest.raises(SystemExit, match="--rollout 2"):
        main(again)


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
    assert _train(parent, "convlstm2d", "classify", synthetic_mnist_npz) == 0
    with pytest.raises(SystemExit, match="convlstm2d/classify model, not convlstm2d/next_frame"):
        main(
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


def test_card_of_a_fine_tuned_model_names_its_parent():
    from models.evaluate import _lineage

    t = {
        "objective": "closed loop: roll out 10 frames",
        "clips_seen": 12,
        "clips_seen_this_run": 4,
        "init_from": {
            "name": "p",
            "sha256": "ab" * 32,
            "clips_seen": 8,
            "objective": None,
            "command": "framecast train --seed 1",
            "wall_time_s": 60.0,
        },
    }
    text = "\n".join(_lineage(t))
    assert "closed loop" in text and "`p`" in text and "framecast train --seed 1" in text
    assert "8 clips" in text and "4 clips in this run" in text
    assert _lineage({}) == []


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
