"""Jobs that behave like a service's: any process sharing the job folder answers for (and cancels)
any job; a job whose model is unloaded mid-way fails saying so; a server that stops marks its
running jobs failed with the reason; a finished report survives a restart."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.service.helpers import clip, npy
from tests.service.runtime.test_batcher import Held

NF = "conv2d_lstm_next_frame,convlstm2d_next_frame"
DEADLINE_S = 120.0


def _settings(models_dir, job_dir) -> Settings:
    return Settings(
        models_dir=models_dir,
        load_mode="blocking",
        max_horizon=5,
        job_dir=job_dir,
        job_progress_interval_s=0.1,
    )


def _data(n: int = 12) -> bytes:
    return npy(np.stack([clip(t=6, seed=i) for i in range(n)]))


def _post(c, data: bytes) -> str:
    r = c.post(
        f"/v1/evaluations?models={NF}&holdout=2",
        content=data,
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 202, r.text
    return r.json()["location"]


def _until(c, location: str, states: tuple[str, ...]) -> dict:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        job = c.get(location).json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


@pytest.fixture
def job_dir(tmp_path):
    return tmp_path / "jobs"


def test_any_process_sharing_the_folder_answers_for_and_cancels_any_job(models_dir, job_dir):
    with (
        TestClient(create_app(_settings(models_dir, job_dir))) as a,
        TestClient(create_app(_settings(models_dir, job_dir))) as b,
    ):
        done = _post(a, _data(6))
        job = _until(b, done, ("done",))  # answered by the other process
        assert b.get(done + "/report").status_code == 200
        assert job["result"]["clips"] == 6
        with Held(a.app.state.runtime.get("conv2d_lstm_next_frame")):
            running = _post(a, _data())
            assert b.delete(running).json()["state"] == "cancelled"
        job = _until(a, running, ("cancelled",))
        assert job["progress"]["done"] < 12
        deadline = time.monotonic() + DEADLINE_S  # its runner, in the other process, stops
        while a.app.state.jobs.tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not a.app.state.jobs.tasks


def test_a_model_unloaded_mid_way_fails_the_job_saying_so(models_dir, job_dir):
    with TestClient(create_app(_settings(models_dir, job_dir))) as c:
        runner = c.app.state.runtime.get("convlstm2d_next_frame")
        with Held(runner):
            location = _post(c, _data(20))
            r = c.post("/v2/repository/models/convlstm2d_next_frame/unload")
            assert r.status_code == 200
        job = _until(c, location, ("failed",))
        assert "'convlstm2d_next_frame' is no longer served" in job["error"]
        assert "unloaded" in job["error"]


def test_a_server_that_stops_fails_its_running_job_and_keeps_finished_reports(models_dir, job_dir):
    hold = None
    with TestClient(create_app(_settings(models_dir, job_dir))) as c:
        finished = _post(c, _data(4))
        _until(c, finished, ("done",))
        hold = Held(c.app.state.runtime.get("conv2d_lstm_next_frame"))
        running = _post(c, _data())
    hold.release.set()  # the stopped server's worker thread may end
    with TestClient(create_app(_settings(models_dir, job_dir))) as c:
        job = c.get(running).json()
        assert job["state"] == "failed"
        assert "the server stopped while the job ran" in job["error"]
        report = c.get(finished + "/report")
        assert report.status_code == 200 and "On these 4 clips" in report.text
