"""Every conversion of an upload is stated, separately: size (and how it was fitted), channels,
frames not read."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from service.media.fitting import resize_frame
from tests.service.helpers import FRAMES, H, W, files

NF, CL = "convlstm2d_next_frame", "convlstm2d_classify"


def rgb_clip(t: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (rng.random((t, h, w, 3)) * 255).astype(np.uint8)


def rgb_files(frames: np.ndarray) -> list:
    out = []
    for i, f in enumerate(frames):
        buf = io.BytesIO()
        Image.fromarray(f, "RGB").save(buf, format="PNG")
        out.append(("files", (f"f{i}.png", buf.getvalue(), "image/png")))
    return out


@pytest.mark.parametrize("fit", ["stretch", "pad", "crop"])
def test_rgb_of_another_size_is_stated(client, fit):
    frames = rgb_clip(FRAMES + 2, 2 * H, 3 * W)  # wider than the model's square frames
    r = client.post(f"/v1/models/{NF}/predict", params={"fit": fit}, files=rgb_files(frames))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resized"] is True and body["resized_from"] == [2 * H, 3 * W]
    assert body["fit"] == fit and body["channels_from"] == 3
    assert body["frames_dropped"] == 2 and body["context_frames"] == FRAMES


def test_nothing_changed_says_nothing(client):
    grey = (np.random.default_rng(2).random((FRAMES, H, W)) * 255).astype(np.uint8)
    body = client.post(f"/v1/models/{CL}/classify", files=files(grey)).json()
    assert body["resized"] is False and body["resized_from"] is None and body["fit"] is None
    assert body["channels_from"] is None and body["frames_dropped"] == 0


def test_compare_states_each_models_conversion(client):
    frames = rgb_clip(FRAMES + 1, H, W)
    r = client.post("/v1/compare/classify", files=rgb_files(frames))
    assert r.status_code == 200, r.text
    for res in r.json()["results"].values():
        conv = res["conversion"]
        assert conv["channels_from"] == 3 and conv["resized"] is False
        assert conv["frames_dropped"] == 1


def test_pad_keeps_the_aspect_ratio_and_crop_fills():
    x = np.ones((10, 20, 1), np.float32)  # a white 2:1 frame
    padded = resize_frame(x, 10, 10, "pad")
    assert padded.shape == (10, 10, 1)
    assert padded[0, 0, 0] == 0.0 and padded[5, 5, 0] == 1.0  # bars top and bottom
    assert padded[:, :, 0].sum() == pytest.approx(50.0, abs=1.0)  # a 10x5 white band
    cropped = resize_frame(x, 10, 10, "crop")
    assert cropped.min() == 1.0  # no bars: the overflow was cut
    stretched = resize_frame(x, 10, 10, "stretch")
    assert stretched.min() == 1.0
    ramp = np.tile(np.linspace(0, 1, 20, dtype=np.float32), (10, 1))[..., None]
    assert resize_frame(ramp, 10, 10, "crop")[0, 0, 0] > 0.2  # the left quarter was cut


def _gif(frames: np.ndarray) -> bytes:
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], loop=0)
    return buf.getvalue()


def test_a_gif_of_a_grey_clip_is_no_colour_conversion(client):
    """A GIF of grey frames decodes as RGB (R = G = B): a grey model loses nothing, so nothing is
    reported; one coloured pixel in one frame is a real conversion, reported."""
    grey = (np.random.default_rng(3).random((FRAMES, H, W)) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    gif = [("files", ("grey.gif", _gif(rgb), "image/gif"))]
    body = client.post(f"/v1/models/{CL}/classify", files=gif).json()
    assert body["channels_from"] is None and body["resized"] is False, body
    r = client.post(f"/v1/models/{NF}/predict", params={"output": "png"}, files=gif)
    assert r.status_code == 200 and json.loads(r.headers["x-conversion"])["channels_from"] is None
    rgb[FRAMES - 1, 3, 3] = (255, 0, 0)  # the last frame has colour
    gif = [("files", ("red.gif", _gif(rgb), "image/gif"))]
    assert client.post(f"/v1/models/{CL}/classify", files=gif).json()["channels_from"] == 3
