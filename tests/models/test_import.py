"""`framecast import`: what it reads, what it writes, and what it refuses (writing nothing)."""

from __future__ import annotations

import json

import keras
import pytest
from keras import layers

from models.checkpoint import CheckpointError, open_folder
from models.importer import ImportRefused, import_checkpoint
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


def test_hdf5_as_tf2_saved_it_computes_as_keras2_did(tmp_path):
    """An HDF5 file with Keras 2's config (``time_major``; ConvLSTM2D's default recurrent
    activation ``hard_sigmoid``, whose Keras 2 slope is 0.2, not Keras 3's 1/6) loads and
    computes with Keras 2's function."""
    import h5py
    import numpy as np

    from models.checkpoint import load

    inp = keras.Input((4, 8, 8, 1))
    x = layers.ConvLSTM2D(2, 3, padding="same", recurrent_activation="hard_sigmoid")(inp)
    x = layers.Flatten()(x)
    model = keras.Model(inp, layers.Dense(1, activation="sigmoid")(x))
    path = tmp_path / "model.h5"
    model.save(path)
    with h5py.File(path, "r+") as f:  # what TF 2.x wrote: Keras 2, with time_major
        config = json.loads(f.attrs["model_config"])
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "ConvLSTM2D":
                layer["config"]["time_major"] = False
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.15.0"
    loaded = load(path)

    def keras2_hard_sigmoid(t):
        return keras.ops.clip(0.2 * t + 0.5, 0.0, 1.0)

    ref_in = keras.Input((4, 8, 8, 1))
    y = layers.ConvLSTM2D(2, 3, padding="same", recurrent_activation=keras2_hard_sigmoid)(ref_in)
    ref = keras.Model(ref_in, layers.Dense(1, activation="sigmoid")(layers.Flatten()(y)))
    ref.set_weights(model.get_weights())
    clip = np.random.default_rng(0).random((2, 4, 8, 8, 1), dtype=np.float32) * 4.0
    assert np.allclose(np.asarray(loaded(clip)), np.asarray(ref(clip)), atol=1e-6)
    assert not np.allclose(np.asarray(model(clip)), np.asarray(ref(clip)), atol=1e-4)
