"""Statistics that decide: seeded bootstrap intervals that hold the mean and narrow with more
clips, paired tests, wins, and the verdict in plain words."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from service.jobs import stats as S

R = 1000


def test_intervals_hold_the_mean_are_seeded_and_narrow_with_more_clips():
    rng = np.random.default_rng(1)
    widths = []
    for n in (30, 120, 480):
        x = rng.gamma(2.0, 30.0, n)  # skewed, as per-clip errors are
        s = S.summary(x, R, seed=7)
        lo, hi = s["ci95"]
        assert lo < s["mean"] < hi and s["mean"] == pytest.approx(x.mean())
        assert S.summary(x, R, seed=7) == s  # the same data, the same interval
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]


def test_per_step_intervals_come_with_the_overall_one():
    x = np.random.default_rng(2).normal(100, 10, (50, 4))
    s = S.summary(x, R, seed=0)
    assert [p["step"] for p in s["per_step"]] == [1, 2, 3, 4]
    for j, p in enumerate(s["per_step"]):
        assert p["mean"] == pytest.approx(x[:, j].mean())
        assert p["ci95"][0] < p["mean"] < p["ci95"][1]


def test_two_copies_of_one_model_differ_by_nothing():
    x = np.random.default_rng(3).normal(100, 10, (40, 3))
    twin = x * (1 + 1e-13)  # the last bits of a sum taken in another order
    c = S.compare("a", "b", "mse_per_frame", x, twin, R, 0)
    assert c["difference"]["mean"] == 0 and c["difference"]["ci95"] == [0.0, 0.0]
    assert c["p_value"] == 1.0 and c["better"] is None and c["wins"]["tie"] == 1.0
    text = S.verdict("next_frame", [c], 40, {})
    assert "no difference found" in text


def test_a_clearly_lower_error_wins_with_wilcoxon_and_the_cost_ratio():
    rng = np.random.default_rng(4)
    a = rng.normal(130, 20, (200, 5))
    b = a - rng.normal(10, 5, (200, 5))
    c = S.compare("conv", "clstm", "mse_per_frame", a, b, R, 0)
    d = (a - b).mean(axis=1)
    assert c["p_value"] == pytest.approx(sps.wilcoxon(d).pvalue)
    assert c["better"] == "clstm" and c["wins"]["clstm"] > 0.9
    assert c["difference"]["ci95"][0] > 0
    cost = {
        "conv": {"flops_per_clip": 1e8, "model_ms_p50": 5.0},
        "clstm": {"flops_per_clip": 2.4e9, "model_ms_p50": 20.0},
    }
    text = S.verdict("next_frame", [c], 200, cost)
    assert text.startswith("On these 200 clips clstm's MSE per frame is")
    assert "lower than conv's" in text and "p < 0.001" in text and "at every step" in text
    assert "24× the FLOPs" in text and "4× the latency" in text


def test_classifiers_use_mcnemars_exact_test_on_the_discordant_clips():
    right_a = np.array([1] * 30 + [0] * 5 + [1] * 60 + [0] * 5, float)
    right_b = np.array([0] * 30 + [1] * 5 + [1] * 60 + [0] * 5, float)
    c = S.compare("a", "b", "accuracy", right_a, right_b, R, 0)
    assert c["test"] == "mcnemar_exact"
    assert c["p_value"] == pytest.approx(sps.binomtest(30, 35, 0.5).pvalue)
    assert c["wins_count"] == {"a": 30, "b": 5, "tie": 65}
    assert c["better"] == "a"
    assert "accuracy is 25.0 points higher" in S.verdict("classify", [c], 100, {})


def test_an_interval_the_paired_test_does_not_confirm_is_no_difference():
    """4 clips of 200 differ, all one way: the bootstrap interval leaves zero out, McNemar's
    exact p is 0.125; the verdict names no model and says why."""
    right_a = np.ones(200)
    right_b = np.ones(200)
    right_b[:4] = 0
    c = S.compare("a", "b", "accuracy", right_a, right_b, R, 0)
    assert c["p_value"] == pytest.approx(0.125)
    assert c["better"] is None
    text = S.verdict("classify", [c], 200, {})
    assert "no difference found" in text and "4 clip(s) differ" in text
