"""Write the sample clips that the web page offers: held-out test clips as small GIFs.

    FRAMECAST_MNIST_DIR=/path/to/mnist python3 bench/page/make_samples.py

Clips come from ``models.data.test_set`` (real MNIST digits 8000-9999, the fixed test seeds), so
no model has trained on them. Next-frame samples hold all 20 frames (10 of context, 10 of future:
the page holds the last k back as truth); classification samples hold their 10 frames and the
true direction. Writes ``service/static/samples/*.gif`` and ``service/static/samples/index.json``
(id, file, task, label, frames, size, test-set index). Re-running gives the same bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from harness import ROOT

from models.data import DIRECTIONS, load_mnist, test_set
from service.media.encode import gif_bytes

OUT = ROOT / "service" / "static" / "samples"
NEXT_FRAME = (0, 1, 2)  # test-set indices
CLASSIFY_SAMPLES = 4  # the first test clips whose directions all differ


def _gif(clip: np.ndarray) -> bytes:
    """(T, H, W, 1) float in [0, 1] → a looping GIF; lossless for 8-bit grey."""
    data = gif_bytes(clip, duration_ms=150)
    import io

    from PIL import Image, ImageSequence

    with Image.open(io.BytesIO(data)) as im:  # Pillow merges identical frames: refuse those clips
        n = sum(1 for _ in ImageSequence.Iterator(im))
    if n != len(clip):
        raise SystemExit(f"GIF holds {n} frames, not {len(clip)} (identical consecutive frames)")
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist", help="MNIST folder or mnist.npz (default: FRAMECAST_MNIST_DIR)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    mnist = load_mnist(args.mnist)
    args.out.mkdir(parents=True, exist_ok=True)
    index = []

    # next_frame_clips draws clip by clip, so the first n clips equal test_set(...)[:n].
    clips = test_set(mnist, "next_frame", n=max(NEXT_FRAME) + 1)  # (n, 20, 64, 64, 1)
    for i in NEXT_FRAME:
        name = f"next_frame_{i:04d}.gif"
        (args.out / name).write_bytes(_gif(clips[i]))
        index.append(
            {
                "id": f"next_frame_{i:04d}",
                "file": name,
                "task": "next_frame",
                "label": None,
                "frames": int(clips.shape[1]),
                "height": int(clips.shape[2]),
                "width": int(clips.shape[3]),
                "test_index": i,
                "title": f"Two digits bouncing (test clip {i}, 20 frames)",
            }
        )

    # direction_clips draws every label first: build the whole test set to keep its indices.
    clips, labels = test_set(mnist, "classify")  # (2000, 10, 64, 64, 1), (2000,)
    chosen: dict[int, int] = {}  # label -> first test index with it
    for i, y in enumerate(labels.tolist()):
        if len(chosen) < CLASSIFY_SAMPLES:
            chosen.setdefault(y, i)
    for i in sorted(chosen.values()):
        label = DIRECTIONS[int(labels[i])]
        name = f"classify_{i:04d}.gif"
        (args.out / name).write_bytes(_gif(clips[i]))
        index.append(
            {
                "id": f"classify_{i:04d}",
                "file": name,
                "task": "classify",
                "label": label,
                "frames": int(clips.shape[1]),
                "height": int(clips.shape[2]),
                "width": int(clips.shape[3]),
                "test_index": i,
                "title": f"One digit moving {label} (test clip {i}, 10 frames)",
            }
        )

    (args.out / "index.json").write_text(
        json.dumps(
            {
                "source": "models.data.test_set on MNIST digits 8000-9999 "
                "(held out from training); written by bench/page/make_samples.py",
                "samples": index,
            },
            indent=1,
        )
        + "\n"
    )
    for s in index:
        size = (args.out / s["file"]).stat().st_size
        print(f"{s['file']:24s} {s['task']:10s} {s['label'] or '-':3s} {size:6d} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
