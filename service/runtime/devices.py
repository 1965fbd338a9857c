"""Device placement: which device the Keras backend serves on (a GPU when one is seen)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from service.config import Settings

log = logging.getLogger("framecast.runtime")


class DeviceError(RuntimeError):
    """The device asked for is not there (FRAMECAST_DEVICE=gpu without a GPU)."""


@dataclass(frozen=True)
class Placement:
    device: str  # what keras.device() takes: "cpu:0" / "gpu:0"
    description: str  # for people: "gpu:0 (NVIDIA H100 80GB HBM3)", "cpu:0"
    backend: str


# What TensorFlow's C++ side prints to stderr while it loads, whatever TF_CPP_MIN_LOG_LEVEL says
# (absl logging): notices, not faults. Shown only with FRAMECAST_LOG_LEVEL=debug.
IMPORT_NOISE = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "cpu_feature_guard",
    "To enable the following instructions",
    "rebuild TensorFlow with the appropriate compiler flags",
    "Unable to register cu",
    "TF-TRT Warning",
    "computation placer already registered",
)


def import_keras(quiet: bool, backend: str = "tensorflow") -> None:
    """Import Keras (and its ``backend``, Settings.keras_backend) with the backend's load-time
    notices filtered out of stderr when ``quiet``; every other line it prints is passed on."""
    import importlib.util
    import sys

    if backend == "tensorflow" and importlib.util.find_spec("tensorflow") is None:
        raise DeviceError(
            "TensorFlow is not installed: install framecast with one of its extras, "
            "pip install 'framecast[cpu]' (CPU) or 'framecast[gpu]' (NVIDIA GPU, Linux), "
            "or set KERAS_BACKEND=jax with JAX installed"
        )
    if not quiet or "keras" in sys.modules:
        import keras  # noqa: F401

        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import keras  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not any(n in line for n in IMPORT_NOISE):
                    print(line, file=sys.stderr)


def cores() -> int:
    """The cores this process may run on (its affinity mask: a container's cpuset counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return os.cpu_count() or 1


def cpu_pool_sizes(setting: int | str, workers: int, on_gpu: bool) -> tuple[int, int]:
    """TensorFlow's (intra-op, inter-op) pool sizes for ``FRAMECAST_CPU_THREADS``; 0 leaves a
    pool at TensorFlow's default (every core). ``auto`` on the CPU: this worker's share of the
    cores less one for its event loop, at least 1, in the intra-op pool (docs/performance.md,
    'The front end', has the measurements against TensorFlow's defaults)."""
    if setting == "auto":
        return (0, 0) if on_gpu else (max(1, cores() // max(1, workers) - 1), 0)
    return int(setting), int(setting)


def _cpu_pools(tf: Any, settings: Settings, on_gpu: bool) -> None:
    workers = max(settings.workers, settings.worker_count)
    intra, inter = cpu_pool_sizes(settings.cpu_threads, workers, on_gpu)
    try:
        if intra:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError as e:  # TensorFlow already started its pools
        log.warning("FRAMECAST_CPU_THREADS not applied: %s", e)
        return
    log.info(
        "TensorFlow CPU pools: intra-op %s, inter-op %s (FRAMECAST_CPU_THREADS=%s; %d cores, "
        "%d worker(s))",
        intra or "TensorFlow's default",
        inter or "TensorFlow's default",
        settings.cpu_threads,
        cores(),
        workers,
    )


def configure_devices(settings: Settings) -> Placement:
    """Find a GPU the Keras backend sees (enable TF memory growth on each); choose the device."""
    import keras

    backend = keras.backend.backend()
    gpus: list[str] = []
    try:
        if backend == "tensorflow":
            import tensorflow as tf  # only for GPU discovery, memory growth, CPU threads

            found = tf.config.list_physical_devices("GPU")  # starts no pools
            _cpu_pools(tf, settings, on_gpu=bool(found) and settings.device != "cpu")
            for gpu in found:
                if settings.gpu_memory_growth:
                    try:
                        tf.config.experimental.set_memory_growth(gpu, True)
                    except RuntimeError as e:  # already initialised: growth can no longer change
                        log.warning("cannot enable memory growth on %s: %s", gpu.name, e)
                details = tf.config.experimental.get_device_details(gpu)
                gpus.append(details.get("device_name", gpu.name))
        elif backend == "jax":
            import jax

            gpus = [d.device_kind for d in jax.devices() if d.platform == "gpu"]
        elif backend == "torch":
            import torch

            gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception as e:  # noqa: BLE001 - discovery failure means CPU, never a failed start
        log.warning("GPU discovery failed under the %s backend (%s); using the CPU", backend, e)
        gpus = []
    if settings.device == "gpu" and not gpus:
        raise DeviceError(f"FRAMECAST_DEVICE=gpu but the {backend} backend sees no GPU")
    if gpus and settings.device != "cpu":
        k = settings.worker_index % len(gpus)  # `serve --workers N`: worker i on GPU i mod n
        return Placement(f"gpu:{k}", f"gpu:{k} ({gpus[k]})", backend)
    return Placement("cpu:0", "cpu:0", backend)
