"""`framecast evaluate DIR`: evaluate a model folder on the fixed test set and write its model
card (card.json, and card.md rendered by ``markdown.py``), with the quality bar it is held to,
the published figures beside it, and its counterpart of the other architecture.

Everything uses clips built from MNIST digits 8000-9999 only, with seeds fixed in models/data.py;
the metrics are the test protocol's (``protocol.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from models import data as D
from models.evaluation.markdown import render_card
from models.evaluation.protocol import check_evaluable, evaluate_classify, evaluate_next_frame
from models.repository import (
    CARD_JSON,
    CARD_MD,
    Manifest,
    atomic_write_text,
    read_manifest,
    verify_checkpoint,
)
from models.runs.env import describe

# Published Moving MNIST figures, 10 -> 10, MSE per frame (see REFERENCES in the docs).
PUBLISHED: list[dict[str, Any]] = [
    {
        "source": "PredRNN paper (Wang et al. 2017)",
        "model": "ConvLSTM",
        "mse_per_frame": 103.3,
        "ssim": 0.707,
    },
    {
        "source": "PredRNN paper (Wang et al. 2017)",
        "model": "PredRNN",
        "mse_per_frame": 56.8,
        "ssim": 0.867,
    },
    {
        "source": "OpenSTL benchmark, 200 epochs",
        "model": "ConvLSTM-S (15.0 M params)",
        "mse_per_frame": 29.80,
        "ssim": 0.929,
    },
]
QUALITY_BARS = {
    "convlstm2d": ("MSE/frame <= 103.3 (PredRNN paper's ConvLSTM)", 103.3),
    "conv2d_lstm": ("MSE/frame below the all-black baseline (~175)", None),
}
CLASSIFY_BAR = 0.95


def run(
    folder: str | Path,
    *,
    mnist_dir: str | None = None,
    clips: int = D.TEST_CLIPS,
    batch_size: int = 32,
    horizon: int = 10,
    quiet: bool = False,
) -> dict:
    """Evaluate the model folder and write its card; progress on stderr unless ``quiet``."""
    import keras

    from models.runs.progress import progress

    folder = Path(folder)
    manifest = read_manifest(folder)
    check_evaluable(manifest)  # before anything loads: one line on why not
    path = verify_checkpoint(folder, manifest)
    model = keras.models.load_model(path, safe_mode=True)
    mnist = D.load_mnist(mnist_dir)
    print(f"[framecast] MNIST source: {mnist.source}", flush=True)
    t0 = time.perf_counter()
    env = describe()
    card: dict[str, Any] = {
        "name": manifest.name,
        "rollout": manifest.rollout,
        "architecture": manifest.architecture,
        "task": manifest.task,
        "checkpoint_sha256": manifest.sha256,
        "checkpoint_bytes": path.stat().st_size,
        "params": manifest.params,
        "flops_per_clip": manifest.flops_per_clip,
        "input": {
            "frames": manifest.frames,
            "height": manifest.height,
            "width": manifest.width,
            "channels": manifest.channels,
        },
        "training": manifest.training,
        "test_set": {
            "digits": f"{D.TEST_DIGITS.start}-{D.TEST_DIGITS.stop - 1} of the MNIST test split",
            "source": mnist.source,
            "clips": clips,
            "seed": D.TEST_SEED_NEXT_FRAME
            if manifest.task == "next_frame"
            else D.TEST_SEED_CLASSIFY,
        },
        "evaluated_with": env,
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    shown = progress(
        clips * horizon if manifest.task == "next_frame" else clips,
        unit="frame" if manifest.task == "next_frame" else "clip",
        desc=f"evaluate {manifest.name}",
        quiet=quiet,
    )
    with shown:
        shown.stage(f"making {clips} test clips")
        if manifest.task == "next_frame":
            test = D.test_set(mnist, "next_frame", clips)
            res = evaluate_next_frame(model, manifest, test, batch_size, horizon, shown)
        else:
            test, labels = D.test_set(mnist, "classify", clips)
            res = evaluate_classify(model, manifest, test, labels, batch_size, shown)
    if manifest.task == "next_frame":
        card["test_set"]["protocol"] = f"{D.CONTEXT_FRAMES} context frames -> {horizon} rolled out"
        card["metrics"] = res
        label, bar = QUALITY_BARS.get(manifest.architecture, QUALITY_BARS["conv2d_lstm"])
        bar = bar if bar is not None else res["baselines"]["all_black"]["rollout"]["mse_per_frame"]
        card["quality_bar"] = {
            "rule": label,
            "threshold": bar,
            "met": res["rollout"]["mse_per_frame"] <= bar,
        }
        card["published"] = PUBLISHED
    else:
        card["metrics"] = res
        card["quality_bar"] = {
            "rule": "accuracy >= 95%",
            "threshold": CLASSIFY_BAR,
            "met": card["metrics"]["accuracy"] >= CLASSIFY_BAR,
        }
    card["fair_comparison"] = _counterparts(folder, manifest)
    card["evaluation_wall_time_s"] = round(time.perf_counter() - t0, 1)
    atomic_write_text(folder / CARD_JSON, json.dumps(card, indent=2) + "\n")
    atomic_write_text(folder / CARD_MD, render_card(card))
    refresh_counterparts(folder)  # their cards quote this one's budget
    return card


def _counterparts(folder: Path, manifest: Manifest) -> list[dict]:
    """The other architecture's models of the same task beside this one, with their budgets,
    read from each one's card as written (its manifest only when it has no card yet), so that a
    card never quotes an older run of its counterpart than the counterpart's own card does."""
    from models.repository import ManifestError, discover

    out = []
    for other in discover(folder.parent):
        if other.resolve() == folder.resolve():
            continue
        try:
            m = read_manifest(other)
        except ManifestError:
            continue
        if m.task != manifest.task or m.architecture == manifest.architecture:
            continue
        try:
            card = json.loads((other / CARD_JSON).read_text())
            training, params, source = card["training"], card["params"], CARD_JSON
        except (OSError, ValueError, KeyError):
            training, params, source = m.training, m.params, "manifest.json"
        out.append(
            {
                "name": m.name,
                "architecture": m.architecture,
                "params": params,
                "clips_seen": training.get("clips_seen"),
                "seed": training.get("seed"),
                "learning_rate": training.get("learning_rate"),
                "read_from": f"{m.name}/{source}",
            }
        )
    return out


def refresh_counterparts(folder: Path) -> list[Path]:
    """After ``folder``'s card changed: rewrite the counterpart section of every other card of
    the same task beside it (card.json and card.md; nothing else in them changes). Returns the
    folders rewritten."""
    from models.repository import ManifestError, discover

    done = []
    for other in discover(folder.parent):
        path = other / CARD_JSON
        if other.resolve() == folder.resolve() or not path.is_file():
            continue
        try:
            card, m = json.loads(path.read_text()), read_manifest(other)
        except (OSError, ValueError, ManifestError):
            continue
        fresh = _counterparts(other, m)
        if card.get("fair_comparison") != fresh:
            card["fair_comparison"] = fresh
            atomic_write_text(path, json.dumps(card, indent=2) + "\n")
            atomic_write_text(other / CARD_MD, render_card(card))
            done.append(other)
    return done


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "folder",
        type=Path,
        help="model folder (model.keras + manifest.json); with --server, the data set file",
    )
    p.add_argument(
        "--mnist-dir",
        default=None,
        help=f"MNIST IDX files or mnist.npz (default: ${D.MNIST_DIR_ENV}, else download)",
    )
    p.add_argument(
        "--clips",
        type=int,
        default=D.TEST_CLIPS,
        help=f"test clips (default {D.TEST_CLIPS}; fewer only for quick checks)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="clips per model call")
    p.add_argument("--horizon", type=int, default=10, help="frames rolled out (next_frame)")
    p.add_argument(
        "--quiet", action="store_true", help="no progress display (the result lines only)"
    )


def main(args: argparse.Namespace) -> int:
    if (
        args.clips < 1
        or args.batch_size < 1
        or not 1 <= args.horizon <= D.NEXT_FRAME_LENGTH - D.CONTEXT_FRAMES
    ):
        print(
            "framecast evaluate: --clips and --batch-size must be >= 1 and --horizon in 1..10",
            file=sys.stderr,
        )
        return 2
    card = run(
        args.folder,
        mnist_dir=args.mnist_dir,
        clips=args.clips,
        batch_size=args.batch_size,
        horizon=args.horizon,
        quiet=getattr(args, "quiet", False),
    )
    m = card["metrics"]
    if card["task"] == "next_frame":
        print(
            f"[framecast] {card['name']}: 10->10 MSE/frame {m['rollout']['mse_per_frame']:.2f}, "
            f"SSIM {m['rollout']['ssim']:.3f} (all-black "
            f"{m['baselines']['all_black']['rollout']['mse_per_frame']:.2f}, copy-last "
            f"{m['baselines']['copy_last_frame']['rollout']['mse_per_frame']:.2f})"
        )
    else:
        print(f"[framecast] {card['name']}: accuracy {m['accuracy'] * 100:.2f}%")
    print(f"[framecast] wrote {Path(args.folder) / CARD_JSON} and {Path(args.folder) / CARD_MD}")
    return 0
