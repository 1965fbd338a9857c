"""One owner of every model's life: loading, warming, swapping in, failing, unloading.

:class:`Lifecycle` is the only place that changes which runner serves a name and what state a
model is in. The plain server (:class:`~service.runtime.server.Runtime`), the repository routes
(through it) and the Ray ingress (:class:`~service.runtime.ray.ingress.RemoteRuntime`) all move a
model through the same transitions, and ``/readyz``, ``/v1/models`` and the V2 repository index
all read the same table, so they never disagree.

A model's life::

    LOADING -> WARMING -> READY -> UNLOADED
        \\          \\                 (a reload: the old copy stays READY until the new one
         `-> FAILED `-> FAILED          is warm, then one assignment swaps them)

It also answers the queries over what is served (:meth:`Lifecycle.find`, :meth:`Lifecycle.pair`),
instead of hard-coding which models go together.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Container, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from service.errors import InvalidInput, LoadError, ModelNotFound, NotReady
from service.runtime.queries import ServedQueries
from service.telemetry import Metrics

if TYPE_CHECKING:
    from service.runtime.runner import ModelRunner, Runner

log = logging.getLogger("framecast.runtime")


class ModelState(StrEnum):
    """Where a model is in its life (the value is what ``/readyz`` and ``/v1/models`` show)."""

    LOADING = "loading"
    WARMING = "warming"
    READY = "ready"
    FAILED = "failed"
    UNLOADED = "unloaded"


NOT_YET = (ModelState.LOADING, ModelState.WARMING, ModelState.FAILED)  # known, not servable


@dataclass(frozen=True)
class Status:
    """A model's state and, where there is one, why (a failure, Ray's replica counts)."""

    state: ModelState
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.state.value}: {self.detail}" if self.detail else self.state.value


class Lifecycle(ServedQueries):
    """Every model's state and the runner serving each ready one. Thread-safe: the loader, the
    poller and the repository routes change it while requests read it."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics or Metrics()
        self._lock = threading.RLock()
        self._status: dict[str, Status] = {}
        self._serving: dict[str, Runner] = {}  # name → its default (highest) version's runner
        self._versions: dict[str, dict[int, Runner]] = {}  # name → every version it serves
        self._labels: dict[str, dict[str, int]] = {}  # name → label → version
        self._pending: dict[tuple[str, int], Runner] = {}  # loaded, not warm yet

    # -- transitions --------------------------------------------------------------------------
    def loading(self, name: str, detail: str = "") -> None:
        """``name`` is being loaded (a copy already serving it keeps its READY state)."""
        with self._lock:
            if name not in self._serving:
                self._set(name, ModelState.LOADING, detail)

    def loaded(self, runner: Runner) -> None:
        """A runner is loaded and waits for warm-up (a copy serving its name goes on serving);
        LoadError when its name is taken by a model from another folder."""
        with self._lock:
            others = [*self._versions.get(runner.name, {}).values()]
            others += [r for (n, _), r in self._pending.items() if n == runner.name]
            for other in others:
                if other is not runner and _home(other) != _home(runner):
                    raise LoadError(
                        f"{runner.folder}: model name {runner.name!r} is already used by "
                        f"{other.folder}"
                    )
            self._pending[(runner.name, runner.version)] = runner
            if runner.name not in self._serving:
                self.metrics.set_ready(runner.name, False)

    def pending(self) -> list[Runner]:
        """The runners loaded and not yet serving (to warm), by name and version."""
        with self._lock:
            return [r for _, r in sorted(self._pending.items())]

    def warm(self, runner: ModelRunner, *, enabled: bool = True) -> Runner | None:
        """Warm ``runner`` (every callable on every bucket shape, on its worker), then swap it
        in (:meth:`serve`), returning the copy it replaced for the caller to retire. On failure
        the runner is closed and LoadError says why: a model with no serving copy is FAILED,
        one with an old copy keeps serving it."""
        name = runner.name
        with self._lock:
            if name not in self._serving:
                self._set(name, ModelState.WARMING)
        try:
            runner.warmup_ms = runner.submit(runner.warm).result() if enabled else 0.0
        except Exception as e:  # noqa: BLE001 - a model that cannot run is a load failure
            detail = (
                f"warm-up calls on shapes (b,) + {runner.input_shape} for b in "
                f"{getattr(runner, 'buckets', '?')} failed: {type(e).__name__}: {e}"
            )
            runner.close()
            with self._lock:
                if self._pending.get((name, runner.version)) is runner:
                    del self._pending[(name, runner.version)]
                if name in self._serving:
                    log.error("reload of %s failed; the old copy keeps serving: %s", name, detail)
                    raise LoadError(detail + "; the previous copy keeps serving") from None
                if any(n == name for n, _ in self._pending):  # other versions still to warm
                    log.error("model %s version %d not served: %s", name, runner.version, detail)
                    raise LoadError(detail) from None
            self.fail(name, detail)
            raise LoadError(detail) from None
        return self.serve(runner)

    def serve(self, runner: Runner) -> Runner | None:
        """Swap ``runner`` in as the one serving its name and version (one assignment: a
        request sees the old copy or the new one; the highest version serves requests that
        name none); returns the copy of that version it replaced, if any."""
        with self._lock:
            name = runner.name
            if self._pending.get((name, runner.version)) is runner:
                del self._pending[(name, runner.version)]
            runner.ready = True
            versions = self._versions.setdefault(name, {})
            old = versions.get(runner.version)
            versions[runner.version] = runner
            self._serving[name] = versions[max(versions)]
            self._set(name, ModelState.READY, quiet=True)  # its own line, below
            self.metrics.set_ready(name, True)
        swapped = old is not None and old is not runner
        from service.runtime.runner import ModelRunner  # (a cycle at import time)

        if isinstance(runner, ModelRunner):  # a runner of this process
            _log_ready(runner, swapped)
        else:  # a remote runner (a Ray deployment), warmed where it runs
            log.info("model %s ready%s", name, " (swapped in)" if swapped else "")
        return old if swapped else None

    def fail(self, name: str, detail: str) -> None:
        """``name`` cannot be served (its pending copy, if any, is closed)."""
        with self._lock:
            pending = [self._pending.pop(k) for k in list(self._pending) if k[0] == name]
            self._set(name, ModelState.FAILED, detail, quiet=True)
            self.metrics.set_ready(name, False)
        for r in pending:
            r.close()
        log.error("model %s not served: %s", name, detail)

    def unload(self, name: str) -> list[Runner]:
        """Stop serving ``name`` (every version); returns the runners that served it (to
        retire: requests in flight finish on them). ModelNotFound when it is not known at all."""
        with self._lock:
            if name not in self._status and name not in self._serving:
                raise ModelNotFound(f"no model named {name!r} is loaded or known")
            self._serving.pop(name, None)
            runners = list(self._versions.pop(name, {}).values())
            self._set(name, ModelState.UNLOADED, quiet=True)
            self.metrics.set_ready(name, False)
        log.info("model %s unloaded", name)
        return runners

    def drop(self, name: str, version: int) -> Runner | None:
        """Stop serving one version of ``name`` (its policy no longer serves it; the highest
        left serves requests that name none); returns its runner to retire."""
        with self._lock:
            versions = self._versions.get(name, {})
            if version not in versions or len(versions) == 1:
                return None  # the last version goes by unload
            runner = versions.pop(version)
            self._serving[name] = versions[max(versions)]
        log.info("model %s version %d unloaded (not in its version policy)", name, version)
        return runner

    def forget(self, name: str) -> list[Runner]:
        """Drop ``name`` from the table (its folder is gone); returns runners still serving it."""
        with self._lock:
            self._status.pop(name, None)
            self._serving.pop(name, None)
            self._labels.pop(name, None)
            out = list(self._versions.pop(name, {}).values())
            return out + [self._pending.pop(k) for k in list(self._pending) if k[0] == name]

    def close(self) -> None:
        with self._lock:
            runners = [*self._pending.values()]
            runners += [r for vs in self._versions.values() for r in vs.values()]
        for r in runners:
            r.close()

    def _set(self, name: str, state: ModelState, detail: str = "", quiet: bool = False) -> None:
        """The one place a state changes, and one INFO line when it does (``quiet``: the caller
        writes a fuller one: ready, failed, unloaded); a new detail alone (Ray's replica counts
        while it deploys) is no line."""
        previous = self._status.get(name)
        self._status[name] = Status(state, detail)
        if not quiet and (previous is None or previous.state is not state):
            was = f" (was {previous.state})" if previous is not None else ""
            log.info("model %s %s%s%s", name, state, was, f": {detail}" if detail else "")

    # -- what is where ------------------------------------------------------------------------
    @property
    def runners(self) -> dict[str, Runner]:
        """The runners loaded (serving, and at start-up those warming) by name: a copy."""
        with self._lock:
            return {**{n: r for (n, _), r in sorted(self._pending.items())}, **self._serving}

    def knows(self, name: str) -> bool:
        """Whether ``name`` is in :attr:`runners` (without copying it: asked per request)."""
        return name in self._serving or any(n == name for n, _ in list(self._pending))

    def names(self) -> Container[str]:
        """The names of :attr:`runners` as a container that copies nothing (``in`` asks
        :meth:`knows`)."""
        return _Names(self)

    def serving(self) -> dict[str, Runner]:
        """The runners serving, by name: a copy."""
        with self._lock:
            return dict(self._serving)

    def versions(self, name: str) -> dict[int, Runner]:
        """The versions of ``name`` served → their runners, ascending ({} when none)."""
        with self._lock:
            return dict(sorted(self._versions.get(name, {}).items()))

    def labels(self, name: str) -> dict[str, int]:
        """``name``'s labels → the versions they point at."""
        with self._lock:
            return dict(sorted(self._labels.get(name, {}).items()))

    def set_labels(self, name: str, labels: Mapping[str, int]) -> None:
        """Point ``name``'s labels at versions (all at once: the labels file was read); a
        label at a version not served is an InvalidInput (TF Serving's rule: a label names a
        version that can answer)."""
        served = self.versions(name)
        missing = {k: v for k, v in labels.items() if v not in served}
        if missing:
            raise InvalidInput(
                f"model {name!r} does not serve version(s) "
                + ", ".join(f"{v} (label {k!r})" for k, v in sorted(missing.items()))
                + f"; it serves {', '.join(map(str, served)) or 'none'}"
            )
        with self._lock:
            self._labels[name] = dict(labels)
        log.info("model %s labels: %s", name, _labels_text(labels))

    def _version(self, name: str, version: str | int) -> Runner:
        """The runner of ``name``'s ``version`` (a number or a label); ModelNotFound if none."""
        with self._lock:
            versions = dict(self._versions.get(name, {}))
            labels = dict(self._labels.get(name, {}))
        text = str(version)
        number = int(text) if text.isdigit() else labels.get(text)
        if number is None:
            raise ModelNotFound(
                f"model {name!r} has no version or label {text!r} (versions: "
                f"{', '.join(map(str, versions))}; labels: {_labels_text(labels)})"
            )
        if number not in versions:
            via = f" (label {text!r})" if not text.isdigit() else ""
            raise ModelNotFound(
                f"model {name!r} does not serve version {number}{via}; it serves "
                f"{', '.join(map(str, versions))}"
            )
        return versions[number]

    def status(self, name: str) -> Status | None:
        with self._lock:
            return self._status.get(name)

    def states(self) -> dict[str, str]:
        """Every known model → its state as text (``failed: why``), by name."""
        with self._lock:
            return {n: str(s) for n, s in sorted(self._status.items())}

    def table(self) -> dict[str, Status]:
        with self._lock:
            return dict(sorted(self._status.items()))

    def with_state(self, state: ModelState) -> dict[str, str]:
        """The models in ``state`` → their detail."""
        with self._lock:
            return {n: s.detail for n, s in sorted(self._status.items()) if s.state is state}

    def summary(self) -> str:
        """'4 model(s) ready; 1 failed: name: why; 2 unloaded: a, b' from the table as it is."""
        ready = self.with_state(ModelState.READY)
        text = f"{len(ready)} model(s) ready"
        failed = self.with_state(ModelState.FAILED)
        if failed:
            text += f"; {len(failed)} failed: " + reasons(failed)
        unloaded = self.with_state(ModelState.UNLOADED)
        if unloaded:
            text += f"; {len(unloaded)} unloaded: " + ", ".join(unloaded)
        return text

    def get(self, name: str, version: str | int | None = None) -> Runner:
        """The runner serving ``name`` (``version``: a number or a label; None: the highest
        served); NotReady while it loads or after it failed, ModelNotFound when it is
        unloaded or unknown, or does not serve that version."""
        with self._lock:
            runner = self._serving.get(name)
            st = self._status.get(name)
        if runner is not None:
            return runner if version in (None, "") else self._version(name, version)
        if st is not None and st.state in NOT_YET:
            raise NotReady(f"model {name!r} is not available ({st})")
        if st is not None and st.state is ModelState.UNLOADED:
            raise ModelNotFound(
                f"model {name!r} is unloaded; load it with POST /v2/repository/models/{name}/load"
            )
        with self._lock:
            known = ", ".join(sorted(self._serving)) or "none"
        raise ModelNotFound(f"no model named {name!r}; loaded models: {known}")


class _Names:
    """``name in`` it: the lifecycle knows ``name`` (:meth:`Lifecycle.names`)."""

    __slots__ = ("models",)

    def __init__(self, models: Lifecycle):
        self.models = models

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.models.knows(name)


def _log_ready(runner: ModelRunner, swapped: bool = False) -> None:
    """The one line a model logs when it is warm and serves (``swapped``: in place of a copy
    that finishes its requests in flight)."""
    m = runner.manifest
    log.info(
        "model %s%s ready: architecture=%s task=%s input=%sx%dx%dx%d device=%s "
        "params=%d rollout=%s buckets=%s warm-up=%.1f ms%s",
        m.name,
        f" version {runner.version}" if runner.home != runner.folder else "",
        m.architecture,
        m.task,
        m.frames or "any",
        m.height,
        m.width,
        m.channels,
        runner.placement.description,
        m.params,
        runner.rollout,
        ",".join(map(str, runner.buckets)),
        runner.warmup_ms or 0.0,
        "; swapped in for the previous copy" if swapped else "",
    )


def _home(runner: Runner) -> object:
    """The model folder a runner's checkpoint belongs to (of all its versions)."""
    return getattr(runner, "home", None) or getattr(runner, "folder", None)


def _labels_text(labels: Mapping[str, int]) -> str:
    return ", ".join(f"{k}→{v}" for k, v in sorted(labels.items())) or "none"


def reasons(failed: Mapping[str, str]) -> str:
    """'a: why; b: why' for models → their failure details."""
    return "; ".join(f"{n}: {d}" for n, d in sorted(failed.items()))


__all__ = ["Lifecycle", "ModelState", "Status", "reasons"]
