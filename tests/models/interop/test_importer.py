"""`framecast import`: what it reads, what it writes, and what it refuses (writing nothing)."""

from __future__ import annotations

import json

import keras
import pytest
from keras import layers

from models.checkpoint import CheckpointError, open_folder
from models.interop.importer import ImportRefused, import_checkpoint
from models.repository import sha256_file
from service.cli import main
from tests.service import own_models as om


def quiet(*_a: object) -> None:
    pass


def test_import_writes_checkpoint_and_manifest_with_sha(tmp_path, capsys):
    src = tmp_path / "clf.keras"
    om.conv2d_lstm_binary(3).save(src)
    out = tmp_path / "served"
    rc = main(
        ["import", str(src), "--name", "mine", "--labels", "no,yes", "--models-dir", str(out)]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    for word in ("conv2d_lstm", "classify", "no, yes", "one call", "params"):
        assert word in printed
    manifest = json.loads((out / "mine" / "manifest.json").read_text())
    assert manifest["sha256"] == sha256_file(out / "mine" / "model.keras")
    assert manifest["class_names"] == ["no", "yes"] and manifest["binary"] == "sigmoid"
    m, _ = open_folder(out / "mine")  # served as written
    assert (m.name, m.task, m.frames, m.channels) == ("mine", "classify", om.T, 3)
    assert [p.name for p in out.iterdir()] == ["mine"]  # no temporary folder left


def test_import_h5_free_time_with_context(tmp_path):
    src = tmp_path / "nf.h5"
    om.keras_example_next_frame(1).save(src)
    dest = import_checkpoint(src, tmp_path / "served", context=5, say=quiet)
    m, _ = open_folder(dest)
    assert (m.name, m.frames, m.context, m.output) == ("nf", None, 5, "sequence")
    assert (dest / "model.h5").is_file()


def two_inputs() -> keras.Model:
    a = keras.Input((4, 8, 8, 1))
    b = keras.Input((4, 8, 8, 1))
    x = layers.Concatenate()([layers.Flatten()(a), layers.Flatten()(b)])
    return keras.Model([a, b], layers.Dense(1)(x))


def wrong_rank() -> keras.Model:
    inp = keras.Input((8, 8, 1))
    return keras.Model(inp, layers.Dense(1)(layers.Flatten()(inp)))


def with_lambda() -> keras.Model:
    inp = keras.Input((4, 8, 8, 1))
    x = layers.Lambda(lambda t: t * 2.0)(inp)
    return keras.Model(inp, layers.Dense(1)(layers.Flatten()(x)))


@pytest.mark.parametrize(
    "make, words",
    [
        (two_inputs, "2 inputs"),
        (wrong_rank, "rank 4"),
        (with_lambda, "Lambda"),
    ],
)
def test_refusals_write_nothing(tmp_path, capsys, make, words):
    src = tmp_path / "bad.keras"
    make().save(src)
    out = tmp_path / "served"
    rc = main(["import", str(src), "--models-dir", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert words in err and err.count("\n") == 1  # one line
    assert not out.exists() or not any(out.iterdir())


def test_corrupt_file_is_refused(tmp_path):
    src = tmp_path / "bad.keras"
    src.write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match="cannot load in safe mode"):
        import_checkpoint(src, tmp_path / "served", say=quiet)
    assert not (tmp_path / "served" / "bad").exists()


def test_existing_folder_is_kept_without_force(tmp_path):
    src = tmp_path / "clf.keras"
    om.convlstm2d_binary(1).save(src)
    import_checkpoint(src, tmp_path / "served", say=quiet)
    with pytest.raises(ImportRefused, match="exists"):
        import_checkpoint(src, tmp_path / "served", say=quiet)
    import_checkpoint(src, tmp_path / "served", say=quiet, force=True, labels=["a", "b"])
    m, _ = open_folder(tmp_path / "served" / "clf")
    assert m.class_names == ["a", "b"]


def test_wrong_label_count_is_refused(tmp_path):
    src = tmp_path / "clf.keras"
    om.convlstm2d_softmax(3).save(src)
    with pytest.raises(CheckpointError, match="3 scores"):
        import_checkpoint(src, tmp_path / "served", labels=["a", "b"], say=quiet)


def test_what_import_writes_is_readable_by_another_user(tmp_path):
    """A server in a container runs as another user: the folder 0755, the checkpoint and the
    manifest 0644 (under the usual umask 022), as a plain copy would be."""
    import os
    import stat

    src = tmp_path / "clf.keras"
    om.convlstm2d_binary(1).save(src)
    old = os.umask(0o022)
    try:
        dest = import_checkpoint(src, tmp_path / "served", say=quiet)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [dest, *dest.iterdir()]}
    assert modes == {"clf": 0o755, "model.keras": 0o644, "manifest.json": 0o644}, {
        k: oct(v) for k, v in modes.items()
    }
