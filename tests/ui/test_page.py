"""The web page in a real browser: Playwright driving Debian's Chromium against the real server.

Skips when Chromium or playwright is missing here; fails instead when ``CI`` is set. Screenshots
go to ``FRAMECAST_ARTIFACTS_DIR`` (default: a pytest temporary folder).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.data import DIRECTIONS
from service.config import Settings
from tests.ui.browser import chromium, missing_browser, save_page_models, serve

FRAMES, SIZE = 10, 64  # what the sample clips fit (service/static/samples)
NUMBER = re.compile(r"\d")


@pytest.fixture(scope="module")
def browser_ready():
    missing = missing_browser()
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this fails instead of skipping)")
        pytest.skip(message)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    d = os.environ.get("FRAMECAST_ARTIFACTS_DIR")
    path = Path(d) / "ui" if d else tmp_path_factory.mktemp("ui-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def page_models_dir(browser_ready, tmp_path_factory) -> Path:
    """Four tiny untrained models at the samples' shape: 10 frames of 64x64x1."""
    return save_page_models(tmp_path_factory.mktemp("ui-models"), frames=FRAMES, size=SIZE)


@pytest.fixture(scope="module")
def base_url(page_models_dir):
    settings = Settings(models_dir=page_models_dir, load_mode="blocking", max_horizon=12)
    with serve(settings) as url:
        yield url


@pytest.fixture(scope="module")
def browser(base_url):
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser, base_url):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base_url + "/")
    page.wait_for_selector("#sample option", state="attached")
    page.wait_for_function(
        "document.querySelector('#models-status').textContent.startsWith('Loaded')"
    )
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _compare(page) -> None:
    page.click("#run")
    page.wait_for_function(
        "!document.querySelector('#output').hidden || !document.querySelector('#error').hidden",
        timeout=120_000,
    )
    assert page.is_hidden("#error"), page.text_content("#error")


def _loaded_images(page, selector: str) -> int:
    """How many images under ``selector`` have loaded with real pixels."""
    return page.eval_on_selector_all(
        selector, "els => els.filter(e => e.complete && e.naturalWidth > 0).length"
    )


def _assert_model_panels(page, horizon: int) -> None:
    for arch in ("conv2d_lstm", "convlstm2d"):
        panel = f"#panel-{arch}"
        assert _loaded_images(page, f"{panel} .strip img") == horizon
        assert _loaded_images(page, f"{panel} img.anim") == 1
        stats = page.inner_text(f"{panel} .stats")
        for field in ("params", "latency", "MSE / frame", "SSIM"):
            assert field in stats
        latency = page.inner_text(f"{panel} .stats dt:text-is('latency') + dd")
        assert NUMBER.search(latency), stats
    assert page.locator("#chart-mse svg polyline").count() == 2
    assert page.locator("#chart-ssim svg polyline").count() == 2


def _gif(frames: np.ndarray) -> bytes:
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return buf.getvalue()


def _moving_square(t: int = 12) -> np.ndarray:
    out = np.zeros((t, SIZE, SIZE), np.uint8)
    for i in range(t):
        out[i, 20:36, 4 + 4 * i : 20 + 4 * i] = 255
    return out


def test_sample_clip_through_the_compare_view(page, artifacts):
    page.fill("#holdout", "4")
    assert page.input_value("#horizon") == "4" and page.is_disabled("#horizon")
    _compare(page)
    assert _loaded_images(page, "#context-strip img") == FRAMES
    assert _loaded_images(page, "#truth-strip img") == 4
    _assert_model_panels(page, horizon=4)
    assert "Next frame: 4 step(s)" in page.inner_text("#summary")
    shot = page.screenshot(path=str(artifacts / "sample_next_frame.png"), full_page=True)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    no_alt = page.eval_on_selector_all("img", "els => els.filter(e => !e.alt).length")
    assert no_alt == 0


def test_uploaded_gif_through_the_compare_view(page, artifacts):
    dropped = page.evaluate_handle("""() => { const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array([1, 2, 3])], 'frame10.png'));
        dt.items.add(new File([new Uint8Array([1, 2, 3])], 'frame9.png')); return dt; }""")
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})  # drag-and-drop
    assert page.is_checked("#source-upload")
    assert "frame9.png, frame10.png" in page.inner_text("#file-list")  # in natural order
    page.set_input_files(
        "#file",
        files=[{"name": "square.gif", "mimeType": "image/gif", "buffer": _gif(_moving_square(12))}],
    )
    assert "square.gif" in page.inner_text("#file-list")
    page.fill("#holdout", "2")
    _compare(page)
    assert _loaded_images(page, "#context-strip img") == FRAMES
    _assert_model_panels(page, horizon=2)
    page.screenshot(path=str(artifacts / "upload_gif.png"), full_page=True)


def test_a_bad_upload_shows_the_error_message(page, artifacts):
    page.check("#source-upload")
    page.set_input_files(
        "#file",
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"these are not frames"}],
    )
    page.click("#run")
    page.wait_for_selector("#error", state="visible", timeout=60_000)
    message = page.inner_text("#error")
    assert "notes.txt" in message and "not a supported format" in message and "415" in message
    assert page.is_hidden("#output")
    page.screenshot(path=str(artifacts / "bad_upload.png"), full_page=True)

    # too few frames for the holdout: the API's 422 message, not a blank panel
    page.set_input_files(
        "#file",
        files=[{"name": "short.gif", "mimeType": "image/gif", "buffer": _gif(_moving_square(4))}],
    )
    page.fill("#holdout", "2")
    page.click("#run")
    page.wait_for_function("document.querySelector('#error').textContent.includes('422')")
    assert "frame" in page.inner_text("#error")


def test_classify_sample_shows_both_models_scores_as_bars(page, artifacts):
    sample = page.eval_on_selector("#sample optgroup:last-child option", "o => o.value")
    page.select_option("#sample", sample)
    assert page.is_checked("#task-classify")
    label = page.input_value("#label")
    assert label in DIRECTIONS
    _compare(page)
    for arch in ("conv2d_lstm", "convlstm2d"):
        bars = page.locator(f"#panel-{arch} .bars .bar-track")
        assert bars.count() == len(DIRECTIONS)
        assert page.locator(f"#panel-{arch} .bars .bar-label.true").inner_text() == label
        assert NUMBER.search(page.inner_text(f"#panel-{arch} .stats dt:text-is('latency') + dd"))
    assert page.is_hidden("#charts")
    page.screenshot(path=str(artifacts / "sample_classify.png"), full_page=True)


def test_narrow_screen_and_keyboard(browser, base_url, artifacts):
    context = browser.new_context(viewport={"width": 360, "height": 800})
    page = context.new_page()
    try:
        page.goto(base_url + "/")
        page.wait_for_function(
            "document.querySelector('#models-status').textContent.startsWith('Loaded')"
        )
        unlabelled = page.eval_on_selector_all(
            "input, select", "els => els.filter(e => !e.labels.length).length"
        )
        assert unlabelled == 0
        page.fill("#holdout", "2")
        page.focus("#run")
        page.keyboard.press("Enter")  # the form submits from the keyboard
        page.wait_for_selector("#output", state="visible", timeout=120_000)
        _assert_model_panels(page, horizon=2)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"the page scrolls sideways at 360 px ({width} px wide)"
        page.screenshot(path=str(artifacts / "narrow_360.png"), full_page=True)
    finally:
        context.close()
