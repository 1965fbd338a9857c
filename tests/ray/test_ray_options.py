"""Ray Serve settings → deployment options (no Ray needed: runs in every CI run)."""

from __future__ import annotations

import os

import pytest

from service.config import Settings, SettingsError
from service.runtime.ray.app import cpus_needed, model_options, serve_logging

MODELS = ["a", "b", "c", "d"]


def test_defaults_fit_a_two_core_machine():
    s = Settings(ray_replicas=2)  # the docs' one-machine example
    opts = model_options(s, "a")
    assert opts["num_replicas"] == 2
    assert opts["ray_actor_options"] == {"num_cpus": 0.2, "num_gpus": 0.0}
    assert cpus_needed(s, MODELS) <= 2.0  # 4 models x 2 replicas + the ingress


def test_gpus_unset_reserves_none_and_the_replica_picks_its_device():
    assert model_options(Settings(), "a")["ray_actor_options"]["num_gpus"] == 0.0
    opts = model_options(Settings(ray_gpus_per_replica=0.5), "a")
    assert opts["ray_actor_options"]["num_gpus"] == 0.5


def test_serve_access_log_is_off_unless_asked_for():
    # Serve's line per call in every replica cost about a fifth of a carried stream step's CPU
    # (bench/streams/stream_scale.py); framecast's own request log stays
    assert model_options(Settings(), "a")["logging_config"] == {"enable_access_log": False}
    assert serve_logging(Settings()) == {"enable_access_log": False}
    on = Settings(ray_access_log=True)
    assert model_options(on, "a")["logging_config"] == {"enable_access_log": True}
    assert serve_logging(on) == {"enable_access_log": True}


def test_autoscaling_per_model():
    s = Settings(
        ray_replicas=1,
        ray_max_replicas=4,
        ray_target_ongoing_requests=2,
        ray_model_options={"b": {"min_replicas": 2, "max_replicas": 8, "cpus": 1}},
    )
    a, b = model_options(s, "a"), model_options(s, "b")
    assert "num_replicas" not in a
    assert a["autoscaling_config"] == {
        "min_replicas": 1,
        "initial_replicas": 1,
        "max_replicas": 4,
        "target_ongoing_requests": 2.0,
    }
    assert b["autoscaling_config"]["min_replicas"] == 2
    assert b["autoscaling_config"]["initial_replicas"] == 2
    assert b["autoscaling_config"]["max_replicas"] == 8
    assert b["ray_actor_options"]["num_cpus"] == 1.0


def test_bad_model_options_name_the_variable():
    with pytest.raises(SettingsError, match="FRAMECAST_RAY_MODEL_OPTIONS.*unknown key"):
        model_options(Settings(ray_model_options={"a": {"replica": 2}}), "a")
    with pytest.raises(SettingsError, match="min_replicas 3 > max_replicas 2"):
        model_options(Settings(ray_min_replicas=3, ray_max_replicas=2), "a")


def test_model_options_from_the_environment(monkeypatch):
    monkeypatch.setenv("FRAMECAST_RAY_MODEL_OPTIONS", '{"a": {"max_replicas": 3}}')
    monkeypatch.setenv("FRAMECAST_RAY_CPUS_PER_REPLICA", "0.25")
    s = Settings()
    assert model_options(s, "a")["autoscaling_config"]["max_replicas"] == 3
    assert model_options(s, "b")["ray_actor_options"]["num_cpus"] == 0.25


def test_two_ingress_replicas_share_one_stream_table(tmp_path, caplog):
    """serve --ray with several ingress replicas: on a local Ray a folder in memory is made for
    the live streams (and handed to every replica in the settings); a folder named in
    FRAMECAST_STREAM_DIR, or a store in FRAMECAST_STREAM_STORE, is kept; joining a cluster
    without one is said in the log, naming the store that works across nodes (Redis)."""
    import shutil

    from service.runtime.ray.launch import share_streams

    one = Settings()
    assert share_streams(one) == (one, None)
    named = Settings(ray_ingress_replicas=2, stream_dir=tmp_path)
    assert share_streams(named) == (named, None)
    shared, made = share_streams(Settings(ray_ingress_replicas=2))
    try:
        assert made is not None and shared.stream_dir is not None
        assert str(shared.stream_dir) == made and os.path.isdir(made)
    finally:
        shutil.rmtree(made, ignore_errors=True)
    redis = Settings(ray_ingress_replicas=2, stream_store="redis://127.0.0.1:6379/0")
    assert share_streams(redis) == (redis, None)
    joining = Settings(ray_ingress_replicas=3, ray_address="ray://head:10001")
    with caplog.at_level("WARNING", logger="framecast.ray"):
        assert share_streams(joining) == (joining, None)
    assert "FRAMECAST_STREAM_STORE=redis://" in caplog.text and "404" in caplog.text
