"""Evaluation jobs belong to the key that submitted them (docs/security.md): another tenant's
key gets 404 on every route of the job, as for an unknown id, and its listing leaves the job out;
an admin key sees and cancels every job; a key's ``max_jobs`` caps its queued and running jobs
(429 with Retry-After, naming the limit) without touching another key's; keys off, every job is
everyone's, as before."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.jobs.store import JobStore
from tests.service.helpers import npy
from tests.service.routes.v1.test_evaluations import NF, clips_uint8, wait
from tests.service.runtime.test_batcher import Held

KEYS = {
    "alice": ("fc_alice-jobs-1", '["infer", "evaluate"]', "max_jobs = 1\n"),
    "bob": ("fc_bob-jobs-2", '["infer", "evaluate"]', ""),
    "root": ("fc_root-jobs-3", '["admin"]', ""),
}
ROUTES = ("", "/events", "/report", "/report.json", "/clips.csv", "/plot.png")


def auth(kid):
    return {"authorization": f"Bearer {KEYS[kid][0]}"}


@pytest.fixture(scope="module")
def tenants(models_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("job_keys")
    text = ""
    for kid, (secret, scopes, extra) in KEYS.items():
        digest = hashlib.sha256(secret.encode()).hexdigest()
        text += f'[[keys]]\nid = "{kid}"\nsha256 = "{digest}"\nscopes = {scopes}\n{extra}\n'
    (folder / "keys.toml").write_text(text)
    s = Settings(
        models_dir=models_dir,
        load_mode="blocking",
        api_keys_file=folder / "keys.toml",
        job_dir=folder / "jobs",
        job_max_concurrent=4,
    )
    with TestClient(create_app(s)) as c:
        yield c


def submit(c, kid, seed=0):
    r = c.post(
        f"/v1/evaluations?models={NF}&holdout=2",
        content=npy(clips_uint8(4, 6, seed)),
        headers={"content-type": "application/octet-stream", **auth(kid)},
    )
    return r


def test_a_job_is_its_keys_alone_and_the_admins(tenants):
    c = tenants
    r = submit(c, "alice")
    assert r.status_code == 202, r.text
    loc = r.json()["location"]
    job, _ = wait_as(c, loc, "alice")
    assert job["state"] == "done", job
    unknown = c.get("/v1/evaluations/0123456789abcdef", headers=auth("bob"))
    for route in ROUTES:
        got = c.get(loc + route, headers=auth("bob"))
        assert got.status_code == 404, (route, got.status_code)
        assert got.json()["error"] == unknown.json()["error"] == "job_not_found"
        assert c.get(loc + route, headers=auth("alice")).status_code == 200, route
        assert c.get(loc + route, headers=auth("root")).status_code == 200, route
    assert c.delete(loc, headers=auth("bob")).status_code == 404
    assert c.get(loc, headers=auth("alice")).json()["state"] == "done"  # not deleted by bob

    mine = submit(c, "bob", seed=3)
    assert mine.status_code == 202
    wait_as(c, mine.json()["location"], "bob")
    ids = {
        k: {j["id"] for j in c.get("/v1/evaluations", headers=auth(k)).json()["jobs"]} for k in KEYS
    }
    assert r.json()["id"] in ids["alice"] and r.json()["id"] not in ids["bob"]
    assert mine.json()["id"] in ids["bob"] and mine.json()["id"] not in ids["alice"]
    assert ids["root"] >= ids["alice"] | ids["bob"]
    assert c.delete(loc, headers=auth("root")).json()["state"] == "deleted"  # the admin may
    assert c.get(loc, headers=auth("alice")).status_code == 404


def test_a_keys_max_jobs_caps_its_running_jobs_only(tenants):
    c = tenants
    runner = c.app.state.runtime.get("conv2d_lstm_next_frame")
    with Held(runner):  # alice's first job cannot finish while the model's worker is held
        first = submit(c, "alice", seed=5)
        assert first.status_code == 202, first.text
        r = submit(c, "alice", seed=6)
        assert r.status_code == 429, r.text
        assert "max_jobs=1" in r.json()["message"] and "'alice'" in r.json()["message"]
        assert int(r.headers["retry-after"]) >= 1
        other = submit(c, "bob", seed=7)  # bob's own count: not alice's
        assert other.status_code == 202, other.text
        # another tenant cannot cancel alice's running job; she can
        assert c.delete(first.json()["location"], headers=auth("bob")).status_code == 404
        assert c.delete(first.json()["location"], headers=auth("alice")).status_code == 200
    wait_as(c, first.json()["location"], "alice")
    wait_as(c, other.json()["location"], "bob")
    again = submit(c, "alice", seed=8)  # her running job ended: room again
    assert again.status_code == 202, again.text
    wait_as(c, again.json()["location"], "alice")


def test_a_job_folder_made_before_the_keys_gains_the_column(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "jobs.sqlite")
    db.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, created REAL NOT NULL, "
        "started REAL, ended REAL, heartbeat REAL, owner TEXT, cancel INTEGER NOT NULL DEFAULT "
        "0, error TEXT, params TEXT, dataset TEXT, progress TEXT, partial TEXT, result TEXT)"
    )
    db.execute("INSERT INTO jobs (id, state, created) VALUES ('old', 'done', 1.0)")
    db.commit()
    db.close()
    store = JobStore(tmp_path)
    assert store.get("old")["key_id"] is None  # a job of before: everyone's (keys off) or admin's
    assert store.running_of("alice") == 0


def wait_as(c, location, kid):
    class As:
        def get(self, url):
            return c.get(url, headers=auth(kid))

    return wait(As(), location)
