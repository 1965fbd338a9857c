"""The micro-batcher in each model's runner: merged calls, fixed bucket shapes, bounded queue.

No test sleeps: the worker is held with a job that waits on an Event, requests are queued behind
it (enqueueing is synchronous, so one ``await asyncio.sleep(0)`` lets every task queue), then the
worker is released and merges whatever is queued.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from models.repository import read_manifest
from service.errors import InferenceError, Overloaded
from service.runtime.server import ModelRunner, Placement, bucket_sizes
from service.telemetry import Metrics
from tests.service.helpers import FRAMES, H, W, clip, files

NF, CL = "convlstm2d_next_frame", "conv2d_lstm_classify"
ATOL = 1e-5


def ctx(seed: int) -> np.ndarray:
    return (clip(seed=seed)[..., None] / 255.0).astype(np.float32)  # (FRAMES, H, W, 1)


def rollout_direct(model, context: np.ndarray, horizon: int) -> np.ndarray:
    """The unbatched reference: one clip at a time, sliding window, (horizon, H, W, C)."""
    window, out = context[None], []
    for _ in range(horizon):
        nxt = np.asarray(model.predict_on_batch(window))[:, -1]  # (1, H, W, C)
        out.append(nxt[0])
        window = np.concatenate([window[:, 1:], nxt[:, None]], axis=1)
    return np.stack(out)


class Held:
    """Holds a runner's worker busy until released (the context manager releases on exit)."""

    def __init__(self, runner: ModelRunner):
        self.release, started = threading.Event(), threading.Event()
        self.future = runner.submit(lambda: (started.set(), self.release.wait(30)))
        assert started.wait(30), "the worker never picked up the holding job"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.future.result(timeout=30)


class Spy:
    """Records the shape of every model call (and can fail chosen calls)."""

    def __init__(self, monkeypatch, runner: ModelRunner, fail_calls=()):
        self.shapes: list[tuple] = []
        self.threads: set[str] = set()

        def spy_on(original):
            def spy(x):
                self.shapes.append(tuple(x.shape))
                self.threads.add(threading.current_thread().name)
                if len(self.shapes) in fail_calls:
                    raise RuntimeError("injected failure")
                return original(x)

            return spy

        monkeypatch.setattr(runner.model, "predict_on_batch", spy_on(runner.model.predict_on_batch))
        if "model" in runner.direct:  # warm-up found it exact: called without predict_on_batch
            direct = runner.direct["model"]
            monkeypatch.setattr(direct, "fn", spy_on(direct.fn))


async def burst(runner: ModelRunner, held: Held, jobs):
    """Queue every (context, horizon) behind the held worker, release it, gather the results
    (exceptions returned in place)."""
    tasks = [
        asyncio.ensure_future(
            runner.predict(c, h) if runner.manifest.task == "next_frame" else runner.classify(c)
        )
        for c, h in jobs
    ]
    await asyncio.sleep(0)  # one turn of the loop: every task has queued its request
    assert runner.queue_depth == len(jobs) + 1  # + the holding job
    held.release.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture(scope="module")
def loaded(models_dir):
    """name → (folder, manifest, model): loaded once for the module; one runner at a time uses
    a model (each test closes its runner)."""
    import keras

    cache = {}

    def get(name):
        if name not in cache:
            folder = models_dir / name
            manifest = read_manifest(folder)
            model = keras.saving.load_model(folder / manifest.checkpoint, compile=False)
            cache[name] = folder, manifest, model
        return cache[name]

    return get


@pytest.fixture
def make_runner(loaded):
    """A fresh runner (own worker, own queue) over a loaded model, warmed; closed after the test."""
    made = []

    def make(name=NF, **kw):
        folder, manifest, model = loaded(name)
        opts = dict(
            metrics=Metrics(),
            max_queue=64,
            timeout_s=30.0,
            max_batch_size=32,
            max_batch_delay_ms=0.0,
        )
        opts.update(kw)
        runner = ModelRunner(
            folder, manifest, model, None, Placement("cpu:0", "cpu:0", "x"), **opts
        )
        runner.warmup_ms = runner.submit(runner.warm).result(timeout=120)
        made.append(runner)
        return runner

    yield make
    for r in made:
        r.close()


# --------------------------------------------------------------------------- buckets


def test_bucket_sizes():
    assert bucket_sizes(32) == (1, 2, 4, 8, 12, 16, 24, 32)
    assert bucket_sizes(1) == (1,)
    assert bucket_sizes(3) == (1, 2, 3)
    assert bucket_sizes(40) == (1, 2, 4, 8, 12, 16, 24, 32, 40)
    assert bucket_sizes(100) == (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 100)
    for top in range(1, 300):  # padding never wastes a third or more of a call past 8 clips
        sizes = bucket_sizes(top)
        assert sizes[-1] == top and list(sizes) == sorted(set(sizes))
        assert all(b / next(s for s in sizes if s >= b) > 2 / 3 for b in range(9, top + 1))


def test_every_bucket_is_warmed_and_no_call_uses_another_shape(client, runtime, monkeypatch):
    runner = runtime.runners[NF]
    monkeypatch.setattr(runner, "pad_batches", True)  # FRAMECAST_PAD_BATCHES=always (JAX's)
    shape = (FRAMES, H, W, 1)
    assert runner.buckets == bucket_sizes(runtime.settings.max_batch_size)
    assert runner.warmed == {(b,) + shape for b in runner.buckets}
    spy = Spy(monkeypatch, runner)
    with Held(runner) as held:
        asyncio.run(burst(runner, held, [(ctx(i), 1 + i % 3) for i in range(5)]))
    with Held(runner) as held:
        asyncio.run(burst(runner, held, [(ctx(i), 1) for i in range(3)]))
    assert (
        client.post(
            f"/v1/models/{NF}/predict", params={"horizon": 2}, files=files(clip())
        ).status_code
        == 200
    )
    assert spy.shapes and set(spy.shapes) <= runner.warmed
    # horizons 1, 2, 3, 1, 2: 5 clips, then 3, then 1; then a burst of 3
    assert spy.shapes[:4] == [(8,) + shape, (4,) + shape, (1,) + shape, (4,) + shape]


def test_without_padding_batches_are_exact_and_nothing_retraces(client, runtime, monkeypatch):
    runner = runtime.runners[NF]
    assert runner.pad_batches is False  # auto under TensorFlow
    shape = (FRAMES, H, W, 1)
    traced = runner.model.predict_function.experimental_get_tracing_count()
    spy = Spy(monkeypatch, runner)
    with Held(runner) as held:
        asyncio.run(burst(runner, held, [(ctx(i), 1) for i in range(5)]))
    assert spy.shapes[0] == (5,) + shape  # no padding rows computed
    assert runner.model.predict_function.experimental_get_tracing_count() == traced


# --------------------------------------------------------------------------- correctness


def test_batched_results_equal_unbatched_calls(make_runner, monkeypatch):
    runner = make_runner(NF)
    contexts = [ctx(i) for i in range(6)]
    want = [rollout_direct(runner.model, c, 1) for c in contexts]
    spy = Spy(monkeypatch, runner)
    with Held(runner) as held:
        got = asyncio.run(burst(runner, held, [(c, 1) for c in contexts]))
    assert spy.shapes == [(8, FRAMES, H, W, 1)]  # one call for all six (padded to 8)
    for (pred, timing), w in zip(got, want):
        assert pred.shape == (1, H, W, 1)
        np.testing.assert_allclose(pred, w, atol=ATOL)
        assert timing.batch == 6 and timing.bucket == 8 and timing.calls == 1


def test_classify_batches_too(make_runner, monkeypatch):
    runner = make_runner(CL)
    contexts = [ctx(i) for i in range(3)]
    want = [np.asarray(runner.model.predict_on_batch(c[None]))[0] for c in contexts]
    spy = Spy(monkeypatch, runner)
    with Held(runner) as held:
        got = asyncio.run(burst(runner, held, [(c, 1) for c in contexts]))
    assert spy.shapes == [(4, FRAMES, H, W, 1)]
    for (scores, _), w in zip(got, want):
        np.testing.assert_allclose(scores, w, atol=ATOL)


def test_rollouts_with_different_horizons_share_steps(make_runner, monkeypatch):
    runner = make_runner(NF)
    horizons = [1, 3, 2, 3, 1]
    contexts = [ctx(10 + i) for i in range(len(horizons))]
    want = [rollout_direct(runner.model, c, h) for c, h in zip(contexts, horizons)]
    spy = Spy(monkeypatch, runner)
    with Held(runner) as held:
        got = asyncio.run(burst(runner, held, list(zip(contexts, horizons))))
    # 3 steps in all (the longest horizon), not 10 (the sum): 5 clips, then 3, then 2
    assert [s[0] for s in spy.shapes] == [8, 4, 2]
    for (pred, timing), w, h in zip(got, want, horizons):
        assert pred.shape == (h, H, W, 1) and timing.calls == h
        np.testing.assert_allclose(pred, w, atol=ATOL)


def test_a_burst_gets_each_its_own_answer_in_order(make_runner):
    runner = make_runner(NF, max_batch_size=4)  # 10 requests → batches of 4, 4, 2
    contexts = [ctx(100 + i) for i in range(10)]
    want = [rollout_direct(runner.model, c, 2) for c in contexts]
    with Held(runner) as held:
        got = asyncio.run(burst(runner, held, [(c, 2) for c in contexts]))
    for (pred, _), w in zip(got, want):
        np.testing.assert_allclose(pred, w, atol=ATOL)
    assert [t.batch for _, t in got] == [4] * 8 + [2] * 2
    assert runner.queue_depth == 0


def test_a_burst_over_http_each_gets_its_own_answer(client, runtime):
    contexts = [clip(seed=200 + i) for i in range(8)]
    model = runtime.runners[NF].model
    want = [rollout_direct(model, (c[..., None] / 255.0).astype(np.float32), 1) for c in contexts]
    gate = threading.Barrier(len(contexts))

    def post(c):
        gate.wait(30)
        return client.post(f"/v1/models/{NF}/predict", params={"output": "npy"}, files=files(c))

    with ThreadPoolExecutor(len(contexts)) as pool:
        responses = list(pool.map(post, contexts))
    for r, w in zip(responses, want):
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(np.load(io.BytesIO(r.content)), w, atol=1e-4)
        assert 1 <= int(r.headers["x-batch-size"]) <= len(contexts)


def test_a_ticket_lets_the_batch_wait_for_a_request_being_decoded(make_runner, monkeypatch):
    runner = make_runner(NF, max_batch_delay_ms=60_000.0)  # bounded by the ticket, not the delay
    spy = Spy(monkeypatch, runner)

    async def go():
        ticket = runner.expect()  # a request is decoding
        first = asyncio.ensure_future(runner.predict(ctx(1), 1))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(runner.predict(ctx(2), 1, ticket=ticket))
        return await asyncio.gather(first, second)

    (_, t1), (_, t2) = asyncio.run(go())
    assert spy.shapes == [(2, FRAMES, H, W, 1)] and t1.batch == t2.batch == 2
    # with no ticket out, a lone request does not wait for the (huge) delay
    done = asyncio.run(asyncio.wait_for(runner.predict(ctx(3), 1), timeout=20))
    assert done[1].batch == 1


# --------------------------------------------------------------------------- failures


def test_a_model_error_fails_only_the_requests_of_that_batch(make_runner, monkeypatch):
    runner = make_runner(NF, max_batch_size=2)  # 4 requests → 2 batches; the first one fails
    Spy(monkeypatch, runner, fail_calls={1})
    contexts = [ctx(i) for i in range(4)]
    with Held(runner) as held:
        got = asyncio.run(burst(runner, held, [(c, 1) for c in contexts]))
    assert all(isinstance(g, InferenceError) for g in got[:2])
    assert "injected failure" in got[0].message
    assert all(isinstance(g, tuple) and g[0].shape == (1, H, W, 1) for g in got[2:])
    assert runner.queue_depth == 0
    assert asyncio.run(runner.predict(ctx(9), 1))[0].shape == (1, H, W, 1)  # the worker lives on


def test_a_model_error_answers_500_inference_error(client, runtime, monkeypatch):
    Spy(monkeypatch, runtime.runners[NF], fail_calls={1})
    r = client.post(f"/v1/models/{NF}/predict", files=files(clip()))
    assert r.status_code == 500 and r.json()["error"] == "inference_error"
    assert "injected failure" in r.json()["message"]


def test_a_full_queue_answers_503_with_retry_after_at_once(client, runtime, monkeypatch):
    runner = runtime.runners[NF]
    monkeypatch.setattr(runner, "max_queue", 2)
    with Held(runner) as held:  # 1 slot: the holding job
        queued = runner.submit(lambda: None)  # 2 slots: full
        r = client.post(f"/v1/models/{NF}/predict", files=files(clip()))  # answered while held
        assert r.status_code == 503 and r.json()["error"] == "overloaded"
        assert "FRAMECAST_MAX_QUEUE=2" in r.json()["message"]
        assert int(r.headers["retry-after"]) >= 1
        assert not held.release.is_set() and not queued.done()  # nothing waited for the worker
    queued.result(timeout=30)
    assert runner.queue_depth == 0
    assert client.post(f"/v1/models/{NF}/predict", files=files(clip())).status_code == 200


# --------------------------------------------------------------------------- timing


def test_server_timing_header_and_phase_metrics(client):
    r = client.post(f"/v1/models/{NF}/predict", files=files(clip()))
    assert r.status_code == 200
    timing = dict(p.strip().split(";dur=") for p in r.headers["server-timing"].split(","))
    assert set(timing) == {"decode", "queue", "model", "encode", "total"}
    assert all(float(v) >= 0 for v in timing.values())
    assert float(timing["model"]) > 0 and float(timing["total"]) >= float(timing["model"])
    r = client.post(f"/v1/models/{CL}/classify", files=files(clip()))
    assert r.status_code == 200 and "model;dur=" in r.headers["server-timing"]
    text = client.get("/metrics").text
    for phase in ("decode", "queue", "model", "encode"):
        assert f'framecast_request_phase_seconds_count{{model="{NF}",phase="{phase}"}}' in text


def test_server_timing_keeps_queue_time_out_of_the_model_phase(client, runtime, monkeypatch):
    """A request that waits in the queue: ``model`` is the model calls' time alone (the
    ``X-Inference-Ms`` header's figure), ``queue`` is the wait, on its own, and the phases fit
    in ``total``. The worker is held until the request is queued (told by the queue-depth
    callback, not by sleeping) and released once at least ``wait_s`` has passed since then, so the
    queue phase is at least ``wait_s`` by construction."""
    wait_s = 0.002
    runner = runtime.runners[NF]
    queued, at = threading.Event(), []
    told = runner.batcher.on_queue

    def on_queue(depth: int) -> None:
        told(depth)
        if depth == 2 and not queued.is_set():  # the holding job + this request
            at.append(time.perf_counter())  # after the request's enqueue time was taken
            queued.set()

    monkeypatch.setattr(runner.batcher, "on_queue", on_queue)
    with ThreadPoolExecutor(1) as pool, Held(runner) as held:
        future = pool.submit(client.post, f"/v1/models/{NF}/predict", files=files(clip()))
        assert queued.wait(30), "the request never reached the queue"
        while (left := at[0] + wait_s - time.perf_counter()) > 0:
            held.release.wait(left)  # nobody sets it yet: a bounded wait of `left` seconds
        assert not future.done()  # still waiting behind the held worker
        held.release.set()
        r = future.result(timeout=60)
    assert r.status_code == 200, r.text
    timing = {
        k: float(v) for k, v in (p.split(";dur=") for p in r.headers["server-timing"].split(", "))
    }
    assert set(timing) == {"decode", "queue", "model", "encode", "total"}
    # the header and X-Inference-Ms both print the same figure to 2 decimals
    assert r.headers["x-inference-ms"] == f"{timing['model']:.2f}"
    assert timing["model"] > 0
    assert timing["queue"] >= wait_s * 1000 - 0.005  # the wait, rounded to 2 decimals
    phases = timing["decode"] + timing["queue"] + timing["model"] + timing["encode"]
    assert phases <= timing["total"] + 0.025  # 5 figures, each rounded by at most 0.005


def test_a_timed_out_request_leaves_the_queue_and_is_never_run(make_runner, monkeypatch):
    runner = make_runner(NF, timeout_s=0.2)
    spy = Spy(monkeypatch, runner)
    with Held(runner):
        with pytest.raises(Overloaded, match="FRAMECAST_INFERENCE_TIMEOUT_S"):
            asyncio.run(runner.predict(ctx(1), 1))
        assert runner.queue_depth == 1  # only the holding job: the slot was given back
    assert asyncio.run(runner.predict(ctx(2), 1))[1].batch == 1
    assert spy.shapes == [(1, FRAMES, H, W, 1)]  # the abandoned request never reached the model


def test_a_bad_model_output_fails_its_batch_and_the_worker_lives_on(make_runner, monkeypatch):
    runner = make_runner(NF)
    original = runner.model.predict_on_batch
    monkeypatch.setattr(runner, "direct", {})  # every call through predict_on_batch, below
    monkeypatch.setattr(runner.model, "predict_on_batch", lambda x: np.zeros((len(x), 3)))
    with pytest.raises(InferenceError):
        asyncio.run(runner.predict(ctx(1), 2))
    assert runner.queue_depth == 0
    monkeypatch.setattr(runner.model, "predict_on_batch", original)
    assert asyncio.run(runner.predict(ctx(2), 2))[0].shape == (2, H, W, 1)


def test_a_step_that_answers_too_few_results_fails_its_batch_and_frees_the_queue():
    """A broken step (fewer results than items) fails exactly that batch; nothing leaks."""
    from service.runtime.batcher import Batcher

    batcher = Batcher(
        "broken",
        lambda items, bucket: [1] * (len(items) - 1),
        max_queue=4,
        timeout_s=10.0,
        max_batch_size=4,
    )
    try:
        with pytest.raises(InferenceError, match="answered 0 result"):
            asyncio.run(batcher.run("x"))
        assert batcher.depth == 0
        batcher.step_fn = lambda items, bucket: ["ok"] * len(items)
        assert asyncio.run(batcher.run("y"))[0] == "ok"
        assert batcher.depth == 0
    finally:
        batcher.close()
