import keras
import numpy as np
import pytest

from models.architectures import build, count_flops

TINY = {
    "convlstm2d": {"filters": (4, 4), "kernel_size": 3, "patch": 4},
    "conv2d_lstm": {"conv_filters": (4, 4), "lstm_units": 8, "patch": 4},
}


@pytest.mark.parametrize("arch", ["convlstm2d", "conv2d_lstm"])
@pytest.mark.parametrize("task", ["next_frame", "classify"])
def test_save_reload_identical_outputs(tmp_path, arch, task):
    model = build(arch, task=task, time_steps=5, height=32, width=32, num_classes=8, **TINY[arch])
    x = np.random.default_rng(0).random((2, 5, 32, 32, 1)).astype("float32")
    y = np.asarray(model.predict_on_batch(x))
    if task == "next_frame":
        assert y.shape == (2, 5, 32, 32, 1)
        assert y.min() >= 0 and y.max() <= 1
    else:
        assert y.shape == (2, 8)
        np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-5)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(np.asarray(again.predict_on_batch(x)), y, atol=1e-6)
    assert all(layer.name for layer in model.layers)


def test_depth_to_space_is_inverse_of_space_to_depth():
    from models.architectures import _depth_to_space, _space_to_depth

    inp = keras.Input((3, 8, 8, 2))
    s = _space_to_depth(inp, patch=4, height=8, width=8, channels=2, name="s")
    out = _depth_to_space(s, patch=4, height=8, width=8, channels=2, name="d")
    m = keras.Model(inp, [s, out])
    x = np.random.default_rng(0).random((1, 3, 8, 8, 2)).astype("float32")
    patches, back = m.predict_on_batch(x)
    assert patches.shape == (1, 3, 2, 2, 32)
    np.testing.assert_array_equal(back, x)
    # patch (0, 1) holds pixels rows 0-3, cols 4-7
    np.testing.assert_array_equal(patches[0, 0, 0, 1].reshape(4, 4, 2), x[0, 0, 0:4, 4:8])


def test_next_frame_output_is_causal():
    """Output t depends only on inputs <= t: changing the last frame leaves earlier outputs."""
    for arch in ("convlstm2d", "conv2d_lstm"):
        m = build(arch, task="next_frame", time_steps=4, height=16, width=16, **TINY[arch])
        x = np.random.default_rng(1).random((1, 4, 16, 16, 1)).astype("float32")
        x2 = x.copy()
        x2[:, -1] = 0
        a, b = np.asarray(m.predict_on_batch(x)), np.asarray(m.predict_on_batch(x2))
        np.testing.assert_allclose(a[:, :-1], b[:, :-1], atol=1e-6)
        assert not np.allclose(a[:, -1], b[:, -1])


def test_flops_hand_count():
    inp = keras.Input((2, 8, 8, 3))
    x = keras.layers.TimeDistributed(keras.layers.Conv2D(5, 3, padding="same"))(inp)
    x = keras.layers.ConvLSTM2D(4, 3, padding="same", return_sequences=False)(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(7)(x)
    m = keras.Model(inp, out)
    conv = 2 * 2 * 8 * 8 * 9 * 3 * 5
    convlstm = 2 * 2 * 8 * 8 * 9 * (5 + 4) * 4 * 4
    dense = 2 * 8 * 8 * 4 * 7
    assert count_flops(m) == conv + convlstm + dense


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown architecture"):
        build("transformer")
    with pytest.raises(ValueError, match="multiples of patch"):
        build("convlstm2d", height=30, width=30, patch=4)
    with pytest.raises(ValueError, match="task"):
        build("convlstm2d", task="segment")


def test_closed_loop_matches_the_served_rollout():
    """The training wrapper rolls out exactly as evaluation and serving do."""
    from models.architectures import build, closed_loop, step_model
    from models.rollout import rollout

    step = build("convlstm2d", task="next_frame", time_steps=10, filters=[4], kernel_size=3)
    wrapped = closed_loop(step, 3)
    assert step_model(wrapped) is step and wrapped.output_shape == (None, 3, 64, 64, 1)
    x = np.random.default_rng(0).random((2, 10, 64, 64, 1)).astype("float32")
    got = keras.ops.convert_to_numpy(wrapped(x))
    np.testing.assert_allclose(got, rollout(step, x, 3), atol=1e-5)
    with pytest.raises(ValueError, match="fixed number of input frames"):
        closed_loop(build("convlstm2d", task="next_frame", filters=[4]), 2)
