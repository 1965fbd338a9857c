"""The carried-state rollout (models/carried.py): same outputs as the model reading a sequence."""

import keras
import numpy as np
import pytest

from models import carried as R
from models.architectures import build
from models.rollout import carried_rollout, rollout

TINY = {
    "convlstm2d": {"filters": (4, 4), "kernel_size": 3, "patch": 4},
    "conv2d_lstm": {"conv_filters": (4, 4), "lstm_units": 8, "patch": 4},
}


def _model(arch, steps=None):
    keras.utils.set_random_seed(0)
    return build(arch, task="next_frame", time_steps=steps, height=32, width=32, **TINY[arch])


@pytest.mark.parametrize("arch", ["convlstm2d", "conv2d_lstm"])
def test_three_plus_two_frames_equal_five_at_once(arch):
    """5 frames run as 3 + 1 + 1 with the states carried: outputs and states bit-identical."""
    m = _model(arch)
    x = np.random.default_rng(1).random((2, 5, 32, 32, 1), dtype=np.float32)
    full = np.asarray(m.predict_on_batch(x))
    ctx = R.ContextPass(m).predict_on_batch(x[:, :3])
    np.testing.assert_array_equal(np.asarray(ctx[0])[:, 0], full[:, 2])
    step = R.Step(m)
    out, states = ctx, list(ctx[1:])
    for t in (3, 4):
        out = step.predict_on_batch([x[:, t : t + 1]] + states)
        states = list(out[1:])
        np.testing.assert_array_equal(np.asarray(out[0])[:, 0], full[:, t])
    # the states after 3 + 1 + 1 frames are those after 5 frames read at once
    at_once = R.ContextPass(m).predict_on_batch(x)
    for a, b in zip(at_once[1:], states):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("arch", ["convlstm2d", "conv2d_lstm"])
def test_carried_rollout_feeds_back_its_own_frames(arch):
    """The rollout equals the model run on context + its own predictions, frame by frame."""
    m = _model(arch)
    ctx = np.random.default_rng(2).random((3, 4, 32, 32, 1), dtype=np.float32)
    got = carried_rollout(R.stepper(m), ctx, 3, batch_size=2)  # also pads the last batch
    seq = ctx
    for k in range(3):
        nxt = np.asarray(m(seq))[:, -1]  # eager: predict_on_batch retraces per length
        np.testing.assert_allclose(got[:, k], nxt, atol=1e-6)
        seq = np.concatenate([seq, nxt[:, None]], axis=1)
    # and differs from the sliding window of a fixed 4-frame model (it keeps the older frames)
    m4 = _model(arch, steps=4)
    m4.set_weights(m.get_weights())
    assert not np.allclose(rollout(m4, ctx, 3, batch_size=3)[:, 1:], got[:, 1:], atol=1e-7)


@pytest.mark.parametrize("arch", ["convlstm2d", "conv2d_lstm"])
def test_forecaster_closed_loop_is_the_served_rollout(tmp_path, arch):
    """Training's Forecaster with no truth fed back = the Stepper's rollout; truth fed back =
    the model reading the whole clip; it saves and reloads in safe mode."""
    m = _model(arch)
    clips = np.random.default_rng(3).random((2, 8, 32, 32, 1), dtype=np.float32)
    f = R.Forecaster(m, context=4)
    closed = np.asarray(f.predict_on_batch([clips, np.zeros((2, 3), np.float32)]))
    assert closed.shape == (2, 7, 32, 32, 1)
    np.testing.assert_allclose(closed[:, 3:], R.stepper(m).rollout(clips[:, :4], 4), atol=1e-6)
    forced = np.asarray(f.predict_on_batch([clips, np.ones((2, 3), np.float32)]))
    np.testing.assert_allclose(forced, np.asarray(m(clips[:, :7])), atol=1e-6)
    f.save(tmp_path / "f.keras")
    again = keras.models.load_model(tmp_path / "f.keras", safe_mode=True)
    np.testing.assert_array_equal(
        np.asarray(again.predict_on_batch([clips, np.zeros((2, 3), np.float32)])), closed
    )


def test_models_that_cannot_carry_state_say_why():
    inp = keras.Input((4, 8))
    x = keras.layers.LSTM(3, return_sequences=False)(inp)
    with pytest.raises(R.NotSteppable, match="does not return sequences"):
        R.stepper(keras.Model(inp, keras.layers.Dense(8)(x)))
    inp = keras.Input((4, 8))
    a = keras.layers.LSTM(3, return_sequences=True)(inp)
    b = keras.layers.Dense(3)(inp)
    with pytest.raises(R.NotSteppable, match="not one chain"):
        R.stepper(keras.Model(inp, keras.layers.Add()([a, b])))
    inp = keras.Input((4, 8))
    with pytest.raises(R.NotSteppable, match="no recurrent layer"):
        R.stepper(keras.Model(inp, keras.layers.Dense(8)(inp)))
    # a layer that mixes frames passes the structure check but fails the numerical one
    inp = keras.Input((4, 8))
    x = keras.layers.LSTM(3, return_sequences=True)(inp)
    x = keras.layers.Conv1D(3, 3, padding="causal")(x)  # reads 3 frames at once
    with pytest.raises(R.NotSteppable):
        R.stepper(keras.Model(inp, x))
