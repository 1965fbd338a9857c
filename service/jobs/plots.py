"""The report's pictures, drawn from the result alone: per-step curves of a metric with their 95 %
intervals (next frame), or each model's accuracy with its interval (classifiers), as inline SVG
for the HTML report and as a PNG (Pillow, already a dependency for frames: no plotting library
is added for two kinds of chart).
"""

from __future__ import annotations

import io
from html import escape
from typing import Any

from PIL import Image, ImageDraw

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]
W, H, LEFT, RIGHT, TOP, BOTTOM = 640, 300, 64, 16, 28, 44


def _series(result: dict[str, Any], metric: str) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for name, m in result["models"].items():
        entry = m["metrics"].get(metric)
        if entry is None:
            continue
        out[name] = entry.get("per_step") or [
            {"step": 1, "mean": entry["mean"], "ci95": entry["ci95"]}
        ]
    return out


def _bounds(series: dict[str, list[dict[str, Any]]]) -> tuple[float, float, int]:
    values = [v for pts in series.values() for p in pts for v in [p["mean"], *(p["ci95"] or [])]]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
    steps = max(len(p) for p in series.values())
    return lo - pad, hi + pad, steps


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"


class _Axes:
    def __init__(self, lo: float, hi: float, steps: int):
        self.lo, self.hi, self.steps = lo, hi, steps

    def x(self, step: int) -> float:
        span = max(self.steps - 1, 1)
        return (
            LEFT + (step - 1) * (W - LEFT - RIGHT) / span
            if self.steps > 1
            else (LEFT + W - RIGHT) / 2
        )

    def y(self, v: float) -> float:
        return TOP + (self.hi - v) * (H - TOP - BOTTOM) / (self.hi - self.lo)


def svg_curves(result: dict[str, Any], metric: str, title: str) -> str:
    """An inline SVG: each model's mean per step, its 95 % interval as a band."""
    series = _series(result, metric)
    if not series:
        return ""
    ax = _Axes(*_bounds(series))
    parts = [
        f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg" class="chart">',
        f'<text x="{LEFT}" y="16" class="title">{escape(title)}</text>',
    ]
    for v in _ticks(ax.lo, ax.hi):
        y = ax.y(v)
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    for s in range(1, ax.steps + 1):
        parts.append(
            f'<text x="{ax.x(s):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">t+{s}</text>'
        )
    for k, (name, pts) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        band = [p for p in pts if p["ci95"]]
        if band:
            upper = " ".join(f"{ax.x(p['step']):.1f},{ax.y(p['ci95'][1]):.1f}" for p in band)
            lower = " ".join(
                f"{ax.x(p['step']):.1f},{ax.y(p['ci95'][0]):.1f}" for p in reversed(band)
            )
            parts.append(f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.18"/>')
        line = " ".join(f"{ax.x(p['step']):.1f},{ax.y(p['mean']):.1f}" for p in pts)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for p in pts:
            parts.append(
                f'<circle cx="{ax.x(p["step"]):.1f}" cy="{ax.y(p["mean"]):.1f}" r="3" '
                f'fill="{colour}"><title>{escape(name)} t+{p["step"]}: '
                f"{_fmt(p['mean'])}</title></circle>"
            )
        lx = LEFT + 8 + k * 180
        parts.append(f'<rect x="{lx}" y="{H - 14}" width="12" height="4" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 16}" y="{H - 8}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def plot_png(result: dict[str, Any]) -> bytes:
    """The main metric as a PNG: per-step curves with bands (next frame) or one point with its
    interval per model (classifiers)."""
    metric = result.get("main_metric") or "mse_per_frame"
    series = _series(result, metric)
    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img, "RGBA")
    if not series:
        draw.text((LEFT, TOP), "no data", fill="black")
        return _png(img)
    ax = _Axes(*_bounds(series))
    draw.text(
        (LEFT, 8), f"{metric} per step: mean and 95 % CI ({result['clips']} clips)", fill="black"
    )
    for v in _ticks(ax.lo, ax.hi):
        y = ax.y(v)
        draw.line([(LEFT, y), (W - RIGHT, y)], fill=(225, 225, 225))
        draw.text((4, y - 6), _fmt(v), fill=(60, 60, 60))
    for s in range(1, ax.steps + 1):
        draw.text((ax.x(s) - 10, H - BOTTOM + 6), f"t+{s}", fill=(60, 60, 60))
    for k, (name, pts) in enumerate(series.items()):
        rgb = tuple(int(COLOURS[k % len(COLOURS)][i : i + 2], 16) for i in (1, 3, 5))
        band = [p for p in pts if p["ci95"]]
        if len(band) > 1:
            poly = [(ax.x(p["step"]), ax.y(p["ci95"][1])) for p in band]
            poly += [(ax.x(p["step"]), ax.y(p["ci95"][0])) for p in reversed(band)]
            draw.polygon(poly, fill=(*rgb, 50))
        elif band:
            x = ax.x(band[0]["step"])
            draw.line(
                [(x, ax.y(band[0]["ci95"][0])), (x, ax.y(band[0]["ci95"][1]))], fill=rgb, width=3
            )
        line = [(ax.x(p["step"]), ax.y(p["mean"])) for p in pts]
        if len(line) > 1:
            draw.line(line, fill=rgb, width=2)
        for x, y in line:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=rgb)
        lx = LEFT + 8 + k * 180
        draw.rectangle([lx, H - 16, lx + 12, H - 12], fill=rgb)
        draw.text((lx + 16, H - 20), name, fill="black")
    return _png(img)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
