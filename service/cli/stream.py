"""``framecast stream MODEL VIDEO``: play a file to a server's live stream, frame by frame, and
write each frame's surprise as CSV.

The file (a video, a GIF, an .npy, …: whatever predict takes) is decoded here with the server's
own decoders, then each frame goes to ``POST /v1/streams/{id}/frames`` as a PNG with ``step=``, in
order, on one connection; ``--models a,b`` streams to MODEL and those models side by side
(``POST /v1/compare/streams``). Progress goes to stderr, each number named (the frame sent, each
model's surprise, the time of the step); the stream is closed at the end. The CSV goes to
``--out`` (``-``: stdout), else to ``out/<video>_surprise.csv``; ``--json`` prints the surprise
as JSON instead.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import httpx
import numpy as np

from service.cli.connect import OUT_DIR, resolve_server, unreachable

FIELDS = ["step", "model", "mse_per_frame", "psnr", "ssim", "latency_ms", "inference_ms"]


def _frames(path: Path, max_frames: int) -> list[np.ndarray]:
    """The file's frames as 8-bit arrays (H, W, C), decoded as the server decodes uploads."""
    from service.media.decode import decode_parts
    from service.media.frames import Limits

    frames = decode_parts([(path.name, path.read_bytes())], Limits(max_frames=max_frames))
    out = []
    for f in frames:
        u8 = f.u8 if f.u8 is not None else np.clip(np.round(f.data * 255), 0, 255)
        out.append(np.asarray(u8, np.uint8))
    return out


def _png(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame).save(buf, format="PNG")
    return buf.getvalue()


def _rows(answer: dict) -> list[dict]:
    """One CSV row per model and surprised frame of one answer."""
    per_model = answer["models"] if "models" in answer else {answer["model"]: answer}
    rows = []
    for name, a in per_model.items():
        for s in a["surprise"] or []:
            rows.append(
                {
                    "step": s["step"],
                    "model": name,
                    "mse_per_frame": round(s["mse_per_frame"], 4),
                    "psnr": round(s["psnr"], 4),
                    "ssim": None if s["ssim"] is None else round(s["ssim"], 5),
                    "latency_ms": a["latency_ms"],
                    "inference_ms": a["inference_ms"],
                }
            )
    return rows


def _fail(resp: httpx.Response) -> int:
    try:
        msg = resp.json().get("message") or resp.text[:500]
    except ValueError:
        msg = resp.text[:500]
    print(f"framecast stream: server answered {resp.status_code}: {msg}", file=sys.stderr)
    return 1


def stream_command(args: argparse.Namespace, http: httpx.Client | None = None) -> int:
    path = Path(args.video)
    try:
        frames = _frames(path, args.max_frames)
    except OSError as e:
        print(f"framecast stream: cannot read {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a decoder's own error (FramecastError): one line
        print(f"framecast stream: {path}: {getattr(e, 'message', e)}", file=sys.stderr)
        return 2
    if http is None and (bad := resolve_server(args)) is not None:
        return bad
    client = http or httpx.Client(base_url=args.url, timeout=args.timeout)
    params = {"past_context": args.past_context} if args.past_context else {}
    try:
        if args.models:
            names = [args.model] + [m for m in args.models.split(",") if m]
            resp = client.post("/v1/compare/streams", params={**params, "models": ",".join(names)})
        else:
            resp = client.post(f"/v1/models/{args.model}/streams", params=params)
        if resp.status_code != 201:
            return _fail(resp)
        sid = resp.json()["id"]
        rows: list[dict] = []
        try:
            for i, frame in enumerate(frames):
                r = client.post(
                    f"/v1/streams/{sid}/frames",
                    params={"step": i, "horizon": args.horizon},
                    content=_png(frame),
                    headers={"content-type": "image/png"},
                )
                if r.status_code != 200:
                    return _fail(r)
                answer = r.json()
                got = _rows(answer)
                rows += got
                if not args.quiet:
                    print(
                        "\r" + progress_line(i + 1, len(frames), answer, got),
                        end="" if sys.stderr.isatty() else "\n",
                        file=sys.stderr,
                    )
        finally:
            client.delete(f"/v1/streams/{sid}")
    except httpx.HTTPError as e:
        return unreachable(args, e, "framecast stream")
    finally:
        if http is None:
            client.close()
    if not args.quiet and sys.stderr.isatty():
        print(file=sys.stderr)
    if args.json:  # JSON on stdout; the CSV only when asked
        print(json.dumps({"frames": len(frames), "surprise": rows}, indent=2))
    csv_path = args.out or (None if args.json else str(OUT_DIR / f"{path.stem}_surprise.csv"))
    if csv_path == "-":
        _write_csv(sys.stdout, rows)
    elif csv_path:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="") as f:
            _write_csv(f, rows)
        if not args.quiet:
            print(
                f"{len(frames)} frames streamed; surprise per frame -> {csv_path}", file=sys.stderr
            )
    return 0


def progress_line(done: int, total: int, answer: dict, rows: list[dict]) -> str:
    """One step's progress, every number named: "frame 12/40  surprise (MSE per frame): a 31.2,
    b 40.5  step 18 ms"; before a model has predicted, how many frames it still needs."""
    per_model = answer["models"] if "models" in answer else {answer["model"]: answer}
    said = {r["model"]: f"{r['mse_per_frame']:.1f}" for r in rows}
    parts = []
    for name, a in per_model.items():
        if name in said:
            parts.append(f"{name} {said[name]}")
        elif a.get("needs"):
            parts.append(f"{name} needs {a['needs']} more frame(s)")
        else:  # its first prediction is for the next frame
            parts.append(f"{name} none yet")
    step_ms = max((float(a.get("latency_ms") or 0.0) for a in per_model.values()), default=0.0)
    return (
        f"frame {done}/{total}  surprise (MSE per frame): {', '.join(parts)}  step {step_ms:.0f} ms"
    )


def _write_csv(f, rows: list[dict]) -> None:  # noqa: ANN001 - a text file
    w = csv.DictWriter(f, fieldnames=FIELDS)
    w.writeheader()
    w.writerows(rows)


def add_stream_subcommand(subparsers: argparse._SubParsersAction, common) -> None:  # noqa: ANN001
    p = subparsers.add_parser(
        "stream",
        help="play a video to a live stream on a server, frame by frame; surprise as CSV",
        description="Decode VIDEO (any file predict takes) and send its frames one at a time to "
        "a live stream on MODEL (and --models side by side); write each frame's surprise (the "
        "error of the prediction made for it) as CSV.",
    )
    p.add_argument("model", help="a next-frame model (see GET /v1/models)")
    p.add_argument("video", help="a video, GIF, multi-page TIFF or .npy")
    p.add_argument("--models", help="more models to stream to side by side, comma-separated")
    p.add_argument("--horizon", type=int, default=1, help="frames predicted each step")
    p.add_argument(
        "--past-context",
        choices=["carry", "window"],
        help="how the stream keeps its past: carry the recurrent state, or re-read a window "
        "(default: the server's FRAMECAST_STREAM_PAST_CONTEXT; docs/streams.md)",
    )
    p.add_argument(
        "--out",
        "--csv",
        dest="out",
        help=f"where to write the CSV ('-': stdout; default: {OUT_DIR}/<video>_surprise.csv, "
        "none with --json)",
    )
    p.add_argument("--json", action="store_true", help="print the surprise as JSON to stdout")
    p.add_argument("--max-frames", type=int, default=10_000, help="frames read at most")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    common(p)
    p.set_defaults(func=stream_command)
