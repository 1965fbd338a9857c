"""The one rollout (models/rollout.py) that serving and evaluation share: the window and the
carried state of each clip, one model call per step, copies that keep no batch alive."""

import numpy as np
import pytest

from models.rollout import (
    Rollout,
    carried_rollout,
    context_step,
    owned,
    rollout,
    stacked,
    state_step,
    window_step,
)


def test_rollout_keeps_window_fixed():
    calls = []

    class Fake:
        def predict_on_batch(self, x):
            calls.append(x.shape)
            return x + 0.1  # "prediction" of frame t+1 = frame t + 0.1

    ctx = np.zeros((3, 4, 8, 8, 1), dtype=np.float32)
    out = rollout(Fake(), ctx, horizon=5, batch_size=2)
    assert out.shape == (3, 5, 8, 8, 1)
    np.testing.assert_allclose(out[:, :, 0, 0, 0], [[0.1, 0.2, 0.3, 0.4, 0.5]] * 3, atol=1e-6)
    assert set(calls) == {(2, 4, 8, 8, 1)}  # fixed batch (padded) and fixed window length


def test_owned_copies_keep_no_batch_output_alive():
    out = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    row = owned(out[1])
    np.testing.assert_array_equal(row, out[1])
    assert not np.shares_memory(row, out) and row.dtype == np.float32
    window = stacked([*out[0][1:], row[0]])  # a sliding window: drop the oldest, add the newest
    np.testing.assert_array_equal(window, np.concatenate([out[0][1:], row[:1]]))


def test_rollouts_stack_their_frames_once_done():
    r = Rollout(np.zeros((2, 3, 3, 1), np.float32), steps=3)
    frames = [np.full((3, 3, 1), v, np.float32) for v in (0.1, 0.2, 0.3)]
    assert r.add(frames[0]) is None and r.add(frames[1]) is None
    np.testing.assert_array_equal(r.add(frames[2]), np.stack(frames))


def test_a_growing_window_keeps_every_frame_and_a_frame_output_is_the_next_frame():
    seen = []

    def call(batch):  # many-to-one: the next frame is the last one + 1
        seen.append(batch.shape)
        return batch[:, -1] + 1.0

    rs = [Rollout(np.zeros((2, 3, 3, 1), np.float32), 3) for _ in range(3)]
    assert window_step(rs, 4, call, output="frame", grows=True) == [None] * 3
    assert window_step(rs, 4, call, output="frame", grows=True) == [None] * 3
    done = window_step(rs, 4, call, output="frame", grows=True)
    assert seen == [(4, 2, 3, 3, 1), (4, 3, 3, 3, 1), (4, 4, 3, 3, 1)]  # padded to the bucket
    for r, out in zip(rs, done):
        np.testing.assert_array_equal(out[:, 0, 0, 0], [1.0, 2.0, 3.0])
        assert r.window.shape == (5, 3, 3, 1)  # the context and every prediction


def test_the_carried_state_keeps_each_clips_states_only_while_steps_remain():
    """Fake context pass and step: the next frame is the state, the state counts the frames."""

    def context(batch):
        n = batch.shape[1]
        return [np.full((len(batch), 1, 2, 2, 1), n, np.float32), np.full((len(batch), 5), n)]

    def step(inputs):
        frame, state = inputs
        assert len(frame) == 4  # the bucket, whatever the clips
        return [frame + 1.0, state + 1.0]

    rs = [Rollout(np.zeros((3, 2, 2, 1), np.float32), k) for k in (1, 3)]
    first = context_step(rs, 4, context)
    assert first[0] is not None and first[1] is None
    assert rs[0].states is None and rs[1].states[0].shape == (5,)  # done: no state kept
    with pytest.raises(ValueError, match="past their context pass"):
        state_step(rs, 4, step)
    going = [rs[1]]
    assert state_step(going, 4, step) == [None]
    out = state_step(going, 4, step)[0]
    np.testing.assert_array_equal(out[:, 0, 0, 0], [3.0, 4.0, 5.0])
    np.testing.assert_array_equal(first[0][:, 0, 0, 0], [3.0])


def _sliding_as_it_was(model, context, horizon, batch_size):
    """Evaluation's sliding window before it shared the served steps: whole windows
    concatenated, one padded batched call per step."""
    window = np.asarray(context, np.float32)
    preds = []
    for _ in range(horizon):
        outs = []
        for start in range(0, len(window), batch_size):
            chunk = window[start : start + batch_size]
            n = len(chunk)
            pad = np.zeros((batch_size - n,) + chunk.shape[1:], np.float32)
            outs.append(np.asarray(model.predict_on_batch(np.concatenate([chunk, pad])))[:n])
        nxt = np.concatenate(outs)[:, -1]
        preds.append(nxt)
        window = np.concatenate([window[:, 1:], nxt[:, None]], axis=1)
    return np.stack(preds, axis=1)


class _Mixer:
    """A 'model' whose every output frame depends on every input frame (weights by position)."""

    def predict_on_batch(self, x):
        w = np.arange(1, x.shape[1] + 1, dtype=np.float32)[None, :, None, None, None]
        mean = (x * w).sum(axis=1, keepdims=True) / w.sum()
        return np.sin(x * 3.0 + mean)


def test_the_shared_sliding_window_gives_what_evaluation_gave_bit_for_bit():
    ctx = np.random.default_rng(0).random((5, 4, 6, 6, 1), dtype=np.float32)
    want = _sliding_as_it_was(_Mixer(), ctx, 6, batch_size=2)
    got = rollout(_Mixer(), ctx, 6, batch_size=2)
    assert got.dtype == np.float32 and np.array_equal(got, want)


def test_progress_counts_every_predicted_frame():
    class Copy:
        def predict_on_batch(self, x):
            return np.asarray(x[0] if isinstance(x, list) else x[:, -1:])

    class Stepper:  # context pass and step of a copy-the-last-frame model, one state
        class context:
            @staticmethod
            def predict_on_batch(x):
                return [x[:, -1:], np.zeros((len(x), 2), np.float32)]

        class step:
            @staticmethod
            def predict_on_batch(inputs):
                return [inputs[0], inputs[1]]

    ctx = np.random.default_rng(1).random((3, 2, 4, 4, 1), dtype=np.float32)
    for roll, model in ((rollout, Copy()), (carried_rollout, Stepper())):
        told = []
        out = roll(model, ctx, 4, batch_size=2, on_batch=told.append)
        assert sum(told) == 3 * 4 and out.shape == (3, 4, 4, 4, 1)
        np.testing.assert_array_equal(out, np.repeat(ctx[:, -1:], 4, axis=1))
