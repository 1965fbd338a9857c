"""The job store: shared by every process given its folder; a job whose process is gone is failed
with the reason; limits on jobs at once; expiry."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from service.errors import TooManyJobs
from service.jobs.store import JobStore, owner_id


def _job(i: str) -> dict:
    return {"id": i, "state": "queued", "params": {"models": ["a"]}, "progress": {"done": 0}}


def test_two_stores_on_one_folder_see_the_same_jobs(tmp_path):
    a, b = JobStore(tmp_path), JobStore(tmp_path)
    a.create(_job("j1"), max_active=4)
    assert b.get("j1")["owner"] == owner_id()
    assert a.update("j1", state="running", progress={"done": 3})
    assert b.get("j1")["progress"] == {"done": 3}
    assert b.cancel("j1", "cancelled (DELETE)")
    assert not a.update("j1", progress={"done": 4})  # the runner learns it must stop
    assert a.get("j1")["state"] == "cancelled"
    assert not a.finish("j1", "done")  # an ended job stays as it ended


def test_the_concurrent_limit_counts_every_process(tmp_path):
    a, b = JobStore(tmp_path), JobStore(tmp_path)
    a.create(_job("j1"), max_active=2)
    b.create(_job("j2"), max_active=2)
    with pytest.raises(TooManyJobs, match="FRAMECAST_JOB_MAX_CONCURRENT") as e:
        a.create(_job("j3"), max_active=2)
    assert e.value.status == 503 and e.value.headers["Retry-After"]
    a.finish("j1", "done")
    a.create(_job("j3"), max_active=2)


def test_a_job_whose_process_died_is_failed_by_whoever_reads_it(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    store = JobStore(tmp_path)
    store.create(_job("j1"), max_active=4)
    host = owner_id().rpartition(":")[0]
    with store._db() as db:
        db.execute("UPDATE jobs SET owner=?, state='running' WHERE id='j1'", (f"{host}:{dead}",))
    job = JobStore(tmp_path).get("j1")
    assert job["state"] == "failed" and "stopped without finishing it" in job["error"]


def test_a_job_without_a_heartbeat_for_too_long_is_failed(tmp_path):
    store = JobStore(tmp_path, stale_s=30)
    store.create(_job("j1"), max_active=4)
    with store._db() as db:
        db.execute(
            "UPDATE jobs SET owner='elsewhere:1', heartbeat=? WHERE id='j1'", (time.time() - 31,)
        )
    job = store.jobs()[0]
    assert job["state"] == "failed" and "FRAMECAST_JOB_STALE_S" in job["error"]


def test_ended_jobs_expire(tmp_path):
    store = JobStore(tmp_path)
    store.create(_job("old"), max_active=4)
    store.create(_job("new"), max_active=4)
    store.finish("old", "done")
    with store._db() as db:
        db.execute("UPDATE jobs SET ended=? WHERE id='old'", (time.time() - 100,))
    assert store.expired(50) == ["old"]
    assert store.get("old") is None and store.get("new") is not None
