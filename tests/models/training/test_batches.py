"""The clips a run trains on (models/training/batches.py): scheduled sampling's annealing and
the encoder-forecaster's batches."""

import numpy as np
import pytest


def test_truth_probability_anneals_linearly_to_closed_loop():
    from models.training.batches import forecast_batch, truth_probability

    assert truth_probability(0, 1.0, 100) == 1.0
    assert truth_probability(50, 1.0, 100) == pytest.approx(0.5)
    assert truth_probability(100, 1.0, 100) == 0.0
    assert truth_probability(500, 1.0, 100) == 0.0
    assert truth_probability(0, 1.0, 0) == 0.0
    digits = np.full((4, 28, 28), 255, np.uint8)
    (clips, mask), target = forecast_batch(digits, 64, 5, 0.25)
    assert clips.shape == (64, 20, 64, 64, 1) and mask.shape == (64, 9)
    np.testing.assert_array_equal(target, clips[:, 1:])
    assert 0.15 < mask.mean() < 0.35 and set(np.unique(mask)) <= {0.0, 1.0}
