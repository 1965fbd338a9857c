"""The web page's server side: GET /, the static files and the sample clips."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image, ImageSequence

from models.data import CONTEXT_FRAMES, DIRECTIONS
from models.repository import TASKS
from service.routes.ui import STATIC_DIR

SAMPLES = STATIC_DIR / "samples"


def test_the_page_and_its_files_are_served(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for asset in ("/static/js/app.js", "/static/style.css", "/static/favicon.svg"):
        assert asset in page
        assert client.get(asset).status_code == 200
    assert "https://" not in page and "http://" not in page  # no CDN: works offline
    script = client.get("/static/js/app.js")
    assert script.headers["content-type"].split(";")[0] in (
        "text/javascript",
        "application/javascript",
    )
    assert "/v1/compare/" in client.get("/static/js/form.js").text
    assert client.get("/static/nope.js").status_code == 404
    assert "/" not in client.get("/openapi.json").json()["paths"]


def test_the_sample_clips_are_held_out_gifs_with_an_index(client):
    index = json.loads((SAMPLES / "index.json").read_text())
    samples = index["samples"]
    assert {s["task"] for s in samples} == set(TASKS)
    for s in samples:
        r = client.get(f"/static/samples/{s['file']}")
        assert r.status_code == 200 and r.content[:6] in (b"GIF87a", b"GIF89a")
        with Image.open(io.BytesIO(r.content)) as im:
            frames = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(im)]
        assert len(frames) == s["frames"] and frames[0].shape == (s["height"], s["width"])
        if s["task"] == "classify":
            assert s["label"] in DIRECTIONS and s["frames"] >= CONTEXT_FRAMES
        else:
            assert s["label"] is None and s["frames"] > CONTEXT_FRAMES  # room for truth
        assert max(f.max() for f in frames) > 200  # digits, not a blank clip


def test_the_site_has_an_icon(client):
    """Browsers ask every page's /favicon.ico (the API docs' too): a 404 is a console error."""
    r = client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in r.content
    assert 'rel="icon"' in client.get("/").text
