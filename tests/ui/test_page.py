"""The web page in a real browser: Playwright driving Debian's Chromium against the real server.

Skips when Chromium or playwright is missing here; fails instead when ``CI`` is set. Screenshots
go to ``FRAMECAST_ARTIFACTS_DIR`` (default: a pytest temporary folder).
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from PIL import Image

from models.data import DIRECTIONS
from service.config import Settings
from tests.ui.browser import chromium, require_browser, save_page_model, save_page_models, serve

FRAMES, SIZE = 10, 64  # what the sample clips fit (service/static/samples)
NUMBER = re.compile(r"\d")


@pytest.fixture(scope="module")
def browser_ready():
    require_browser()


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


def _console_error(errors: list[str], message) -> None:
    # an HTTP error answer is logged as "Failed to load resource"; the page shows those itself
    if message.type == "error" and "Failed to load resource" not in message.text:
        errors.append(message.text)


def _open_page(browser, url: str):
    """A new context's page at ``url`` with its model list loaded; yields it, then checks that
    it raised no JavaScript (or console) errors."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: _console_error(errors, m))
    page.goto(url + "/")
    page.wait_for_selector("#sample option", state="attached")
    page.wait_for_function(
        "document.querySelector('#models-status').textContent.startsWith('Loaded')"
    )
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(browser, base_url):
    yield from _open_page(browser, base_url)


def _is_compare(request) -> bool:
    return request.method == "POST" and "/v1/compare/" in request.url


def _compare(page) -> str:
    """Press Compare and wait for the result; returns the compare request's URL."""
    with page.expect_request(_is_compare, timeout=60_000) as request:
        page.click("#run")
    page.wait_for_function(
        "!document.querySelector('#output').hidden || !document.querySelector('#error').hidden",
        timeout=120_000,
    )
    assert page.is_hidden("#error"), page.text_content("#error")
    return request.value.url


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
    url = _compare(page)
    assert "models=" not in url  # the default pair: the request of before, keyed by architecture
    assert _loaded_images(page, "#context-strip img") == FRAMES
    assert _loaded_images(page, "#truth-strip img") == 4
    _assert_model_panels(page, horizon=4)
    assert "Next frame: 4 step(s)" in page.inner_text("#summary")
    for arch in ("conv2d_lstm", "convlstm2d"):  # a grey clip (a GIF, RGB on the wire) as it is
        stats = page.inner_text(f"#panel-{arch} .stats")
        assert "6 earlier frame(s) not read" in stats and "colour" not in stats, stats
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


def test_predicted_frames_are_labelled_and_conversions_stated(page, artifacts):
    """Strips label predicted (and true) frames t+1, t+2, …; a 32x32 colour upload is fitted
    to the 64x64 grey models and each panel says so; the chooser takes video files."""
    accept = page.get_attribute("#file", "accept")
    assert "video/*" in accept and ".mp4" in accept
    colour = np.zeros((12, 32, 32, 3), np.uint8)
    for i in range(12):
        colour[i, 8:16, 2 + i : 10 + i] = (255, 0, 0)
    page.check("#source-upload")
    page.set_input_files(
        "#file", files=[{"name": "red.gif", "mimeType": "image/gif", "buffer": _gif(colour)}]
    )
    page.fill("#holdout", "2")
    _compare(page)
    for arch in ("conv2d_lstm", "convlstm2d"):
        labels = page.eval_on_selector_all(
            f"#panel-{arch} .strip figcaption", "els => els.map(e => e.textContent)"
        )
        assert labels == ["t+1", "t+2"]
        stats = page.inner_text(f"#panel-{arch} .stats")
        assert "input changed" in stats and "resized from 32×32" in stats, stats
        assert "colour turned to grey" in stats, stats
    truth = page.eval_on_selector_all(
        "#truth-strip figcaption", "els => els.map(e => e.textContent)"
    )
    assert truth == ["t+1", "t+2"]
    # the animations say which frame is showing: the context's numbers, then t+1, t+2
    seen: set[str] = set()
    now = "document.querySelector('#panel-convlstm2d .anim-time').textContent"
    for _ in range(3):
        page.wait_for_function(f"{now}.startsWith('t+')", timeout=10_000)
        seen.add(page.inner_text("#panel-convlstm2d .anim-time"))
        page.wait_for_function(f"{now}.startsWith('frame')", timeout=10_000)
    assert seen <= {"t+1", "t+2"} and seen
    page.screenshot(path=str(artifacts / "conversions.png"), full_page=True)


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


# ---------------------------------------------------------------- the model pickers

PICK_NEXT = "#picker-next_frame input[type=checkbox]"
PICK_CLASSIFY = "#picker-classify input[type=checkbox]"
RGB_CLASSES = ["left", "right", "still"]


def _checked(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(
        selector, "els => els.filter(e => e.checked).map(e => e.value)"
    )


def _png_of(page, selector: str) -> Image.Image:
    src = page.get_attribute(selector, "src")
    assert src.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))


def test_the_picker_starts_with_the_default_pair_and_needs_one(page, artifacts):
    assert _checked(page, PICK_NEXT) == ["conv2d_lstm_next_frame", "convlstm2d_next_frame"]
    labels = page.inner_text("#picker-next_frame")
    for text in ("Conv2D+LSTM", "ConvLSTM2D", "64×64 grey, 10 frames"):
        assert text in labels
    assert page.is_hidden("#picker-classify")
    page.check("#task-classify")
    assert page.is_visible("#picker-classify") and page.is_hidden("#picker-next_frame")
    assert _checked(page, PICK_CLASSIFY) == ["conv2d_lstm_classify", "convlstm2d_classify"]
    page.check("#task-next")

    # one model ticked: its output alone, with its errors against the held-back truth
    page.uncheck(f"{PICK_NEXT}[value=convlstm2d_next_frame]")
    assert "its output alone" in page.inner_text("#picker-next_frame-msg")
    page.fill("#holdout", "2")
    url = _compare(page)
    assert "models=conv2d_lstm_next_frame" in url and "convlstm2d" not in url
    panels = page.eval_on_selector_all("#model-panels > article", "els => els.map(e => e.id)")
    assert panels == ["panel-conv2d_lstm_next_frame"]
    one = "#panel-conv2d_lstm_next_frame"
    labels = page.eval_on_selector_all(
        f"{one} .strip figcaption", "els => els.map(e => e.textContent)"
    )
    assert labels == ["t+1", "t+2"]
    assert NUMBER.search(page.inner_text(f"{one} .stats dt:text-is('MSE / frame') + dd"))
    summary = page.inner_text("#summary")
    assert "One model" in summary and "Better" not in summary, summary
    page.screenshot(path=str(artifacts / "picker_one.png"), full_page=True)

    # none ticked: nothing is asked of the server
    page.uncheck(f"{PICK_NEXT}[value=conv2d_lstm_next_frame]")
    assert "at least one" in page.inner_text("#picker-next_frame-msg")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if _is_compare(r) else None)
    page.click("#run")
    page.wait_for_selector("#error", state="visible")
    assert "at least one" in page.inner_text("#error")
    assert page.is_hidden("#output")
    page.wait_for_timeout(300)
    assert sent == []  # nothing was asked of the server
    page.screenshot(path=str(artifacts / "picker_too_few.png"), full_page=True)


@pytest.fixture(scope="module")
def picker_url(page_models_dir, tmp_path_factory):
    """The four page models, an RGB next-frame and an RGB classify model (its own classes),
    and a folder that fails to load."""
    root = tmp_path_factory.mktemp("ui-picker-models")
    for folder in page_models_dir.iterdir():
        shutil.copytree(folder, root / folder.name)
    save_page_model(
        root,
        "rgb_next_frame",
        "convlstm2d",
        "next_frame",
        frames=FRAMES,
        size=SIZE,
        channels=3,
        display_name="Colour ConvLSTM2D",
    )
    save_page_model(
        root,
        "rgb_classify",
        "conv2d_lstm",
        "classify",
        frames=6,
        size=32,
        channels=3,
        class_names=RGB_CLASSES,
    )
    (root / "broken").mkdir()
    (root / "broken" / "model.keras").write_bytes(b"PK\x03\x04 this is not a keras file")
    # the colour next-frame model as two numbered versions, both served, one labelled
    versions = root / "rgb_next_frame"
    shutil.move(str(versions), str(root / "rgb_v1"))
    versions.mkdir()
    shutil.move(str(root / "rgb_v1"), str(versions / "1"))
    shutil.copytree(versions / "1", versions / "2")
    (versions / "manifest.json").write_text('{"version_policy": "all"}')
    (versions / "labels.json").write_text('{"stable": 1}')
    settings = Settings(
        models_dir=root,
        load_mode="blocking",
        max_horizon=12,
        compare_convlstm2d_next_frame="convlstm2d_next_frame",
        compare_conv2d_lstm_classify="conv2d_lstm_classify",
    )
    with serve(settings) as url:
        yield url


@pytest.fixture
def picker_page(browser, picker_url):
    yield from _open_page(browser, picker_url)


def _colour_square(t: int = 12) -> np.ndarray:
    """A red square moving over a blue background, (t, 64, 64, 3)."""
    out = np.zeros((t, SIZE, SIZE, 3), np.uint8)
    out[..., 2] = 160
    for i in range(t):
        out[i, 20:36, 4 + 4 * i : 20 + 4 * i] = (230, 30, 30)
    return out


def test_picked_models_are_compared_by_name_in_colour(picker_page, artifacts):
    page = picker_page
    values = page.eval_on_selector_all(PICK_NEXT, "els => els.map(e => e.value)")
    assert set(values) == {
        "conv2d_lstm_next_frame",
        "convlstm2d_next_frame",
        "rgb_next_frame",
        "broken",
    }
    # the failed one is listed, disabled, with why as its tooltip
    assert page.is_disabled(f"{PICK_NEXT}[value=broken]")
    title = page.get_attribute("#picker-next_frame .pick.unusable", "title")
    assert title.startswith("failed to load") and "broken" in title
    # two of one architecture: the first of each is picked (not the server's own pair)
    assert _checked(page, PICK_NEXT) == ["conv2d_lstm_next_frame", "convlstm2d_next_frame"]
    rgb_label = page.inner_text(
        "label[for=" + page.get_attribute(f"{PICK_NEXT}[value=rgb_next_frame]", "id") + "]"
    )
    for text in ("Colour ConvLSTM2D", "ConvLSTM2D", "64×64 RGB, 10 frames"):
        assert text in rgb_label
    assert "version 2 of 1, 2 · stable → 1" in rgb_label  # the versions served, the label
    other = page.inner_text(
        "label[for=" + page.get_attribute(f"{PICK_NEXT}[value=convlstm2d_next_frame]", "id") + "]"
    )
    assert "version" not in other  # a flat folder: one version, nothing to say
    page.check(f"{PICK_NEXT}[value=rgb_next_frame]")
    chosen = ["conv2d_lstm_next_frame", "convlstm2d_next_frame", "rgb_next_frame"]
    assert "3 models" in page.inner_text("#picker-next_frame-msg")

    page.set_input_files(
        "#file",
        files=[{"name": "colour.gif", "mimeType": "image/gif", "buffer": _gif(_colour_square())}],
    )
    page.fill("#holdout", "2")
    url = _compare(page)
    assert "models=" in url
    assert parse_qs(urlparse(url).query)["models"] == [",".join(chosen)]

    panels = page.locator("#model-panels .model")
    assert panels.count() == len(chosen)
    assert [panels.nth(i).get_attribute("data-model") for i in range(3)] == chosen
    for name in chosen:
        panel = f"#model-panels .model[data-model={name}]"
        assert _loaded_images(page, f"{panel} .strip img") == 2
        assert NUMBER.search(page.inner_text(f"{panel} .stats dt:text-is('latency') + dd"))
        assert "MSE / frame" in page.inner_text(f"{panel} .stats")
    heading = page.inner_text("#model-panels .model[data-model=rgb_next_frame] h3")
    assert "Colour ConvLSTM2D" in heading and "ConvLSTM2D" in heading
    assert page.locator("#chart-mse svg polyline").count() == 3
    assert page.locator("#chart-legend > span").count() == 3
    assert "3 models" in page.inner_text("#summary")

    # colour survives: the RGB context and predictions are RGB PNGs, shown without a filter
    context = np.asarray(_png_of(page, "#context-strip img").convert("RGB")).astype(int)
    assert _png_of(page, "#context-strip img").mode == "RGB"
    assert np.abs(context[..., 0] - context[..., 2]).max() > 100  # red on blue, not grey
    assert _png_of(page, "#model-panels .model[data-model=rgb_next_frame] .strip img").mode == "RGB"
    filters = page.eval_on_selector_all(
        "img", "els => els.map(e => getComputedStyle(e).filter).filter(f => f !== 'none')"
    )
    assert filters == []
    page.screenshot(path=str(artifacts / "picker_three_models.png"), full_page=True)
    page.set_viewport_size({"width": 360, "height": 800})  # a long error message still wraps
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page scrolls sideways at 360 px ({width} px wide)"


def test_picked_classifiers_each_show_their_own_classes(picker_page, artifacts):
    page = picker_page
    sample = page.eval_on_selector("#sample optgroup:last-child option", "o => o.value")
    page.select_option("#sample", sample)
    assert page.is_checked("#task-classify")
    label = page.input_value("#label")
    assert label in DIRECTIONS
    assert _checked(page, PICK_CLASSIFY) == ["conv2d_lstm_classify", "convlstm2d_classify"]
    page.check(f"{PICK_CLASSIFY}[value=rgb_classify]")
    page.uncheck(f"{PICK_CLASSIFY}[value=convlstm2d_classify]")
    url = _compare(page)
    query = parse_qs(urlparse(url).query)
    assert query["models"] == ["conv2d_lstm_classify,rgb_classify"] and query["label"] == [label]
    assert page.locator("#model-panels .model").count() == 2
    first = "#model-panels .model[data-model=conv2d_lstm_classify]"
    assert page.locator(f"{first} .bars .bar-track").count() == len(DIRECTIONS)
    assert page.locator(f"{first} .bars .bar-label.true").inner_text() == label
    rgb = "#model-panels .model[data-model=rgb_classify]"
    shown = page.eval_on_selector_all(
        f"{rgb} .bars .bar-label", "els => els.map(e => e.textContent)"
    )
    assert sorted(shown) == RGB_CLASSES  # its own classes
    assert "not one of its classes" in page.inner_text(f"{rgb} .stats")
    assert page.is_hidden("#charts")
    page.screenshot(path=str(artifacts / "picker_classify.png"), full_page=True)


# ---------------------------------------------------------------- only a user's classifiers

LEFT_RIGHT = ["left", "right"]


@pytest.fixture(scope="module")
def own_classifier_url(browser_ready, tmp_path_factory):
    """A server with one model: a user's classifier of its own classes (32x32 colour, 6
    frames), none of the bundled kinds."""
    root = tmp_path_factory.mktemp("ui-own-classifier")
    save_page_model(
        root, "leftright", "conv2d_lstm", "classify", frames=6, size=32, channels=3,
        class_names=LEFT_RIGHT, display_name="Left or right",
    )  # fmt: skip
    settings = Settings(models_dir=root, load_mode="blocking", max_horizon=12)
    with serve(settings) as url:
        yield url


def test_a_users_classifiers_alone_open_on_classification(browser, own_classifier_url, artifacts):
    """The page opens on the task its models serve, reading a sample of it, never fetching a
    sample of a task none of them serves, says the classes of the classifier (not "direction"),
    and loads without one console error or failed request (the icon included)."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    console: list[str] = []
    failed: list[str] = []
    samples: list[str] = []
    page.on("request", lambda r: samples.append(r.url) if "/static/samples/" in r.url else None)
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.append(str(e)))
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("requestfailed", lambda r: failed.append(f"failed {r.url}"))
    try:
        page.goto(own_classifier_url + "/")
        page.wait_for_function(
            "document.querySelector('#models-status').textContent.startsWith('Loaded')"
        )
        page.wait_for_function("document.querySelector('#task-classify').checked")
        assert page.input_value("#sample").startswith("classify_")  # a sample of that task
        page.wait_for_function("document.querySelector('#sample-preview').naturalWidth > 0")
        gifs = [u.rsplit("/", 1)[1] for u in samples if u.endswith(".gif")]
        assert gifs and all(g.startswith("classify_") for g in gifs), samples
        assert page.is_visible("#picker-classify") and page.is_hidden("#picker-next_frame")
        assert _checked(page, PICK_CLASSIFY) == ["leftright"]
        assert page.inner_text("label[for=task-classify]") == "Classify (left, right)"
        assert page.inner_text("label[for=label]") == "True class (optional)"
        options = page.eval_on_selector_all("#label option", "els => els.map(e => e.value)")
        assert options == ["", *LEFT_RIGHT]
        assert page.eval_on_selector("#label", "s => s.selectedOptions[0].text") == "unknown"
        _compare(page)
        summary = page.inner_text("#summary")
        assert summary.startswith("Classes: left, right") and "irection" not in summary, summary
        shown = page.eval_on_selector_all(
            "#model-panels .bars .bar-label", "els => els.map(e => e.textContent)"
        )
        assert sorted(shown) == LEFT_RIGHT
        stats = page.inner_text("#model-panels .stats")
        assert "resized from 64×64" in stats and "colour" not in stats  # a grey GIF, as RGB
        page.screenshot(path=str(artifacts / "own_classifier.png"), full_page=True)
        page.goto(own_classifier_url + "/docs")  # the API docs ask for the icon too
        page.wait_for_selector(".swagger-ui .opblock", timeout=60_000)
    finally:
        context.close()
    assert not console, console
    assert not failed, failed


@pytest.mark.parametrize("late", ["/static/samples/index.json", "/v1/models"])
def test_the_opening_sample_is_of_the_served_task_whichever_list_comes_last(
    browser, own_classifier_url, late
):
    """The sample list and the model list race; held back in turn, each ends the same way: the
    served task, a sample of it, and no other sample fetched (not even its preview)."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    held: list = []
    gifs: list[str] = []
    page.on(
        "request",
        lambda r: gifs.append(r.url.rsplit("/", 1)[1]) if r.url.endswith(".gif") else None,
    )
    page.route("**" + late, lambda route: held.append(route))  # answered once the other is in
    try:
        page.goto(own_classifier_url + "/")
        if late == "/v1/models":
            page.wait_for_function("document.querySelectorAll('#sample option').length > 1")
            assert gifs == []  # no preview before the list says which task is served
        else:
            page.wait_for_function(
                "document.querySelector('#models-status').textContent.startsWith('Loaded')"
            )
        assert held, f"the page never asked for {late}"
        for route in held:
            route.continue_()
        page.wait_for_function("document.querySelector('#task-classify').checked")
        page.wait_for_function("document.querySelector('#sample-preview').naturalWidth > 0")
        assert page.input_value("#sample").startswith("classify_")
        assert gifs and all(g.startswith("classify_") for g in gifs), gifs
        assert page.is_hidden("#picker-next_frame")
    finally:
        context.close()
