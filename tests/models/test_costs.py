"""Cost facts of any model: FLOPs counted (or None and why, never 0), bytes, and peak memory per
clip measured in a process of its own with TensorFlow's BFC allocator."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
from keras import layers

from models.architectures import build, count_flops
from models.costs import cost_facts, flops, weight_bytes
from models.repository import Manifest, save_model_folder
from tests.service import own_models as om


def test_the_textbook_pair_gets_counted_flops_where_a_manifest_says_nothing():
    """The issue's pair, as users save them: both counted (not 0), the ConvLSTM2D heavier."""
    a, b = om.conv2d_lstm_binary(), om.convlstm2d_binary()
    fa, why_a = flops(a)
    fb, why_b = flops(b)
    assert fa and fb and not why_a and not why_b  # BatchNormalization: a cheap layer, allowed
    assert fa == count_flops(a) and fb == count_flops(b)
    # by hand: the ConvLSTM2D's cell, 2 * T * H * W * k * (cin + f) * 4f
    assert fb >= 2 * om.T * om.S * om.S * 9 * (3 + 4) * 4 * 4


def test_a_layer_the_counter_does_not_know_gives_none_and_says_which():
    model = om.keras_example_next_frame()  # a Conv3D head
    count, why = flops(model, time_steps=10)
    assert count is None
    assert "Conv3D" in why and "does not count" in why
    gru = keras.Sequential([keras.Input((4, 8)), layers.GRU(3), layers.Dense(2)])
    count, why = flops(gru)
    assert count is None and "GRU" in why


def test_a_free_time_axis_is_counted_at_the_frames_a_request_reads_and_per_step():
    model = om.free_sequence_next_frame()
    facts = cost_facts(model, frames=None, reads=7, carried=True, checkpoint=None)
    assert facts["flops_per_clip_frames"] == 7
    assert facts["flops_per_clip"] == 7 * facts["flops_per_step"] > 0
    none = cost_facts(model, frames=None, reads=None, carried=False, checkpoint=None)
    assert none["flops_per_clip"] is None and "free" in none["flops_note"]
    assert none["flops_per_step"] is None and "window" in none["flops_per_step_note"]


def test_weight_bytes_are_the_weights_as_held():
    model = build(
        "convlstm2d",
        task="next_frame",
        time_steps=4,
        height=16,
        width=16,
        channels=1,
        patch=4,
        filters=(4,),
    )
    assert weight_bytes(model) == 4 * model.count_params()  # float32


def _measure(folder) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "models.costs", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_peak_memory_is_measured_and_grows_with_the_frames(tmp_path):
    """The same model at 16x16 and 48x48: nine times the pixels, more memory at batch 1 (the
    figure is the allocator's)."""
    got = {}
    for side in (16, 48):
        model = build(
            "convlstm2d",
            task="next_frame",
            time_steps=4,
            height=side,
            width=side,
            channels=1,
            patch=4,
            filters=(8,),
        )
        m = Manifest(
            name=f"m{side}",
            architecture="convlstm2d",
            task="next_frame",
            frames=4,
            height=side,
            width=side,
            channels=1,
        )
        folder = tmp_path / f"m{side}"
        save_model_folder(folder, model, m)
        got[side] = _measure(folder)
    small, big = got[16]["peak_memory_bytes"], got[48]["peak_memory_bytes"]
    assert small and big, got
    assert 0 < small < big
    assert got[16]["memory_frames"] == 4 and "BFC" in got[16]["memory_method"]
    x = np.zeros((1, 4, 48, 48, 1), np.float32)
    assert big > x.nbytes  # more than the input alone: the cells' activations
