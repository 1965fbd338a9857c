"""What a run ran on: backend, versions, devices. Recorded in manifests and model cards."""

from __future__ import annotations

import os
import platform


def backend() -> str:
    import keras

    return keras.backend.backend()


def accelerators() -> list[str]:
    """Names of GPU devices the active Keras backend sees (empty on a CPU-only machine)."""
    name = backend()
    try:
        if name == "jax":
            import jax

            return [
                f"{d.platform}:{d.id} {getattr(d, 'device_kind', '')}".strip()
                for d in jax.devices()
                if d.platform != "cpu"
            ]
        if name == "tensorflow":
            import tensorflow as tf

            return [d.name for d in tf.config.list_physical_devices("GPU")]
    except Exception:  # noqa: BLE001 - a broken GPU stack means: no GPU
        return []
    return []


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict:
    """A JSON-able description of the machine and software stack."""
    import keras
    import numpy

    info = {
        "backend": backend(),
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "accelerators": accelerators(),
    }
    if info["backend"] == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
    elif info["backend"] == "jax":
        import jax

        info["jax"] = jax.__version__
    return info


def hardware_summary(info: dict) -> str:
    acc = ", ".join(info.get("accelerators") or []) or "no GPU"
    return (
        f"{info.get('cpu')} ({info.get('cpu_count')} cores), {acc}, backend {info.get('backend')}"
    )
