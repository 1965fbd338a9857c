"""The benchmark tables of the guides (docs/*.md), rendered from the committed JSON (never typed
by hand).

    python3 bench/readme_tables.py            # print every table
    python3 bench/readme_tables.py serve      # only docs/bench/serve_bench.json's

``tests/test_readme_numbers.py`` checks that each table printed here is in its page (PAGES)
verbatim, so a figure in the docs always comes from a committed JSON written by a committed
script.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "docs" / "bench"
LABELS = {"convlstm2d_next_frame": "ConvLSTM2D", "conv2d_lstm_next_frame": "Conv2D+LSTM"}


def _ms(v: float) -> str:
    return f"{v:.1f} ms" if v < 100 else f"{v:,.0f} ms"


def serve_table(report: dict) -> str:
    """bench/serving/serve_bench.py: framecast against the common FastAPI server, per
    concurrency."""
    rows = [
        "| model | concurrency | baseline req/s (p50) | framecast req/s (p50) "
        "| framecast / baseline | mean batch |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, m in report["models"].items():
        base = {lv["concurrency"]: lv for lv in m["baseline"]["levels"]}
        for lv in m["framecast"]["levels"]:
            b = base[lv["concurrency"]]
            rows.append(
                f"| {LABELS.get(name, name)} | {lv['concurrency']} | {b['rps']:.1f} "
                f"({_ms(b['p50_ms'])}) | {lv['rps']:.1f} ({_ms(lv['p50_ms'])}) | "
                f"{lv['rps'] / b['rps']:.1f}× | {lv['mean_batch']:.1f} |"
            )
    return "\n".join(rows)


def _frontend_label(key: str) -> str:
    base, _, setting = key.partition(" ")
    if base == "litserve":
        label = "LitServe 0.2.19"
    elif base == "framecast_w1" and setting.startswith("tree="):
        return f"framecast at {setting.removeprefix('tree=')} (an earlier commit, same run)"
    elif base == "framecast_w1":
        label = "framecast"
    else:
        label = base.replace("framecast_w", "framecast --workers ")
    return f"{label}, `{setting}`" if setting else label


def frontend_table(report: dict) -> str:
    """bench/frontend/frontend.py: req/s and server CPU per request, against LitServe and the bare
    model."""
    rows = [
        "| case | server | req/s | × LitServe | p50 | p99 | non-2xx | server CPU / request "
        "| event loop / request | front end / request | share of bare |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case, row in report["cases"].items():
        b = row["bare"]
        rows.append(
            f"| {case} ({row['model']}) | bare `predict_on_batch`, batch {b['batch']}"
            + (f", TF pools {b['tf_pools']}" if "tf_pools" in b else "")
            + " | "
            f"{b['clips_s']:,.1f} clips/s | | | | | {b['cpu_ms_per_clip']:.2f} ms / clip | | | |"
        )
        lit = row.get("litserve", {}).get("req_s")  # LitServe as it comes (its defaults)
        for key, r in row.items():
            if not (isinstance(r, dict) and "req_s" in r):
                continue
            ratio = f"{r['req_s'] / lit:.2f}×" if lit and "body=" not in key else ""
            loop = r.get("event_loop_cpu_ms_per_request")
            loop_s = f"{loop:.2f} ms" if loop is not None else ""
            rows.append(
                f"| {case} | {_frontend_label(key)} | {r['req_s']:.1f} | {ratio} | "
                f"{_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {r['non_2xx']} | "
                f"{r['server_cpu_ms_per_request']:.2f} ms | {loop_s} | "
                f"{r['front_end_cpu_ms_per_request']:.2f} ms | {r['share_of_bare']:.0%} |"
            )
    return "\n".join(rows)


def past_context_table(report: dict) -> str:
    """bench/streams/stream_past_context.py: a stream past the context, the state carried or a
    window."""
    rows = [
        "| model | way | MSE/frame, frames 11–30 | frame 11 → frame 30 | model time / frame |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in report["results"]:
        for way in ("carry", "window"):
            curve = r["per_frame"][way]
            rows.append(
                f"| {LABELS.get(r['model'], r['model'])} | {way} | "
                f"{r['mse_per_frame'][way]:.1f} | {curve[0]:.1f} → {curve[-1]:.1f} | "
                f"{r['ms_per_frame'][way]:.1f} ms |"
            )
    return "\n".join(rows)


def stream_table(report: dict) -> str:
    """bench/streams/stream_bench.py: streamed frames against 10-frame window requests, same run."""
    rows = [
        "| clients | way | frames/s | p50 | p99 | server CPU / frame | stream / window CPU |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c, level in report["levels"].items():
        for way in ("stream", "window"):
            r = level[way]
            ratio = f"{level['stream_over_window_cpu']:.2f}" if way == "stream" else ""
            rows.append(
                f"| {c} | {way} | {r['frames_s']:.1f} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} "
                f"| {r['server_cpu_ms_per_frame']:.1f} ms | {ratio} |"
            )
    return "\n".join(rows)


SCALE_WAYS = {
    "memory": "one process, memory",
    "redis-one": "one process, Redis",
    "folder": "two processes, one folder",
    "redis": "two processes, one Redis",
    "redis-sticky": "two processes, one Redis, by stream",
    "ray-carry": "Ray, 2 ingress, carry",
    "ray-window": "Ray, 2 ingress, window",
    "ray-direct-carry": "Ray, direct ingress, carry",
    "ray-direct-window": "Ray, direct ingress, window",
}


def stream_scale_table(report: dict) -> str:
    """bench/streams/stream_scale.py: a streamed frame's cost on each store, same run."""
    rows = [
        "| streams | where | frames/s | p50 | p99 | server CPU / frame | against | Redis "
        "round trips / frame | Redis KB / frame |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ways = report["ways"]
    for i, n in enumerate(m["streams"] for m in ways["memory"]):
        for way, label in SCALE_WAYS.items():
            if way not in ways:
                continue
            r = ways[way][i]
            base = way.replace("-carry", "-window") if way.endswith("-carry") else "memory"
            against = ""
            if way != "memory" and not way.endswith("-window"):
                ratio = r["server_cpu_ms_per_frame"] / ways[base][i]["server_cpu_ms_per_frame"]
                against = f"{ratio:.2f}× {'memory' if base == 'memory' else 'window'}"
            redis = "store_cpu_ms_per_frame" in r
            trips = f"{r['store_round_trips_per_frame']:.1f}" if redis else ""
            kb = (
                f"{(r['store_bytes_in_per_frame'] + r['store_bytes_out_per_frame']) / 1024:.0f}"
                if trips
                else ""
            )
            rows.append(
                f"| {n} | {label} | {r['frames_s']:.1f} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} "
                f"| {r['server_cpu_ms_per_frame']:.1f} ms | {against} | {trips} | {kb} |"
            )
    return "\n".join(rows)


def _card(*parts: str) -> dict:
    return json.loads((ROOT / "models" / Path(*parts) / "card.json").read_text())


def headline_table(_: dict) -> str:
    """The README's headline figures, each from its committed JSON (linked)."""
    conv, dense = _card("convlstm2d_next_frame"), _card("resume", "conv2d_lstm_bf16")
    a, b = (c["metrics"]["rollout"]["mse_per_frame"] for c in (conv, dense))
    accs = [
        _card(n)["metrics"]["accuracy"] for n in ("conv2d_lstm_classify", "convlstm2d_classify")
    ]
    serve = json.loads((BENCH / "serve_bench.json").read_text())["models"]["convlstm2d_next_frame"]
    fc = {lv["concurrency"]: lv["rps"] for lv in serve["framecast"]["levels"]}
    base = {lv["concurrency"]: lv["rps"] for lv in serve["baseline"]["levels"]}
    front = json.loads((BENCH / "frontend.json").read_text())["cases"]["classify"]
    lead = front["framecast_w1"]["req_s"] / front["litserve"]["req_s"]
    streams = json.loads((BENCH / "stream_bench.json").read_text())["levels"]
    ratio = [lv["stream_over_window_cpu"] for lv in streams.values()]
    scale = json.loads((BENCH / "stream_scale.json").read_text())["ratios"]["redis_one_over_memory"]
    rows = [
        "| what | figure | from |",
        "| --- | --- | --- |",
        "| held-out 10→10 MSE/frame at equal training budgets, ConvLSTM2D against Conv2D+LSTM "
        f"(lower is better) | **{a:.1f}** against {b:.1f} | [card](models/convlstm2d_next_frame/"
        "card.json), [card](models/resume/conv2d_lstm_bf16/card.json) |",
        f"| direction-of-motion accuracy, both classifiers | {min(accs):.2%} and {max(accs):.2%} "
        "| [cards](models/convlstm2d_classify/card.json) |",
        "| ConvLSTM2D requests/s against FastAPI with `model.predict` per request, 32 clients "
        f"| {fc[32] / base[32]:.1f}× | [serve_bench.json](docs/bench/serve_bench.json) |",
        "| classify requests/s against LitServe, same model, same load "
        f"| {lead:.2f}× | [frontend.json](docs/bench/frontend.json) |",
        "| server CPU of a streamed frame against a 10-frame window request "
        f"| {min(ratio):.2f}–{max(ratio):.2f}× "
        "| [stream_bench.json](docs/bench/stream_bench.json) |",
        "| server CPU per frame with the streams in Redis against in memory "
        f"| {min(scale):.2f}–{max(scale):.2f}× "
        "| [stream_scale.json](docs/bench/stream_scale.json) |",
    ]
    return "\n".join(rows)


# the page of the docs each table is in (docs/<page>.md; "README" the README)
PAGES = {
    "serve": "performance",
    "frontend": "performance",
    "past_context": "streams",
    "streams": "streams",
    "stream_scale": "streams",
    "headline": "README",
    "evaluate": "evaluate",
}


def _ci(entry: dict, scale: float = 1.0, digits: int = 1) -> str:
    lo, hi = entry["ci95"]
    return f"{entry['mean'] * scale:.{digits}f} ({lo * scale:.{digits}f}–{hi * scale:.{digits}f})"


def _cost(cost: dict, timing: dict) -> str:
    flops = cost.get("flops_per_clip")
    mem = cost.get("peak_memory_bytes")
    return (
        f"{cost['params'] / 1e6:.2f} M | {flops / 1e9:.2f} G | "
        + (f"{mem / 1e6:.1f} MB" if mem else "–")
        + f" | {timing['model_ms']['p50']:.1f} ms |"
    )


def evaluate_table(report: dict) -> str:
    """bench/evaluation/evaluate_mnist.py: the bundled models' evaluation jobs, each model's row
    and the verdict of each job."""
    nf, cl = report["jobs"]["next_frame"]["result"], report["jobs"]["classify"]["result"]
    k = nf["holdout"]
    rows = [
        f"| model | clips | MSE/frame (95 % CI) | t+1 | t+{k} | SSIM | params | FLOPs/clip "
        "| peak memory/clip | model ms/clip (p50) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, m in nf["models"].items():
        mse = m["metrics"]["mse_per_frame"]
        steps = mse["per_step"]
        rows.append(
            f"| {name} | {nf['clips']:,} | {_ci(mse)} | {steps[0]['mean']:.1f} | "
            f"{steps[-1]['mean']:.1f} | {m['metrics']['ssim']['mean']:.3f} | "
            + _cost(m["cost"], m["timing"])
        )
    for name, m in cl["models"].items():
        acc = m["metrics"]["accuracy"]
        rows.append(
            f"| {name} | {cl['clips']:,} | accuracy {_ci(acc, 100.0, 2)} % | | | | "
            + _cost(m["cost"], m["timing"])
        )
    return "\n".join(rows) + f"\n\n> {nf['verdict']}\n>\n> {cl['verdict']}"


TABLES = {
    "serve": ("serve_bench.json", serve_table),
    "frontend": ("frontend.json", frontend_table),
    "past_context": ("stream_past_context.json", past_context_table),
    "streams": ("stream_bench.json", stream_table),
    "stream_scale": ("stream_scale.json", stream_scale_table),
    "headline": ("stream_scale.json", headline_table),  # reads its JSON files itself
    "evaluate": ("evaluate_mnist.json", evaluate_table),
}


def render(which: str) -> str:
    file, fn = TABLES[which]
    return fn(json.loads((BENCH / file).read_text()))


def main(argv: list[str]) -> int:
    for which in argv or list(TABLES):
        print(f"<!-- {which}: python3 bench/readme_tables.py {which} -->")
        print(render(which))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
