"""Serving the carried-state rollout: shared batches, states held per request, same frames as
the model rolling out alone, one context call plus one single-frame call per further frame."""

from __future__ import annotations

import asyncio
import json

import keras
import numpy as np
import pytest
from fastapi.testclient import TestClient

from models.carried import stepper
from models.repository import read_manifest
from service.app import create_app
from service.config import load_settings
from service.runtime.devices import Placement
from service.runtime.runner import ModelRunner
from service.telemetry import Metrics
from tests.service.conftest import save_tiny
from tests.service.helpers import H, W, clip, files
from tests.service.runtime.test_batcher import Held

ATOL = 1e-5


@pytest.fixture(scope="module")
def carried_dir(tmp_path_factory):
    """Both next-frame architectures with manifests that ask for the carried-state rollout."""
    root = tmp_path_factory.mktemp("carried")
    for arch in ("convlstm2d", "conv2d_lstm"):
        folder = save_tiny(root, f"{arch}_next_frame", arch, "next_frame")
        man = json.loads((folder / "manifest.json").read_text())
        man["rollout"] = "carried_state"
        (folder / "manifest.json").write_text(json.dumps(man))
    return root


def ctx(seed: int) -> np.ndarray:
    return (clip(seed=seed)[..., None] / 255.0).astype(np.float32)


@pytest.mark.parametrize("arch", ["convlstm2d", "conv2d_lstm"])
def test_shared_steps_hold_each_requests_state(carried_dir, arch):
    folder = carried_dir / f"{arch}_next_frame"
    man = read_manifest(folder)
    model = keras.saving.load_model(folder / "model.keras", compile=False)
    ref = stepper(model)
    runner = ModelRunner(
        folder,
        man,
        model,
        None,
        Placement("cpu:0", "cpu:0", "x"),
        metrics=Metrics(),
        max_queue=64,
        timeout_s=60.0,
        max_batch_size=8,
    )
    try:
        runner.submit(runner.warm).result(timeout=120)
        calls = []
        for which in ("context", "step"):
            real = runner.callables[which].predict_on_batch

            def spy(x, _which=which, _real=real):
                calls.append((_which, len(x[0]) if isinstance(x, list) else len(x)))
                return _real(x)

            runner.callables[which].predict_on_batch = spy
        horizons = [1, 4, 2, 4]
        contexts = [ctx(i) for i in range(len(horizons))]

        async def burst():
            with Held(runner) as held:
                tasks = [
                    asyncio.ensure_future(runner.predict(c, h)) for c, h in zip(contexts, horizons)
                ]
                await asyncio.sleep(0)  # every request queued behind the held worker
                held.release.set()
                return await asyncio.gather(*tasks)

        got = asyncio.run(burst())
        for (pred, timing), c, h in zip(got, contexts, horizons):
            assert pred.shape == (h, H, W, 1) and timing.calls == h
            np.testing.assert_allclose(pred, ref.rollout(c[None], h)[0], atol=ATOL)
        # one context call for all four, then single-frame steps shared by those still going
        assert calls == [("context", 4), ("step", 4), ("step", 2), ("step", 2)]
    finally:
        runner.close()


def test_models_endpoint_says_which_rollout_each_model_uses(carried_dir, models_dir):
    settings = load_settings(models_dir=str(carried_dir), load_mode="blocking")
    with TestClient(create_app(settings)) as c:
        models = {m["name"]: m for m in c.get("/v1/models").json()["models"]}
        assert {m["rollout"] for m in models.values()} == {"carried_state"}
        r = c.post(
            "/v1/models/convlstm2d_next_frame/predict", params={"horizon": 3}, files=files(clip())
        )
        assert r.status_code == 200, r.text
    with TestClient(
        create_app(load_settings(models_dir=str(models_dir), load_mode="blocking"))
    ) as c:
        rollouts = {m["name"]: m["rollout"] for m in c.get("/v1/models").json()["models"]}
        assert rollouts["convlstm2d_next_frame"] == "sliding_window"
        assert rollouts["convlstm2d_classify"] == "none"


def test_a_mixed_batch_pads_each_phase_to_its_own_bucket(carried_dir):
    """One request reading its context while three others step: a 1-row context call and a
    4-row step call (not two calls of the whole batch's bucket), each answer its own."""
    from service.runtime.batcher import bucket_sizes
    from service.runtime.policies import CarriedState

    folder = carried_dir / "convlstm2d_next_frame"
    man = read_manifest(folder)
    model = keras.saving.load_model(folder / "model.keras", compile=False)
    ref = stepper(model)
    shape = (man.frames, man.height, man.width, man.channels)
    policy = CarriedState(shape, ref.state_shapes)
    sizes = bucket_sizes(8)

    def bucket_for(n):
        return next(b for b in sizes if b >= n)

    seen = []

    def spy(which, fn):
        def call(x):
            seen.append((which, len(x[0]) if isinstance(x, list) else len(x)))
            out = fn(x)
            return [np.asarray(o) for o in out]

        return call

    calls = {
        "context": spy("context", ref.context.predict_on_batch),
        "step": spy("step", ref.step.predict_on_batch),
    }
    going = [policy.begin(ctx(i), 3) for i in range(3)]
    policy.step(going, bucket_for, calls)  # their context pass: 3 rows padded to 4
    fresh = policy.begin(ctx(9), 2)
    seen.clear()
    out = policy.step(going + [fresh], bucket_for, calls)
    assert seen == [("context", 1), ("step", 4)]
    assert out == [None] * 4  # every rollout has steps left
    out = policy.step(going + [fresh], bucket_for, calls)
    for r, c, h in zip(going + [fresh], [ctx(i) for i in (0, 1, 2, 9)], (3, 3, 3, 2)):
        np.testing.assert_allclose(
            np.stack(r.outputs), ref.rollout(c[None], h)[0][: len(r.outputs)], atol=ATOL
        )
    assert out[3] is not None and out[3].shape == (2, H, W, 1)
