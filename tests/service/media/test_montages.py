"""Montages say when each frame is: the context's frame numbers, t+1 … t+k for futures."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from service.media.montages import _LABEL_W, _label_image, _times, montage_gif, montage_png


def _frames(t: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((t, 16, 16, 1), dtype=np.float32)


def test_row_labels_carry_the_time_of_their_frames():
    assert _times("context", 10, future=False) == "context\n1 to 10"
    assert _times("truth", 3, future=True) == "truth\nt+1 to t+3"
    assert _times("convlstm2d", 1, future=True) == "convlstm2d\nt+1"
    assert _times("missing", 0, future=True) == "missing"


def test_png_label_column_is_the_timed_labels():
    ctx, fut = _frames(10, 1), _frames(3, 2)
    png = montage_png([("context", ctx), ("truth", fut), ("model", fut[:2]), ("absent", None)])
    labels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))[:, :_LABEL_W]
    want = _label_image(
        ["context\n1 to 10", "truth\nt+1 to t+3", "model\nt+1 to t+2", "absent"], 64, 2
    )
    np.testing.assert_array_equal(labels, np.asarray(want))
    # and not the bare names: the times are drawn
    bare = _label_image(["context", "truth", "model", "absent"], 64, 2)
    assert not np.array_equal(labels, np.asarray(bare))


def test_gif_labels_change_with_the_time_shown():
    ctx, fut = _frames(4, 3), _frames(2, 4)
    gif = Image.open(io.BytesIO(montage_gif(ctx, [("truth", fut), ("model", fut[:1])])))
    assert gif.n_frames == 6
    cols = []
    for i in range(gif.n_frames):
        gif.seek(i)
        cols.append(np.asarray(gif.convert("L"))[:, :_LABEL_W].copy())
    # every animation frame's label column differs from the one before (the time moves on)
    for a, b in zip(cols, cols[1:], strict=False):
        assert not np.array_equal(a, b)
    gif.seek(4)  # the first future frame: rows say t+1
    want = _label_image(["context\nframe 4", "truth\nt+1", "model\nt+1"], 64, 2)
    np.testing.assert_array_equal(
        np.asarray(gif.convert("L"))[:, :_LABEL_W], np.asarray(want.convert("L"))
    )
    gif.seek(5)  # t+2: the model row has no second frame and so no time
    want = _label_image(["context\nframe 4", "truth\nt+2", "model"], 64, 2)
    np.testing.assert_array_equal(
        np.asarray(gif.convert("L"))[:, :_LABEL_W], np.asarray(want.convert("L"))
    )
