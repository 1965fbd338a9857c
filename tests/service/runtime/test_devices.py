"""FRAMECAST_CPU_THREADS reaches TensorFlow's thread pools (in a fresh process: TensorFlow fixes
its pools the first time it runs an op, which this test process did long ago)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.config import Settings, SettingsError, load_settings
from service.runtime import devices

SCRIPT = """
import logging, sys
import tensorflow as tf
from service.config import Settings
from service.runtime.devices import configure_devices
configure_devices(Settings(cpu_threads=sys.argv[1], device="cpu"))
print(tf.config.threading.get_intra_op_parallelism_threads(),
      tf.config.threading.get_inter_op_parallelism_threads())
"""


AUTO = f"{max(1, devices.cores() - 1)} 0"  # a core left to the event loop; inter-op: default


@pytest.mark.parametrize("threads,expected", [(1, "1 1"), (0, "0 0"), ("auto", AUTO)])
def test_cpu_threads_set_tensorflows_pools(threads, expected):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(threads)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[3],
        env={"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": ""},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == expected


def test_cpu_threads_is_checked(monkeypatch):
    assert Settings(cpu_threads=2).cpu_threads == 2
    assert Settings().cpu_threads == "auto"
    monkeypatch.setenv("FRAMECAST_CPU_THREADS", "3")
    assert load_settings().cpu_threads == 3
    monkeypatch.setenv("FRAMECAST_CPU_THREADS", "many")
    with pytest.raises(SettingsError, match="FRAMECAST_CPU_THREADS"):
        load_settings()
    monkeypatch.setenv("FRAMECAST_CPU_THREADS", "-1")
    with pytest.raises(SettingsError, match="FRAMECAST_CPU_THREADS"):
        load_settings()


@pytest.mark.parametrize(
    "cores,workers,on_gpu,expected",
    [
        (2, 1, False, (1, 0)),  # this machine: one model thread, one core for the event loop
        (16, 1, False, (15, 0)),
        (16, 4, False, (3, 0)),  # each worker's share of the cores, less one
        (2, 2, False, (1, 0)),  # never below one
        (1, 1, False, (1, 0)),
        (16, 1, True, (0, 0)),  # serving on a GPU: TensorFlow's defaults
    ],
)
def test_auto_leaves_a_core_to_the_event_loop(monkeypatch, cores, workers, on_gpu, expected):
    monkeypatch.setattr(devices, "cores", lambda: cores)
    assert devices.cpu_pool_sizes("auto", workers, on_gpu) == expected
    assert devices.cpu_pool_sizes(2, workers, on_gpu) == (2, 2)  # a number: both pools
    assert devices.cpu_pool_sizes(0, workers, on_gpu) == (0, 0)
