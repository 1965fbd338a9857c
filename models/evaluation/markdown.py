"""The Markdown model card (card.md), rendered from the card's JSON (``card.py``)."""

from __future__ import annotations

from models.runs.env import hardware_summary


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
