"""Write the frames of a multi-frame image (GIF, APNG, TIFF) as numbered PNG files, as a camera
would deliver them one by one (the stream examples in docs/streams.md use it).

    python3 examples/gif_frames.py service/static/samples/next_frame_0000.gif out/frames
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageSequence


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    src, out = Path(argv[0]), Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for n, page in enumerate(ImageSequence.Iterator(Image.open(src)), start=1):
        page.convert("L").save(out / f"frame_{n - 1:04d}.png")
    print(f"{n} frames written to {out}/frame_0000.png ...")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
