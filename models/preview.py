"""`framecast data preview`: write a PNG grid and an animated GIF of a few clips to look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models import data as D


def grid(clips: np.ndarray, gap: int = 2) -> np.ndarray:
    """(clips, time, H, W, 1) in [0, 1] -> one uint8 image: a row per clip, a column per frame."""
    n, t, h, w = clips.shape[:4]
    img = np.full((n * (h + gap) - gap, t * (w + gap) - gap), 128, dtype=np.uint8)
    for i in range(n):
        for j in range(t):
            img[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = np.clip(
                clips[i, j, ..., 0] * 255 + 0.5, 0, 255
            ).astype(np.uint8)
    return img


def write_preview(
    out: str | Path,
    *,
    task: str = "next_frame",
    n: int = 4,
    seed: int = 0,
    mnist_dir: str | None = None,
    split: str = "train",
    scale: int = 2,
) -> list[Path]:
    from PIL import Image

    if n < 1 or n > 64:
        raise ValueError(f"--clips must be between 1 and 64, got {n}")
    mnist = D.load_mnist(mnist_dir)
    digits = mnist.digits(split)
    labels = None
    if task == "next_frame":
        clips = D.next_frame_clips(digits, n, seed)
    else:
        clips, labels = D.direction_clips(digits, n, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{task}_clips.png"
    g = Image.fromarray(grid(clips))
    g.resize((g.width * scale, g.height * scale), Image.Resampling.NEAREST).save(png)
    # GIF: every clip side by side, one GIF frame per time step
    frames = []
    for t in range(clips.shape[1]):
        row = np.concatenate([clips[i, t, ..., 0] for i in range(n)], axis=1)
        im = Image.fromarray(np.clip(row * 255 + 0.5, 0, 255).astype(np.uint8))
        frames.append(im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST))
    gif = out / f"{task}_clips.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=150, loop=0)
    paths = [png, gif]
    if labels is not None:
        txt = out / f"{task}_labels.txt"
        txt.write_text("\n".join(D.DIRECTIONS[k] for k in labels) + "\n")
        paths.append(txt)
    print(f"[framecast] MNIST source: {mnist.source}")
    return paths


def write_rollout_figure(
    model_dirs: list[str | Path],
    out: str | Path,
    *,
    index: int = 0,
    mnist_dir: str | None = None,
    scale: int = 2,
) -> Path:
    """A held-out test clip, its truth and each next-frame model's 10-frame rollout, as one PNG.

    Rows: context (frames 1-10), truth (11-20), then one row per model (its rollout 11-20).
    """
    import keras
    from PIL import Image, ImageDraw

    from models.evaluation.protocol import fixed_frames, rollout_for
    from models.repository import read_manifest, verify_checkpoint

    mnist = D.load_mnist(mnist_dir)
    clip = D.test_set(mnist, "next_frame", index + 1)[index : index + 1]  # (1, 20, 64, 64, 1)
    context, truth = clip[:, : D.CONTEXT_FRAMES], clip[:, D.CONTEXT_FRAMES :]
    rows, labels = [context, truth], ["context", "truth"]
    for folder in model_dirs:
        man = read_manifest(folder)
        if man.task != "next_frame":
            raise ValueError(f"{folder} is a {man.task} model; the figure needs next_frame models")
        model = keras.models.load_model(verify_checkpoint(folder, man), safe_mode=True)
        roll = rollout_for(model, man)
        rows.append(roll(context[:, -fixed_frames(man) :], truth.shape[1], batch_size=1))
        labels.append(man.architecture)
    img = Image.fromarray(grid(np.concatenate(rows)))
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    margin = 110
    canvas = Image.new("L", (img.width + margin, img.height), 255)
    canvas.paste(img, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    row_h = img.height / len(rows)
    for i, label in enumerate(labels):
        draw.text((6, int(i * row_h + row_h / 2 - 6)), label, fill=0)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out
