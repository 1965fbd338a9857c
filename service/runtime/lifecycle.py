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
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from service.errors import InvalidInput, LoadError, ModelNotFound, NotReady, WrongTask
from service.telemetry import Metrics

if TYPE_CHECKING:
    from service.config import Settings
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


class Lifecycle:
    """Every model's state and the runner serving each ready one. Thread-safe: the loader, the
    poller and the repository routes change it while requests read it."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics or Metrics()
        self._lock = threading.RLock()
        self._status: dict[str, Status] = {}
        self._serving: dict[str, Runner] = {}
        self._pending: dict[str, Runner] = {}  # loaded at start-up, not warm yet

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
            other = self._serving.get(runner.name) or self._pending.get(runner.name)
            if other is not None and other is not runner and other.folder != runner.folder:
                raise LoadError(
                    f"{runner.folder}: model name {runner.name!r} is already used by {other.folder}"
                )
            self._pending[runner.name] = runner
            if runner.name not in self._serving:
                self.metrics.set_ready(runner.name, False)

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
                if self._pending.get(name) is runner:
                    del self._pending[name]
                if name in self._serving:
                    log.error("reload of %s failed; the old copy keeps serving: %s", name, detail)
                    raise LoadError(detail + "; the previous copy keeps serving") from None
            self.fail(name, detail)
            raise LoadError(detail) from None
        return self.serve(runner)

    def serve(self, runner: Runner) -> Runner | None:
        """Swap ``runner`` in as the one serving its name (one assignment: a request sees the
        old copy or the new one); returns the copy it replaced, if any."""
        with self._lock:
            name = runner.name
            if self._pending.get(name) is runner:
                del self._pending[name]
            runner.ready = True
            old = self._serving.get(name)
            self._serving[name] = runner
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
            pending = self._pending.pop(name, None)
            self._set(name, ModelState.FAILED, detail, quiet=True)
            self.metrics.set_ready(name, False)
        if pending is not None:
            pending.close()
        log.error("model %s not served: %s", name, detail)

    def unload(self, name: str) -> Runner | None:
        """Stop serving ``name``; returns the runner that served it (to retire: requests in
        flight finish on it). ModelNotFound when the name is not known at all."""
        with self._lock:
            if name not in self._status and name not in self._serving:
                raise ModelNotFound(f"no model named {name!r} is loaded or known")
            runner = self._serving.pop(name, None)
            self._set(name, ModelState.UNLOADED, quiet=True)
            self.metrics.set_ready(name, False)
        log.info("model %s unloaded", name)
        return runner

    def forget(self, name: str) -> Runner | None:
        """Drop ``name`` from the table (its folder is gone); returns a runner still serving it."""
        with self._lock:
            self._status.pop(name, None)
            return self._serving.pop(name, None) or self._pending.pop(name, None)

    def close(self) -> None:
        with self._lock:
            runners = [*self._serving.values(), *self._pending.values()]
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
            return {**self._pending, **self._serving}

    def serving(self) -> dict[str, Runner]:
        """The runners serving, by name: a copy."""
        with self._lock:
            return dict(self._serving)

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

    def get(self, name: str) -> Runner:
        """The runner serving ``name``; NotReady while it loads or after it failed,
        ModelNotFound when it is unloaded or unknown."""
        with self._lock:
            runner = self._serving.get(name)
            st = self._status.get(name)
            known = ", ".join(sorted(self._serving)) or "none"
        if runner is not None:
            return runner
        if st is not None and st.state in NOT_YET:
            raise NotReady(f"model {name!r} is not available ({st})")
        if st is not None and st.state is ModelState.UNLOADED:
            raise ModelNotFound(
                f"model {name!r} is unloaded; load it with POST /v2/repository/models/{name}/load"
            )
        raise ModelNotFound(f"no model named {name!r}; loaded models: {known}")

    def find(self, *, task: str | None = None, architecture: str | None = None) -> list[Runner]:
        """The runners serving ``task`` with ``architecture`` (either None: any), by name."""
        return [
            r
            for _, r in sorted(self.serving().items())
            if (task is None or r.manifest.task == task)
            and (architecture is None or r.manifest.architecture == architecture)
        ]

    def pair(
        self, task: str, choices: Mapping[str, str | None], settings: Settings | None = None
    ) -> dict[str, Runner]:
        """One runner per architecture slot in ``choices`` (slot → chosen name or None): the
        chosen model, else the setting's choice, else the only ``task`` model of that slot's
        architecture."""
        serving = self.serving()
        out = {}
        for arch, chosen in choices.items():
            chosen = chosen or (settings.compare_choice(arch, task) if settings else None)
            if chosen:
                runner = serving.get(chosen)
                if runner is None:
                    raise ModelNotFound(
                        f"no model named {chosen!r} (chosen as the {arch} model "
                        f"for {task}); loaded: {', '.join(sorted(serving))}"
                    )
                m = runner.manifest
                if (m.architecture, m.task) != (arch, task):
                    raise WrongTask(
                        f"model {chosen!r} is a {m.architecture} {m.task} model; the "
                        f"{arch} slot of this comparison needs a {arch} {task} model"
                    )
                out[arch] = runner
                continue
            found = self.find(task=task, architecture=arch)
            if not found:
                raise ModelNotFound(
                    f"no {arch} model for the {task} task is loaded; the "
                    f"comparison needs one of each architecture"
                )
            if len(found) > 1:
                names = ", ".join(r.name for r in found)
                raise InvalidInput(
                    f"several {arch} {task} models are loaded ({names}); choose "
                    f"one with the query parameter {arch}=NAME or "
                    f"FRAMECAST_COMPARE_{arch.upper()}_{task.upper()}"
                )
            out[arch] = found[0]
        return out

    def index(self, folders: list[str]) -> list[dict]:
        """The V2 repository index: every model folder and known model with its state
        (READY, LOADING, UNAVAILABLE) and reason."""
        table = self.table()
        serving = self.serving()
        out = []
        for name in sorted(set(folders) | set(table) | set(serving)):
            st = table.get(name)
            if name in serving:
                out.append({"name": name, "version": "1", "state": "READY", "reason": ""})
            elif st is None:
                out.append(
                    {"name": name, "version": "1", "state": "UNAVAILABLE", "reason": "not loaded"}
                )
            else:
                loading = st.state in (ModelState.LOADING, ModelState.WARMING)
                code = "LOADING" if loading else "UNAVAILABLE"
                out.append({"name": name, "version": "1", "state": code, "reason": str(st)})
        return out


def _log_ready(runner: ModelRunner, swapped: bool = False) -> None:
    """The one line a model logs when it is warm and serves (``swapped``: in place of a copy
    that finishes its requests in flight)."""
    m = runner.manifest
    log.info(
        "model %s ready: architecture=%s task=%s input=%sx%dx%dx%d device=%s "
        "params=%d rollout=%s buckets=%s warm-up=%.1f ms%s",
        m.name,
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


def reasons(failed: Mapping[str, str]) -> str:
    """'a: why; b: why' for models → their failure details."""
    return "; ".join(f"{n}: {d}" for n, d in sorted(failed.items()))


__all__ = ["Lifecycle", "ModelState", "Status", "reasons"]
