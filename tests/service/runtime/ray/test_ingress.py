"""The Ray ingress's start (service/runtime/ray/ingress.py) against a stand-in for Serve's API
that settles in steps as Serve does: no Ray needed, the race reproduced on purpose."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from types import SimpleNamespace

import pytest

from service.config import Settings
from service.runtime.ray import ingress


class FakeServe:
    """``serve.status()`` goes through ``steps`` (one per call, the last repeated): each a dict
    deployment name -> status (None: the application is listed with no deployment yet).
    ``get_deployment_handle`` raises KeyError ``handle_misses`` times first, as Serve does when
    asked a moment before it has created the deployment."""

    def __init__(self, steps: list[dict | None], info: dict, handle_misses: int = 0):
        self.steps, self.calls, self.info = steps, 0, info
        self.handle_misses, self.handle_calls = handle_misses, 0

    def get_replica_context(self):
        return SimpleNamespace(app_name="framecast")

    def status(self):
        step = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        deployments = {
            name: SimpleNamespace(
                status=st,
                message="boom" if st == "DEPLOY_FAILED" else "",
                replica_states={"RUNNING": 1} if st == "HEALTHY" else {"STARTING": 1},
            )
            for name, st in (step or {}).items()
        }
        apps = {
            "framecast": SimpleNamespace(deployments={}),
            "framecast-model-m": SimpleNamespace(deployments=deployments),
        }
        return SimpleNamespace(applications=apps)

    def get_deployment_handle(self, name: str, app_name: str):
        self.handle_calls += 1
        if self.handle_calls <= self.handle_misses:
            raise KeyError(f"Deployment(name='{name}', app='{app_name}') does not exist.")
        result = SimpleNamespace(result=lambda timeout_s: self.info)
        return SimpleNamespace(info=SimpleNamespace(remote=lambda: result))


@pytest.fixture
def info(runtime):
    local = runtime.runners["convlstm2d_classify"]
    return {
        "manifest": {**dataclasses.asdict(local.manifest), "name": "m"},
        "placement": dataclasses.asdict(local.placement),
        "card": None,
        "warmup_ms": 1.0,
        "folder": str(local.folder),
    }


def start(monkeypatch, serve: FakeServe, retries: int = 8) -> ingress.RemoteRuntime:
    monkeypatch.setattr(ingress, "ray_modules", lambda: (None, serve))
    rt = ingress.RemoteRuntime(
        Settings(ray_start_retries=retries, warmup=False), {}, {"m": "framecast-model-m"}
    )
    rt.poll_s = 0.001
    rt.start()
    assert rt._thread is not None
    rt._thread.join(timeout=30)
    return rt


def test_a_deployment_created_after_the_ingress_first_looks_is_waited_for(monkeypatch, info):
    """The race of a real start: the model's application is listed before its deployment, the
    deployment then starts, runs, and its handle is asked for a moment too early."""
    steps: list[dict | None] = [None, None, {"model-m": "UPDATING"}, {"model-m": "HEALTHY"}]
    serve = FakeServe(steps, info, handle_misses=2)
    rt = start(monkeypatch, serve)
    assert rt.ready, rt.status
    assert rt.status.models == {"m": "ready"} and rt.get("m").name == "m"
    assert serve.calls >= 4 and serve.handle_calls == 3  # waited; two misses retried


def test_retries_are_bounded_then_start_up_fails_saying_why(monkeypatch, info):
    serve = FakeServe([{"model-m": "HEALTHY"}], info, handle_misses=100)
    rt = start(monkeypatch, serve, retries=2)
    assert not rt.ready and serve.handle_calls == 3
    assert "after 3 attempt(s)" in rt.status.detail and "does not exist" in rt.status.detail


def test_a_failed_deployment_fails_start_up_with_serves_message(monkeypatch, info):
    rt = start(monkeypatch, FakeServe([None, {"model-m": "DEPLOY_FAILED"}], info))
    assert not rt.ready and "deployment failed: model-m: boom" in rt.status.detail
    assert rt.status.models["m"].startswith("failed")


def test_started_on_an_event_loop_it_asks_the_deployments_from_that_loop(monkeypatch, info):
    """With Serve's router on the replica's event loop (RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0,
    FRAMECAST_RAY_SERVE_TUNING) a handle is used from that loop only: the loader thread asks
    each deployment what it serves through the loop the app started on."""
    serve = FakeServe([{"model-m": "HEALTHY"}], info)
    callers: list[threading.Thread] = []

    async def answer() -> dict:
        return info

    def remote():
        asyncio.get_running_loop()  # raises outside an event loop, as such a handle does
        callers.append(threading.current_thread())
        return answer()

    handle = SimpleNamespace(info=SimpleNamespace(remote=remote))
    monkeypatch.setattr(serve, "get_deployment_handle", lambda name, app_name: handle)
    monkeypatch.setattr(ingress, "ray_modules", lambda: (None, serve))

    async def main() -> ingress.RemoteRuntime:
        rt = ingress.RemoteRuntime(
            Settings(ray_start_retries=1, warmup=False), {}, {"m": "framecast-model-m"}
        )
        rt.poll_s = 0.001
        rt.start()  # in the app's lifespan, on its loop
        assert rt._thread is not None
        while rt._thread.is_alive():  # the loop stays free to run the loader's call
            await asyncio.sleep(0.005)
        return rt

    rt = asyncio.run(main())
    assert rt.ready, rt.status
    assert callers == [threading.main_thread()]  # the loop's thread, never the loader's
