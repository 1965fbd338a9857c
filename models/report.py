"""The model table of docs/models.md, rendered from the committed model cards (never typed by hand).

python3 -m models.report            # Markdown table of every model under models/, and of the
                                    # evaluated runs under models/resume/ (not served)
python3 -m models.report DIR ...    # of the given model folders
"""

from __future__ import annotations

import sys
from pathlib import Path

from models.evaluation.card import PUBLISHED
from models.repository import BUNDLED_DIR, discover, read_card


def _f(v: float | None, nd: int = 1) -> str:
    return "—" if v is None else f"{v:,.{nd}f}"


RESUME = BUNDLED_DIR / "resume"  # resume states of runs; one with a card was evaluated


def default_folders() -> list[Path]:
    """The served models, then the evaluated runs kept as resume states (models/resume/*)."""
    runs = sorted(p for p in RESUME.iterdir() if (p / "card.json").is_file())
    return discover(BUNDLED_DIR) + runs


def _label(folder: Path, card: dict) -> str:
    label = card["name"]
    label += " (carried state)" if card.get("rollout") == "carried_state" else ""
    if folder.resolve().parent == RESUME.resolve():
        label += f", run `{folder.name}`, not served"
    return label


def table(folders: list[Path]) -> str:
    cards = []
    for f in folders:
        c = read_card(f)
        if c:
            cards.append({**c, "label": _label(f, c)})
    nf = [c for c in cards if c["task"] == "next_frame"]
    cl = [c for c in cards if c["task"] == "classify"]
    out = []
    if nf:
        out += [
            "| next-frame model | params | FLOPs/clip | CPU ms/clip | 10→10 MSE/frame | "
            "MAE/frame | SSIM | PSNR | t+1 MSE | clips seen |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for c in nf:
            m = c["metrics"]
            out.append(
                f"| {c['label']} | {c['params'] / 1e6:.2f} M | {c['flops_per_clip'] / 1e9:.2f} G | "
                f"{_f(m['latency_ms']['one_clip_next_frame'])} | "
                f"**{_f(m['rollout']['mse_per_frame'])}** | "
                f"{_f(m['rollout']['mae_per_frame'])} | {_f(m['rollout']['ssim'], 3)} | "
                f"{_f(m['rollout']['psnr'], 2)} | {_f(m['t_plus_1']['mse_per_frame'])} | "
                f"{c['training'].get('clips_seen', 0):,} |"
            )
        base = nf[0]["metrics"]["baselines"]
        for name, b in base.items():
            out.append(
                f"| baseline: {name.replace('_', ' ')} | — | — | — | "
                f"{_f(b['rollout']['mse_per_frame'])} | {_f(b['rollout']['mae_per_frame'])} | "
                f"{_f(b['rollout']['ssim'], 3)} | {_f(b['rollout']['psnr'], 2)} | "
                f"{_f(b['t_plus_1']['mse_per_frame'])} | — |"
            )
        for p in PUBLISHED:
            out.append(
                f"| published: {p['model']}, {p['source']} | — | — | — | {_f(p['mse_per_frame'])} "
                f"| — | {_f(p['ssim'], 3)} | — | — | — |"
            )
        out.append("")
    if cl:
        out += [
            "| classifier | params | FLOPs/clip | CPU ms/clip | accuracy | top-2 | clips seen |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for c in cl:
            m = c["metrics"]
            out.append(
                f"| {c['label']} | {c['params'] / 1e6:.2f} M | {c['flops_per_clip'] / 1e9:.2f} G "
                f"| {_f(m['latency_ms']['one_clip_classify'])} | **{m['accuracy'] * 100:.2f}%** | "
                f"{m['top_2_accuracy'] * 100:.2f}% | {c['training'].get('clips_seen', 0):,} |"
            )
        out.append(
            f"| baseline: chance | — | — | — | {cl[0]['metrics']['chance'] * 100:.1f}% | — | — |"
        )
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    folders = [Path(a) for a in argv] if argv else default_folders()
    print(table(folders))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
