"""The report a person reads: one self-contained HTML page rendered from the job's result alone
(no script, no request of its own: every picture is inline SVG or a data: URI), so that it can
be saved, mailed and opened anywhere. Every text from the job is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

from service.jobs.plots import svg_curves
from service.jobs.stats import LABELS, LOWER_IS_BETTER

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:980px;padding:0 1rem;color:#222}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem}
.verdict{font-size:1.1rem;background:#f3f6fb;border-left:4px solid #1f77b4;padding:.8rem 1rem}
table{border-collapse:collapse;margin:.5rem 0;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #ddd;padding:.3rem .6rem;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}
.chart{width:100%;max-width:640px;font:11px system-ui,sans-serif}
.chart .grid{stroke:#e4e4e4} .chart .title{font-size:13px}
.strip img{image-rendering:pixelated;max-width:100%} .hint{color:#666;font-size:.9rem}
"""


def _n(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, int) or (isinstance(v, float) and abs(v) >= 1000):
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def _ci(entry: dict[str, Any] | None, scale: float = 1.0) -> str:
    if not entry:
        return "–"
    ci = entry.get("ci95")
    mean = _n(entry["mean"] * scale, 4).replace("-", "−")
    if not ci:
        return mean
    lo, hi = (_n(v * scale, 4).replace("-", "−") for v in ci)
    shown = f"{lo} to {hi}" if ci[0] < 0 else f"{lo}–{hi}"
    return f"{mean} <span class=hint>({shown})</span>"


def _bytes(v: int | None) -> str:
    if v is None:
        return "–"
    return f"{v / 1e6:.2f} MB" if v >= 1e5 else f"{v / 1e3:.1f} kB"


def _models_table(result: dict[str, Any]) -> str:
    metrics = [m for m in next(iter(result["models"].values()))["metrics"]]
    head = "".join(f"<th>{escape(LABELS.get(m, m))}</th>" for m in metrics)
    rows = []
    for name, m in result["models"].items():
        cost, timing = m["cost"], m["timing"]
        pct = 100.0 if result["task"] == "classify" else 1.0
        cells = "".join(f"<td>{_ci(m['metrics'].get(k), pct)}</td>" for k in metrics)
        flops = (
            _n(cost.get("flops_per_clip"))
            if cost.get("flops_per_clip")
            else (f"– <span class=hint>{escape(cost.get('flops_note') or '')}</span>")
        )
        rows.append(
            f"<tr><td>{escape(name)}</td>{cells}<td>{_n(cost.get('params'))}</td><td>{flops}</td>"
            f"<td>{_bytes(cost.get('peak_memory_bytes'))}</td>"
            f"<td>{_bytes(cost.get('checkpoint_bytes'))}</td>"
            f"<td>{_n(timing['model_ms']['p50'])} / {_n(timing['model_ms']['p99'])}</td>"
            f"<td>{_n(timing['latency_ms']['p50'])} / {_n(timing['latency_ms']['p99'])}</td>"
            f"<td>{_n(timing['clips_per_s'])}</td></tr>"
        )
    return (
        f"<table><tr><th>model</th>{head}<th>params</th><th>FLOPs / clip</th>"
        "<th>peak memory / clip</th><th>checkpoint</th><th>model ms p50 / p99</th>"
        "<th>latency ms p50 / p99</th><th>clips/s</th></tr>" + "".join(rows) + "</table>"
    )


def _comparisons(result: dict[str, Any]) -> str:
    rows = []
    for c in result["comparisons"]:
        metric = c["metric"]
        pct = 100.0 if result["task"] == "classify" else 1.0
        wins = ", ".join(f"{escape(k)} {v * 100:.0f} %" for k, v in c["wins"].items())
        better = "lower" if LOWER_IS_BETTER.get(metric, False) else "higher"
        rows.append(
            f"<tr><td>{escape(c['a'])} − {escape(c['b'])}</td>"
            f"<td>{escape(LABELS.get(metric, metric))} "
            f"<span class=hint>({better} is better)</span></td>"
            f"<td>{_ci(c['difference'], pct)}</td><td>{_n(c['p_value'])} "
            f"<span class=hint>{escape(c['test'])}</span></td><td>{wins}</td>"
            f"<td>{escape(c['better'] or 'no difference found')}</td></tr>"
        )
    return (
        "<table><tr><th>pair</th><th>metric</th><th>difference (95 % CI)</th><th>p</th>"
        "<th>clips won</th><th>better</th></tr>" + "".join(rows) + "</table>"
    )


def _confusion(name: str, conf: dict[str, Any]) -> str:
    labels = conf["labels"]
    head = "".join(f"<th>{escape(str(x))}</th>" for x in labels)
    rows = "".join(
        f"<tr><th>{escape(str(labels[i]))}</th>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>"
        for i, row in enumerate(conf["counts"])
    )
    title = f"<h3>{escape(name)}: rows true class, columns predicted</h3>"
    return f"{title}<table><tr><th></th>{head}</tr>{rows}</table>"


def _examples(result: dict[str, Any]) -> str:
    out = []
    for e in result.get("examples") or []:
        scores = "; ".join(
            f"{escape(m)}: " + ", ".join(f"{escape(k)} {escape(str(v))}" for k, v in s.items())
            for m, s in e["scores"].items()
        )
        label = f" (label {escape(str(e['label']))})" if e.get("label") is not None else ""
        out.append(
            f'<figure class=strip><img alt="clip {escape(e["clip"])}: context, truth and each '
            f'model\'s frames" src="data:image/png;base64,{e["png"]}"><figcaption>clip '
            f"{escape(e['clip'])}{label}: {scores}</figcaption></figure>"
        )
    return "".join(out) or "<p class=hint>No clips kept.</p>"


def render_html(job: dict[str, Any]) -> str:
    """The whole report page of a done job (as ``GET /v1/evaluations/{id}`` answers it)."""
    result = job["result"]
    title = f"Evaluation {job['id']}" + (f": {job['name']}" if job.get("name") else "")
    charts = ""
    if result["task"] == "next_frame":
        for metric in ("mse_per_frame", "mae_per_frame", "psnr", "ssim"):
            if any(metric in m["metrics"] for m in result["models"].values()):
                name = LABELS[metric]
                better = "lower" if LOWER_IS_BETTER[metric] else "higher"
                charts += svg_curves(
                    result, metric, f"{name} per step, mean and 95 % CI ({better} is better)"
                )
    else:
        charts = "".join(_confusion(n, m["confusion"]) for n, m in result["models"].items())
    charts_title = "Per step" if result["task"] == "next_frame" else "Confusion matrices"
    ds = job.get("dataset") or {}
    conv = "".join(
        f"<li>{escape(m)}: "
        + "; ".join(escape(", ".join(f"{k} {v}" for k, v in c.items() if v)) for c in convs)
        + "</li>"
        for m, convs in (result.get("conversions") or {}).items()
    )
    boot = result.get("bootstrap", {})
    models = escape(", ".join(job.get("models") or []))
    truth = f"the last {result['holdout']} frames of each clip are the truth; "
    about = (
        f"{result['clips']} clips ({escape(str(ds.get('form', '')))}); models {models}; "
        + (truth if result.get("holdout") else "")
        + f"95 % intervals: {escape(str(boot.get('method')))} bootstrap over clips, "
        + f"{boot.get('resamples')} resamples, seed {boot.get('seed')}."
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{STYLE}</style></head>
<body><main>
<h1>{escape(title)}</h1>
<p class="verdict" id="verdict">{escape(result["verdict"])}</p>
<p class=hint>{about}</p>
<h2>Models</h2>{_models_table(result)}
<p class=hint>Model ms: the model calls a clip took part in; latency: from a clip's submission
to its answer, waits behind online requests included (a job yields to them). Peak memory:
measured at batch 1.</p>
<h2>{charts_title}</h2>{charts}
<h2>Pairs</h2>{_comparisons(result)}
<h2>Where the models differ most</h2>{_examples(result)}
<h2>What fitting changed</h2><ul>{conv or "<li>nothing</li>"}</ul>
</main></body></html>
"""
