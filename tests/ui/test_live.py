"""The page's Live view in Chromium: a sample clip and a (fake) webcam streamed frame by frame
over the WebSocket, each picked model's predicted frame and a rolling surprise plot; Stop closes
the stream. Skips without Chromium or playwright here; fails instead when ``CI`` is set."""

from __future__ import annotations

import json
import urllib.request

import pytest

from service.config import Settings
from tests.ui.browser import chromium, require_browser, save_page_models, serve

FAKE_CAMERA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    require_browser()
    root = save_page_models(tmp_path_factory.mktemp("live-models"), frames=10, size=64)
    with serve(Settings(models_dir=root, load_mode="blocking")) as url:
        yield url


@pytest.fixture(scope="module")
def browser(base_url):
    with chromium(FAKE_CAMERA) as b:
        yield b


def _open(browser, url, errors):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.grant_permissions(["camera"], origin=url)
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(  # an HTTP error answer is logged as "Failed to load resource": see bad_answers
        "console",
        lambda m: (
            m.type == "error" and "Failed to load resource" not in m.text and errors.append(m.text)
        ),
    )
    page.on("response", lambda r: r.status >= 400 and errors.append(f"{r.status} {r.url}"))
    page.goto(url + "/")
    page.wait_for_selector("#live-picker input[type=checkbox]", state="attached")
    page.wait_for_selector("#sample option", state="attached")
    return context, page


def _streams(url) -> list:
    with urllib.request.urlopen(url + "/v1/streams") as r:
        return json.loads(r.read())["streams"]


def _run_until(page, step: int) -> None:
    page.click("#live-start")
    page.wait_for_function(
        f"Number(document.querySelector('#live-view').dataset.step || 0) >= {step}",
        timeout=60_000,
    )


def test_the_sample_clip_streams_to_two_models(browser, base_url, tmp_path):
    errors: list[str] = []
    context, page = _open(browser, base_url, errors)
    try:
        picked = page.eval_on_selector_all(
            "#live-picker input:checked", "els => els.map(e => e.value)"
        )
        assert len(picked) == 2
        page.select_option("#sample", "next_frame_0000")
        _run_until(page, 14)  # the context (10 frames) and a few predicted frames after it
        figs = page.eval_on_selector_all(".live-pred", "els => els.map(e => e.dataset.model)")
        assert sorted(figs) == sorted(picked)
        loaded = page.eval_on_selector_all(
            ".live-pred img", "els => els.filter(i => i.complete && i.naturalWidth > 0).length"
        )
        assert loaded == 2
        captions = page.eval_on_selector_all(
            ".live-pred figcaption", "els => els.map(e => e.textContent)"
        )
        assert all("t+1" in c and "surprise" in c for c in captions), captions
        lines = page.eval_on_selector_all(
            "#live-chart polyline",
            "els => els.map(e => e.getAttribute('points').split(' ').length)",
        )
        assert len(lines) == 2 and min(lines) >= 3
        assert len(_streams(base_url)) == 1  # one compare stream over the two models
        page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
        page.click("#live-stop")
        page.wait_for_function(
            "document.querySelector('#live-status').textContent.startsWith('Stopped')"
        )
        assert _streams(base_url) == []
        assert not errors, errors
    finally:
        context.close()


def test_the_webcam_streams_to_one_model(browser, base_url):
    errors: list[str] = []
    context, page = _open(browser, base_url, errors)
    try:
        boxes = page.query_selector_all("#live-picker input")
        for b in boxes[1:]:
            b.uncheck()
        page.select_option("#live-source", "camera")
        _run_until(page, 3)
        assert "webcam" in page.text_content("#live-status")
        page.click("#live-stop")
        assert not errors, errors
    finally:
        context.close()


def test_no_model_picked_says_so(browser, base_url):
    errors: list[str] = []
    context, page = _open(browser, base_url, errors)
    try:
        for b in page.query_selector_all("#live-picker input"):
            b.uncheck()
        page.click("#live-start")
        assert "at least one" in page.text_content("#live-error")
    finally:
        context.close()


def test_with_a_key_the_page_streams_through_a_ticket(browser, tmp_path_factory):
    key = "sekrit-page-key-5e1d"
    root = save_page_models(tmp_path_factory.mktemp("keyed-models"), frames=10, size=64)
    with serve(Settings(models_dir=root, load_mode="blocking", api_keys=key)) as url:
        errors: list[str] = []
        sockets: list[str] = []
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("websocket", lambda ws: sockets.append(ws.url))
        try:
            page.goto(url + "/")
            page.evaluate("document.querySelector('#key-box').open = true")
            page.fill("#api-key", key)
            page.dispatch_event("#api-key", "change")  # as leaving the field does
            page.wait_for_selector("#live-picker input[type=checkbox]", state="attached")
            page.wait_for_selector("#sample option", state="attached")
            page.select_option("#sample", "next_frame_0000")
            _run_until(page, 12)
            assert sockets and all("ticket=" in s and key not in s for s in sockets), sockets
            page.click("#live-stop")
            assert not errors, errors
        finally:
            context.close()
