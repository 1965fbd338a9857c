"""Batches built by one bytes.join (no numpy copy, so no GIL hand-off per clip): the clips in
order, zero rows to the bucket, whatever layout or dtype the clips came in."""

from __future__ import annotations

import numpy as np

from service.runtime.policies import Classify


def test_batches_pad_with_zeros_or_stack_exactly():
    policy = Classify((2, 3, 3, 1))
    clips = [np.full((2, 3, 3, 1), v, np.float32) for v in (1.0, 2.0, 3.0)]
    padded = policy.batch(clips, 4)
    assert padded.shape == (4, 2, 3, 3, 1) and (padded[3] == 0).all() and (padded[2] == 3).all()
    exact = policy.batch(clips[:2], 2)
    assert exact.shape == (2, 2, 3, 3, 1) and exact.dtype == np.float32
    assert (exact[0] == 1).all() and (exact[1] == 2).all()


def test_batches_equal_np_stack_for_any_layout():
    rng = np.random.default_rng(5)
    base = rng.random((3, 2, 4, 5, 3))
    clips = [
        base[0].astype(np.float32),
        np.asfortranarray(base[1].astype(np.float32)),  # not C-contiguous
        base[2],  # float64
    ]
    out = Classify((2, 4, 5, 3)).batch(clips, 4)
    want = np.concatenate(
        [np.stack([c.astype(np.float32) for c in clips]), np.zeros((1, 2, 4, 5, 3))]
    )
    np.testing.assert_array_equal(out, want)
    assert out.dtype == np.float32 and out.flags.c_contiguous


def test_classify_sends_byte_clips_to_the_uint8_entry_and_floats_to_the_model():
    """One step with both kinds of clip: bytes go, as bytes, to ``model_u8``; floats to
    ``model``; each answer goes back to its own request. Without a ``model_u8`` the bytes are
    scaled here and go to ``model``."""
    policy = Classify((2, 3, 3, 1))
    seen: dict[str, list] = {"model": [], "model_u8": []}

    def entry(name: str, scale: float):
        def call(batch):
            seen[name].append(batch)
            return batch.reshape(len(batch), -1)[:, :1].astype(np.float32) / scale

        return call

    calls = {"model": entry("model", 1.0), "model_u8": entry("model_u8", 255.0)}
    byte_clips = [np.full((2, 3, 3, 1), v, np.uint8) for v in (51, 102)]
    float_clip = np.full((2, 3, 3, 1), 0.6, np.float32)
    payloads = [policy.begin(byte_clips[0]), policy.begin(float_clip), policy.begin(byte_clips[1])]
    assert [p.dtype for p in payloads] == [np.uint8, np.float32, np.uint8]
    out = policy.step(payloads, lambda n: n, calls)
    assert [seen["model_u8"][0].dtype, seen["model"][0].dtype] == [np.uint8, np.float32]
    assert len(seen["model_u8"][0]) == 2 and len(seen["model"][0]) == 1
    np.testing.assert_allclose([o[0] for o in out], [0.2, 0.6, 0.4], rtol=1e-6)
    seen = {"model": [], "model_u8": []}
    out = policy.step(payloads, lambda n: n, {"model": calls["model"]})
    assert len(seen["model"]) == 2 and all(b.dtype == np.float32 for b in seen["model"])
    np.testing.assert_allclose([o[0] for o in out], [0.2, 0.6, 0.4], rtol=1e-6)


def test_a_free_time_axis_scales_byte_clips_on_arrival():
    policy = Classify((None, 3, 3, 1))
    clip = policy.begin(np.full((4, 3, 3, 1), 51, np.uint8))
    assert clip.dtype == np.float32 and np.allclose(clip, 0.2)


def test_a_rollout_of_no_step_is_invalid_input():
    import pytest

    from service.errors import InvalidInput
    from service.runtime.policies import CarriedState, SlidingWindow

    clip = np.zeros((2, 3, 3, 1), np.float32)
    for policy in (SlidingWindow((2, 3, 3, 1)), CarriedState((2, 3, 3, 1), [(4,)])):
        with pytest.raises(InvalidInput, match="at least 1 step, got horizon=0"):
            policy.begin(clip, 0)
        assert policy.begin(clip, 2).steps == 2


def test_a_free_time_axis_gives_each_clip_its_own_answer_when_lengths_interleave():
    """Clips of two lengths in one step of a free-time-axis model: one call per length, and each
    payload gets the frames its own clip led to (row ``j`` of its length's batch), not another
    length's or another row's."""
    from service.runtime.policies import Growing

    policy = Growing((None, 3, 3, 1))
    lengths, fills = (2, 4, 2, 4), (10.0, 20.0, 30.0, 40.0)
    payloads = [
        policy.begin(np.full((n, 3, 3, 1), v, np.float32), 2) for n, v in zip(lengths, fills)
    ]
    seen: list[tuple[int, ...]] = []

    def model(batch):  # a sequence output: frame t is input frame t plus the clip's length
        seen.append(batch.shape)
        return batch + batch.shape[1]

    first = policy.step(payloads, lambda n: n + 1, {"model": model})  # a zero row pads each
    assert first == [None] * 4
    assert sorted(seen) == [(3, 2, 3, 3, 1), (3, 4, 3, 3, 1)]
    assert [len(p.window) for p in payloads] == [3, 5, 3, 5]  # growing: every frame kept
    seen.clear()
    done = policy.step(payloads, lambda n: n + 1, {"model": model})
    assert sorted(seen) == [(3, 3, 3, 3, 1), (3, 5, 3, 3, 1)]
    for n, v, got in zip(lengths, fills, done):
        # step 1: v + n; step 2 reads that last frame from a window of n + 1 frames
        want = np.stack([np.full((3, 3, 1), v + n), np.full((3, 3, 1), v + n + n + 1)])
        assert got is not None, (n, v)
        np.testing.assert_array_equal(got, want.astype(np.float32), err_msg=f"{n=} {v=}")


def test_carried_state_gives_each_fresh_clip_its_own_answer_when_lengths_interleave():
    """Fresh clips of two lengths (one context call per length) beside a clip past its context
    (the step call), in one step: each payload gets its own frame and states."""
    from models.rollout import Rollout
    from service.runtime.policies import CarriedState

    policy = CarriedState((None, 3, 3, 1), [(2,)])
    lengths, fills = (2, 4, 2, 4), (10.0, 20.0, 30.0, 40.0)
    fresh = [policy.begin(np.full((n, 3, 3, 1), v, np.float32), 1) for n, v in zip(lengths, fills)]
    going = Rollout(np.zeros((2, 3, 3, 1), np.float32), 2)
    going.outputs = [np.full((3, 3, 1), 5.0, np.float32)]
    going.states = [np.array([7.0, 8.0], np.float32)]
    seen: dict[str, list] = {"context": [], "step": []}

    def context(batch):  # → [next frames (bucket, 1, H, W, C), states (bucket, 2)]
        seen["context"].append(batch.shape)
        frames = batch[:, -1:] + batch.shape[1]
        return [frames, np.repeat(frames.reshape(len(batch), -1)[:, :1], 2, axis=1)]

    def step(inputs):  # [frames (bucket, 1, H, W, C), states] → the same
        seen["step"].append(inputs[0].shape)
        frames, states = inputs
        return [frames + states[:, :1, None, None, None], states + 1]

    payloads = [fresh[0], fresh[1], going, fresh[2], fresh[3]]
    calls = {"context": context, "step": step}
    done = policy.step(payloads, lambda n: n + 1, calls)  # a zero row pads each
    assert sorted(seen["context"]) == [(3, 2, 3, 3, 1), (3, 4, 3, 3, 1)]
    assert seen["step"] == [(2, 1, 3, 3, 1)]
    wants = [v + n for n, v in zip(lengths, fills)]  # the context's next frame: last + length
    for got, want in zip([done[0], done[1], done[3], done[4]], wants):
        assert got is not None, want
        np.testing.assert_array_equal(got, np.full((1, 3, 3, 1), want, np.float32))
    assert done[2] is not None
    np.testing.assert_array_equal(done[2][1], np.full((3, 3, 1), 5.0 + 7.0, np.float32))
