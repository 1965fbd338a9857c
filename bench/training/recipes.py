"""Training recipes for the ConvLSTM2D forecaster, compared per CPU-hour (issue #28, item 1).

    python3 bench/training/recipes.py --mnist-dir DIR [--budget-s 3600] [--only NAME[,NAME]]
        [--out docs/bench/recipes.json] [--runs runs/recipes] [--core 1]

Each candidate is one ``framecast train --forecast`` run of the ConvLSTM2D next-frame model from
the same start (seed, data, schedule), pinned to one core (``taskset``), niced, with TensorFlow's
thread pools at one thread, and stopped once the training process has used ``--budget-s`` seconds
of CPU time (user + system, read from ``/proc``). After every epoch the script records clips seen,
CPU seconds, wall seconds and the held-out figure: MSE per frame of the 10 predicted frames on the
fixed validation set (128 clips from the training digits, closed loop, as served; the test digits
are never touched). Clips per CPU-second follow from those.

The JSON is rewritten after every point, so a run that is stopped (a session that ends) resumes
where it was: ``framecast train`` resumes from its last epoch and the CPU seconds already spent are
carried over (the epoch in progress when it stopped is lost and not counted). A candidate whose
budget is spent is marked done and skipped.

The learning rate follows a cosine schedule planned over ``--plan-clips`` (far beyond one hour), so
every candidate sees the same learning rate at the same clip count.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from models.repository import atomic_write_text  # noqa: E402

# name -> (what it tries, the flags it adds to the common command)
CANDIDATES: dict[str, tuple[str, list[str]]] = {
    "base": ("today's recipe from scratch: 2x64 cells, 3x3 kernels, MSE, float32", []),
    "bf16": (
        "the same under mixed_bfloat16 (AVX-512 BF16 on this CPU)",
        ["--precision", "mixed_bfloat16"],
    ),
    "k5": ("5x5 kernels (OpenSTL's ConvLSTM-S uses 5x5)", ["--config", '{"kernel_size": 5}']),
    "l1l2": ("L1 + L2 loss (sharper edges than L2 alone)", ["--loss", "l1l2"]),
    "wide": ("wider cells, 2x96", ["--config", '{"filters": [96, 96]}']),
}


def common_flags(args: argparse.Namespace) -> list[str]:
    epochs = max(1, args.plan_clips // (args.steps * args.batch_size))
    return [
        "--arch", "convlstm2d", "--task", "next_frame", "--forecast",
        "--loss", "mse", "--lr", str(args.lr), "--seed", str(args.seed),
        "--epochs", str(epochs), "--steps", str(args.steps),
        "--batch-size", str(args.batch_size),
        "--sampling-clips", str(args.sampling_clips),
        "--val-clips", str(args.val_clips), "--quiet",
    ]  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _later_flag(flags: list[str], name: str) -> list[str]:
    """Drop an earlier ``name VALUE`` pair when the candidate sets ``name`` again."""
    out, i = [], 0
    while i < len(flags):
        if flags[i] == name:
            i += 2
            continue
        out.append(flags[i])
        i += 1
    return out


def command(args: argparse.Namespace, name: str) -> list[str]:
    extra = CANDIDATES[name][1]
    flags = common_flags(args)
    for f in extra[::2]:
        flags = _later_flag(flags, f)
    flags += extra + ["--out", str(args.runs / name)]
    if args.mnist_dir:
        flags += ["--mnist-dir", str(args.mnist_dir)]
    return [sys.executable, "-m", "service.cli", "train", *flags]


def portable(cmd: list[str]) -> str:
    """The command as anyone can rerun it: ``python3 -m service.cli train ...`` with the run
    folder relative to the project and the digits as ``$FRAMECAST_MNIST_DIR`` (not this
    machine's paths)."""
    out, args = [], list(cmd[4:])  # after: python -m service.cli train
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--out" and i + 1 < len(args):
            path = Path(args[i + 1])
            try:
                path = path.resolve().relative_to(ROOT.resolve())
            except ValueError:
                pass
            out += [a, str(path)]
            i += 2
        elif a == "--mnist-dir" and i + 1 < len(args):
            out += [a, "$FRAMECAST_MNIST_DIR"]
            i += 2
        else:
            out.append(a)
            i += 1
    return " ".join(
        [
            "python3",
            "-m",
            "service.cli",
            "train",
            *(shlex.quote(x) if not x.startswith("$") else x for x in out),
        ]
    )


def run_candidate(args: argparse.Namespace, name: str, record: dict, save) -> None:
    cmd = command(args, name)
    prefix = ["nice", "-n", str(args.nice)]
    if args.core is not None:
        prefix = ["taskset", "-c", str(args.core), *prefix]
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    record.setdefault("points", [])
    state_file = args.runs / name / "checkpoints" / "state.json"
    if record["points"] and not state_file.is_file():  # e.g. a new machine: runs/ is not in git
        print(f"[recipes] {name}: no run state in {args.runs / name}; starting it over", flush=True)
        record["points"] = []
    record["command"] = portable(cmd)
    offset = record["points"][-1]["cpu_s"] if record["points"] else 0.0
    wall_offset = record["points"][-1]["wall_s"] if record["points"] else 0.0
    log = (args.runs / f"{name}.log").open("a")
    t0 = time.monotonic()
    # SIGINT at its default in the child, so that Python turns it into KeyboardInterrupt (a run
    # started in the background, with nohup or &, inherits it ignored): train saves and stops.
    proc = subprocess.Popen(
        [*prefix, *cmd],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen_epoch = json.loads(state_file.read_text())["epoch"] if state_file.is_file() else 0
    cpu = offset
    try:
        while proc.poll() is None:
            time.sleep(args.poll_s)
            try:
                cpu = offset + cpu_seconds(proc.pid)
            except (FileNotFoundError, ProcessLookupError):
                break
            if state_file.is_file():
                try:
                    state = json.loads(state_file.read_text())
                except json.JSONDecodeError:  # never half-written (atomic), but be safe
                    state = None
                per_epoch = args.steps * args.batch_size
                # every epoch finished since the last look (CPU seconds as read now, within
                # --poll-s of its end)
                while state and state["epoch"] > seen_epoch:
                    logs = state["history"][seen_epoch - state["epoch"]]
                    seen_epoch += 1
                    record["points"].append(
                        {
                            "epoch": seen_epoch,
                            "clips": seen_epoch * per_epoch,
                            "cpu_s": round(cpu, 1),
                            "wall_s": round(wall_offset + time.monotonic() - t0, 1),
                            "val_mse_per_frame": round(logs["val_rollout_mse"] * 4096, 2),
                            "train_mse_per_frame": round(logs["rollout_mse"] * 4096, 2),
                        }
                    )
                    save()
                    p = record["points"][-1]
                    print(
                        f"[recipes] {name}: {p['clips']} clips, {p['cpu_s']:.0f} CPU s, "
                        f"val {p['val_mse_per_frame']:.2f}",
                        flush=True,
                    )
            if cpu >= args.budget_s:
                proc.send_signal(signal.SIGINT)
                break
        proc.wait(timeout=600)
    except KeyboardInterrupt:  # this script stopped: the run saves its finished epochs and stops
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=600)
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    if cpu >= args.budget_s:
        record["done"] = True
    elif proc.returncode not in (0, 130, -signal.SIGINT):
        record["error"] = f"framecast train exited {proc.returncode}; see {args.runs / name}.log"
    summarise(record)
    save()


def summarise(record: dict) -> None:
    pts = record.get("points") or []
    if not pts:
        return
    best = min(pts, key=lambda p: p["val_mse_per_frame"])
    last = pts[-1]
    record["summary"] = {
        "clips": last["clips"],
        "cpu_s": last["cpu_s"],
        "clips_per_cpu_s": round(last["clips"] / last["cpu_s"], 3),
        "best_val_mse_per_frame": best["val_mse_per_frame"],
        "best_at_clips": best["clips"],
        "last_val_mse_per_frame": last["val_mse_per_frame"],
    }


def _val_at(points: list[dict], clips: int) -> str:
    hit = [p["val_mse_per_frame"] for p in points if p["clips"] == clips]
    return f"{hit[0]:.1f}" if hit else ""


def table(doc: dict, check: dict | None = None) -> str:
    """models/TRAINING.md's table of the candidates (and, with ``check``, the same-session speed
    check of ``base``), from the JSON."""
    rows = [
        "| candidate | clips | CPU s | clips / CPU s | val at 5,760 | at 10,880 | at 15,360 "
        "| best (at clips) | status |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    budget = doc.get("budget_cpu_s", 3600.0)
    entries = [(n, r, "") for n, r in doc["candidates"].items()]
    if check:
        entries += [(n, r, " (speed check)") for n, r in check["candidates"].items()]
    for name, rec, note in entries:
        pts = rec.get("points") or []
        if not pts:
            continue
        summarise(rec)  # from the points as they are (a partial run's stored one may be older)
        s = rec["summary"]
        status = (
            "hour done" if rec.get("done") and not note else
            f"{s['cpu_s'] / budget:.0%} of an hour" if not rec.get("done") else
            f"{s['cpu_s']:,.0f} CPU s, as planned"
        )  # fmt: skip
        rows.append(
            f"| `{name}`{note} | {s['clips']:,} | {s['cpu_s']:,.0f} | {s['clips_per_cpu_s']:.1f} "
            f"| {_val_at(pts, 5760)} | {_val_at(pts, 10880)} | {_val_at(pts, 15360)} "
            f"| {s['best_val_mse_per_frame']:.1f} ({s['best_at_clips']:,}) | {status} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mnist-dir", type=Path, default=None)
    p.add_argument("--budget-s", type=float, default=3600.0, help="CPU seconds per candidate")
    p.add_argument("--only", default=None, help="comma-separated candidate names")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "recipes.json")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "recipes")
    p.add_argument("--core", type=int, default=1, help="CPU core to pin to (-1: no pinning)")
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("--steps", type=int, default=40, help="batches per epoch (one curve point)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--sampling-clips", type=int, default=10000)
    p.add_argument("--val-clips", type=int, default=128)
    p.add_argument("--plan-clips", type=int, default=192000, help="the cosine schedule's length")
    p.add_argument("--poll-s", type=float, default=2.0)
    p.add_argument(
        "--table", action="store_true",
        help="print models/TRAINING.md's table from --out (and the speed check's JSON)",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.table:
        check_file = ROOT / "docs" / "bench" / "recipes-speed-check.json"
        check = json.loads(check_file.read_text()) if check_file.is_file() else None
        print(table(json.loads(args.out.read_text()), check))
        return 0
    if args.core is not None and args.core < 0:
        args.core = None
    names = args.only.split(",") if args.only else list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        p.error(f"unknown candidate(s) {unknown}; known: {', '.join(CANDIDATES)}")
    args.runs.mkdir(parents=True, exist_ok=True)
    doc = json.loads(args.out.read_text()) if args.out.is_file() else {}
    doc.update(
        what="ConvLSTM2D forecaster recipes, one CPU budget each, same start",
        budget_cpu_s=args.budget_s,
        held_out="MSE per frame, 10 predicted frames, 128 fixed validation clips (training digits)",
        common=shlex.join(common_flags(args)),
    )
    doc.setdefault("candidates", {})

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(doc, indent=2) + "\n")

    def stop(signum: int, frame: object) -> None:  # kill, docker stop: as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    for name in names:
        rec = doc["candidates"].setdefault(name, {"what": CANDIDATES[name][0]})
        if rec.get("done"):
            print(f"[recipes] {name}: done already, skipped", flush=True)
            continue
        print(f"[recipes] {name}: {CANDIDATES[name][0]}", flush=True)
        run_candidate(args, name, rec, save)
        if rec.get("error"):
            print(f"[recipes] {name}: {rec['error']}", file=sys.stderr, flush=True)
    done = {n: r["summary"] for n, r in doc["candidates"].items() if r.get("summary")}
    for n, s in done.items():
        print(
            f"{n:6s} {s['clips']:>7d} clips  {s['clips_per_cpu_s']:.2f} clips/CPU-s  "
            f"best val {s['best_val_mse_per_frame']:.2f} at {s['best_at_clips']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
