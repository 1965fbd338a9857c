"""Screenshot of the web page showing a compare result (docs/screenshot.png, on the getting
started page).

    python3 bench/page/screenshot.py                          # the bundled models/ (trained ones)
    python3 bench/page/screenshot.py --tiny                   # tiny untrained models (no
    checkpoints) python3 bench/page/screenshot.py --sample next_frame_0001 --holdout 10 --out
    docs/screenshot.png

Starts the real server on loopback and drives Debian's Chromium (/usr/bin/chromium) with
Playwright, as tests/ui does: picks the sample clip, presses Compare, saves a full-page PNG.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the shared harness
from harness import ROOT

from service.config import Settings
from tests.ui.browser import chromium, missing_browser, save_page_models, serve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models-dir", type=Path, help="folder of model folders (default: bundled)")
    p.add_argument("--tiny", action="store_true", help="serve tiny untrained models instead")
    p.add_argument("--sample", default="next_frame_0000", help="sample id (samples/index.json)")
    p.add_argument("--holdout", type=int, default=10, help="frames held back as truth")
    p.add_argument("--width", type=int, default=1200, help="viewport width in CSS pixels")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    args = p.parse_args(argv)
    if missing_browser():
        print("needs " + " and ".join(missing_browser()), file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        models_dir = save_page_models(Path(tmp)) if args.tiny else args.models_dir
        settings = Settings(
            load_mode="blocking",
            max_horizon=max(args.holdout, 1),
            **({"models_dir": models_dir} if models_dir else {}),
        )
        with serve(settings) as url, chromium() as browser:
            page = browser.new_page(viewport={"width": args.width, "height": 900})
            page.goto(url + "/")
            page.wait_for_selector("#sample option", state="attached")
            page.select_option("#sample", args.sample)
            if page.is_checked("#task-next"):
                page.fill("#holdout", str(args.holdout))
            page.click("#run")
            page.wait_for_function(
                "!document.querySelector('#output').hidden || "
                "!document.querySelector('#error').hidden",
                timeout=300_000,
            )
            if page.is_visible("#error"):
                print("the page shows an error: " + page.inner_text("#error"), file=sys.stderr)
                return 1
            page.click("#play")  # pause; show every animation's last frame (the predictions')
            page.evaluate(
                "state.anims.forEach(a => { a.i = a.frames.length - 1; "
                "a.img.src = 'data:image/png;base64,' + a.frames[a.i]; })"
            )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
