"""Evaluation jobs end to end: a data set through the served models scores what predict and
classify answer, with monotone progress, a report in every form, Server-Sent Events, and 4xx for
what a data set gets wrong (hostile archives write nothing outside the job's folder)."""

from __future__ import annotations

import csv
import io
import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.config import Settings
from tests.service.conftest import CARRY, CARRY2, FREE, WINDOW
from tests.service.helpers import clip, npy
from tests.service.jobs import hostile as H
from tests.service.runtime.test_batcher import Held

NF = "conv2d_lstm_next_frame,convlstm2d_next_frame"
CL = "conv2d_lstm_classify,convlstm2d_classify"
DEADLINE_S = 120.0
MIB = 1 << 20
FINAL = ("done", "failed", "cancelled")


@pytest.fixture(scope="module")
def small(models_dir, tmp_path_factory):
    """A server with small job limits (and its own job folder)."""
    settings = Settings(
        models_dir=models_dir,
        load_mode="blocking",
        max_horizon=5,
        job_dir=tmp_path_factory.mktemp("small_jobs"),
        job_max_unpacked_bytes=64 * MIB,
        job_max_dataset_bytes=4 * MIB,
        job_max_clips=20,
        job_max_concurrent=1,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def post(client, query: str, data: bytes, form: bool = False):
    if form:
        return client.post(
            f"/v1/evaluations?{query}",
            files={"dataset": ("data.bin", data, "application/octet-stream")},
        )
    return client.post(
        f"/v1/evaluations?{query}",
        content=data,
        headers={"content-type": "application/octet-stream"},
    )


def wait(client, location: str) -> tuple[dict, list[int]]:
    """Poll the job until it ends; the clips done seen on the way."""
    seen, deadline = [], time.monotonic() + DEADLINE_S
    while True:
        job = client.get(location).json()
        seen.append(job["progress"]["done"])
        if job["state"] in FINAL or time.monotonic() > deadline:
            return job, seen
        time.sleep(0.05)


def clips_uint8(n: int, t: int, seed: int = 0) -> np.ndarray:
    return np.stack([clip(t=t, seed=seed + i) for i in range(n)])  # (n, t, 16, 16)


def test_a_next_frame_job_scores_what_predict_answers(client):
    clips = clips_uint8(10, 7)
    r = post(client, f"models={NF}&holdout=3&name=mine", npy(clips))
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"id", "state", "location"} and r.headers["location"] == body["location"]
    job, seen = wait(client, body["location"])
    assert job["state"] == "done", job["error"]
    assert seen == sorted(seen) and seen[-1] == 10  # monotone progress
    result = job["result"]
    assert result["clips"] == 10 and result["holdout"] == 3 and job["name"] == "mine"
    for model in NF.split(","):
        mses = []
        for c in clips:
            p = client.post(
                f"/v1/models/{model}/predict?horizon=3&raw=true",
                files={"files": ("c.npy", npy(c[:4]), "application/x-npy")},
            )
            pred = np.array([f["values"] for f in p.json()["frames"]])
            mses.append(((pred - c[4:, ..., None] / 255.0) ** 2).sum(axis=(1, 2, 3)).mean())
        m = result["models"][model]["metrics"]["mse_per_frame"]
        assert m["mean"] == pytest.approx(np.mean(mses), rel=1e-5)
        assert m["ci95"][0] <= m["mean"] <= m["ci95"][1]
        assert [s["step"] for s in m["per_step"]] == [1, 2, 3]
        assert result["models"][model]["cost"]["flops_per_clip"] > 0
    (comp,) = [c for c in result["comparisons"] if c["metric"] == "mse_per_frame"]
    assert {"a", "b", "metric", "difference", "p_value", "wins"} <= set(comp)
    assert result["verdict"].startswith("On these 10 clips")


@pytest.fixture(scope="module")
def carried(stream_models, tmp_path_factory):
    """A server over models that carry their state (and one that slides a window)."""
    settings = Settings(
        models_dir=stream_models,
        load_mode="blocking",
        max_horizon=5,
        job_dir=tmp_path_factory.mktemp("carried_jobs"),
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_carried_state_models_read_a_jobs_context_frame_by_frame_and_score_as_predict(carried):
    """A job's rollout on a carried-state model reads its context one step a call (so an online
    request waits behind one step at most): the numbers are predict's all the same."""
    models = [CARRY, CARRY2, FREE, WINDOW]
    clips = clips_uint8(6, 8, seed=40)
    r = post(carried, f"models={','.join(models)}&holdout=3", npy(clips))
    assert r.status_code == 202, r.text
    job, _ = wait(carried, r.json()["location"])
    assert job["state"] == "done", job["error"]
    for model in models:
        assert carried.get(f"/v1/models/{model}").json()["rollout"] in (
            "carried_state",
            "sliding_window",
        )
        mses = []
        for c in clips:
            p = carried.post(
                f"/v1/models/{model}/predict?horizon=3&raw=true",
                files={"files": ("c.npy", npy(c[:5]), "application/x-npy")},
            )
            pred = np.array([f["values"] for f in p.json()["frames"]])
            mses.append(((pred - c[5:, ..., None] / 255.0) ** 2).sum(axis=(1, 2, 3)).mean())
        got = job["result"]["models"][model]["metrics"]["mse_per_frame"]["mean"]
        assert got == pytest.approx(np.mean(mses), rel=1e-5), model


def test_a_classifier_job_scores_what_classify_answers(client):
    clips = clips_uint8(12, 4, seed=5)
    labels = np.arange(12) % 8
    buf = io.BytesIO()
    np.savez(buf, clips=clips, labels=labels)
    r = post(client, f"models={CL}&top_k=2", buf.getvalue(), form=True)
    assert r.status_code == 202, r.text
    job, _ = wait(client, r.json()["location"])
    assert job["state"] == "done", job["error"]
    names = client.get("/v1/models/conv2d_lstm_classify").json()["class_names"]
    for model in CL.split(","):
        right = []
        for c, y in zip(clips, labels):
            a = client.post(
                f"/v1/models/{model}/classify",
                files={"files": ("c.npy", npy(c), "application/x-npy")},
            )
            right.append(a.json()["label"] == names[y])
        entry = job["result"]["models"][model]
        assert entry["metrics"]["accuracy"]["mean"] == pytest.approx(np.mean(right))
        assert sum(map(sum, entry["confusion"]["counts"])) == 12
        assert set(entry["confusion"]["labels"]) <= set(names)  # indices named as classes
    (comp,) = [c for c in job["result"]["comparisons"] if c["metric"] == "accuracy"]
    assert comp["test"] == "mcnemar_exact"


def test_the_report_comes_as_a_page_json_csv_and_png(client):
    r = post(client, f"models={NF}&holdout=2", npy(clips_uint8(6, 6)))
    job, _ = wait(client, r.json()["location"])
    loc = job["location"]
    page = client.get(loc + "/report")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert job["result"]["verdict"].split(" (")[0] in page.text.replace("&#x27;", "'")
    assert "<svg" in page.text and "data:image/png;base64," in page.text
    assert client.get(loc + "/report.json").json()["result"] == job["result"]
    rows = list(csv.reader(io.StringIO(client.get(loc + "/clips.csv").text)))
    assert rows[0][:3] == ["clip", "label", "model"] and len(rows) == 1 + 6 * 2
    png = client.get(loc + "/plot.png")
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (640, 300)
    listed = client.get("/v1/evaluations").json()["jobs"]
    assert job["id"] in [j["id"] for j in listed]


def test_progress_streams_as_server_sent_events(client):
    r = post(client, f"models={NF}&holdout=2", npy(clips_uint8(8, 6)))
    events = []
    with client.stream("GET", r.json()["location"] + "/events") as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in s.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    assert events[-1][0] == "done" and events[-1][1]["result"]["clips"] == 8
    done = [e["progress"]["done"] for k, e in events if k == "progress"]
    assert done == sorted(done)


@pytest.mark.parametrize(
    "make",
    [
        H.zip_dotdot,
        H.zip_absolute,
        H.zip_symlink,
        H.zip_lying_header,
        H.tar_symlink,
        H.tar_dotdot,
        H.tar_lying_header,
        lambda: H.zip_bomb(300 * 1024 * 1024),
        lambda: H.zip_many(100_000),
    ],
)
def test_hostile_archives_are_refused_and_write_nothing(small, tmp_path, make):
    job_dir = small.app.state.jobs.settings.job_dir
    before = {p.name for p in job_dir.iterdir()} if job_dir.exists() else set()
    r = post(small, f"models={NF}&holdout=2", make())
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"] in ("unsafe_archive", "payload_too_large")
    after = {p.name for p in job_dir.iterdir()}
    assert after - before <= {"jobs.sqlite", "jobs.sqlite-wal", "jobs.sqlite-shm"}
    for root in (job_dir.parent, job_dir.parent.parent, tmp_path):
        assert not list(root.rglob(H.ESCAPE))


@pytest.mark.parametrize(
    "query, data, status, needle",
    [
        (f"models={NF}", npy(np.zeros((2, 6, 16, 16), np.uint8)), 422, "holdout=k"),
        ("models=conv2d_lstm_next_frame,conv2d_lstm_classify&holdout=2", b"x", 422, "tasks"),
        ("models=nope&holdout=2", b"x", 404, "nope"),
        (f"models={NF}&holdout=4", npy(np.zeros((2, 4, 16, 16), np.uint8)), 422, "no context"),
        (f"models={NF}&holdout=3", npy(np.zeros((2, 5, 16, 16), np.uint8)), 422, "needs 4"),
        (f"models={CL}", npy(np.zeros((2, 4, 16, 16), np.uint8)), 422, "no label"),
        (f"models={NF}&holdout=2", b"", 422, "empty"),
        (f"models={NF}&holdout=2", b"hello, world", 415, "not a form"),
    ],
)
def test_what_a_job_gets_wrong_is_a_4xx_before_it_starts(client, query, data, status, needle):
    r = post(client, query, data)
    assert r.status_code == status, r.text
    assert needle in r.json()["message"]


def test_unknown_and_unfinished_jobs(client):
    assert client.get("/v1/evaluations/nope").status_code == 404
    r = client.get("/v1/evaluations/nope/report")
    assert r.status_code == 404 and r.json()["error"] == "job_not_found"


def test_limits_on_bytes_clips_and_jobs_at_once(small):
    big = npy(np.zeros((4, 6, 512, 512), np.uint8))  # 6 MB: over 4 MiB
    r = post(small, f"models={NF}&holdout=2", big)
    assert r.status_code == 413 and "FRAMECAST_JOB_MAX_DATASET_BYTES" in r.json()["message"]
    r = post(small, f"models={NF}&holdout=2", npy(clips_uint8(21, 6)))
    assert r.status_code == 413 and "FRAMECAST_JOB_MAX_CLIPS" in r.json()["message"]
    runner = small.app.state.runtime.get("conv2d_lstm_next_frame")
    with Held(runner):  # the first job cannot finish while the model's worker is held
        first = post(small, f"models={NF}&holdout=2", npy(clips_uint8(6, 6)))
        assert first.status_code == 202
        r = post(small, f"models={NF}&holdout=2", npy(clips_uint8(6, 6)))
        assert r.status_code == 503 and "FRAMECAST_JOB_MAX_CONCURRENT" in r.json()["message"]
        assert r.headers["retry-after"]
        assert small.get(first.json()["location"] + "/report").status_code == 409
        running = small.get(first.json()["location"]).json()
        assert running["state"] in ("queued", "running") and running["result"] is None
        assert running["progress"]["total"] == 6
        gone = small.delete(first.json()["location"]).json()
        assert gone["state"] == "cancelled"
    job, _ = wait(small, first.json()["location"])
    assert job["state"] == "cancelled" and job["progress"]["done"] < 6
