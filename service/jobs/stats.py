"""Statistics that decide, from per-clip scores (``scipy.stats``).

- Each model's mean of each metric with a 95 % confidence interval: a bootstrap over clips
  (BCa, ``n_resamples`` resamples, seeded: the same data set gives the same interval), overall
  and per rollout step (``per_step``: t+1 … t+k).
- Each pair of models ``a``, ``b``: the paired per-clip difference ``a − b`` with its bootstrap
  interval (overall and per step), a paired test (next-frame metrics: the Wilcoxon signed-rank
  test; classifiers: McNemar's exact test, a binomial test on the clips exactly one got right)
  and the share of clips each wins.
- :func:`verdict`: the sentence that leads the answer, in plain words; "no difference found"
  whenever the interval of the main metric's difference holds zero.

Per-clip differences within float rounding of zero (:data:`REL_TOL` of the scores) count as
zero, so two copies of one model differ by nothing, whatever the last bits of their sums say.
"""

from __future__ import annotations

import warnings
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats

LOWER_IS_BETTER = {"mse_per_frame": True, "mae_per_frame": True, "psnr": False, "ssim": False}
CLASSIFY = {"accuracy": False, "top_k_accuracy": False}  # higher is better
MAIN = {"next_frame": "mse_per_frame", "classify": "accuracy"}
LABELS = {
    "mse_per_frame": "MSE per frame",
    "mae_per_frame": "MAE per frame",
    "psnr": "PSNR",
    "ssim": "SSIM",
    "accuracy": "accuracy",
    "top_k_accuracy": "top-k accuracy",
}
REL_TOL = 1e-9
ALPHA = 0.05  # a difference is named only when its interval excludes zero and p < ALPHA


def mean_ci(x: np.ndarray, resamples: int, seed: int) -> tuple[Any, Any]:
    """Means of ``x`` over its last axis and their 95 % bootstrap intervals (``[low, high]``
    per row; None with fewer than 2 clips)."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=-1)
    if x.shape[-1] < 2:
        return mean, None
    flat = x.reshape(-1, x.shape[-1])
    low, high = flat.mean(axis=-1).copy(), flat.mean(axis=-1).copy()
    varied = np.ptp(flat, axis=-1) > 0
    if varied.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.bootstrap(
                (flat[varied],),
                np.mean,
                axis=-1,
                vectorized=True,
                n_resamples=resamples,
                confidence_level=0.95,
                method="BCa",
                rng=np.random.default_rng(seed),
            )
            lo, hi = (
                np.asarray(res.confidence_interval.low),
                np.asarray(res.confidence_interval.high),
            )
            bad = ~(np.isfinite(lo) & np.isfinite(hi))
            if bad.any():  # BCa cannot (e.g. a skewed sample of a few values): percentiles
                again = stats.bootstrap(
                    (flat[varied][bad],),
                    np.mean,
                    axis=-1,
                    vectorized=True,
                    n_resamples=resamples,
                    method="percentile",
                    rng=np.random.default_rng(seed),
                )
                lo[bad] = again.confidence_interval.low
                hi[bad] = again.confidence_interval.high
        low[varied], high[varied] = lo, hi
    ci = np.stack([low, high], axis=-1).reshape(x.shape[:-1] + (2,))
    return mean, ci


def _pair(v: Any) -> list[float] | None:
    return None if v is None else [float(v[0]), float(v[1])]


def summary(x: np.ndarray, resamples: int, seed: int) -> dict[str, Any]:
    """``x`` (clips,) or (clips, steps) → ``{"mean", "ci95"[, "per_step"]}``."""
    x = np.asarray(x, np.float64)
    per_clip = x.mean(axis=1) if x.ndim == 2 else x
    mean, ci = mean_ci(per_clip, resamples, seed)
    out: dict[str, Any] = {"mean": float(mean), "ci95": _pair(ci)}
    if x.ndim == 2:
        m, c = mean_ci(x.T, resamples, seed)
        out["per_step"] = [
            {"step": i + 1, "mean": float(m[i]), "ci95": None if c is None else _pair(c[i])}
            for i in range(x.shape[1])
        ]
    return out


def zeroed(d: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Differences within float rounding of zero set to zero."""
    scale = np.maximum(np.abs(a), np.abs(b))
    return np.where(np.abs(d) <= REL_TOL * np.maximum(scale, 1e-300), 0.0, d)


def p_wilcoxon(d: np.ndarray) -> float:
    d = d[d != 0]
    if len(d) == 0:
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(stats.wilcoxon(d).pvalue)
    return 1.0 if not np.isfinite(p) else p


def p_mcnemar(right_a: np.ndarray, right_b: np.ndarray) -> float:
    """McNemar's exact test: of the clips exactly one model got right, is the split 50:50?"""
    only_a = int(np.sum(right_a & ~right_b))
    only_b = int(np.sum(right_b & ~right_a))
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def compare(
    a: str, b: str, metric: str, xa: np.ndarray, xb: np.ndarray, resamples: int, seed: int
) -> dict[str, Any]:
    """The paired comparison of models ``a`` and ``b`` on one metric (per-clip arrays)."""
    lower = LOWER_IS_BETTER.get(metric, False)
    xa, xb = np.asarray(xa, np.float64), np.asarray(xb, np.float64)
    d = zeroed(xa - xb, xa, xb)
    diff = summary(d, resamples, seed)
    per = d.mean(axis=1) if d.ndim == 2 else d
    if metric in CLASSIFY:  # per-clip 0/1: right or wrong
        p, test = p_mcnemar(xa > 0.5, xb > 0.5), "mcnemar_exact"
    else:
        p, test = p_wilcoxon(per), "wilcoxon_signed_rank"
    better_a = per < 0 if lower else per > 0
    better_b = per > 0 if lower else per < 0
    n = len(per)
    wins = {a: float(better_a.mean()), b: float(better_b.mean()), "tie": float((per == 0).mean())}
    ci = diff["ci95"]
    better = None
    if ci is not None and (ci[0] > 0 or ci[1] < 0) and p < ALPHA:  # both say so
        better = (a if diff["mean"] < 0 else b) if lower else (a if diff["mean"] > 0 else b)
    counts = {a: int(better_a.sum()), b: int(better_b.sum())}
    counts["tie"] = n - counts[a] - counts[b]
    return {
        "a": a,
        "b": b,
        "metric": metric,
        "difference": diff,
        "p_value": p,
        "test": test,
        "wins": wins,
        "wins_count": counts,
        "better": better,
    }


def comparisons(
    per_clip: dict[str, dict[str, np.ndarray]], resamples: int, seed: int
) -> list[dict[str, Any]]:
    """Every pair of models, on every metric both have."""
    out = []
    for a, b in combinations(list(per_clip), 2):
        for metric in per_clip[a]:
            if metric in per_clip[b]:
                out.append(
                    compare(a, b, metric, per_clip[a][metric], per_clip[b][metric], resamples, seed)
                )
    return out


def _num(v: float) -> str:
    v = abs(v)
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}" if v >= 0.1 else f"{v:.3g}"


def _signed(v: float) -> str:
    return f"{v:.3g}".replace("-", "−")


def _interval(lo: float, hi: float) -> str:
    """'8.9–13.2', or '−0.46 to 6.41' where a bound is negative."""
    if lo < 0:
        return f"{_signed(lo)} to {_signed(hi)}"
    return f"{_signed(lo)}–{_signed(hi)}"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def _steps(c: dict[str, Any], winner_sign: float) -> str:
    per = c["difference"].get("per_step")
    if not per:
        return ""
    good = [
        s["step"]
        for s in per
        if s["ci95"] is not None and (s["ci95"][0] > 0 if winner_sign > 0 else s["ci95"][1] < 0)
    ]
    if len(good) == len(per):
        return ", at every step"
    if not good:
        return ", though at no single step on its own"
    return ", at step(s) " + ", ".join(f"t+{s}" for s in good) + f" of t+1…t+{len(per)}"


def _ratio(x: float | None, y: float | None) -> float | None:
    return None if not x or not y else x / y


def _costs(winner: str, loser: str, cost: dict[str, dict[str, Any]]) -> str:
    """'; it costs 24× the FLOPs and 4.1× the latency' (winner against loser), from what is
    known of both."""
    parts = []
    for key, what in (
        ("flops_per_clip", "FLOPs"),
        ("model_ms_p50", "latency"),
        ("peak_memory_bytes", "peak memory"),
    ):
        r = _ratio(cost.get(winner, {}).get(key), cost.get(loser, {}).get(key))
        if r is not None:
            parts.append(f"{r:.2g}× the {what}")
    text = ""
    if parts:
        text = "; it costs " + (", ".join(parts[:-1]) + " and " if len(parts) > 1 else "")
        text += parts[-1]
    unknown = [m for m in (winner, loser) if not cost.get(m, {}).get("flops_per_clip")]
    if unknown:
        text += f" (FLOPs not counted for {' and '.join(unknown)})"
    return text


def sentence(c: dict[str, Any], n: int, cost: dict[str, dict[str, Any]]) -> str:
    """One comparison in plain words."""
    a, b, metric = c["a"], c["b"], c["metric"]
    name = LABELS.get(metric, metric)
    diff, ci, p = c["difference"], c["difference"]["ci95"], c["p_value"]
    pct = metric in CLASSIFY  # accuracy differences in percentage points
    scale = 100.0 if pct else 1.0
    unit = " points" if pct else ""
    test = "McNemar " if metric in CLASSIFY else ""
    if c["better"] is None:
        shown = "n/a" if ci is None else _interval(ci[0] * scale, ci[1] * scale)
        but = ""
        if ci is not None and (ci[0] > 0 or ci[1] < 0):  # the interval alone would say one
            differ = n - c["wins_count"]["tie"]
            but = f"; the paired test does not confirm the interval: {differ} clip(s) differ"
        return (
            f"On these {n} clips no difference found between {a} and {b} in {name} "
            f"({a} − {b} = {_signed(diff['mean'] * scale)}{unit}, 95 % CI {shown}, "
            f"{test}{_p(p)}{but})."
        )
    winner = c["better"]
    loser = b if winner == a else a
    sign = 1.0 if winner == b else -1.0  # a − b > 0 where b wins a lower-is-better metric
    if not LOWER_IS_BETTER.get(metric, False):
        sign = -sign
    lower = LOWER_IS_BETTER.get(metric, False)
    word = "lower" if lower else "higher"
    lo, hi = sorted(abs(v) * scale for v in ci)
    steps = _steps(c, sign) if not pct else ""
    return (
        f"On these {n} clips {winner}'s {name} is {_num(diff['mean'] * scale)}{unit} {word} "
        f"than {loser}'s (95 % CI {_num(lo)}–{_num(hi)}, {test}{_p(p)}){steps}"
        f"{_costs(winner, loser, cost)}."
    )


def verdict(task: str, comps: list[dict[str, Any]], n: int, cost: dict[str, dict]) -> str:
    """The answer's lead: each pair on the task's main metric, in plain words."""
    main = [c for c in comps if c["metric"] == MAIN[task]]
    if not main:
        return f"On these {n} clips one model was evaluated: nothing to compare it with."
    return " ".join(sentence(c, n, cost) for c in main)
