"""FRAMECAST_RAY_DIRECT_INGRESS (service/runtime/ray/launch.py): what it sets for a local Ray, when
it refuses, and the end of the HAProxy processes a server started. No Ray needed (the opt-in
``tests/ray/test_ray_direct.py`` serves through it)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.config import Settings, SettingsError
from service.runtime.ray import launch

RAY_VARS = [
    "RAY_SERVE_ENABLE_DIRECT_INGRESS",
    "RAY_SERVE_ENABLE_HA_PROXY",
    "RAY_SERVE_HAPROXY_SERVER_STATE_BASE",
    "RAY_SERVE_HAPROXY_STATS_PORT",
    "RAY_SERVE_HAPROXY_METRICS_PORT",
] + [f"RAY_SERVE_HAPROXY_{k}" for k in launch.HAPROXY_FILES]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for k in RAY_VARS:
        monkeypatch.delenv(k, raising=False)


def test_off_by_default_and_on_a_joined_cluster(monkeypatch):
    monkeypatch.setattr(launch, "_no_direct_ingress", lambda: None)
    assert Settings().ray_direct_ingress is False
    assert launch.direct_ingress(Settings()) is None
    joined = Settings(ray_direct_ingress=True, ray_address="ray://head:10001")
    assert launch.direct_ingress(joined) is None  # the cluster's nodes decide
    assert not any(k in os.environ for k in RAY_VARS)


def test_on_sets_rays_variables_with_files_of_its_own(monkeypatch):
    monkeypatch.setattr(launch, "_no_direct_ingress", lambda: None)
    monkeypatch.setattr(launch, "haproxy_binary", lambda: "/bin/true")
    folder = launch.direct_ingress(Settings(ray_direct_ingress=True))
    try:
        assert folder is not None and Path(folder).is_dir()
        assert os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
        assert os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
        for name, file in launch.HAPROXY_FILES.items():
            assert os.environ[f"RAY_SERVE_HAPROXY_{name}"] == os.path.join(folder, file)
        # HAProxy's sockets: this folder / Ray's node id (56 characters) / name, at most 97
        assert len(os.path.join(folder, "n" * 56, "metrics.sock")) <= 97
        stats, metrics = (
            int(os.environ[f"RAY_SERVE_HAPROXY_{k}_PORT"]) for k in ("STATS", "METRICS")
        )
        assert stats != metrics and stats not in (8404, 9101)  # not Ray's fixed ports
    finally:
        if folder:
            launch.stop_haproxy(folder)
    assert not Path(folder).exists()


def test_unsupported_refuses_when_asked_and_stays_off_on_auto(monkeypatch, caplog):
    monkeypatch.setattr(launch, "haproxy_binary", lambda: None)
    with pytest.raises(SettingsError, match="FRAMECAST_RAY_DIRECT_INGRESS=true: no HAProxy"):
        launch.direct_ingress(Settings(ray_direct_ingress=True))
    with caplog.at_level("INFO", logger="framecast.ray"):
        assert launch.direct_ingress(Settings(ray_direct_ingress="auto")) is None
    assert "Serve's proxy in front" in caplog.text and "no HAProxy" in caplog.text
    assert not any(k in os.environ for k in RAY_VARS)


def test_ray_serve_imported_first_is_a_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray.serve", object())
    assert "imported before" in (launch._no_direct_ingress() or "")


def test_stop_haproxy_ends_its_own_processes_only(tmp_path):
    """An HAProxy left by Ray (its manager killed first) is ended; one serving another folder is
    not."""
    fake = tmp_path / "bin" / "haproxy"  # a process whose program is called haproxy
    fake.parent.mkdir()
    fake.symlink_to(sys.executable)
    mine, other = tmp_path / "fc-mine", tmp_path / "fc-other"
    mine.mkdir()
    other.mkdir()
    sleep = "import time; time.sleep(600)"
    procs = [
        subprocess.Popen([str(fake), "-c", sleep, "-f", str(d / "haproxy.cfg")])
        for d in (mine, mine, other)
    ]
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(  # each has its command line
            f"{d}" in Path(f"/proc/{p.pid}/cmdline").read_text()
            for p, d in zip(procs, (mine, mine, other))
        ):
            time.sleep(0.01)
        assert launch.stop_haproxy(str(mine), wait_s=10) == 2
        assert procs[0].wait(10) is not None and procs[1].wait(10) is not None
        assert procs[2].poll() is None  # another server's
        assert not mine.exists() and other.exists()
    finally:
        for p in procs:
            p.kill()
            p.wait()
