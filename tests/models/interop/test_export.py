"""`framecast export NAME --format saved_model OUT/`: the SavedModel answers like the .keras
file."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from models.architectures import build
from models.interop.export import MANIFEST_COPY, add_export_subcommand
from models.repository import Manifest, save_model_folder

FRAMES, SIZE = 4, 16


def run_export(argv: list[str]) -> int:
    """Parse ``argv`` with a parser holding only the export subcommand, and run it."""
    parser = argparse.ArgumentParser(prog="framecast")
    add_export_subcommand(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    kwargs = dict(task="next_frame", time_steps=FRAMES, height=SIZE, width=SIZE, filters=(4,))
    model = build("convlstm2d", **kwargs)
    save_model_folder(
        root / "tiny",
        model,
        Manifest(
            name="tiny",
            architecture="convlstm2d",
            task="next_frame",
            frames=FRAMES,
            height=SIZE,
            width=SIZE,
            channels=1,
            builder_kwargs=kwargs,
        ),
    )
    return root


@pytest.fixture(scope="module")
def exported(models_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny" / "1"
    assert (
        run_export(
            ["export", "tiny", "--format", "saved_model", str(out), "--models-dir", str(models_dir)]
        )
        == 0
    )
    return out


def test_saved_model_serve_matches_the_keras_checkpoint(models_dir, exported):
    import keras
    import tensorflow as tf

    clip = np.random.default_rng(0).random((2, FRAMES, SIZE, SIZE, 1), dtype=np.float32)
    expected = keras.models.load_model(
        models_dir / "tiny" / "model.keras", safe_mode=True
    ).predict_on_batch(clip)

    loaded = tf.saved_model.load(str(exported))
    assert "serve" in loaded.signatures or hasattr(loaded, "serve")
    got = loaded.serve(tf.constant(clip))
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)
    assert np.asarray(got).shape == (2, FRAMES, SIZE, SIZE, 1)

    manifest = json.loads((exported / MANIFEST_COPY).read_text())
    assert manifest["name"] == "tiny" and manifest["frames"] == FRAMES


def test_no_temporary_folders_are_left_beside_out(exported):
    assert sorted(p.name for p in exported.parent.iterdir()) == ["1"]


def test_refuses_a_non_empty_out_without_force(models_dir, exported, capsys):
    before = sorted(p.name for p in exported.iterdir())
    rc = run_export(["export", "tiny", str(exported), "--models-dir", str(models_dir)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "not empty" in err and "--force" in err
    assert sorted(p.name for p in exported.iterdir()) == before


def test_force_replaces_out_atomically(models_dir, exported):
    (exported / "stale.txt").write_text("from an older export")
    # a path to the model folder works as NAME too
    assert run_export(["export", str(models_dir / "tiny"), str(exported), "--force"]) == 0
    assert not (exported / "stale.txt").exists()
    assert (exported / "saved_model.pb").is_file()
    assert sorted(p.name for p in exported.parent.iterdir()) == ["1"]


def test_unknown_model_is_one_clear_line(models_dir, tmp_path, capsys):
    rc = run_export(["export", "nope", str(tmp_path / "out"), "--models-dir", str(models_dir)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "unknown model 'nope'" in err and "tiny" in err
    assert not (tmp_path / "out").exists()


def test_corrupted_checkpoint_is_refused(models_dir, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(models_dir / "tiny", broken)
    with open(broken / "model.keras", "ab") as f:
        f.write(b"\0")
    rc = run_export(["export", str(broken), str(tmp_path / "out")])
    assert rc == 2 and "sha256" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
