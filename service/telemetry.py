"""Prometheus metrics, written in the text exposition format (version 0.0.4) without a dependency.

One :class:`Metrics` object per app (kept on ``app.state``), so tests that build several apps do not
share counters. All updates take one lock; rendering copies under it.

The V2 statistics (:class:`ModelStats`) count a request in every model it reached: the model its
path names (predict, classify, V2 infer, gRPC) and every model whose phases it observed while it
ran (:data:`REACHED`: compare's models, a stream's), each once.
"""

from __future__ import annotations

import math
import os
import threading
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from contextvars import ContextVar
from itertools import accumulate

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
PHASE_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def server_timing(phases_ms: dict[str, float]) -> str:
    """A ``Server-Timing`` header value: ``decode;dur=1.20, queue;dur=0.35, ...`` (ms)."""
    return ", ".join(f"{name};dur={ms:.2f}" for name, ms in phases_ms.items())


def _escape(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class _Family:
    def __init__(self, name: str, kind: str, help_: str, labels: tuple[str, ...]):
        self.name, self.kind, self.help, self.labels = name, kind, help_, labels


class _Counter(_Family):
    def __init__(self, *a):
        super().__init__(*a)
        self.values: dict[tuple, float] = defaultdict(float)

    def lines(self) -> list[str]:
        return [
            f"{self.name}{_labels(self.labels, k)} {_num(v)}"
            for k, v in sorted(self.values.items())
        ]


class _Gauge(_Counter):
    pass


class _Histogram(_Family):
    def __init__(
        self, name: str, kind: str, help_: str, labels: tuple[str, ...], buckets: Iterable[float]
    ):
        super().__init__(name, kind, help_, labels)
        self.buckets = tuple(buckets)
        self.counts: dict[tuple, list[int]] = {}
        self.sums: dict[tuple, float] = defaultdict(float)

    def observe(self, key: tuple, value: float) -> None:
        # counts[i]: observations in bucket i alone (cumulated when rendered), counts[-1]: all
        counts = self.counts.get(key)
        if counts is None:
            counts = self.counts[key] = [0] * (len(self.buckets) + 1)
        i = bisect_left(self.buckets, value)  # the first bucket with value <= its bound
        if i < len(self.buckets):
            counts[i] += 1
        counts[-1] += 1
        self.sums[key] += value

    def cumulative(self, key: tuple) -> list[int]:
        """Prometheus's counts: observations <= each bucket's bound, then all of them."""
        return list(accumulate(self.counts[key][:-1])) + [self.counts[key][-1]]

    def lines(self) -> list[str]:
        out = []
        for key in sorted(self.counts):
            counts = self.cumulative(key)
            for b, c in zip(self.buckets, counts):
                le = 'le="' + _num(b) + '"'
                out.append(f"{self.name}_bucket{_labels(self.labels, key, le)} {c}")
            le = 'le="+Inf"'
            out.append(f"{self.name}_bucket{_labels(self.labels, key, le)} {counts[-1]}")
            out.append(f"{self.name}_sum{_labels(self.labels, key)} {_num(self.sums[key])}")
            out.append(f"{self.name}_count{_labels(self.labels, key)} {counts[-1]}")
        return out


# routes whose requests are a model's inferences (the statistics extension counts them)
INFERENCE_ROUTES = ("/infer", "/predict", "/classify", "grpc:ModelInfer", "grpc:ModelStreamInfer")
# the (model, version) pairs an HTTP request reached, gathered while it runs (set by the metrics
# middleware, service/app.py; added to by Metrics.observe_phases): its statistics count in each
REACHED: ContextVar[set[tuple[str, str]] | None] = ContextVar("framecast_reached", default=None)
# a request's phases (observe_phases) as the statistics extension names them
STAT_PHASES = {
    "decode": "compute_input",
    "queue": "queue",
    "model": "compute_infer",
    "encode": "compute_output",
}


class ModelStats:
    """One model's counts and cumulative nanoseconds in the shape of Triton's statistics
    extension (``GET /v2/models/{m}/stats``): requests by outcome, time by phase, model calls by
    batch size."""

    def __init__(self) -> None:
        self.durations = {
            k: [0, 0] for k in ("success", "fail", "queue", *STAT_PHASES.values())
        }  # name -> [count, ns]
        self.batches: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        self.inference_count = 0  # clips run through the model
        self.execution_count = 0  # model calls
        self.last_inference_ms = 0

    def add(self, what: str, seconds: float) -> None:
        d = self.durations[what]
        d[0] += 1
        d[1] += int(seconds * 1e9)

    def as_v2(self, name: str, version: str) -> dict:
        def stat(count_ns: list[int]) -> dict:
            return {"count": count_ns[0], "ns": count_ns[1]}

        zero = {"count": 0, "ns": 0}
        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                **{k: stat(v) for k, v in self.durations.items()},
                "cache_hit": zero,
                "cache_miss": zero,
            },
            "batch_stats": [
                {
                    "batch_size": b,
                    "compute_input": zero,
                    "compute_infer": stat(v),
                    "compute_output": zero,
                }
                for b, v in sorted(self.batches.items())
            ],
        }


class Metrics:
    """The service's metrics; methods are safe to call from any thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = _Counter(
            "framecast_requests_total",
            "counter",
            "HTTP requests by route, model and status code",
            ("route", "model", "status"),
        )
        self.latency = _Histogram(
            "framecast_request_duration_seconds",
            "histogram",
            "HTTP request latency by route and model",
            ("route", "model"),
            LATENCY_BUCKETS,
        )
        self.errors = _Counter(
            "framecast_errors_total",
            "counter",
            "HTTP responses with status >= 400 by route and status code",
            ("route", "status"),
        )
        self.inference = _Histogram(
            "framecast_inference_duration_seconds",
            "histogram",
            "time inside one model call (predict_on_batch)",
            ("model",),
            LATENCY_BUCKETS,
        )
        self.batch = _Histogram(
            "framecast_batch_size", "histogram", "clips per model call", ("model",), BATCH_BUCKETS
        )
        self.phases = _Histogram(
            "framecast_request_phase_seconds",
            "histogram",
            "where a request's time went: decode (read and decode the "
            "upload), queue (wait for a batch), model (its model calls), "
            "encode (build the response)",
            ("model", "phase"),
            PHASE_BUCKETS,
        )
        self.queue = _Gauge(
            "framecast_queue_depth",
            "gauge",
            "requests submitted to a model's worker and not finished",
            ("model",),
        )
        self.ready = _Gauge(
            "framecast_model_ready", "gauge", "1 when the model is loaded and warm", ("model",)
        )
        self.connections_closed = _Counter(
            "framecast_connections_closed_total",
            "counter",
            "connections the server closed on its own: header_timeout (request headers not "
            "complete in time), max_connections (refused at the cap)",
            ("reason",),
        )
        self.open_connections = _Gauge(
            "framecast_open_connections",
            "gauge",
            "open HTTP connections of this process (as of the last connection sweep)",
            (),
        )
        # (model, version) → its statistics (the V2 statistics extension is per version)
        self.stats: dict[tuple[str, str], ModelStats] = defaultdict(ModelStats)
        watch_gc()
        self._families = (
            self.requests,
            self.latency,
            self.errors,
            self.inference,
            self.batch,
            self.phases,
            self.queue,
            self.ready,
            self.connections_closed,
            self.open_connections,
        )

    def observe_request(
        self,
        route: str,
        model: str,
        status: int,
        seconds: float,
        version: str = "1",
        reached: Iterable[tuple[str, str]] = (),
    ) -> None:
        """One answered request; its V2 statistics count in the model of an inference route's
        path and in every model it ``reached`` (compare's, a stream's), once each."""
        with self._lock:
            self.requests.values[(route, model, str(status))] += 1
            self.latency.observe((route, model), seconds)
            if status >= 400:
                self.errors.values[(route, str(status))] += 1
            counted = set(reached)
            if model and model != "unknown" and route.endswith(INFERENCE_ROUTES):
                counted.add((model, version))
            for key in counted:
                stats = self.stats[key]
                stats.add("success" if status < 400 else "fail", seconds)
                if status < 400:
                    stats.last_inference_ms = int(time.time() * 1000)

    def observe_inference(self, model: str, seconds: float, batch: int, version: str = "1") -> None:
        with self._lock:
            self.inference.observe((model,), seconds)
            self.batch.observe((model,), float(batch))
            stats = self.stats[(model, version)]
            stats.execution_count += 1
            stats.inference_count += batch
            b = stats.batches[batch]
            b[0] += 1
            b[1] += int(seconds * 1e9)

    def observe_phases(self, model: str, phases_ms: dict[str, float], version: str = "1") -> None:
        """One request's phases (milliseconds), e.g. ``{"decode": 1.2, "queue": 0.4, ...}``; the
        request (if an HTTP one) reached ``model`` (:data:`REACHED`)."""
        reached = REACHED.get()
        if reached is not None:
            reached.add((model, version))
        with self._lock:
            for phase, ms in phases_ms.items():
                self.phases.observe((model, phase), ms / 1000.0)
                if phase in STAT_PHASES:
                    self.stats[(model, version)].add(STAT_PHASES[phase], ms / 1000.0)

    def set_queue(self, model: str, depth: int) -> None:
        with self._lock:
            self.queue.values[(model,)] = depth

    def set_ready(self, model: str, ready: bool) -> None:
        with self._lock:
            self.ready.values[(model,)] = 1 if ready else 0

    def connection_closed(self, reason: str) -> None:
        with self._lock:
            self.connections_closed.values[(reason,)] += 1

    def set_open_connections(self, n: int) -> None:
        with self._lock:
            self.open_connections.values[()] = n

    def model_stats(self, name: str, version: str) -> dict:
        """``name``'s ``version``'s statistics in the V2 statistics extension's shape (zeros
        before any)."""
        with self._lock:
            stats = self.stats.get((name, version)) or ModelStats()
            return stats.as_v2(name, version)

    def render(self) -> str:
        with self._lock:
            out = []
            for fam in self._families:
                out.append(f"# HELP {fam.name} {fam.help}")
                out.append(f"# TYPE {fam.name} {fam.kind}")
                out.extend(fam.lines())
        out.extend(gc_lines())
        rss = resident_bytes()
        if rss is not None:  # the name Prometheus' own clients export
            out.append("# HELP process_resident_memory_bytes resident memory of this process")
            out.append("# TYPE process_resident_memory_bytes gauge")
            out.append(f"process_resident_memory_bytes {rss}")
        return "\n".join(out) + "\n"


# Python's garbage collector, for the whole process (every app of it): passes and seconds per
# generation, from gc.callbacks (installed once, by the first Metrics made).
_GC_PASSES, _GC_SECONDS, _GC_START = [0, 0, 0], [0.0, 0.0, 0.0], [0.0]


def _on_gc(phase: str, info: dict) -> None:
    if phase == "start":
        _GC_START[0] = time.perf_counter()
        return
    g = min(int(info.get("generation", 0)), 2)
    _GC_PASSES[g] += 1
    _GC_SECONDS[g] += time.perf_counter() - _GC_START[0]


def watch_gc() -> None:
    """Count the garbage collector's passes and time from now on (once per process)."""
    import gc

    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


def gc_lines() -> list[str]:
    out = [
        "# HELP framecast_gc_passes_total garbage-collector passes of this process, by generation",
        "# TYPE framecast_gc_passes_total counter",
    ]
    out += [f'framecast_gc_passes_total{{generation="{g}"}} {n}' for g, n in enumerate(_GC_PASSES)]
    out += [
        "# HELP framecast_gc_seconds_total time this process spent in garbage-collector passes",
        "# TYPE framecast_gc_seconds_total counter",
    ]
    out += [
        f'framecast_gc_seconds_total{{generation="{g}"}} {_num(s)}'
        for g, s in enumerate(_GC_SECONDS)
    ]
    return out


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux: /proc/self/statm), or None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
