"""How the client commands show what the server answered: compare's answer as a table, the
conversion report (``X-Conversion``) in words."""

from __future__ import annotations

import json


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


def conversion_text(header: str | None) -> str:
    """The ``X-Conversion`` header (what fitting the upload changed) in words ("": nothing)."""
    try:
        c = json.loads(header or "{}")
    except ValueError:
        return ""
    said = []
    if c.get("resized_from"):
        h, w = c["resized_from"]
        said.append(f"resized from {w}x{h} (width x height, fit={c.get('fit')})")
    if c.get("channels_from"):
        said.append("colour turned to grey" if c["channels_from"] == 3 else "grey to RGB")
    if c.get("frames_dropped"):
        said.append(f"{c['frames_dropped']} earlier frame(s) not read")
    return "; ".join(said)
