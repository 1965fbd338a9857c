"""``Direct`` (models/interop/adapters.py): a model's forward pass called without
``predict_on_batch``, traced once for every batch size. It answers bit for bit what
``predict_on_batch`` answers on the bundled Conv2D+LSTM classifier at any batch size, is offered
only for models of one input fixed but for the batch axis, and a check that finds one value off
ends its trial (``predict_on_batch`` traces its first batch size apart, which for some models,
e.g. the bundled ConvLSTM2D models at batch 1, gives numbers a few ulps apart: those keep it)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from models.checkpoint import open_folder
from models.interop.adapters import Direct, from_bytes

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("u8", [True, False])
def test_it_answers_bit_for_bit_as_predict_on_batch_at_any_batch_size(u8):
    _, model = open_folder(ROOT / "models" / "conv2d_lstm_classify")
    if u8:
        model = from_bytes(model)
    direct = Direct.trial(model)
    assert direct is not None and not direct.exact  # not before a check
    shape, dtype = tuple(model.inputs[0].shape[1:]), model.inputs[0].dtype
    rng = np.random.default_rng(5)
    for batch in (1, 3, 8, 5):  # 5 after 8: no retrace, no shape it has not seen misread
        if dtype == "uint8":
            x = rng.integers(0, 256, (batch,) + shape, dtype=np.uint8)
        else:
            x = rng.random((batch,) + shape, dtype=np.float32)
        want = np.asarray(model.predict_on_batch(x), dtype=np.float32)
        direct.check(x, want)
        assert direct.exact and direct.checked > 0
        got = direct(x)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.array_equal(got, want)


def test_only_models_of_one_input_fixed_but_for_the_batch_are_tried():
    free = keras.Input((None, 8, 8, 1))
    x = keras.layers.ConvLSTM2D(2, 3)(free)
    assert Direct.trial(keras.Model(free, keras.layers.Flatten()(x))) is None
    a, b = keras.Input((2, 4, 4, 1)), keras.Input((3,))
    two = keras.Model([a, b], keras.layers.Concatenate()([keras.layers.Flatten()(a), b]))
    assert Direct.trial(two) is None
    assert Direct.trial(object()) is None  # not a Keras model (an adapter, a stepper)


def test_one_value_off_ends_its_trial_for_good():
    inp = keras.Input((2, 4, 4, 1))
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(inp)))
    direct = Direct.trial(model)
    assert direct is not None
    x = np.random.default_rng(1).random((4, 2, 4, 4, 1), dtype=np.float32)
    want = np.asarray(model.predict_on_batch(x), dtype=np.float32)
    direct.check(x, np.nextafter(want, np.float32(2.0)))  # one ulp off
    assert not direct.exact
    direct.check(x, want)  # a later exact batch does not bring it back
    assert not direct.exact
    direct2 = Direct.trial(model)
    direct2.check([x], want)  # several inputs' worth of batch: not for it
    assert not direct2.exact


def test_its_verdict_on_a_convlstm2d_classifier_at_batch_1_is_what_the_numbers_say():
    """predict_on_batch traces its first batch size (1) as a function of its own; on this
    machine's CPU the bundled ConvLSTM2D classifier answers that batch a few ulps apart from the
    function traced for every batch size, so its trial ends and the runner keeps predict_on_batch.
    Another CPU may agree bit for bit: the check's verdict must follow the numbers either way."""
    _, model = open_folder(ROOT / "models" / "convlstm2d_classify")
    model = from_bytes(model)
    direct = Direct.trial(model)
    assert direct is not None
    shape = tuple(model.inputs[0].shape[1:])
    x = np.random.default_rng(5).integers(0, 256, (1,) + shape, dtype=np.uint8)
    want = np.asarray(model.predict_on_batch(x), dtype=np.float32)
    direct.check(x, want)
    got = direct(x)
    assert direct.exact == np.array_equal(got, want)
    assert np.allclose(got, want, rtol=0, atol=1e-6)  # apart by ulps at most, never by more
