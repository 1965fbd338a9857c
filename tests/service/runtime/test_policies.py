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
