"""Batches built by one bytes.join (no numpy copy, so no GIL hand-off per clip): the clips in
order, zero rows to the bucket, whatever layout or dtype the clips came in."""

from __future__ import annotations

import numpy as np

from service.policies import Classify


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


def test_owned_copies_keep_no_batch_output_alive():
    from service.policies import owned, stacked

    out = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    row = owned(out[1])
    np.testing.assert_array_equal(row, out[1])
    assert not np.shares_memory(row, out) and row.dtype == np.float32
    window = stacked([*out[0][1:], row[0]])  # a sliding window: drop the oldest, add the newest
    np.testing.assert_array_equal(window, np.concatenate([out[0][1:], row[:1]]))


def test_rollouts_stack_their_frames_once_done():
    from service.policies import Rollout

    r = Rollout(np.zeros((2, 3, 3, 1), np.float32), steps=3)
    frames = [np.full((3, 3, 1), v, np.float32) for v in (0.1, 0.2, 0.3)]
    assert r.add(frames[0]) is None and r.add(frames[1]) is None
    np.testing.assert_array_equal(r.add(frames[2]), np.stack(frames))
