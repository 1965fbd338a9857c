"""`framecast evaluate` (models/evaluation/card.py) end to end on a tiny budget, for all four
models: the card's JSON and Markdown, and a tampered checkpoint refused."""

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


def _evaluate(folder, npz) -> None:
    args = ["evaluate", str(folder), "--clips", "2", "--batch-size", "2"]
    assert main([*args, "--mnist-dir", str(npz)]) == 0


def test_a_card_quotes_its_counterparts_card_and_evaluating_refreshes_the_other(
    tmp_path, synthetic_mnist_npz
):
    """The counterpart's budget comes from its card as written (not its manifest, which may be
    newer or older), and evaluating one model rewrites the other's counterpart section."""
    a, b = tmp_path / "convlstm2d_classify", tmp_path / "conv2d_lstm_classify"
    for folder, arch in ((a, "convlstm2d"), (b, "conv2d_lstm")):
        assert train_tiny(folder, arch, "classify", synthetic_mnist_npz) == 0
    _evaluate(b, synthetic_mnist_npz)
    card_b = json.loads((b / "card.json").read_text())
    card_b["training"]["clips_seen"] = 999  # what b's card says, unlike its manifest (4)
    (b / "card.json").write_text(json.dumps(card_b))
    _evaluate(a, synthetic_mnist_npz)
    (other,) = json.loads((a / "card.json").read_text())["fair_comparison"]
    assert other["name"] == "conv2d_lstm_classify" and other["clips_seen"] == 999
    assert other["read_from"] == "conv2d_lstm_classify/card.json"
    refreshed = json.loads((b / "card.json").read_text())["fair_comparison"]
    assert refreshed[0]["name"] == "convlstm2d_classify" and refreshed[0]["clips_seen"] == 4
    assert "4 clips seen" in (b / "card.md").read_text()


def test_the_committed_cards_agree_about_each_other():
    """Every committed card's counterpart figures are the counterpart's own card's."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "models"
    cards = {p.parent.name: json.loads(p.read_text()) for p in root.glob("*/card.json")}
    checked = 0
    for name, card in cards.items():
        for other in card.get("fair_comparison", []):
            theirs = cards[other["name"]]
            assert other["clips_seen"] == theirs["training"]["clips_seen"], (name, other)
            assert other["params"] == theirs["params"], (name, other)
            checked += 1
    assert checked >= 4


def test_a_model_evaluate_cannot_measure_is_refused_in_one_line(tmp_path, capsys):
    """An imported model of another input or other classes: exit 2 and one line saying what it
    takes and what evaluate measures, nothing loaded, no card written."""
    from models.interop.importer import import_checkpoint
    from tests.service import own_models as om

    src = tmp_path / "leftright.keras"
    om.conv2d_lstm_binary(3).save(src)
    folder = import_checkpoint(
        src, tmp_path / "served", labels=["left", "right"], say=lambda _: None, quiet=True
    )
    missing = tmp_path / "no-mnist-here"  # never read: refused before the data
    rc = main(["evaluate", str(folder), "--clips", "2", "--mnist-dir", str(missing), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "framecast evaluate: error: model 'leftright'" in err
    assert "RGB frames" in err and "classifies left, right" in err
    assert "64x64 grey clips" in err and "cannot be evaluated here" in err
    assert not (folder / "card.json").exists()
