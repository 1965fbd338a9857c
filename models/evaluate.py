"""`framecast evaluate DIR`: the fixed test set, rollout, and the model card (card.json + card.md).

Next-frame models: the first 10 frames of each 20-frame test clip are the context; the model
predicts frame 11 (t+1 error) and then rolls out 10 frames autoregressively (its own predictions
fed back), compared with frames 11-20 (10->10 error): as its manifest says, with the recurrent
state carried (`rollout: carried_state`, models/rollout.py) or with a sliding window of fixed
length. The metrics and the frames compared are the same either way.
Classifiers: accuracy, top-2 accuracy and the confusion matrix on the direction test clips.
Everything uses clips built from MNIST digits 8000-9999 only, with seeds fixed in models/data.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models import data as D
from models import metrics as M
from models.env import describe, hardware_summary
from models.repository import (
    CARD_JSON,
    CARD_MD,
    Manifest,
    atomic_write_text,
    read_manifest,
    verify_checkpoint,
)

if TYPE_CHECKING:  # only for annotations: importing this module does not load Keras
    import keras

    from models.progress import Progress
    from models.rollout import Stepper

# ``on_batch(n)``: told after each model call that ``n`` more clips (rollouts: frames) are done.
OnBatch = Callable[[int], object] | None

# Published Moving MNIST figures, 10 -> 10, MSE per frame (see REFERENCES in the docs).
PUBLISHED = [
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


def batched_call(
    model: keras.Model, x: np.ndarray, batch_size: int, on_batch: OnBatch = None
) -> np.ndarray:
    """``model.predict_on_batch`` over ``x`` in batches of exactly ``batch_size`` (the last one
    padded), so the compiled input shape never changes. ``on_batch(n)`` after each call."""
    outs = []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        n = len(chunk)
        if n < batch_size:
            pad = np.zeros((batch_size - n,) + chunk.shape[1:], dtype=chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        outs.append(np.asarray(model.predict_on_batch(chunk))[:n])
        if on_batch is not None:
            on_batch(n)
    return np.concatenate(outs)


def rollout(
    model: keras.Model,
    context: np.ndarray,
    horizon: int,
    batch_size: int = 32,
    on_batch: OnBatch = None,
) -> np.ndarray:
    """Autoregressive rollout: (clips, frames, H, W, C) -> (clips, horizon, H, W, C).

    The window keeps the model's fixed number of frames: append the prediction, drop the oldest.
    ``on_batch(n)`` after each call, ``n`` the frames it predicted (one per clip).
    """
    window = np.asarray(context, dtype=np.float32)
    preds = []
    for _ in range(horizon):
        nxt = batched_call(model, window, batch_size, on_batch)[:, -1]  # (clips, H, W, C)
        preds.append(nxt)
        window = np.concatenate([window[:, 1:], nxt[:, None]], axis=1)
    return np.stack(preds, axis=1)


def carried_rollout(
    stepper: Stepper,
    context: np.ndarray,
    horizon: int,
    batch_size: int = 32,
    on_batch: OnBatch = None,
) -> np.ndarray:
    """The encoder–forecaster rollout (``models.rollout.Stepper``) over ``context`` in batches of
    exactly ``batch_size`` (the last padded): read each clip's context once, then ``horizon - 1``
    single-frame steps with the states carried. Same layout as :func:`rollout`; ``on_batch(n)``
    after each batch, ``n`` the frames it predicted (``horizon`` per clip)."""
    outs = []
    for start in range(0, len(context), batch_size):
        chunk = np.asarray(context[start : start + batch_size], np.float32)
        n = len(chunk)
        if n < batch_size:
            chunk = np.concatenate(
                [chunk, np.zeros((batch_size - n,) + chunk.shape[1:], np.float32)]
            )
        outs.append(stepper.rollout(chunk, horizon)[:n])
        if on_batch is not None:
            on_batch(n * horizon)
    return np.concatenate(outs)


def rollout_for(model: keras.Model, manifest: Manifest) -> Callable[..., np.ndarray]:
    """``fn(context, horizon, batch_size, on_batch=None)`` rolling out as the manifest says the
    model does."""
    if getattr(manifest, "rollout", "sliding_window") == "carried_state":
        from models.rollout import stepper

        s = stepper(model)
        return lambda context, horizon, batch_size=32, on_batch=None: carried_rollout(
            s, context, horizon, batch_size, on_batch
        )
    return lambda context, horizon, batch_size=32, on_batch=None: rollout(
        model, context, horizon, batch_size, on_batch
    )


def _latency_ms(fn: Callable[[], object], repeats: int = 30) -> float:
    fn()  # warm-up (compiles)
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def evaluate_next_frame(
    model: keras.Model,
    manifest: Manifest,
    clips: np.ndarray,
    batch_size: int,
    horizon: int,
    progress: Progress | None = None,
) -> dict:
    """Rollout metrics, baselines and latency; ``progress`` (models/progress.py) is told each
    predicted frame (``len(clips) * horizon`` in all) and each later stage."""
    from models.progress import Progress

    progress = progress if progress is not None else Progress()
    frames = manifest.frames
    n_context = D.CONTEXT_FRAMES
    if frames > n_context:
        raise ValueError(f"model takes {frames} frames of context; test clips give {n_context}")
    context = clips[:, n_context - frames : n_context]  # (clips, frames, H, W, C)
    truth = clips[:, n_context : n_context + horizon]  # (clips, horizon, H, W, C)
    roll_fn = rollout_for(model, manifest)
    pred = roll_fn(context, horizon, batch_size, on_batch=progress.update)
    progress.stage("scoring")
    one = M.frame_report(pred[:, :1], truth[:, :1])
    roll = M.frame_report(pred, truth)
    baselines = {}
    for name, base in (
        ("copy_last_frame", M.copy_last_baseline(context, horizon)),
        ("all_black", M.black_baseline(truth)),
    ):
        baselines[name] = {
            "t_plus_1": _scalars(M.frame_report(base[:, :1], truth[:, :1])),
            "rollout": M.frame_report(base, truth),
        }
    x1 = context[:1]
    progress.stage("timing one clip")
    latency = _latency_ms(lambda: model.predict_on_batch(x1))
    latency_roll = _latency_ms(lambda: roll_fn(x1, horizon, 1), repeats=5)
    return {
        "t_plus_1": _scalars(one),
        "rollout": roll,
        "baselines": baselines,
        "latency_ms": {
            "one_clip_next_frame": round(latency, 2),
            f"one_clip_rollout_{horizon}": round(latency_roll, 2),
        },
    }


def _scalars(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "per_step"}


def evaluate_classify(
    model: keras.Model,
    manifest: Manifest,
    clips: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    progress: Progress | None = None,
) -> dict:
    """Accuracy, confusion matrix and latency; ``progress`` is told each classified clip."""
    from models.progress import Progress

    progress = progress if progress is not None else Progress()
    frames = manifest.frames
    x = clips[:, -frames:]
    scores = batched_call(model, x, batch_size, on_batch=progress.update)
    progress.stage("scoring")
    names = manifest.class_names
    cm = M.confusion_matrix(labels, scores.argmax(-1), len(names))
    per_class = (np.diag(cm) / np.maximum(cm.sum(axis=1), 1)).tolist()
    x1 = x[:1]
    progress.stage("timing one clip")
    return {
        "accuracy": M.accuracy(scores, labels),
        "top_2_accuracy": M.top_k_accuracy(scores, labels, 2),
        "per_class_accuracy": dict(zip(names, [round(v, 4) for v in per_class])),
        "confusion_matrix": {"rows_true_cols_predicted": names, "counts": cm.tolist()},
        "chance": 1.0 / len(names),
        "latency_ms": {
            "one_clip_classify": round(_latency_ms(lambda: model.predict_on_batch(x1)), 2)
        },
    }


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

    from models.progress import progress

    folder = Path(folder)
    manifest = read_manifest(folder)
    path = verify_checkpoint(folder, manifest)
    model = keras.models.load_model(path, safe_mode=True)
    mnist = D.load_mnist(mnist_dir)
    print(f"[framecast] MNIST source: {mnist.source}", flush=True)
    t0 = time.perf_counter()
    env = describe()
    card = {
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
        label, bar = QUALITY_BARS[manifest.architecture]
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
    return card


def _counterparts(folder: Path, manifest: Manifest) -> list[dict]:
    """The other architecture's models of the same task beside this one, with their budgets."""
    from models.repository import ManifestError, discover

    out = []
    for other in discover(folder.parent):
        if other.resolve() == folder.resolve():
            continue
        try:
            m = read_manifest(other)
        except ManifestError:
            continue
        if m.task == manifest.task and m.architecture != manifest.architecture:
            out.append(
                {
                    "name": m.name,
                    "architecture": m.architecture,
                    "params": m.params,
                    "clips_seen": m.training.get("clips_seen"),
                    "seed": m.training.get("seed"),
                    "learning_rate": m.training.get("learning_rate"),
                }
            )
    return out


def _fmt(v: float | None, nd: int = 2) -> str:
    return "—" if v is None else f"{v:,.{nd}f}"


def _lineage(t: dict) -> list[str]:
    """Card lines for the training objective and, for a fine-tuned model, the run it started
    from."""
    lines = [f"- **Objective**: {t['objective']}"] if t.get("objective") else []
    parent = t.get("init_from")
    if parent:
        lines.append(
            f"- **Started from** `{parent.get('name')}` "
            f"(sha256 `{str(parent.get('sha256'))[:16]}…`, "
            f"{parent.get('clips_seen', 0):,} clips, "
            f"objective: {parent.get('objective') or 'teacher forcing'}), "
            f"itself trained with `{parent.get('command')}`; "
            f"{t.get('clips_seen_this_run', 0):,} clips "
            "in this run, the clips-seen figure above counts both"
        )
    return lines


def render_card(card: dict) -> str:
    """The Markdown model card."""
    t = card.get("training", {})
    env = t.get("environment", {})
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"- **Architecture**: {card['architecture']}  ·  **task**: {card['task']}",
        f"- **Input**: {card['input']['frames']} frames × {card['input']['height']}×"
        f"{card['input']['width']}×{card['input']['channels']}, values in [0, 1]",
        *(
            [
                f"- **Rollout** (`horizon=k`, served and evaluated): {card['rollout']}"
                + (
                    " — the context is read once, then one frame a step with every recurrent "
                    "state carried"
                    if card["rollout"] == "carried_state"
                    else " — the model re-reads its last frames at every step"
                )
            ]
            if card.get("rollout") and card["task"] == "next_frame"
            else []
        ),
        f"- **Parameters**: {card['params']:,}  ·  **FLOPs per clip**: "
        f"{card['flops_per_clip'] / 1e6:,.1f} M  ·  **checkpoint**: "
        f"{card['checkpoint_bytes'] / 1e6:.2f} MB, sha256 `{card['checkpoint_sha256'][:16]}…`",
        "",
        "## Training",
        "",
        f"- **Command**: `{t.get('command', '—')}`",
        f"- **Seed**: {t.get('seed', '—')}  ·  **epochs**: {t.get('epochs', '—')} × "
        f"{t.get('steps_per_epoch', '—')} steps × batch {t.get('batch_size', '—')}  ·  "
        f"**clips seen**: {t.get('clips_seen', 0):,}",
        *_lineage(t),
        f"- **Data**: {t.get('data', {}).get('clips', '—')}; digits "
        f"{t.get('data', {}).get('digits', '—')}; {t.get('data', {}).get('generated', '')}",
        f"- **Data source**: {t.get('data', {}).get('source', '—')}",
        f"- **Loss / optimiser**: {t.get('loss', '—')}; {t.get('schedule', '—')}, peak lr "
        f"{t.get('learning_rate', '—')}",
        f"- **Wall time**: {t.get('wall_time_s', 0) / 60:.1f} min "
        f"on {hardware_summary(env) if env else '—'}"
        + (
            f" (plus {t['init_from']['wall_time_s'] / 60:.1f} min for the run it started from)"
            if (t.get("init_from") or {}).get("wall_time_s")
            else ""
        ),
        "",
        "## Evaluation",
        "",
        f"- **Test set**: {card['test_set']['clips']:,} clips "
        f"from digits {card['test_set']['digits']} "
        f"(seed {card['test_set']['seed']}, fixed in code)"
        + (f"; {card['test_set']['protocol']}" if card["test_set"].get("protocol") else ""),
        f"- **Evaluated on**: {hardware_summary(card['evaluated_with'])}, {card['evaluated_at']}",
        "",
    ]
    m = card["metrics"]
    if card["task"] == "next_frame":
        lines += [
            "MSE and MAE are per frame (sum over the frame's 64×64 pixels, values in [0, 1]), "
            "averaged over frames and clips, as in PredRNN and OpenSTL.",
            "",
            "| predictor | t+1 MSE | 10→10 MSE | 10→10 MAE | SSIM | PSNR (dB) |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| **this model** | {_fmt(m['t_plus_1']['mse_per_frame'])} | "
            f"**{_fmt(m['rollout']['mse_per_frame'])}** | {_fmt(m['rollout']['mae_per_frame'])} | "
            f"{_fmt(m['rollout']['ssim'], 3)} | {_fmt(m['rollout']['psnr'])} |",
        ]
        for name, b in m["baselines"].items():
            lines.append(
                f"| baseline: {name.replace('_', ' ')} | {_fmt(b['t_plus_1']['mse_per_frame'])} | "
                f"{_fmt(b['rollout']['mse_per_frame'])} | {_fmt(b['rollout']['mae_per_frame'])} | "
                f"{_fmt(b['rollout']['ssim'], 3)} | {_fmt(b['rollout']['psnr'])} |"
            )
        for p in card.get("published", []):
            lines.append(
                f"| published: {p['model']} ({p['source']}) | — | {_fmt(p['mse_per_frame'])} "
                f"| — | {_fmt(p['ssim'], 3)} | — |"
            )
        lines += [
            "",
            "Per rollout step (1 = first predicted frame):",
            "",
            "| step | "
            + " | ".join(str(i + 1) for i in range(len(m["rollout"]["per_step"]["mse_per_frame"])))
            + " |",
            "| --- |" + " ---: |" * len(m["rollout"]["per_step"]["mse_per_frame"]),
        ]
        for key, nd in (("mse_per_frame", 1), ("ssim", 3)):
            lines.append(
                f"| {key} | "
                + " | ".join(_fmt(v, nd) for v in m["rollout"]["per_step"][key])
                + " |"
            )
    else:
        names = m["confusion_matrix"]["rows_true_cols_predicted"]
        lines += [
            f"- **Accuracy**: {m['accuracy'] * 100:.2f}%  ·  "
            f"top-2: {m['top_2_accuracy'] * 100:.2f}%  "
            f"·  chance: {m['chance'] * 100:.1f}%",
            "",
            "Confusion matrix (rows: true direction, columns: predicted):",
            "",
            "| true \\ pred | " + " | ".join(names) + " |",
            "| --- |" + " ---: |" * len(names),
        ]
        for name, row in zip(names, m["confusion_matrix"]["counts"]):
            lines.append(f"| **{name}** | " + " | ".join(str(v) for v in row) + " |")
    t = card.get("training", {})
    for other in card.get("fair_comparison", []):
        same = (
            other["clips_seen"] == t.get("clips_seen")
            and other["seed"] == t.get("seed")
            and other["learning_rate"] == t.get("learning_rate")
        )
        lines += [
            "",
            "## Fair comparison",
            "",
            f"- Counterpart: `{other['name']}` ({other['architecture']}), "
            f"{other['params']:,} params vs {card['params']:,} here; "
            f"{other['clips_seen'] or 0:,} clips seen vs {t.get('clips_seen', 0):,} here. "
            + (
                "Same training budget, seed and learning rate."
                if same
                else "**Training budgets differ.**"
            ),
        ]
    lines += ["", "## Latency", ""]
    for k, v in m["latency_ms"].items():
        lines.append(
            f"- {k.replace('_', ' ')}: {v:.2f} ms (median, `predict_on_batch`, "
            f"{hardware_summary(card['evaluated_with'])})"
        )
    bar = card["quality_bar"]
    lines += [
        "",
        "## Quality bar",
        "",
        f"- {bar['rule']}: threshold {_fmt(bar['threshold'], 3)} → "
        f"**{'met' if bar['met'] else 'NOT met'}**",
        "",
    ]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", type=Path, help="model folder (model.keras + manifest.json)")
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
    p.add_argument("--batch-size", type=int, default=32)
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
