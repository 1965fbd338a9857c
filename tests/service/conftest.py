"""Tiny fixture models (16x16, 4 frames of context) and a TestClient over them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from models.architectures import build
from models.data import DIRECTIONS
from models.repository import Manifest, read_manifest, save_model_folder, write_manifest
from service.app import create_app
from service.config import Settings
from tests.service.helpers import FRAMES, H, W

CARD = {"mse_per_frame": 12.5, "ssim": 0.5, "note": "fixture card"}


def save_tiny(root, name, arch, task, channels=1, **kwargs):
    kw = dict(task=task, time_steps=FRAMES, height=H, width=W, channels=channels, patch=4)
    if arch == "convlstm2d":
        kw["filters"] = (4,)
    else:
        kw.update(conv_filters=(4, 4), lstm_units=8)
    if task == "classify":
        kw["num_classes"] = len(DIRECTIONS)
    model = build(arch, name=name, **kw, **kwargs)
    manifest = Manifest(
        name=name,
        architecture=arch,
        task=task,
        frames=FRAMES,
        height=H,
        width=W,
        channels=channels,
        class_names=list(DIRECTIONS) if task == "classify" else None,
        flops_per_clip=1000,
    )
    save_model_folder(root / name, model, manifest)
    return root / name


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    """Four tiny models: both architectures x both tasks; a card next to one of them."""
    root = tmp_path_factory.mktemp("models")
    for arch in ("conv2d_lstm", "convlstm2d"):
        for task in ("next_frame", "classify"):
            save_tiny(root, f"{arch}_{task}", arch, task)
    (root / "convlstm2d_next_frame" / "card.json").write_text(json.dumps(CARD))
    return root


@pytest.fixture(scope="session")
def rgb_models_dir(tmp_path_factory):
    """One 3-channel next-frame model (colour conversion the other way)."""
    root = tmp_path_factory.mktemp("rgb_models")
    save_tiny(root, "rgb_next_frame", "convlstm2d", "next_frame", channels=3)
    return root


@pytest.fixture(scope="session")
def settings(models_dir):
    return Settings(
        models_dir=models_dir,
        load_mode="blocking",
        max_horizon=5,
        max_frames=64,
        max_upload_bytes=2 * 1024 * 1024,
    )


@pytest.fixture(scope="session")
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="session")
def runtime(client):
    return client.app.state.runtime


@pytest.fixture(scope="session")
def direct(runtime):
    """direct(name, batch) → the model's own output for ``batch``, bypassing the service."""

    def call(name, batch):
        return np.asarray(runtime.runners[name].model.predict_on_batch(batch.astype(np.float32)))

    return call


# the models of stream_models (live streams' tests)
CARRY = "carry_nf"  # framecast's ConvLSTM2D, carried state, fixed 4-frame axis
CARRY2 = "carry_c2l"  # framecast's Conv2D+LSTM, carried state
WINDOW = "window_nf"  # the same kind of model, sliding window
FREE = "user_free"  # a user's free-axis causal model (carried, predicts from frame 1)
GROWING = "user_growing"  # a user's free-axis model with a Conv3D head (no state: a window)
MANY = "user_many_to_one"  # a user's fixed 6-frame many-to-one model (a sliding window)
CL = "tiny_classify"


@pytest.fixture(scope="session")
def stream_models(tmp_path_factory):
    """Next-frame models of every kind a stream meets, and a classifier."""
    from tests.service import own_models as om

    root = tmp_path_factory.mktemp("stream_models")
    for name, arch, rollout in (
        (CARRY, "convlstm2d", "carried_state"),
        (CARRY2, "conv2d_lstm", "carried_state"),
        (WINDOW, "convlstm2d", "sliding_window"),
    ):
        folder = save_tiny(root, name, arch, "next_frame")
        m = read_manifest(folder)
        m.rollout = rollout
        write_manifest(folder, m)
    save_tiny(root, CL, "convlstm2d", "classify")
    om.write_folder(root, FREE, om.free_sequence_next_frame())
    om.write_folder(root, GROWING, om.keras_example_next_frame())
    om.write_folder(root, MANY, om.many_to_one_next_frame())
    return root
