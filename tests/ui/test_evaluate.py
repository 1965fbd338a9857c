"""The page's Evaluate view in Chromium: a data set file uploaded, the job's progress bar, the
verdict and the report (rendered in a frame), then a classifier's labelled data set. Skips
without Chromium or playwright here; fails instead when ``CI`` is set."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

from service.config import Settings
from tests.service.helpers import npy
from tests.ui.browser import chromium, require_browser, save_page_models, serve

SIZE, FRAMES = 64, 10


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    require_browser()
    root = save_page_models(tmp_path_factory.mktemp("eval-models"), frames=FRAMES, size=SIZE)
    settings = Settings(
        models_dir=root, load_mode="blocking", job_dir=tmp_path_factory.mktemp("eval-jobs")
    )
    with serve(settings) as url:
        yield url


@pytest.fixture(scope="module")
def browser(base_url):
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    d = os.environ.get("FRAMECAST_ARTIFACTS_DIR")
    path = Path(d) / "ui" if d else tmp_path_factory.mktemp("ui-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _clips(n: int, t: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    out = np.zeros((n, t, SIZE, SIZE), np.uint8)
    for i in range(n):
        x, y = rng.integers(0, SIZE - 12, 2)
        for j in range(t):
            out[i, j, y : y + 12, (x + 3 * j) % (SIZE - 12) : (x + 3 * j) % (SIZE - 12) + 12] = 255
    return out


def _open(browser, url, errors):
    context = browser.new_context(viewport={"width": 1200, "height": 1000})
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "console",
        lambda m: (
            m.type == "error" and "Failed to load resource" not in m.text and errors.append(m.text)
        ),
    )
    page.on("response", lambda r: r.status >= 400 and errors.append(f"{r.status} {r.url}"))
    page.goto(url + "/")
    page.wait_for_selector("#eval-picker input[type=checkbox]", state="attached")
    return context, page


def test_a_next_frame_data_set_runs_with_a_progress_bar_and_shows_its_report(
    browser, base_url, tmp_path, artifacts
):
    data = tmp_path / "clips.npy"
    data.write_bytes(npy(_clips(8, FRAMES + 2)))
    errors: list[str] = []
    context, page = _open(browser, base_url, errors)
    try:
        picked = page.eval_on_selector_all(
            "#eval-picker input:checked", "els => els.map(e => e.value)"
        )
        assert sorted(picked) == ["conv2d_lstm_next_frame", "convlstm2d_next_frame"]
        page.set_input_files("#eval-file", str(data))
        page.fill("#eval-holdout", "2")
        page.click("#eval-run")
        page.wait_for_selector("#eval-report:not([hidden])", timeout=120_000)
        verdict = page.text_content("#eval-verdict")
        assert verdict.startswith("On these 8 clips")
        bar = page.eval_on_selector("#eval-progress", "b => [b.value, b.max]")
        assert bar == [8, 8]
        frame = page.frame_locator("#eval-frame")
        assert frame.locator("#verdict").text_content() == verdict
        assert frame.locator("svg.chart").count() >= 3  # MSE, MAE, PSNR (and SSIM) per step
        links = page.eval_on_selector_all("#eval-links a", "els => els.map(e => e.textContent)")
        assert links == ["report page", "JSON", "per-clip CSV", "plot (PNG)"]
        page.screenshot(path=str(artifacts / "evaluate.png"), full_page=True)
        assert not errors, errors
    finally:
        context.close()


def test_a_classifier_data_set_and_a_refused_one_say_what_happened(browser, base_url, tmp_path):
    buf = io.BytesIO()
    np.savez(buf, clips=_clips(6, FRAMES), labels=np.arange(6) % 8)
    data = tmp_path / "labelled.npz"
    data.write_bytes(buf.getvalue())
    errors: list[str] = []
    context, page = _open(browser, base_url, errors)
    try:
        page.select_option("#eval-task", "classify")
        assert page.is_hidden("#eval-holdout-box")
        page.set_input_files("#eval-file", str(data))
        page.click("#eval-run")
        page.wait_for_selector("#eval-report:not([hidden])", timeout=120_000)
        assert "accuracy" in page.text_content("#eval-verdict")
        bad = tmp_path / "notes.npy"
        bad.write_bytes(b"not a data set")
        page.set_input_files("#eval-file", str(bad))
        page.click("#eval-run")
        page.wait_for_selector("#eval-error:not([hidden])", timeout=60_000)
        assert "not a form framecast reads" in page.text_content("#eval-error")
        assert [e for e in errors if "415" not in e] == []
    finally:
        context.close()
