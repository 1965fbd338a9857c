"""`framecast train` and `framecast evaluate` end to end on a tiny budget, for all four models."""

import json

import keras
import numpy as np
import pytest

from models.repository import read_manifest, sha256_file
from service.cli import main
from tests.models.helpers import train_tiny


@pytest.mark.parametrize("arch", ["convlstm2d", "conv2d_lstm"])
@pytest.mark.parametrize("task", ["next_frame", "classify"])
def test_train_then_evaluate_writes_full_card(tmp_path, synthetic_mnist_npz, arch, task):
    out = tmp_path / f"{arch}_{task}"
    assert train_tiny(out, arch, task, synthetic_mnist_npz) == 0
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


def test_evaluate_rejects_tampered_checkpoint(tmp_path, synthetic_mnist_npz, capsys):
    out = tmp_path / "run"
    assert train_tiny(out, "conv2d_lstm", "classify", synthetic_mnist_npz) == 0
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
    assert train_tiny(a, "convlstm2d", "next_frame", synthetic_mnist_npz) == 0
    assert train_tiny(b, "conv2d_lstm", "next_frame", synthetic_mnist_npz) == 0
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
