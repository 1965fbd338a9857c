"""``framecast predict|classify|compare`` (and ``stream``, service/cli/stream.py): send files to a
running server and save what comes back. ``--json`` prints the JSON answer to stdout in every
command, and writes a file only when ``--out`` asks for one.

Each command takes an optional ``http`` client (an ``httpx.Client`` with ``base_url`` set) so
tests can pass FastAPI's ``TestClient``; from the command line one is made from ``--url``.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
from pathlib import Path

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
_EXT = {"png": ".png", "gif": ".gif", "npy": ".npy", "json": ".json"}
_Files = list[tuple[str, tuple[str, bytes, str]]]  # httpx's multipart ``files=``
JSON_HELP = "print the JSON answer to stdout (scripts); a file is written only with --out"


def _files(paths: list[str], field: str = "files") -> _Files:
    out = []
    for p in paths:
        path = Path(p)
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        out.append((field, (path.name, path.read_bytes(), ctype)))
    return out


def _client(args: argparse.Namespace, http: httpx.Client | None) -> httpx.Client:
    return http or httpx.Client(base_url=args.url, timeout=args.timeout)


def _post(
    args: argparse.Namespace,
    http: httpx.Client | None,
    url: str,
    params: dict,
    files: _Files,
) -> httpx.Response | int:
    """POST and return the response, or an exit code after printing why it failed."""
    own = http is None
    client = _client(args, http)
    try:
        resp = client.post(
            url, params={k: v for k, v in params.items() if v is not None}, files=files
        )
    except httpx.HTTPError as e:
        print(f"framecast: cannot reach {args.url}: {e}", file=sys.stderr)
        return 2
    finally:
        if own:
            client.close()
    if resp.status_code >= 400:
        try:
            body = resp.json()
            msg = body.get("message") or body
        except ValueError:
            msg = resp.text[:500]
        print(f"framecast: server answered {resp.status_code}: {msg}", file=sys.stderr)
        return 1
    return resp


def _save(resp: httpx.Response, out: str | None, default_stem: str, output: str) -> Path:
    path = Path(out) if out else Path(default_stem + _EXT[output])
    path.parent.mkdir(parents=True, exist_ok=True)
    if output == "json":
        path.write_text(json.dumps(resp.json(), indent=2) + "\n")
    else:
        path.write_bytes(resp.content)
    return path


def _read_inputs(args: argparse.Namespace) -> _Files | int:
    try:
        return _files(args.files)
    except OSError as e:
        print(f"framecast: cannot read {e.filename}: {e.strerror}", file=sys.stderr)
        return 2


def predict_command(args: argparse.Namespace, http: httpx.Client | None = None) -> int:
    files = _read_inputs(args)
    if isinstance(files, int):
        return files
    if args.json:
        if args.output not in (None, "json"):
            print("framecast: --json prints the JSON answer; it cannot go with --output "
                  f"{args.output}", file=sys.stderr)  # fmt: skip
            return 2
        args.output = "json"
    args.output = args.output or "png"
    resp = _post(
        args,
        http,
        f"/v1/models/{args.model}/predict",
        {
            "horizon": args.horizon,
            "output": args.output,
            "resize": str(not args.no_resize).lower(),
            "raw": "true" if args.output == "json" and args.raw else None,
        },
        files,
    )
    if isinstance(resp, int):
        return resp
    if args.json:  # JSON on stdout; a file only when asked
        print(json.dumps(resp.json(), indent=2))
        if args.out:
            _save(resp, args.out, "", "json")
        return 0
    path = _save(resp, args.out, f"{args.model}_prediction", args.output)
    latency = resp.headers.get("x-latency-ms", "?")
    print(f"{args.model}: {args.horizon} frame(s) predicted in {latency} ms -> {path}")
    return 0


def classify_command(args: argparse.Namespace, http: httpx.Client | None = None) -> int:
    files = _read_inputs(args)
    if isinstance(files, int):
        return files
    resp = _post(
        args,
        http,
        f"/v1/models/{args.model}/classify",
        {"top_k": args.top_k, "resize": str(not args.no_resize).lower()},
        files,
    )
    if isinstance(resp, int):
        return resp
    body = resp.json()
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        for s in body["top"]:
            print(f"{s['class_name']:>6}  {s['score']:.4f}")
    if args.out:
        _save(resp, args.out, "", "json")
    return 0


def compare_command(args: argparse.Namespace, http: httpx.Client | None = None) -> int:
    files = _read_inputs(args)
    if isinstance(files, int):
        return files
    task = args.task
    if args.json and args.output in ("png", "gif"):
        print(
            "framecast: --json prints the JSON answer; it cannot go with --output png/gif",
            file=sys.stderr,
        )
        return 2
    if args.output is None:
        args.output = "png" if task == "next-frame" and not args.json else "json"
    if task == "next-frame":
        try:
            truth = _files(args.truth, "truth") if args.truth else []
        except OSError as e:
            print(f"framecast: cannot read {e.filename}: {e.strerror}", file=sys.stderr)
            return 2
        params = {
            "holdout": args.holdout,
            "horizon": args.horizon,
            "output": args.output,
            "resize": str(not args.no_resize).lower(),
            "models": args.models,
        }
        resp = _post(args, http, "/v1/compare/next-frame", params, files + truth)
    else:
        if args.output in ("png", "gif"):
            print(
                "framecast: compare classify answers JSON only; use --output json", file=sys.stderr
            )
            return 2
        params = {
            "label": args.label,
            "top_k": args.top_k,
            "resize": str(not args.no_resize).lower(),
            "models": args.models,
        }
        resp = _post(args, http, "/v1/compare/classify", params, files)
    if isinstance(resp, int):
        return resp
    if args.json:  # JSON on stdout; a file only when asked
        print(json.dumps(resp.json(), indent=2))
        if args.out:
            _save(resp, args.out, "", "json")
        return 0
    path = _save(resp, args.out, f"compare_{task.replace('-', '_')}", args.output)
    if args.output == "json":
        print(compare_table(resp.json()))
    else:
        print(f"winner: {resp.headers.get('x-winner', 'unknown')}")
    print(f"saved {path}")
    return 0


def compare_table(body: dict) -> str:
    """A compare answer as a small text table: one row per model, then the winners."""
    rows = []
    for r in body["results"].values():
        m = r.get("metrics") or {}
        row = {"model": r["model"], "architecture": r["architecture"]}
        if body["task"] == "next_frame":
            row["MSE/frame"] = _num(m.get("mse_per_frame"), 2)
            row["MAE/frame"] = _num(m.get("mae_per_frame"), 2)
            row["PSNR"] = _num(m.get("psnr"), 2)
            row["SSIM"] = _num(m.get("ssim"), 3)
        else:
            top = (r.get("scores") or [{}])[0]
            row["label"] = str(r.get("label"))
            row["score"] = _num(top.get("score"), 4)
            row["true-class score"] = _num(r.get("true_class_score"), 4)
        row["latency ms"] = _num(r["latency_ms"], 1)
        row["model ms"] = _num(r["inference_ms"], 1)
        row["params"] = f"{r['params']:,}"
        rows.append(row)
    cols = list(rows[0]) if rows else []
    width = {c: max(len(c), *(len(row[c]) for row in rows)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols)]
    lines += ["  ".join(row[c].ljust(width[c]) for c in cols) for row in rows]
    if body.get("winners"):
        per = ", ".join(f"{k}: {v}" for k, v in body["winners"].items())
        lines.append(f"winner: {body.get('winner')} (per metric: {per})")
    else:
        lines.append("winner: unknown (no truth given: use --holdout, --truth or --label)")
    return "\n".join(lines)


def _num(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def add_client_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``predict``, ``classify`` and ``compare`` on an argparse subparsers object."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", default=DEFAULT_URL, help=f"server URL (default {DEFAULT_URL})")
        p.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
        p.add_argument(
            "--no-resize",
            action="store_true",
            help="reject frames whose size differs from the model's (resize=false)",
        )

    p = subparsers.add_parser(
        "predict",
        help="predict the next frames of a clip on a server",
        description="Send frames (image files in order, one GIF/APNG/TIFF, "
        "or one .npy) to a next-frame model; save the result.",
    )
    p.add_argument("model", help="model name (see GET /v1/models)")
    p.add_argument("files", nargs="+", help="frames in order, or one multi-frame file / .npy")
    p.add_argument("--horizon", type=int, default=1, help="frames to predict (default 1)")
    p.add_argument(
        "--output",
        choices=["png", "gif", "npy", "json"],
        default=None,
        help="png: strip of predicted frames; gif: context + prediction (default png)",
    )
    p.add_argument("--raw", action="store_true", help="json: include raw float values")
    p.add_argument("--out", help="file to write (default <model>_prediction.<ext>)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    common(p)
    p.set_defaults(func=predict_command)

    p = subparsers.add_parser("classify", help="classify a clip on a server")
    p.add_argument("model")
    p.add_argument("files", nargs="+")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--out", help="also save the JSON answer here")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    common(p)
    p.set_defaults(func=classify_command)

    p = subparsers.add_parser(
        "compare",
        help="run both architectures on one clip on a server",
        description="Run the Conv2D+LSTM and ConvLSTM2D models of a task "
        "side by side; save the montage (or JSON).",
    )
    p.add_argument("task", choices=["next-frame", "classify"])
    p.add_argument("files", nargs="+")
    p.add_argument(
        "--holdout",
        type=int,
        default=None,
        help="next-frame: keep the last K frames back as ground truth",
    )
    p.add_argument("--truth", nargs="+", help="next-frame: files holding the true future frames")
    p.add_argument("--horizon", type=int, default=None, help="next-frame: frames to predict")
    p.add_argument("--label", help="classify: the true class")
    p.add_argument(
        "--models",
        help="models of the task, comma-separated; one gives that model's output and errors "
        "alone (default: the Conv2D+LSTM and the ConvLSTM2D model)",
    )
    p.add_argument("--top-k", type=int, default=3, help="classify: classes per model")
    p.add_argument(
        "--output",
        choices=["png", "gif", "json"],
        default=None,
        help="png/gif montage (next-frame default png) or json (classify)",
    )
    p.add_argument("--out", help="file to write (default compare_<task>.<ext>)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    common(p)
    p.set_defaults(func=compare_command)
    from service.cli.stream import add_stream_subcommand

    add_stream_subcommand(subparsers, common)
