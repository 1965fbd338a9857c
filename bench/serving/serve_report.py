"""bench/serving/serve_bench.py's report: the targets of issue 5 checked, the printed table and the
PNG plot (drawn with Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TARGET_MODEL = "convlstm2d_next_frame"
LABELS = {"convlstm2d_next_frame": "ConvLSTM2D", "conv2d_lstm_next_frame": "Conv2D+LSTM"}


def targets(results: dict, rss_requests: int) -> list[dict]:
    out = []
    r = results["models"].get(TARGET_MODEL)
    if r is None:
        return out
    bare = r["bare"]
    fc = {lv["concurrency"]: lv for lv in r["framecast"]["levels"]}
    base = {lv["concurrency"]: lv for lv in r["baseline"]["levels"]} if r.get("baseline") else {}
    for c in (32, 64):
        if c not in fc:
            continue
        lv = fc[c]
        ceil = bare["ceiling_clips_per_s"]
        out.append(
            {
                "target": f"c={c}: framecast >= 80% of bare batched compute",
                "value": f"{lv['rps']:.1f} req/s vs {0.8 * ceil:.1f} (80% of {ceil:.1f})",
                "pass": lv["rps"] >= 0.8 * ceil,
            }
        )
        if c in base:
            b = base[c]["rps"]
            out.append(
                {
                    "target": f"c={c}: framecast >= 4x the common server",
                    "value": f"{lv['rps']:.1f} vs {4 * b:.1f} (4 x {b:.1f}) req/s",
                    "pass": lv["rps"] >= 4 * b,
                }
            )
        out.append(
            {"target": f"c={c}: zero errors", "value": str(lv["errors"]), "pass": lv["errors"] == 0}
        )
    if 1 in fc:
        limit = 1.2 * bare["one_clip_ms"] + 3.0
        out.append(
            {
                "target": "c=1: p50 <= 1.2 x bare one-clip + 3 ms",
                "value": f"{fc[1]['p50_ms']:.1f} ms vs {limit:.1f} ms (bare "
                f"{bare['one_clip_ms']:.1f} ms)",
                "pass": fc[1]["p50_ms"] <= limit,
            }
        )
    rc = r["framecast"].get("rss_check")
    if rc:
        ok = rc["peak_rss_mb"] <= 1.10 * rc["rss_after_warmup_mb"]
        note = "" if rc["requests"] >= rss_requests else f" (only {rc['requests']} sent)"
        out.append(
            {
                "target": f"peak RSS over {rc['requests']} requests within 10% of warm-up",
                "value": f"{rc['peak_rss_mb']:.0f} MB vs {rc['rss_after_warmup_mb']:.0f} MB "
                f"(+{100 * (rc['peak_rss_mb'] / rc['rss_after_warmup_mb'] - 1):.1f}%)" + note,
                "pass": ok,
            }
        )
    return out


def print_table(results: dict) -> None:
    print()
    hdr = (
        f"{'model':12s} {'server':9s} {'c':>3s} {'req/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s} "
        f"{'p99 ms':>8s} {'err':>4s} {'RSS MB':>7s} {'fc/base':>7s} {'batch':>5s}"
    )
    print(hdr)
    print("-" * len(hdr))
    for model, r in results["models"].items():
        base = (
            {lv["concurrency"]: lv for lv in r["baseline"]["levels"]} if r.get("baseline") else {}
        )
        for kind in ("baseline", "framecast"):
            if not r.get(kind):
                continue
            for lv in r[kind]["levels"]:
                c = lv["concurrency"]
                ratio = (
                    f"{lv['rps'] / base[c]['rps']:7.2f}"
                    if kind == "framecast" and c in base and base[c]["rps"]
                    else f"{'':7s}"
                )
                batch = f"{lv['mean_batch']:5.1f}" if lv.get("mean_batch") else f"{'':5s}"
                print(
                    f"{LABELS.get(model, model)[:12]:12s} {kind:9s} {c:3d} {lv['rps']:8.1f} "
                    f"{lv['p50_ms']:8.1f} {lv['p95_ms']:8.1f} {lv['p99_ms']:8.1f} "
                    f"{lv['errors']:4d} {lv['peak_rss_mb']:7.0f} {ratio} {batch}"
                )
        b = r["bare"]
        print(
            f"{LABELS.get(model, model)[:12]:12s} {'bare':9s}     ceiling "
            f"{b['ceiling_clips_per_s']:.1f} clips/s (batch {b['best_batch']}); one clip "
            f"{b['one_clip_ms']:.1f} ms"
        )
        fc = r.get("framecast") or {}
        for lv in fc.get("levels", []):
            if lv["phases_ms"]:
                ph = "  ".join(f"{k} {v:.1f}" for k, v in lv["phases_ms"].items())
                print(
                    f"{'':12s} framecast c={lv['concurrency']:<3d} Server-Timing means (ms): {ph}"
                )
    print()


def plot(results: dict, path: Path) -> None:
    """Throughput and latency per concurrency, one row per model (Pillow, no matplotlib)."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=14)
    except TypeError:
        font = ImageFont.load_default()
    models = list(results["models"])
    pw, ph, pad = 560, 330, 60
    img = Image.new("RGB", (2 * pw + 40, len(models) * (ph + 40) + 50), "white")
    d = ImageDraw.Draw(img)
    d.text(
        (20, 12),
        f"framecast vs common FastAPI server - {results['started']} - "
        f"{results['host']['cpus']} CPUs, {results['backend']}",
        fill="black",
        font=font,
    )
    colours = {"baseline": (200, 90, 60), "framecast": (40, 110, 190)}
    for row, model in enumerate(models):
        r = results["models"][model]
        y0 = 45 + row * (ph + 40)
        kinds = [k for k in ("baseline", "framecast") if r.get(k)]
        levels = [lv["concurrency"] for lv in r[kinds[-1]]["levels"]]
        for col, (metric, title, log) in enumerate(
            [
                ("rps", "req/s (dashed: bare batched ceiling)", False),
                ("p50_ms", "latency ms, log scale (bar p50, tick p99)", True),
            ]
        ):
            x0 = 20 + col * (pw + 10)
            d.rectangle([x0, y0, x0 + pw, y0 + ph], outline=(180, 180, 180))
            d.text(
                (x0 + 8, y0 + 6), f"{LABELS.get(model, model)}: {title}", fill="black", font=font
            )
            vals = [lv[metric] for k in kinds for lv in r[k]["levels"]]
            if metric == "p50_ms":
                vals += [lv["p99_ms"] for k in kinds for lv in r[k]["levels"]]
            ceiling = r["bare"]["ceiling_clips_per_s"] if metric == "rps" else None
            top = max([v for v in vals if v == v] + ([ceiling] if ceiling else []) + [1e-3])
            lo = min([v for v in vals if v == v and v > 0] + [1.0])
            gx0, gx1, gy0, gy1 = x0 + pad, x0 + pw - 15, y0 + 30, y0 + ph - 35

            def ypos(v, _top=top, _lo=lo, _log=log, _gy0=gy0, _gy1=gy1):
                if _log:
                    a, b = np.log10(max(_lo / 2, 1e-3)), np.log10(_top * 1.3)
                    f = (np.log10(max(v, 1e-3)) - a) / (b - a)
                else:
                    f = v / (_top * 1.15)
                return _gy1 - f * (_gy1 - _gy0)

            for i in range(5):  # axis labels
                if log:
                    a, b = np.log10(max(lo / 2, 1e-3)), np.log10(top * 1.3)
                    v = 10 ** (a + (b - a) * i / 4)
                else:
                    v = top * 1.15 * i / 4
                y = ypos(v)
                d.line([gx0, y, gx1, y], fill=(235, 235, 235))
                d.text(
                    (x0 + 4, y - 7),
                    f"{v:,.0f}" if v >= 10 else f"{v:.2g}",
                    fill=(90, 90, 90),
                    font=font,
                )
            slot = (gx1 - gx0) / len(levels)
            bw = slot / (len(kinds) + 1)
            for li, c in enumerate(levels):
                d.text(
                    (gx0 + li * slot + slot / 2 - 12, gy1 + 6), f"c={c}", fill="black", font=font
                )
                for ki, k in enumerate(kinds):
                    lv = next((x for x in r[k]["levels"] if x["concurrency"] == c), None)
                    if lv is None or lv[metric] != lv[metric]:
                        continue
                    bx = gx0 + li * slot + bw * (ki + 0.5)
                    d.rectangle([bx, ypos(lv[metric]), bx + bw * 0.9, gy1], fill=colours[k])
                    if metric == "p50_ms":
                        yt = ypos(lv["p99_ms"])
                        d.line([bx, yt, bx + bw * 0.9, yt], fill="black", width=2)
            if ceiling:
                y = ypos(ceiling)
                for xs in range(int(gx0), int(gx1), 14):
                    d.line([xs, y, xs + 7, y], fill=(20, 150, 60), width=2)
            for ki, k in enumerate(kinds):
                lx = gx1 - 190 + ki * 95
                d.rectangle([lx, y0 + 30, lx + 12, y0 + 42], fill=colours[k])
                d.text((lx + 16, y0 + 28), k, fill="black", font=font)
    img.save(path)
