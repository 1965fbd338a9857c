"""``framecast evaluate --server URL --models a,b DATA``: a data set evaluated by a running server.

It sends DATA (an .npy, .npz, .zip, .tar(.gz) or video file, streamed) to ``POST
/v1/evaluations``, follows the job's Server-Sent Events with a progress bar on stderr
(``models/runs/progress.py``: a bar on a terminal, lines in a log), then prints the verdict and a
table and writes the report files (``report.html``, ``report.json``, ``clips.csv``,
``plot.png``) into ``--out`` (default ``evaluation_<id>/``). Ctrl-C cancels the job on the
server. ``--json`` prints the result as JSON on stdout instead of the table. Without
``--server``, ``framecast evaluate FOLDER`` is the model card's evaluation (models/evaluation/).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPORT_FILES = (
    ("report", "report.html"),
    ("report.json", "report.json"),
    ("clips.csv", "clips.csv"),
    ("plot.png", "plot.png"),
)


def add_server_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of the server form (``--server``), beside the model card's."""
    g = p.add_argument_group("a data set on a running server (--server)")
    g.add_argument("--server", help="server URL, e.g. http://127.0.0.1:8000: evaluate DATA there")
    g.add_argument("--models", help="models of one task, comma-separated")
    g.add_argument(
        "--holdout", type=int, help="next frame: the last k frames of each clip are the truth"
    )
    g.add_argument("--window", type=int, help="a video: frames per clip")
    g.add_argument(
        "--stride", type=int, help="a video: frames between clip starts (default window)"
    )
    g.add_argument("--top-k", type=int, default=None, help="classifiers: k of top-k accuracy (2)")
    g.add_argument(
        "--fit",
        choices=("stretch", "pad", "crop"),
        default=None,
        help="frames of another size: stretch, pad or crop to the model's (default stretch)",
    )
    g.add_argument("--name", help="a name for the job")
    g.add_argument("--out", help="folder for the report files (default evaluation_<id>/)")
    g.add_argument("--json", action="store_true", help="print the result JSON on stdout")
    g.add_argument("--timeout", type=float, default=600.0, help="seconds for the upload (600)")


def _fail(resp: httpx.Response) -> int:
    try:
        msg = resp.json().get("message") or resp.text
    except ValueError:
        msg = resp.text[:500]
    print(f"framecast evaluate: server answered {resp.status_code}: {msg}", file=sys.stderr)
    return 1


FINAL = ("done", "failed", "cancelled")


def _follow(http: httpx.Client, location: str, total: int, quiet: bool) -> dict[str, Any]:
    """The job's events until it ends, shown as progress; the job as it ended. A stream that
    ends first (the server stopping, a proxy) is opened again while the job goes on."""
    from models.runs.progress import progress

    bar = progress(total, unit="clip", desc="evaluate", quiet=quiet)
    job: dict[str, Any] = {}
    with bar:
        while job.get("state") not in FINAL:
            with http.stream("GET", location + "/events", timeout=None) as events:
                if events.status_code != 200:
                    return http.get(location).json()
                kind = None
                for line in events.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        job = {
                            **json.loads(line[6:]),
                            "state": kind if kind in FINAL else "running",
                        }
                        done = int(job["progress"].get("done") or 0)
                        if done > bar.n:
                            bar.update(done - bar.n)
                        if kind in FINAL:
                            return json.loads(line[6:])
            time.sleep(1.0)
            job = http.get(location).json()
    return job


def _cell(entry: dict[str, Any] | None, scale: float = 1.0) -> str:
    if not entry:
        return "-"
    ci = entry.get("ci95")
    text = f"{entry['mean'] * scale:.4g}"
    return text if not ci else f"{text} [{ci[0] * scale:.4g}, {ci[1] * scale:.4g}]"


def table(result: dict[str, Any]) -> str:
    """The result as a text table: a row per model (metrics with 95 % CI, cost, timing), then
    one line per pair on the main metric."""
    pct = 100.0 if result["task"] == "classify" else 1.0
    metrics = list(next(iter(result["models"].values()))["metrics"])
    rows = []
    for name, m in result["models"].items():
        cost, t = m["cost"], m["timing"]
        row = {"model": name}
        row.update({k: _cell(m["metrics"].get(k), pct) for k in metrics})
        flops = cost.get("flops_per_clip")
        row["params"] = f"{cost['params']:,}" if cost.get("params") else "-"
        row["GFLOPs/clip"] = f"{flops / 1e9:.3g}" if flops else "-"
        mem = cost.get("peak_memory_bytes")
        row["peak MB"] = f"{mem / 1e6:.3g}" if mem else "-"
        row["model ms p50"] = f"{t['model_ms']['p50']:.3g}"
        row["clips/s"] = f"{t['clips_per_s']:.3g}" if t.get("clips_per_s") else "-"
        rows.append(row)
    cols = list(rows[0])
    width = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols)]
    lines += ["  ".join(r[c].ljust(width[c]) for c in cols) for r in rows]
    for c in result["comparisons"]:
        if c["metric"] != result["main_metric"]:
            continue
        wins = ", ".join(f"{k} {v * 100:.0f}%" for k, v in c["wins"].items())
        lines.append(
            f"{c['a']} - {c['b']} {c['metric']}: {_cell(c['difference'], pct)}, "
            f"p = {c['p_value']:.3g} ({c['test']}); clips won: {wins}"
        )
    return "\n".join(lines)


def evaluate_command(args: argparse.Namespace, http: httpx.Client | None = None) -> int:
    data = Path(args.folder)
    if not args.models:
        print("framecast evaluate: --server needs --models a,b", file=sys.stderr)
        return 2
    if not data.is_file():
        print(f"framecast evaluate: {data}: no such data set file", file=sys.stderr)
        return 2
    own = http is None
    client = http or httpx.Client(base_url=args.server, timeout=args.timeout)
    params = {
        k: v
        for k, v in {
            "models": args.models,
            "holdout": args.holdout,
            "window": args.window,
            "stride": args.stride,
            "top_k": args.top_k,
            "fit": args.fit,
            "name": args.name,
        }.items()
        if v is not None
    }
    location = None
    try:
        with open(data, "rb") as f:
            resp = client.post(
                "/v1/evaluations",
                params=params,
                content=f,
                headers={"content-type": "application/octet-stream"},
            )
        if resp.status_code != 202:
            return _fail(resp)
        location = resp.json()["location"]
        total = int(client.get(location).json()["progress"].get("total") or 0)
        job = _follow(client, location, total, quiet=getattr(args, "quiet", False))
        if job.get("state") != "done":
            print(
                f"framecast evaluate: the job {job.get('state')}: {job.get('error')}",
                file=sys.stderr,
            )
            return 1
        out = Path(args.out or f"evaluation_{job['id']}")
        out.mkdir(parents=True, exist_ok=True)
        for route, name in REPORT_FILES:
            r = client.get(f"{location}/{route}")
            if r.status_code == 200:
                (out / name).write_bytes(r.content)
    except KeyboardInterrupt:
        if location is not None:
            client.delete(location)
            print(f"framecast evaluate: cancelled {location}", file=sys.stderr)
        return 130
    except httpx.HTTPError as e:
        print(f"framecast evaluate: cannot reach {args.server}: {e}", file=sys.stderr)
        return 2
    finally:
        if own:
            client.close()
    result = job["result"]
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(result["verdict"])
    print()
    print(table(result))
    print(f"\nreport: {out / 'report.html'} (and report.json, clips.csv, plot.png)")
    return 0
