"""The runtime: one worker thread per model makes every call, off the event loop."""

from __future__ import annotations

import threading

import numpy as np

from service.media import decode, fitting
from tests.service.helpers import FRAMES, clip, files


def test_every_model_call_happens_on_that_models_own_worker(client, runtime, monkeypatch):
    seen: dict[str, set[str]] = {}

    def spy_on(name, original):
        def spy(x):
            seen.setdefault(name, set()).add(threading.current_thread().name)
            assert x.shape[1] == FRAMES  # the fixed serving shape, never another length
            return original(x)

        return spy

    for name, runner in runtime.runners.items():
        # every model the runner calls: the float entry, and a classifier's uint8 entry
        for model in {id(m): m for m in runner.callables.values()}.values():
            monkeypatch.setattr(model, "predict_on_batch", spy_on(name, model.predict_on_batch))
        for direct in runner.direct.values():  # the entries warm-up found exact, called directly
            monkeypatch.setattr(direct, "fn", spy_on(name, direct.fn))
    c = clip(t=FRAMES + 2)
    assert (
        client.post("/v1/compare/next-frame", params={"holdout": 2}, files=files(c)).status_code
        == 200
    )
    assert client.post("/v1/compare/classify", files=files(c)).status_code == 200
    assert (
        client.post(
            "/v1/models/convlstm2d_next_frame/predict", params={"horizon": 4}, files=files(c)
        ).status_code
        == 200
    )
    assert set(seen) == set(runtime.runners)
    for name, threads in seen.items():
        assert len(threads) == 1, threads  # one worker per model, all of its calls
        assert next(iter(threads)).startswith(f"framecast-{name}")
    main = threading.main_thread().name
    assert all(main not in t for t in seen.values())


def test_codecs_luminance_and_resize():
    rgb = np.zeros((2, 2, 3), np.float32)
    rgb[0, 0] = (1, 0, 0)
    rgb[1, 1] = (0, 1, 0)
    grey = fitting.to_channels(rgb, 1)
    assert grey.shape == (2, 2, 1)
    assert np.isclose(grey[0, 0, 0], 0.299) and np.isclose(grey[1, 1, 0], 0.587)
    assert fitting.to_channels(grey, 3).shape == (2, 2, 3)
    flat = np.full((8, 6, 1), 0.25, np.float32)
    out = fitting.resize_frame(flat, 16, 12)
    assert out.shape == (16, 12, 1) and np.allclose(out, 0.25)


def test_sniff_recognises_every_supported_format():
    assert decode.sniff(b"\x89PNG\r\n\x1a\n...") == "PNG"
    assert decode.sniff(b"GIF89a...") == "GIF"
    assert decode.sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert decode.sniff(b"II*\x00") == "TIFF" and decode.sniff(b"MM\x00*") == "TIFF"
    assert decode.sniff(b"\x93NUMPY\x01\x00") == "NPY"
    assert decode.sniff(b"\xff\xd8\xff\xe0") == "JPEG" and decode.sniff(b"BM....") == "BMP"
    assert decode.sniff(b"hello") is None


def test_to_uint8_rounds_clips_and_zeroes_nan():
    from service.media.encode import to_uint8

    x = np.array([np.nan, np.inf, -np.inf, -0.5, 0.0, 0.5, 0.998, 1.0, 2.0, 1 / 255, 0.5 / 255])
    assert to_uint8(x).tolist() == [0, 255, 0, 0, 0, 128, 254, 255, 255, 1, 0]
    r = np.random.default_rng(0).random((8, 64, 64, 1)).astype(np.float32)
    np.testing.assert_array_equal(to_uint8(r), np.round(r * 255.0).astype(np.uint8))


def test_the_in_process_and_the_ray_runner_share_one_protocol(runtime):
    """Both runners implement service.runtime.runner.Runner (the Ray one without copying
    methods)."""
    import dataclasses

    from service.runtime.ray.ingress import RemoteRunner
    from service.runtime.runner import ModelRunner, Runner

    local = runtime.runners["convlstm2d_next_frame"]
    assert isinstance(local, ModelRunner) and isinstance(local, Runner)
    info = {
        "manifest": dataclasses.asdict(local.manifest),
        "placement": dataclasses.asdict(local.placement),
        "card": None,
        "warmup_ms": 1.0,
        "folder": str(local.folder),
    }
    remote = RemoteRunner(handle=None, info=info)
    assert isinstance(remote, Runner)
    assert (remote.name, remote.input_shape, remote.rollout) == (
        local.name,
        local.input_shape,
        local.rollout,
    )
    assert not set(vars(RemoteRunner)) & {"name", "input_shape", "rollout"}  # inherited, once


def _classify_runner(models_dir, **settings):
    from service.config import Settings
    from service.runtime.devices import Placement
    from service.runtime.registry import discover_folders, load_folder
    from service.telemetry import Metrics

    folders = {f.name: f for f in discover_folders(models_dir)}
    return load_folder(
        folders["convlstm2d_classify"],
        settings=Settings(models_dir=models_dir, **settings),
        placement=Placement("cpu:0", "cpu:0", "x"),
        metrics=Metrics(),
    )


def test_a_warm_classifier_takes_a_clips_bytes_and_answers_as_on_floats(models_dir):
    """Warm-up checks the model's uint8 entry against its float32 one; a clip sent as bytes
    then gets exactly the scores of the same clip scaled by numpy."""
    import asyncio

    runner = _classify_runner(models_dir)
    try:
        assert runner.accepts_u8 is False  # not before warm-up has checked it
        runner.submit(runner.warm).result(timeout=300)
        assert runner.accepts_u8 is True and "model_u8" in runner.callables
        assert set(runner.direct) == {"model", "model_u8"}  # exact at warm-up: no predict_on_batch
        shape = tuple(runner.input_shape)
        raw = np.random.default_rng(9).integers(0, 256, shape, dtype=np.uint8)

        async def both():
            return await asyncio.gather(
                runner.classify(raw), runner.classify(np.divide(raw, np.float32(255.0)))
            )

        (from_bytes, _), (from_floats, _) = asyncio.run(both())
        assert np.array_equal(from_bytes, from_floats)
    finally:
        runner.close()


def test_direct_calls_off_keeps_every_call_on_predict_on_batch(models_dir):
    """FRAMECAST_DIRECT_CALLS=false: nothing is tried at warm-up, every call goes through
    predict_on_batch, and the answers are the same as with direct calls."""
    import asyncio

    answers = []
    for on in (True, False):
        runner = _classify_runner(models_dir, direct_calls=on)
        try:
            runner.submit(runner.warm).result(timeout=300)
            assert bool(runner.direct) is on
            raw = np.random.default_rng(3).integers(0, 256, tuple(runner.input_shape), np.uint8)
            answers.append(asyncio.run(runner.classify(raw))[0])
        finally:
            runner.close()
    assert np.array_equal(answers[0], answers[1])


def test_a_uint8_entry_that_answers_differently_is_dropped(models_dir, caplog):
    runner = _classify_runner(models_dir)
    try:
        entry = runner.callables["model_u8"]

        class Off:  # one ulp off, as a graph optimiser's rewrite can be
            def predict_on_batch(self, batch):
                out = np.asarray(entry.predict_on_batch(batch))
                return np.nextafter(out, np.float32(2.0))

        runner.callables["model_u8"] = Off()
        with caplog.at_level("WARNING", logger="framecast.runtime"):
            runner.submit(runner.warm).result(timeout=300)
        assert runner.accepts_u8 is False and "model_u8" not in runner.callables
        assert "scaling frames in its graph changed its output" in caplog.text
        assert set(runner.direct) == {"model"}  # not a Keras model: never tried
    finally:
        runner.close()


def test_closing_during_a_background_load_waits_for_the_loader(models_dir):
    """A server stopped while it still loads (SIGTERM at start-up) must not leave TensorFlow
    work in a thread at interpreter exit, which aborts the process (exit 134)."""
    from service.config import Settings
    from service.runtime.server import Runtime

    rt = Runtime(Settings(models_dir=models_dir, load_mode="background"))
    rt.start()
    assert rt._thread is not None and rt._thread.is_alive()
    rt.close()
    assert not rt._thread.is_alive()
    assert not rt.ready
