"""Labelled montages of frame rows (the compare routes' ``output=png|gif``): one PNG grid, or an
animated GIF in which every row plays the context, then its own future frames."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from service.media.encode import to_uint8

_LABEL_W = 96


def _cell_scale(h: int) -> int:
    return max(1, 64 // max(h, 1))


def _upscale(frame: np.ndarray, s: int) -> np.ndarray:
    return frame if s == 1 else np.repeat(np.repeat(frame, s, axis=0), s, axis=1)


def _rgb(frame: np.ndarray) -> np.ndarray:
    return np.repeat(frame, 3, axis=-1) if frame.shape[-1] == 1 else frame[..., :3]


def _label_image(rows: list[str], cell_h: int, gap: int) -> Image.Image:
    col = Image.new("RGB", (_LABEL_W, len(rows) * (cell_h + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(col)
    font = ImageFont.load_default()
    for r, text in enumerate(rows):
        lines = text.count("\n") + 1
        draw.multiline_text(
            (4, r * (cell_h + gap) + max(0, cell_h // 2 - 6 * lines)),
            text,
            fill=(0, 0, 0),
            font=font,
            spacing=2,
        )
    return col


def _span(first: str, last: str) -> str:
    return first if first == last else f"{first} to {last}"  # the default font has no en dash


def _times(label: str, n: int, future: bool) -> str:
    """A row's label over the time of its frames: "context\n1 to 10", "truth\nt+1 to t+3"."""
    if n == 0:
        return label
    return f"{label}\n" + (_span("t+1", f"t+{n}") if future else _span("1", str(n)))


def montage_png(rows: list[tuple[str, np.ndarray | None]], gap: int = 2) -> bytes:
    """Rows of frames (label, (T, H, W, C) or None) → one labelled PNG; missing cells stay grey.

    The first row is the context (labelled with its frame numbers, 1 to T); every other row holds
    future frames and is labelled t+1 to t+k.

    All frames must share (H, W); colour and grey rows mix (grey is shown as RGB).
    """
    shapes = [f.shape for _, f in rows if f is not None and len(f)]
    h, w = shapes[0][1:3]
    s = _cell_scale(h)
    ch, cw = h * s, w * s
    cols = max(f.shape[0] for _, f in rows if f is not None)
    grid = np.full((len(rows) * (ch + gap), cols * (cw + gap), 3), 0.5, np.float32)
    for r, (_, frames) in enumerate(rows):
        if frames is None:
            continue
        for t in range(frames.shape[0]):
            y, x = r * (ch + gap), t * (cw + gap)
            grid[y : y + ch, x : x + cw] = _upscale(_rgb(frames[t]), s)
    labels = _label_image(
        [
            _times(label, 0 if f is None else f.shape[0], future=r > 0)
            for r, (label, f) in enumerate(rows)
        ],
        ch,
        gap,
    )
    out = Image.new("RGB", (labels.width + grid.shape[1], grid.shape[0]), (255, 255, 255))
    out.paste(labels, (0, 0))
    out.paste(Image.fromarray(to_uint8(grid), mode="RGB"), (labels.width, 0))
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


def montage_gif(
    context: np.ndarray,
    rows: list[tuple[str, np.ndarray | None]],
    duration_ms: int = 200,
    gap: int = 2,
) -> bytes:
    """An animated montage: every row plays the context, then its own future frames.

    ``rows`` are (label, (k, H, W, C) or None) for the future part; the first row is "context",
    which holds its last frame while the others play their futures. Every row's label says the
    time of the frame it shows ("frame 3" in the context, "t+2" in a future).
    """
    t_ctx = context.shape[0]
    k = max((f.shape[0] for _, f in rows if f is not None), default=0)
    h, w = context.shape[1:3]
    s = _cell_scale(h)
    ch, cw = h * s, w * s
    n_rows = 1 + len(rows)
    images = []
    for step in range(t_ctx + k):
        # each animation frame says when it is: "frame i" while the context plays, "t+j" after
        now = f"frame {step + 1}" if step < t_ctx else f"t+{step - t_ctx + 1}"
        labels = _label_image(
            [f"context\nframe {min(step, t_ctx - 1) + 1}"]
            + [
                f"{label}\n{now}"
                if step < t_ctx or (fut is not None and step - t_ctx < fut.shape[0])
                else label
                for label, fut in rows
            ],
            ch,
            gap,
        )
        grid = np.full((n_rows * (ch + gap), cw, 3), 0.5, np.float32)
        for r in range(n_rows):
            if r == 0:
                frame = context[min(step, t_ctx - 1)]
            else:
                fut = rows[r - 1][1]
                if step < t_ctx:
                    frame = context[step]
                elif fut is not None and step - t_ctx < fut.shape[0]:
                    frame = fut[step - t_ctx]
                else:
                    continue
            grid[r * (ch + gap) : r * (ch + gap) + ch] = _upscale(_rgb(frame), s)
        img = Image.new("RGB", (labels.width + cw, grid.shape[0]), (255, 255, 255))
        img.paste(labels, (0, 0))
        img.paste(Image.fromarray(to_uint8(grid), mode="RGB"), (labels.width, 0))
        images.append(img)
    buf = io.BytesIO()
    images[0].save(
        buf, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0
    )
    return buf.getvalue()
