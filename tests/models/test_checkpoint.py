"""What a checkpoint is, read from the checkpoint (models/checkpoint.py): legacy HDF5 files
load as the Keras that wrote them computed. (What `framecast import` makes of checkpoints, and
refuses, is in test_importer.py; loading, inferring and serving them in tests/service.)"""

from __future__ import annotations

import json

import keras
from keras import layers


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
