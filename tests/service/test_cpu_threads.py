"""FRAMECAST_CPU_THREADS reaches TensorFlow's thread pools (in a fresh process: TensorFlow fixes
its pools the first time it runs an op, which this test process did long ago)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.config import Settings, SettingsError, load_settings

SCRIPT = """
import logging, sys
import tensorflow as tf
from service.config import Settings
from service.devices import configure_devices
configure_devices(Settings(cpu_threads=int(sys.argv[1])))
print(tf.config.threading.get_intra_op_parallelism_threads(),
      tf.config.threading.get_inter_op_parallelism_threads())
"""


@pytest.mark.parametrize("threads,expected", [(1, "1 1"), (0, "0 0")])
def test_cpu_threads_set_tensorflows_pools(threads, expected):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(threads)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
        env={"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": ""},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == expected


def test_cpu_threads_is_checked(monkeypatch):
    assert Settings(cpu_threads=2).cpu_threads == 2
    monkeypatch.setenv("FRAMECAST_CPU_THREADS", "-1")
    with pytest.raises(SettingsError, match="FRAMECAST_CPU_THREADS"):
        load_settings()
