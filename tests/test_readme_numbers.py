"""The benchmark figures of the README and the guides (docs/*.md) come from the committed JSON
(docs/bench/), through bench/readme_tables.py for the tables and the checks below for the figures
quoted in prose; each figure is checked on the page that holds it."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import readme_tables  # noqa: E402

README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"


def page(name: str) -> str:
    """A guide's text (docs/<name>.md), or the README's."""
    return README if name == "README" else (DOCS / f"{name}.md").read_text()


BENCH = ROOT / "docs" / "bench"


@pytest.mark.parametrize("which", sorted(readme_tables.TABLES))
def test_each_table_is_rendered_from_its_json(which):
    where = readme_tables.PAGES[which]
    assert readme_tables.render(which) in page(where), (
        f"{where}'s {which} table differs from `python3 bench/readme_tables.py {which}`"
    )


def _levels(model: str) -> dict[int, dict]:
    report = json.loads((BENCH / "serve_bench.json").read_text())
    return {lv["concurrency"]: lv for lv in report["models"][model]["framecast"]["levels"]}


def _bare(model: str) -> dict:
    report = json.loads((BENCH / "serve_bench.json").read_text())
    return report["models"][model]["bare"]["per_batch"]


def test_serve_bench_figures_in_the_prose():
    TEXT = page("performance")
    c = _bare("convlstm2d_next_frame")
    l2 = _bare("conv2d_lstm_next_frame")
    ceiling = max(v["clips_per_s"] for v in c.values())
    quoted = {
        f"ConvLSTM2D {ceiling:.1f} clips/s": True,
        f"one clip {c['1']['median_ms']:.1f} ms": True,
        f"Conv2D+LSTM {max(v['clips_per_s'] for v in l2.values()):,.0f} clips/s": True,
        f"one clip {l2['1']['median_ms']:.1f} ms": True,
    }
    lv = _levels("convlstm2d_next_frame")
    quoted[f"c=32 and c=64 reach only {lv[32]['rps'] / ceiling:.0%}".replace("%", " %")] = True
    quoted[f"and {lv[64]['rps'] / ceiling:.0%} of the bare ceiling".replace("%", " %")] = True
    p = _levels("convlstm2d_next_frame")[32]["phases_ms"]
    quoted[f"ConvLSTM2D decode {p['decode']:.1f} ms and encode {p['encode']:.1f} ms"] = True
    p = _levels("conv2d_lstm_next_frame")[32]["phases_ms"]
    quoted[f"Conv2D+LSTM {p['decode']:.1f} ms and {p['encode']:.1f} ms"] = True
    flat = " ".join(TEXT.split())
    missing = [q for q in quoted if " ".join(q.split()) not in flat]
    assert not missing, f"TEXT figures that match no JSON value: {missing}"


def test_frontend_figures_in_the_prose():
    TEXT = page("performance")
    report = json.loads((BENCH / "frontend.json").read_text())
    c, p = report["cases"]["classify"], report["cases"]["predict"]
    lit = c["litserve"]["req_s"]
    one, two = c["framecast_w1"], c["framecast_w2"]
    old = c["framecast_w1 FRAMECAST_CPU_THREADS=0"]
    npy, multipart = c["framecast_w1 body=npy"], c["framecast_w1 body=multipart"]

    def pct(x: float) -> str:
        return f"{x:.0%}".replace("%", " %")

    def fe(row: dict) -> str:
        return f"{row['front_end_cpu_ms_per_request']:.3f} ms"

    def cpu(row: dict) -> float:
        return row["server_cpu_ms_per_request"]

    def pc_lit_cpu() -> float:  # the run the keys issue's bar was set on: frontend_prev.json
        prev = json.loads((BENCH / "frontend_prev.json").read_text())["cases"]
        return prev["classify"]["litserve"]["server_cpu_ms_per_request"]

    def loop(row: dict) -> str:
        return f"{row['event_loop_cpu_ms_per_request']:.2f}"

    quoted = [
        f"answers {one['req_s'] / lit:.2f}× as many classify requests as LitServe",
        f"{one['req_s'] / c['litserve TF_NUM_INTRAOP_THREADS=1']['req_s']:.2f}× LitServe with one",
        f"{two['req_s'] / lit:.2f}× with `--workers 2`",
        f"is {fe(one)} for the JSON classify request (target ≤ 1.0 ms: "
        f"{'met' if one['front_end_cpu_ms_per_request'] <= 1.0 else 'not met'})",
        f"{fe(npy)} for the same clip as one `.npy` and {fe(multipart)} as multipart files",
        f"spends {loop(one)}, {loop(npy)} and {loop(multipart)} ms",
        f"predict answers {pct(p['framecast_w1']['share_of_bare'])} of the bare batched",
        f"LitServe {pct(p['litserve']['share_of_bare'])}, "
        f"{pct(p['litserve TF_NUM_INTRAOP_THREADS=1']['share_of_bare'])} with one intra-op",
        f"classify {one['req_s'] / old['req_s']:.2f}× the requests with one worker",
        f"predict {pct(p['framecast_w1']['share_of_bare'])} of the bare figure against "
        f"{pct(p['framecast_w1 FRAMECAST_CPU_THREADS=0']['share_of_bare'])}",
        f"queues ({c['litserve']['idle_cpu_cores']:.2f} of a core",
        f"two workers: {two['req_s'] / c['framecast_w2 FRAMECAST_CPU_THREADS=0']['req_s']:.2f}"
        "× and "
        f"{pct(p['framecast_w2']['share_of_bare'])} against "
        f"{pct(p['framecast_w2 FRAMECAST_CPU_THREADS=0']['share_of_bare'])}",
    ]
    keys, tree = c["framecast_w1 keys"], c["framecast_w1 tree=684a0c8"]
    layers = report["layers"]["us_per_request"]
    quoted += [
        f"framecast answered {keys['req_s']:.1f} classify requests/s at "
        f"{keys['server_cpu_ms_per_request']:.3f} ms of server CPU each, against "
        f"{one['server_cpu_ms_per_request']:.3f} ms with keys off: "
        f"{cpu(keys) / cpu(one):.2f}×",
        f"{tree['server_cpu_ms_per_request']:.3f} ms of server CPU per classify request against "
        f"today's {one['server_cpu_ms_per_request']:.3f} ms (today {cpu(one) / cpu(tree):.2f}× "
        "the CPU",
        f"and {tree['req_s'] / lit:.2f}× LitServe's requests against today's "
        f"{one['req_s'] / lit:.2f}×",
        f"about {abs(cpu(one) / cpu(tree) - 1):.0%} "
        f"{'more' if cpu(one) > cpu(tree) else 'less'} CPU".replace("%", " %"),
        f"the request log {layers['request_log']:.2f}, metrics {layers['metrics']:.2f}, the body "
        f"limit and deadline {layers['body_limit_and_deadline']:.2f}, compression "
        f"{layers['compression']:.2f}, the drain {layers['drain']:.2f}, API keys off "
        f"{layers['keys_off']:.2f}, a keys file with scopes {layers['keys_file_scoped']:.2f} and "
        f"with per-key limits {layers['keys_file_scoped_with_limits']:.2f}; "
        f"{report['layers']['all_layers_keys_off_us']:.2f} µs for all of them",
        f"LitServe's CPU per request was {pc_lit_cpu():.2f} ms; it was "
        f"{c['litserve']['server_cpu_ms_per_request']:.2f} ms here",
    ]
    prev = json.loads((BENCH / "frontend_prev.json").read_text())["cases"]
    pc, p1 = prev["classify"], prev["classify"]["framecast_w1"]
    quoted += [
        f"per request {pc['litserve']['server_cpu_ms_per_request']:.2f} ms there, "
        f"{c['litserve']['server_cpu_ms_per_request']:.2f} ms here",
        f"front end at {fe(p1)} (target "
        f"{'met' if p1['front_end_cpu_ms_per_request'] <= 1.0 else 'not met'} there), classify at "
        f"{p1['req_s'] / pc['litserve']['req_s']:.2f}× LitServe and predict at "
        f"{pct(prev['predict']['framecast_w1']['share_of_bare'])} of bare",
        f"CPU per request was {cpu(one) / cpu(c['litserve']):.2f} of LitServe's in this run and "
        f"{cpu(p1) / cpu(pc['litserve']):.2f} in the run before",
    ]
    flat = " ".join(TEXT.split())
    missing = [q for q in quoted if " ".join(q.split()) not in flat]
    assert not missing, f"TEXT figures that match no JSON value: {missing}"


def test_two_processes_each_of_today_and_684a0c8_in_the_prose():
    """docs/performance.md's comparison of today's front end with 684a0c8's, two server
    processes of each in one run, from docs/bench/frontend_head_vs_684a0c8.json (with a row of
    Python's own GC threshold), the run before (…_prev.json) and the write coalescing tried
    (frontend_write_coalescing.json)."""
    TEXT = page("performance")

    def cpu(r: dict) -> float:
        return r["server_cpu_ms_per_request"]

    def lp(r: dict) -> float:
        return r["event_loop_cpu_ms_per_request"]

    def compared(name: str) -> tuple[dict, float, float]:
        c = json.loads((BENCH / name).read_text())["cases"]["classify"]
        a, b = c["framecast_w1"], c["framecast_w1 tree=head-b"]
        old = [c["framecast_w1 tree=684a0c8"], c["framecast_w1 tree=684-b"]]
        ratio = (cpu(a) + cpu(b)) / (cpu(old[0]) + cpu(old[1]))
        more_us = ((lp(a) + lp(b)) - (lp(old[0]) + lp(old[1]))) / 2 * 1000
        return c, ratio, more_us

    c, ratio, more_us = compared("frontend_head_vs_684a0c8.json")
    a, b = c["framecast_w1"], c["framecast_w1 tree=head-b"]
    old = [c["framecast_w1 tree=684a0c8"], c["framecast_w1 tree=684-b"]]
    gc700 = c["framecast_w1 FRAMECAST_GC_THRESHOLD=0"]
    _, prev_ratio, prev_us = compared("frontend_head_vs_684a0c8_prev.json")
    quoted = [
        f"{cpu(a):.3f} and {cpu(b):.3f} ms of server CPU per request today against "
        f"{cpu(old[0]):.3f} and {cpu(old[1]):.3f} ms at 684a0c8",
        f"{a['req_s']:.1f} and {b['req_s']:.1f} requests/s against {old[0]['req_s']:.1f} and "
        f"{old[1]['req_s']:.1f}",
        f"the event loop {lp(a):.3f} and {lp(b):.3f} ms against {lp(old[0]):.3f} and "
        f"{lp(old[1]):.3f}",
        f"today's front end costs {ratio:.2f}× that release's CPU per classify request, about "
        f"{abs(more_us):.0f} µs {'more' if more_us > 0 else 'less'} in the event loop",
        f"the run before measured {prev_ratio:.2f}× and {prev_us:.0f} µs",
        f"today's front end was {a['front_end_cpu_ms_per_request']:.3f} and "
        f"{b['front_end_cpu_ms_per_request']:.3f} ms (within the target)",
        f"{gc700['gc_us_per_request']:.1f} µs a request in garbage-collector passes at Python's "
        f"threshold against {a['gc_us_per_request']:.2f} µs",
    ]
    assert max(a["front_end_cpu_ms_per_request"], b["front_end_cpu_ms_per_request"]) <= 1.0
    assert gc700["gc_us_per_request"] > 10 * a["gc_us_per_request"]
    tried = json.loads((BENCH / "frontend_write_coalescing.json").read_text())
    w, w2 = (tried[k]["cases"]["classify"] for k in ("held_to_turn_end", "sent_with_body"))
    off = "framecast_w1 FRAMECAST_COALESCE_WRITES=false"
    saved = (lp(w[off]) - lp(w["framecast_w1"])) * 1000
    quoted.append(f"it saved about {saved:.0f} µs of the event loop per classify request")
    quoted.append(
        f"the event loop spent {lp(w2['framecast_w1']):.3f} and "
        f"{lp(w2['framecast_w1 tree=head-b']):.3f} ms a request against {lp(w2[off]):.3f} ms"
    )
    flat = " ".join(TEXT.split())
    missing = [q for q in quoted if " ".join(q.split()) not in flat]
    assert not missing, f"TEXT figures that match no JSON value: {missing}"


def test_gil_copies_figures_in_the_prose():
    TEXT = page("performance")
    g = json.loads((BENCH / "gil_copies.json").read_text())
    alone, busy = g["alone_ms"], g["beside_busy_thread_ms"]
    quoted = (
        f"takes {alone['np.stack']:.3f} ms by `np.stack` and "
        f"{alone['bytes.join (stacked)']:.3f} ms by `stacked` alone, and "
        f"{busy['np.stack']:.1f} ms against {busy['bytes.join (stacked)']:.3f} ms beside one busy"
    )
    assert " ".join(quoted.split()) in " ".join(TEXT.split())


def test_ray_start_figures_in_the_ray_docs():
    """docs/ray.md's start-up times come from docs/bench/ray_start.json
    (bench/ecosystem/ray_start.py)."""
    report = json.loads((BENCH / "ray_start.json").read_text())
    runs = report["runs"]

    def span(key: str) -> str:
        values = [r[key] for r in runs]
        return f"{min(values):.1f}–{max(values):.1f} s"

    quoted = (
        f"the port opened after {span('port_open_s')} and `/readyz` answered 200 after "
        f"{span('ready_s')}, in {report['ready_within_180_s']} of {report['of']} runs; SIGTERM "
        f"then stopped it (Serve and the local Ray) in {span('stop_s')}"
    )
    docs = (BENCH.parent / "ray.md").read_text()
    assert " ".join(quoted.split()) in " ".join(docs.split())


def slow_clients_sentence(report: dict) -> str:
    """docs/reliability.md's sentence on bench/reliability/slow_clients.py, from its JSON."""
    a, b = report["normal_alone"], report["normal_during_slow"]
    s, logged = report["slow_connections"], report["server_log"]
    return (
        f"alone, {a['p50_ms']:.2f} ms median and {a['p99_ms']:.2f} ms p99 over {a['requests']} "
        f"requests; beside the slow connections, {b['p50_ms']:.2f} ms and {b['p99_ms']:.2f} ms "
        f"over {b['requests']}, {b['error_count']} failed. The server answered "
        f"{s['answered_408']} slow connections 408 after {s['held_s_median']:.1f} s (median; at "
        f"most {s['held_s_max']:.1f} s), {s['open_at_end']} replacements were open at the end, "
        f"and the log held {logged['tracebacks']} tracebacks."
    )


def test_ray_tuning_figures_in_the_ray_docs():
    """docs/ray.md's FRAMECAST_RAY_SERVE_TUNING figures come from bench/streams/ray_tuning.py's
    JSON: what the settings save, and carry against window with them and without."""
    text = " ".join(page("ray").split())
    report = json.loads((BENCH / "ray_tuning.json").read_text())
    saved = report["tuned_over_default"].values()
    c = report["carry_over_window"]

    def pair(front: str, n: int) -> str:
        on, off = (c[f"{front}, {n} streams, tuning {t}"] for t in ("on", "off"))
        return f"{on:.3g}× and {off:.3g}×"

    quoted = [
        f"with them a frame cost {min(saved):.2f}–{max(saved):.2f}× the server CPU",
        f"behind Serve's proxy {pair('proxy', 1)} for one stream, {pair('proxy', 32)[:-1]}",
        f"with direct ingress {pair('direct ingress', 1)} for one stream, "
        f"{pair('direct ingress', 32)[:-1]}",
    ]
    missing = [q for q in quoted if q not in text]
    assert not missing, f"docs/ray.md figures that match no JSON value: {missing}"
    assert all(v < 1 for v in saved)  # "what they save": less CPU in every case measured
    assert {r["streams"] for r in report["rows"]} == {1, 32}


def test_ray_bench_table_and_figures_in_the_ray_docs():
    """docs/ray.md's Ray-beside-the-plain-server table is ray_bench.py --table's, and its prose
    figures come from the same JSON."""
    sys.path.insert(0, str(ROOT / "bench" / "ecosystem"))
    import ray_bench

    report = json.loads((BENCH / "ray_bench.json").read_text())
    text = page("ray")
    assert ray_bench.table(report) in text
    runs = {r["label"]: r for r in report["runs"]}
    one, two = runs["Ray Serve, 1 replica per model"], runs["Ray Serve, 2 replicas per model"]
    gain = round(100 * (two["requests_per_s"] / one["requests_per_s"] - 1))
    p99 = "lower" if two["p99_ms"] < one["p99_ms"] else "higher"
    flat = " ".join(text.split())
    assert f"a second replica per model gives {gain:+d} % req/s and a {p99} p99" in flat
    assert f"and they start in {two['ready_s']:.0f} s" in flat
    assert all(r["non_2xx"] == 0 for r in report["runs"])


def test_slow_client_figures_in_the_reliability_docs():
    report = json.loads((BENCH / "slow_clients.json").read_text())
    assert report["passed"]
    docs = (BENCH.parent / "reliability.md").read_text()
    assert " ".join(slow_clients_sentence(report).split()) in " ".join(docs.split())


def soak_faults_sentence(f: dict) -> str:
    """The reliability guide's sentence on the fault run, from docs/bench/soak_faults.json."""
    e = f["events"]
    slow, causes = e["slow_clients"], f["failed_by_cause"]
    return (
        f"{f['requests_sent']:,} requests, {f['answered_as_expected']:,} answered as expected "
        f"(the right answer, or a 4xx for the malformed ones), {f['told_to_retry_503']} told to "
        f"retry, {causes['killed_worker_in_flight']} failed in flight on the killed worker "
        f"(back after {e['kill']['back_after_s']:.1f} s), {causes['lost']} lost; p99 "
        f"{f['p99_ms']:.1f} ms, {f['p99_ms_steady_before_faults']:.1f} ms before the faults and "
        f"{f['p99_ms_during_reload_other_models']:.1f} ms for the other models while "
        f"`{e['reload']['model']}` reloaded ({e['reload']['until_s'] - e['reload']['at_s']:.1f} "
        f"s); {e['vanished_clients']} clients that vanished mid-body each one INFO line, "
        f"{slow['answered_408']} slow connections answered 408; RSS of the supervisor and its "
        f"workers {f['rss_mb']['start']:,.1f} MB at the start, {f['rss_mb']['end']:,.1f} MB at "
        f"the end; {f['server_log']['tracebacks']} tracebacks; exit code "
        f"{f['server_exit_code']} after SIGTERM"
    )


def test_fault_run_figures_in_the_reliability_guide():
    TEXT = page("reliability")
    f = json.loads((BENCH / "soak_faults.json").read_text())
    assert f["passed"]
    assert " ".join(soak_faults_sentence(f).split()) in " ".join(TEXT.split())


def perf_analyzer_table(report: dict) -> str:
    """The clients guide's perf_analyzer table, from docs/bench/perf_analyzer.json."""
    lines = [
        "| model | protocol | concurrency | infer/s | p50 | p99 | server queue | compute input "
        "| compute infer | compute output |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model, by_protocol in report["models"].items():
        for protocol, rows in by_protocol.items():
            for r in rows:
                ms = [
                    f"{r[k]:.2f} ms"
                    for k in ("p50_ms", "p99_ms", "server_queue_ms", "server_compute_input_ms",
                              "server_compute_infer_ms", "server_compute_output_ms")
                ]  # fmt: skip
                cells = [model, protocol, str(r["concurrency"]), f"{r['infer_per_s']:.1f}", *ms]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_perf_analyzer_table_in_the_clients_guide():
    TEXT = page("clients")
    report = json.loads((BENCH / "perf_analyzer.json").read_text())
    assert all(set(by) == {"http", "grpc"} for by in report["models"].values()), "both protocols"
    assert perf_analyzer_table(report) in TEXT


def _card(*parts: str) -> dict:
    return json.loads((ROOT / "models" / Path(*parts) / "card.json").read_text())


def test_the_equal_budget_comparison_in_the_prose_is_the_cards():
    """The models guide's equal-budget comparison (per-step curves, the 10→10 figures, the clips and
    the parameters) is read from the served ConvLSTM2D's card and the card of the finished
    Conv2D+LSTM run committed beside its resume state; the budgets are equal within 5 % and
    the parameters within 10 %."""
    TEXT = page("models")
    conv = _card("convlstm2d_next_frame")
    dense = _card("resume", "conv2d_lstm_bf16")
    text = " ".join(TEXT.split())
    for card in (conv, dense):
        steps = card["metrics"]["rollout"]["per_step"]["mse_per_frame"]
        assert ", ".join(f"{v:.1f}" for v in steps) in text, card["name"]
    a, b = (c["metrics"]["rollout"]["mse_per_frame"] for c in (conv, dense))
    assert f"**{a:.1f} against {b:.1f}**" in text
    clips = {c["training"]["clips_seen"] for c in (conv, dense)}
    assert len(clips) == 1 and f"**{clips.pop():,} clips each**" in text
    pa, pb = conv["params"], dense["params"]
    assert abs(pa - pb) / max(pa, pb) < 0.10
    assert f"{abs(pa - pb) / max(pa, pb) * 100:.1f} % apart" in text


def test_rollout_cost_figures_in_the_prose():
    """horizon=10 against horizon=1 and against the sliding window, from the rollout bench."""
    TEXT = page("performance")
    text = " ".join(TEXT.split())
    conv = json.loads((BENCH / "rollout_bench.json").read_text())
    sv = conv["serving"]
    carried = sv["carried_state"]
    assert (
        f"{carried['median_ms']:.1f} ms against {sv['sliding_window']['median_ms']:.1f} ms" in text
    )
    assert (
        f"{carried['horizon_cost']:.2f}× its `horizon=1` ({carried['horizon_1_median_ms']:.1f} ms)"
        in text
    )
    assert f"{conv['speedup']['evaluation']:.2f}× the clips/s" in text
    dense = json.loads((BENCH / "rollout_bench_conv2d_lstm.json").read_text())
    c = dense["serving"]["carried_state"]
    assert (
        f"`horizon=10` is {c['median_ms']:.1f} ms, {c['horizon_cost']:.2f}× its `horizon=1` "
        in text
    )
    assert f"({c['horizon_1_median_ms']:.1f} ms)" in text


def test_horizon_cost_through_the_service_in_the_prose():
    TEXT = page("performance")
    report = json.loads((BENCH / "horizon_cost.json").read_text())
    text = " ".join(TEXT.split())
    k = report["horizon"]
    for name, label in (
        ("conv2d_lstm_next_frame", "Conv2D+LSTM"),
        ("convlstm2d_next_frame", "ConvLSTM2D"),
    ):
        r = report["models"][name]
        one, many = r["horizon_1_median_ms"], r[f"horizon_{k}_median_ms"]
        assert (
            f"{r['cost']:.2f}× `horizon=1` on the {label} ({many:.1f} ms against {one:.1f} ms)"
            in text
            or (f"{r['cost']:.2f}× on the {label} ({many:.1f} ms against {one:.1f} ms)" in text)
        ), label


def test_stream_past_context_figures_in_the_prose():
    """The ratios and the drift quoted under the past-context table come from its JSON."""
    TEXT = page("streams")
    report = json.loads((BENCH / "stream_past_context.json").read_text())
    by = {r["model"]: r for r in report["results"]}
    for name, label in (
        ("convlstm2d_next_frame", "ConvLSTM2D"),
        ("conv2d_lstm_next_frame", "Conv2D+LSTM"),
    ):
        ms = by[name]["ms_per_frame"]
        assert f"{ms['window'] / ms['carry']:.1f}× " in TEXT, label
    curve = by["convlstm2d_next_frame"]["per_frame"]["carry"]
    assert f"({curve[0]:.0f} → {curve[-1]:.0f})" in TEXT
    assert f"on {report['results'][0]['streams']} held-out 30-frame streams" in TEXT


def test_stream_scale_ratios_in_the_prose():
    TEXT = page("streams")
    report = json.loads((BENCH / "stream_scale.json").read_text())

    def span(name: str) -> str:
        values = report["ratios"][name]
        return f"{min(values):.2f}–{max(values):.2f}×"

    cpu = {w: [r["server_cpu_ms_per_frame"] for r in rows] for w, rows in report["ways"].items()}
    folder = [f / m for f, m in zip(cpu["folder"], cpu["memory"])]
    quoted = [
        f"costs a process {span('redis_one_over_memory')} the server CPU",
        f"one Redis on this one 2-core machine cost {span('redis_over_memory')} one process",
        f"the same two processes cost {span('redis_sticky_over_memory')}",
        f"on the same machine cost {min(folder):.2f}–{max(folder):.2f}×",
        f"a carried stream costs {span('ray_carry_over_window')}",
        f"and {span('ray_direct_carry_over_window')} with direct ingress",
    ]
    at = [r["streams"] for r in report["ways"]["redis"]].index(32)
    alt, sticky = report["ways"]["redis"][at], report["ways"]["redis-sticky"][at]
    prev = json.loads((BENCH / "stream_scale_prev.json").read_text())  # the run before

    def span_prev(name: str) -> str:
        values = prev["ratios"][name]
        return f"{min(values):.2f}–{max(values):.2f}×"

    quoted += [
        f"(the run before had {span_prev('redis_over_memory')})",
        f"{report['ways']['memory'][at]['server_cpu_ms_per_frame']:.2f} ms a frame at 32 streams "
        f"here, {prev['ways']['memory'][at]['server_cpu_ms_per_frame']:.2f} ms in the run before",
        f"{span('redis_sticky_over_memory')} here",
        f"and {span_prev('redis_sticky_over_memory')} in the run before",
    ]
    # the lone stream rerun beside this run (one level, no Ray)
    rerun = json.loads((BENCH / "stream_scale_rerun_1_stream.json").read_text())
    assert [r["streams"] for r in rerun["ways"]["redis"]] == [1]
    quoted.append(
        f"had {rerun['ratios']['redis_over_memory'][0]:.2f}× alternating and "
        f"{rerun['ratios']['redis_sticky_over_memory'][0]:.2f}× by stream, against "
        f"{report['ratios']['redis_over_memory'][0]:.2f}× and "
        f"{report['ratios']['redis_sticky_over_memory'][0]:.2f}× here"
    )
    # the rounds behind the medians at 32 streams, and Ray's ratio at each level, both runs
    for way in ("redis", "redis-sticky"):
        rounds = report["ways"][way][at]["server_cpu_ms_per_frame_per_round"]
        quoted.append(", ".join(f"{v:.2f}" for v in rounds[:-1]) + f" and {rounds[-1]:.2f}")
    ray, ray_prev = (
        report["ratios"]["ray_carry_over_window"],
        prev["ratios"]["ray_carry_over_window"],
    )
    quoted += [
        f"met for a lone stream ({ray[0]:.3f}×) and missed at 32 and 128 streams ({ray[1]:.3f}× "
        f"and {ray[2]:.3f}×)",
        f"({ray_prev[0]:.3f}× for the lone stream, {ray_prev[1]:.3f}× and {ray_prev[2]:.3f}× at 32 "
        "and 128)",
    ]
    assert ray[0] <= 0.5 < min(ray[1:]) and ray_prev[0] > 0.5 >= max(ray_prev[1:])  # as said
    fps = {
        w: [r["frames_s"] for r in report["ways"][w][1:]] for w in ("ray-direct-carry", "ray-carry")
    }
    quoted.append(
        "frames/s are {:.0f} and {:.0f} at 32 and 128 streams, against {:.0f} and {:.0f}".format(
            *fps["ray-direct-carry"], *fps["ray-carry"]
        )
    )
    assert prev["targets_met"]["redis_sticky_over_memory"]  # "under the bar ... both times"
    quoted.append(  # why alternating costs more: its batches (each server's /metrics)
        f"{alt['mean_batch']:.1f} clips a model call when the frames alternate against "
        f"{sticky['mean_batch']:.1f} by stream ({alt['model_calls_per_s']:.0f} against "
        f"{sticky['model_calls_per_s']:.0f} model calls a second)"
    )
    flat = " ".join(TEXT.split())
    missing = [q for q in quoted if " ".join(q.split()) not in flat]
    assert not missing, f"TEXT figures that match no JSON value: {missing}"
    met = report["targets_met"]
    assert ("over the issue's bar of 1.5× at every level" in flat) == (
        all(v > 1.5 for v in report["ratios"]["redis_over_memory"])
    )
    assert ("the same two processes cost" in flat and "under the bar at every level" in flat) == (
        met["redis_sticky_over_memory"]
    )
    assert met["redis_one_over_memory"] == all(
        v <= 1.5 for v in report["ratios"]["redis_one_over_memory"]
    )


def test_the_evaluation_job_over_held_out_clips_in_the_readme_and_its_page():
    """The README's comparison quotes both jobs' verdicts from their JSON; docs/evaluate.md has
    the table and the verdict bench/readme_tables.py renders from it."""
    report = json.loads((BENCH / "evaluate_mnist.json").read_text())
    text = " ".join(README.split())
    page = (ROOT / "docs" / "evaluate.md").read_text()
    for job in report["jobs"].values():
        assert " ".join(job["result"]["verdict"].split()) in text
    assert f"on {report['clips']:,} held-out Moving MNIST clips" in text
    # the script that made it, recorded at its path before or after the bench regroup
    assert re.search(r"python3 bench/(evaluation/)?evaluate_mnist\.py ", report["command"])
    assert readme_tables.render("evaluate") in page
    assert f"> {report['jobs']['next_frame']['result']['verdict']}" in page


def test_evaluation_load_figures_in_the_evaluate_guide():
    """docs/evaluate.md's online p99 with and without a job, from docs/bench/evaluate_load.json."""
    r = json.loads((BENCH / "evaluate_load.json").read_text())
    c, v = r["models"]["conv2d_lstm_next_frame"], r["models"]["convlstm2d_next_frame"]

    def ms(row: dict, phase: str) -> str:
        return f"{row[phase]['p99_ms']:.1f} ms"

    quoted = [
        f"p99 {ms(c, 'without_job')} without a job and {ms(c, 'with_job')} with one "
        f"({c['p99_ratio']:.2f}×)",
        f"ConvLSTM2D {ms(v, 'without_job')} and {ms(v, 'with_job')} ({v['p99_ratio']:.2f}×)",
        f"all online requests {r['all']['p99_ratio']:.2f}×",
        f"the job went on at {r['job_clips_per_s_under_load']:.1f} clips/s",
        f"at most {r['target_p99_ratio']}× without",
    ]
    assert r["non_200"] == 0 and r["all"]["met"]
    assert "none failed" in page("evaluate")
    flat = " ".join(page("evaluate").split())
    missing = [q for q in quoted if " ".join(q.split()) not in flat]
    assert not missing, f"figures that match no JSON value: {missing}"


def test_a_frontend_row_of_another_commit_is_labelled_with_it():
    assert readme_tables._frontend_label("framecast_w1 tree=684a0c8").startswith(
        "framecast at 684a0c8"
    )
    assert readme_tables._frontend_label("framecast_w1 keys") == "framecast, `keys`"


def gil_and_direct_quotes() -> list[str]:
    """The figures docs/performance.md quotes from this round's runs:
    FRAMECAST_GIL_SWITCH_INTERVAL_MS at 0.5, 1, 2 and 5 ms (frontend_gil_switch.json),
    FRAMECAST_DIRECT_CALLS on and off
    (frontend_direct_calls.json), both at 0.5 ms as tried then, and two full runs of the bench with
    0.5 ms in its plain rows and Python's 5 ms in its FRAMECAST_GIL_SWITCH_INTERVAL_MS=5 rows
    (frontend_gil_full_1.json, _2.json); each beside 684a0c8."""

    def load(name: str) -> dict:
        return json.loads((BENCH / name).read_text())["cases"]["classify"]

    def cpu(r: dict) -> float:
        return r["server_cpu_ms_per_request"]

    sw, dc = load("frontend_gil_switch.json"), load("frontend_direct_calls.json")
    at = {ms: sw[f"framecast_w1 FRAMECAST_GIL_SWITCH_INTERVAL_MS={ms}"] for ms in (1, 2, 5)}
    half, d1, off = (
        sw["framecast_w1"],
        dc["framecast_w1"],
        dc["framecast_w1 FRAMECAST_DIRECT_CALLS=false"],
    )
    d5, same = dc["framecast_w1 FRAMECAST_GIL_SWITCH_INTERVAL_MS=5"], dc["framecast_w1 tree=head-b"]
    quoted = [
        f"{half['req_s']:.1f} requests/s at 0.5 ms against {at[1]['req_s']:.1f} at 1 ms, "
        f"{at[2]['req_s']:.1f} at 2 ms and {at[5]['req_s']:.1f} at Python's 5 ms "
        f"({half['req_s'] / at[5]['req_s']:.2f}×), for {cpu(half):.3f} ms of server CPU per "
        f"request against {cpu(at[2]):.3f} and {cpu(at[5]):.3f} ms",
        f"{d1['req_s']:.1f} against {d5['req_s']:.1f} ({d1['req_s'] / d5['req_s']:.2f}×) and "
        f"{cpu(d1):.3f} against {cpu(d5):.3f} ms",
        f"{d1['req_s']:.1f} against {off['req_s']:.1f} requests/s with it off "
        f"({d1['req_s'] / off['req_s']:.2f}×), {cpu(d1):.3f} against {cpu(off):.3f} ms",
        f"two processes of the same code landed {same['req_s']:.1f} and {d1['req_s']:.1f}",
    ]
    fulls = [load(f"frontend_gil_full_{k}.json") for k in (1, 2)]
    five = "FRAMECAST_GIL_SWITCH_INTERVAL_MS=5"
    rows = []
    for f in fulls:
        a, b = f["framecast_w1"], f[f"framecast_w1 {five}"]
        a2, b2 = f["framecast_w2"], f[f"framecast_w2 {five}"]
        rows.append(
            f"{a['req_s'] / b['req_s']:.2f}× the requests for {cpu(a) / cpu(b):.2f}× the CPU "
            f"(two workers {a2['req_s'] / b2['req_s']:.2f}× and {cpu(a2) / cpu(b2):.2f}×)"
        )
    quoted.append(f"0.5 ms against 5 ms gave {rows[0]} in one and {rows[1]} in the other")
    today = []
    for f in fulls:
        b, old, lit = f[f"framecast_w1 {five}"], f["framecast_w1 tree=684a0c8"], f["litserve"]
        today.append(
            f"{b['req_s'] / lit['req_s']:.2f}× LitServe's requests and {cpu(b) / cpu(old):.2f}× "
            f"684a0c8's CPU per request"
        )
    quoted.append(
        f"framecast as it now comes answered {today[0]} in the first and {today[1]} in the second"
    )
    olds = [
        (load(n)["framecast_w1 tree=684a0c8"], load(n)[f"framecast_w1 {five}"])
        for n in ("frontend_gil_switch.json", "frontend_direct_calls.json")
    ]
    quoted.append(
        "and " + " and ".join(f"{cpu(b) / cpu(o):.2f}×" for o, b in olds) + " in the two runs above"
    )
    return quoted


def test_gil_switch_interval_and_direct_calls_in_the_prose():
    flat = " ".join(page("performance").split())
    missing = [q for q in gil_and_direct_quotes() if " ".join(q.split()) not in flat]
    assert not missing, f"TEXT figures that match no JSON value: {missing}"


def trims_and_gil_2ms_quotes() -> list[str]:
    """The figures docs/performance.md quotes from the hot-path trims' run beside 684a0c8 and
    LitServe (frontend_hot_path_trims.json), the 2 ms switch interval in a classify-only run
    (frontend_gil_2ms.json) and the third full run (frontend_gil_full_3.json: plain rows at
    2 ms, the rows marked =5 framecast as it comes)."""

    def load(name: str) -> dict:
        return json.loads((BENCH / name).read_text())["cases"]["classify"]

    def cpu(r: dict) -> float:
        return r["server_cpu_ms_per_request"]

    five = "FRAMECAST_GIL_SWITCH_INTERVAL_MS=5"
    t, g, f = (load(f"frontend_{n}.json") for n in ("hot_path_trims", "gil_2ms", "gil_full_3"))
    one, old, lit = t["framecast_w1"], t["framecast_w1 tree=684a0c8"], t["litserve"]
    two_ms, own = g["framecast_w1 FRAMECAST_GIL_SWITCH_INTERVAL_MS=2"], g["framecast_w1"]
    a, b = f["framecast_w1"], f[f"framecast_w1 {five}"]
    a2, b2 = f["framecast_w2"], f[f"framecast_w2 {five}"]
    return [
        f"{two_ms['req_s']:.1f} against {own['req_s']:.1f} requests/s at Python's 5 ms "
        f"({two_ms['req_s'] / own['req_s']:.2f}×) for {cpu(two_ms):.3f} against {cpu(own):.3f} ms",
        f"{a['req_s'] / b['req_s']:.2f}× the requests for {cpu(a) / cpu(b):.2f}× the CPU with one "
        f"worker and {a2['req_s'] / b2['req_s']:.2f}× for {cpu(a2) / cpu(b2):.2f}× with two",
        f"{one['req_s']:.1f} requests/s at {cpu(one):.3f} ms of server CPU each, against "
        f"684a0c8's {old['req_s']:.1f} at {cpu(old):.3f} ms ({cpu(one) / cpu(old):.2f}× its CPU, "
        f"{one['req_s'] / old['req_s']:.2f}× its requests), and {one['req_s'] / lit['req_s']:.2f}× "
        f"LitServe's {lit['req_s']:.1f}",
        f"it answered {b['req_s'] / f['litserve']['req_s']:.2f}× LitServe's requests at "
        f"{cpu(b) / cpu(f['framecast_w1 tree=684a0c8']):.2f}× 684a0c8's CPU per request",
    ]


def test_hot_path_trims_and_a_2ms_switch_interval_in_the_prose():
    flat = " ".join(page("performance").split())
    missing = [q for q in trims_and_gil_2ms_quotes() if " ".join(q.split()) not in flat]
    assert not missing, f"TEXT figures that match no JSON value: {missing}"


def test_where_a_ray_frames_cpu_goes_in_the_ray_docs():
    """docs/ray.md's process-by-process figures come from bench/streams/ray_where.py's two JSONs
    (Serve's proxy, direct ingress), its ratios from their own rows."""
    text = " ".join(page("ray").split())
    proxy, direct = (
        json.loads((BENCH / f"ray_where{s}.json").read_text()) for s in ("", "_direct")
    )
    assert (proxy["front"], direct["front"]) == ("proxy", "direct ingress")

    def row(report: dict, mode: str, n: int) -> dict:
        (r,) = (r for r in report["rows"] if (r["mode"], r["streams"]) == (mode, n))
        assert r["frames"] > 0 and not any(r["non_2xx_per_round"]), r  # every frame answered
        return r

    def total(report: dict, mode: str, n: int) -> float:
        return row(report, mode, n)["cpu_ms_per_frame"]

    def part(report: dict, mode: str, n: int, role: str) -> str:
        return f"{row(report, mode, n)['cpu_ms_per_frame_by_role'][role]:.1f} ms"

    quoted = []
    for report in (proxy, direct):
        for n in (1, 32):
            c, w = total(report, "carry", n), total(report, "window", n)
            assert report["carry_over_window"][str(n)] == round(c / w, 3)
            quoted.append(f"{c:.1f} against {w:.1f} ms")
            quoted.append(f"({c / w:.3f}×)")
    quoted += [
        f"Serve's proxy actor {part(proxy, 'carry', 1, 'proxy')} and the ingress replicas "
        f"{part(proxy, 'carry', 1, 'ingress')[:-3]} ms of it",
        f"({part(proxy, 'window', 1, 'proxy')[:-3]} and {part(proxy, 'window', 1, 'ingress')})",
        f"the model replica {part(proxy, 'carry', 1, 'model')} against "
        f"{part(proxy, 'window', 1, 'model')}",
        f"the ingress {part(proxy, 'carry', 32, 'ingress')[:-3]} against "
        f"{part(proxy, 'window', 32, 'ingress')}",
        f"the model {part(proxy, 'carry', 32, 'model')[:-3]} against "
        f"{part(proxy, 'window', 32, 'model')}",
        f"(the ingress {part(direct, 'carry', 1, 'ingress')} for one carried stream instead of "
        f"{part(proxy, 'carry', 1, 'ingress')[:-3]})",
    ]
    before = json.loads((BENCH / "ray_where_grpc_4mib.json").read_text())
    (bad,) = (r for r in before["rows"] if (r["mode"], r["streams"]) == ("carry", 32))
    quoted.append(
        f"answered {bad['non_2xx']} of {bad['frames']:,} carried frames at 32 streams 500"
    )
    missing = [q for q in quoted if " ".join(q.split()) not in text]
    assert not missing, f"docs/ray.md figures that match no JSON value: {missing}"
    ratios = [
        total(r, "carry", n) / total(r, "window", n) for r in (proxy, direct) for n in (1, 32)
    ]
    assert all(v <= 0.5 for v in ratios[2:])  # "met with direct ingress"
    assert any(v > 0.5 for v in ratios[:2])  # "and missed behind Serve's proxy"
