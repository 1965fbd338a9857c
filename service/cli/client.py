"""``framecast predict|classify|compare`` (and ``stream``, service/cli/stream.py): send files to a
running server and save what comes back. In every command ``--json`` prints the JSON answer to
stdout and ``--out FILE`` writes a file (its suffix picks the format when ``--output`` does not);
what a command writes without ``--out`` goes under ``out/`` (which .gitignore covers).
``--output json`` (a JSON file) is deprecated: ``--json`` and ``--out FILE.json`` say it.

The server is ``--url``, else ``FRAMECAST_URL``, else the one ``framecast serve`` starts with
the same environment (``FRAMECAST_HOST``, ``FRAMECAST_PORT``): service/configs/client.py.
Each command takes an optional ``http`` client (an ``httpx.Client`` with ``base_url`` set) so
tests can pass FastAPI's ``TestClient``; from the command line one is made from the URL.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
from pathlib import Path

import httpx

from service.cli.answers import compare_table, conversion_text
from service.cli.connect import OUT_DIR, URL_HELP, resolve_server, unreachable

_EXT = {"png": ".png", "gif": ".gif", "npy": ".npy", "json": ".json"}
_Files = list[tuple[str, tuple[str, bytes, str]]]  # httpx's multipart ``files=``
JSON_HELP = "print the JSON answer to stdout (scripts); a file is written only with --out"


def output_format(args: argparse.Namespace, choices: tuple[str, ...], default: str) -> str:
    """``--output``, else the suffix of ``--out`` when it names a format, else ``default``."""
    if args.output:
        return args.output
    suffix = Path(args.out).suffix.lstrip(".").lower() if args.out else ""
    return suffix if suffix in choices else default


def deprecated_output_json(command: str) -> None:
    table = ", --table prints the table" if command == "compare" else ""
    print(
        f"framecast {command}: --output json is deprecated (it writes a JSON file): --json "
        f"prints the answer to stdout{table}, --out FILE.json writes it",
        file=sys.stderr,
    )


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
    if own and (bad := resolve_server(args)) is not None:
        return bad
    client = _client(args, http)
    try:
        resp = client.post(
            url, params={k: v for k, v in params.items() if v is not None}, files=files
        )
    except httpx.HTTPError as e:
        return unreachable(args, e)
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
    path = Path(out) if out else OUT_DIR / (default_stem + _EXT[output])
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
    if args.json and args.output not in (None, "json"):
        print("framecast predict: --json prints the JSON answer; it cannot go with --output "
              f"{args.output}", file=sys.stderr)  # fmt: skip
        return 2
    if args.output == "json" and not args.json:
        deprecated_output_json("predict")
    output = "json" if args.json else output_format(args, ("png", "gif", "npy", "json"), "png")
    resp = _post(
        args,
        http,
        f"/v1/models/{args.model}/predict",
        {
            "horizon": args.horizon,
            "output": output,
            "resize": str(not args.no_resize).lower(),
            "raw": "true" if output == "json" and args.raw else None,
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
    path = _save(resp, args.out, f"{args.model}_prediction", output)
    latency = resp.headers.get("x-latency-ms", "?")
    print(f"{args.model}: {args.horizon} frame(s) predicted in {latency} ms -> {path}")
    changed = conversion_text(resp.headers.get("x-conversion"))
    if changed:
        print(f"input fitted to the model: {changed}")
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
        for s in body["scores"]:  # the top_k best
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
            "framecast compare: --json prints the JSON answer; it cannot go with --output png/gif",
            file=sys.stderr,
        )
        return 2
    legacy = args.output == "json" and not args.json  # deprecated: a table and a JSON file
    if legacy:
        deprecated_output_json("compare")
    if task == "next-frame":
        table = args.table or legacy
        output = (
            "json" if args.json or table else output_format(args, ("png", "gif", "json"), "png")
        )
        try:
            truth = _files(args.truth, "truth") if args.truth else []
        except OSError as e:
            print(f"framecast: cannot read {e.filename}: {e.strerror}", file=sys.stderr)
            return 2
        params = {
            "holdout": args.holdout,
            "horizon": args.horizon,
            "output": output,
            "resize": str(not args.no_resize).lower(),
            "models": args.models,
        }
        resp = _post(args, http, "/v1/compare/next-frame", params, files + truth)
    else:
        if args.output in ("png", "gif"):
            print("framecast compare: compare classify answers JSON only (a table, or --json)",
                  file=sys.stderr)  # fmt: skip
            return 2
        output = "json"
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
    stem = f"compare_{task.replace('-', '_')}"
    if output == "json":
        print(compare_table(resp.json()))
        if args.out or legacy:
            print(f"saved {_save(resp, args.out, stem, 'json')}")
        return 0
    path = _save(resp, args.out, stem, output)
    print(f"winner: {resp.headers.get('x-winner', 'unknown')}")
    print(f"saved {path}")
    return 0


def add_client_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``predict``, ``classify``, ``compare`` and ``stream`` on an argparse subparsers
    object."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", default=None, help=URL_HELP)
        p.add_argument(
            "--timeout",
            type=float,
            default=None,
            help="seconds to wait for each answer (default: FRAMECAST_CLIENT_TIMEOUT_S, else 60)",
        )
        p.add_argument(
            "--no-resize",
            action="store_true",
            help="reject frames whose size differs from the model's (resize=false)",
        )

    p = subparsers.add_parser(
        "predict",
        help="predict the next frames of a clip on a server",
        description="Send frames (image files in order, one GIF/APNG/TIFF, a video, or one "
        ".npy) to a next-frame model and save the predicted frames: a PNG strip, a GIF of "
        "context and prediction, or an .npy array (--json prints the JSON answer instead).",
    )
    p.add_argument("model", help="model name (see GET /v1/models)")
    p.add_argument("files", nargs="+", help="frames in order, or one multi-frame file / .npy")
    p.add_argument("--horizon", type=int, default=1, help="frames to predict")
    p.add_argument(
        "--output",
        choices=["png", "gif", "npy", "json"],
        default=None,
        help="png: strip of predicted frames; gif: context + prediction; npy: the array "
        "(default: the suffix of --out, else png; json is deprecated: use --json or "
        "--out FILE.json)",
    )
    p.add_argument("--raw", action="store_true", help="json: include raw float values")
    p.add_argument("--out", help=f"file to write (default: {OUT_DIR}/<model>_prediction.<ext>)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    common(p)
    p.set_defaults(func=predict_command)

    p = subparsers.add_parser(
        "classify",
        help="classify a clip on a server",
        description="Send frames (as predict takes them) to a classification model and print "
        "its best classes with their scores (--json: the JSON answer).",
    )
    p.add_argument("model", help="model name (see GET /v1/models)")
    p.add_argument("files", nargs="+", help="frames in order, or one multi-frame file / .npy")
    p.add_argument("--top-k", type=int, default=3, help="classes to print, best first")
    p.add_argument("--out", help="also write the JSON answer to this file")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    common(p)
    p.set_defaults(func=classify_command)

    p = subparsers.add_parser(
        "compare",
        help="run both architectures on one clip on a server",
        description="Run the Conv2D+LSTM and ConvLSTM2D models of a task (or --models) side "
        "by side on one clip. next-frame saves a montage (rows: context, truth, each model) "
        "and prints the winner; classify prints a table (--json: the JSON answer).",
    )
    p.add_argument("task", choices=["next-frame", "classify"], help="which models to compare")
    p.add_argument("files", nargs="+", help="frames in order, or one multi-frame file / .npy")
    p.add_argument(
        "--holdout",
        type=int,
        default=None,
        help="next-frame: keep the last K frames back as ground truth (default: none)",
    )
    p.add_argument("--truth", nargs="+", help="next-frame: files holding the true future frames")
    p.add_argument(
        "--horizon",
        type=int,
        default=None,
        help="next-frame: frames to predict (default: the truth's length, else 1)",
    )
    p.add_argument("--label", help="classify: the true class (default: unknown, no winner)")
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
        help="next-frame: a png or gif montage (default: the suffix of --out, else png; json "
        "is deprecated: use --json or --out FILE.json)",
    )
    p.add_argument(
        "--out",
        help=f"file to write (default: next-frame {OUT_DIR}/compare_next_frame.<ext>; "
        "classify: none, --out FILE.json writes the answer)",
    )
    p.add_argument(
        "--table",
        action="store_true",
        help="next-frame: print the metrics as a table instead of saving a montage (classify "
        "always prints one)",
    )
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    common(p)
    p.set_defaults(func=compare_command)
    from service.cli.stream import add_stream_subcommand

    add_stream_subcommand(subparsers, common)
