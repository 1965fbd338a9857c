"""A finished run → the job's result (what ``GET /v1/evaluations/{id}`` answers and the report is
rendered from) and its per-clip rows (the CSV).

``result.models.<name>.metrics.<metric>`` has ``mean``, ``ci95`` and, for next-frame metrics,
``per_step``; ``.timing`` the latency (p50, p99: from the clip's submission to its answer,
waits behind online requests included) and model time measured in the job, and clips/s;
``.cost`` the model's cost facts. ``result.comparisons`` holds every pair on every metric
(``stats.compare``), ``result.verdict`` the sentence that leads the answer, and
``result.examples`` the clips where the first two models differ most, as PNG strips.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from service.jobs import stats
from service.jobs.runner import JobRun, Record
from service.media.fitting import resize_frame, to_channels
from service.media.montages import montage_png

COST_KEYS = (
    "params",
    "flops_per_clip",
    "flops_per_clip_frames",
    "flops_note",
    "flops_per_step",
    "weight_bytes",
    "checkpoint_bytes",
    "peak_memory_bytes",
    "memory_note",
)


def per_clip_arrays(records: list[Record], models: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """model → metric → array (clips,) or (clips, steps) of the scores that average."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for m in models:
        metrics = [k for k in records[0].scores[m] if k not in ("predicted", "true_score")]
        out[m] = {k: np.asarray([r.scores[m][k] for r in records], np.float64) for k in metrics}
    return out


def _pct(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, np.float64)
    return {
        "p50": round(float(np.percentile(a, 50)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
    }


def _confusion(records: list[Record], model: str, names: list[str]) -> dict[str, Any]:
    """Counts of (true class, predicted class), classes in the model's order (a label given as
    a class index is that class's name)."""

    def name(label: str) -> str:
        if label not in names and label.isdigit() and int(label) < len(names):
            return names[int(label)]
        return label

    pairs = [(name(str(r.label)), r.scores[model]["predicted"]) for r in records]
    seen = {x for pair in pairs for x in pair}
    labels = [n for n in names if n in seen] + sorted(seen - set(names))
    index = {k: i for i, k in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), np.int64)
    for truth, predicted in pairs:
        counts[index[truth], index[predicted]] += 1
    return {
        "labels": labels,
        "counts": counts.tolist(),
        "rows": "true class",
        "columns": "predicted",
    }


def build(
    run: JobRun,
    records: list[Record],
    costs: dict[str, dict],
    seconds: float,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """The result of a finished run (``costs``: each model's cost facts; ``seconds``: the run's
    wall time)."""
    plan, n = run.plan, len(records)
    arrays = per_clip_arrays(records, plan.models)
    models: dict[str, Any] = {}
    verdict_costs: dict[str, dict] = {}
    for m in plan.models:
        entry: dict[str, Any] = {
            "metrics": {k: stats.summary(v, resamples, seed) for k, v in arrays[m].items()},
            "timing": {
                "latency_ms": _pct([r.latency_ms[m] for r in records]),
                "model_ms": _pct([r.model_ms[m] for r in records]),
                "clips_per_s": round(n / seconds, 3) if seconds > 0 else None,
            },
            "cost": {k: costs.get(m, {}).get(k) for k in COST_KEYS},
            "versions": sorted(run.versions[m]),
        }
        if plan.task == "classify":
            names = run.class_names.get(m, [])
            entry["confusion"] = _confusion(records, m, names)
            entry["top_k"] = plan.top_k
        models[m] = entry
        verdict_costs[m] = {**entry["cost"], "model_ms_p50": entry["timing"]["model_ms"]["p50"]}
    comps = stats.comparisons(arrays, resamples, seed)
    return {
        "task": plan.task,
        "clips": n,
        "holdout": plan.holdout if plan.task == "next_frame" else None,
        "verdict": stats.verdict(plan.task, comps, n, verdict_costs),
        "models": models,
        "comparisons": comps,
        "main_metric": stats.MAIN[plan.task],
        "bootstrap": {"resamples": resamples, "seed": seed, "method": "BCa", "confidence": 0.95},
        "conversions": run.conversions_report(),
        "examples": examples(run),
        "seconds": round(seconds, 3),
    }


def _fit_to(frames: np.ndarray, h: int, w: int, c: int) -> np.ndarray:
    return np.stack([to_channels(resize_frame(f, h, w), c) for f in frames])


def examples(run: JobRun) -> list[dict[str, Any]]:
    """The kept clips, most differing first, each as a PNG strip (base64) with its scores."""
    out = []
    for gap, _, kept in sorted(run.examples, key=lambda e: (-e[0], e[1])):
        rec: Record = kept["record"]
        outs = kept["outs"]
        first = next(iter(outs))
        _, truth, context = outs[first]
        h, w, c = context.shape[1:4]
        ctx = np.asarray(context)[-10:]
        ctx = ctx / np.float32(255.0) if ctx.dtype == np.uint8 else ctx.astype(np.float32)
        rows: list[tuple[str, np.ndarray | None]] = [("context", ctx)]
        if run.plan.task == "next_frame":
            rows.append(("truth", truth))
            rows += [(m, _fit_to(o[0], h, w, c)) for m, o in outs.items()]
        png = montage_png(rows)
        out.append(
            {
                "clip": rec.name,
                "label": rec.label,
                "gap": round(gap, 4),
                "scores": {
                    m: {
                        k: (round(float(np.mean(v)), 4) if k != "predicted" else v)
                        for k, v in s.items()
                    }
                    for m, s in rec.scores.items()
                },
                "png": base64.b64encode(png).decode(),
            }
        )
    return out


def csv_rows(records: list[Record], models: list[str]) -> tuple[list[str], list[list[Any]]]:
    """The per-clip CSV: one row per clip and model, each metric's clip mean."""
    metrics = sorted({k for r in records for m in models for k in r.scores.get(m, {})})
    head = ["clip", "label", "model", *metrics, "latency_ms", "model_ms"]
    rows = []
    for r in records:
        for m in models:
            s = r.scores.get(m, {})
            vals = [
                s[k] if k == "predicted" else (None if k not in s else float(np.mean(s[k])))
                for k in metrics
            ]
            rows.append([r.name, r.label, m, *vals, r.latency_ms.get(m), r.model_ms.get(m)])
    return head, rows
