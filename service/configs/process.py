"""The process group of framecast's settings: how one server process tunes Python and calls its
models once they are loaded (``FRAMECAST_GC_THRESHOLD``, ``FRAMECAST_GIL_SWITCH_INTERVAL_MS``,
``FRAMECAST_DIRECT_CALLS``).

A part of :class:`service.config.Settings`, which inherits these fields and reads them from the
environment with the others; declared here only to keep config.py one screenful per group. Never
instantiated on its own.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class ProcessSettings(BaseSettings):
    gc_threshold: int = Field(
        10000,
        ge=0,
        description="Python's young-generation garbage-collector threshold once the models are "
        "loaded (and frozen out of every pass): new container objects, net of those freed, "
        "between passes. Python's default, 700, runs a pass every few requests; a request's "
        "short-lived objects are freed by reference counting, so a larger one makes passes rare "
        "and the memory they hold back small. 0 leaves Python's own. framecast_gc_seconds_total "
        "in /metrics shows what they cost",
    )
    gil_switch_interval_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="how long a Python thread may hold the GIL while another waits for it "
        "(sys.setswitchinterval), set once the models are loaded; 0 leaves Python's own (5 ms). "
        "Shorter hands the GIL back to the model's thread sooner after each batch: more small "
        "requests answered by one worker in some of docs/performance.md's runs, fewer by two, "
        "and more CPU per request in most of them, so it is not the default",
    )
    direct_calls: bool = Field(
        True,
        description="call a model's forward pass as one traced TensorFlow function, without "
        "predict_on_batch's per-call work, once warm-up has found it answering bit for bit as "
        "predict_on_batch does (models.interop.adapters.Direct); false: predict_on_batch always",
    )
