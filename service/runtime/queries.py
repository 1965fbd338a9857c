"""The queries over what a :class:`~service.runtime.lifecycle.Lifecycle` serves: the models of
a task and architecture, the pair a comparison runs, the V2 repository index (one row per
version). A mixin: it reads the table only through the lifecycle's public, locked methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from service.errors import InvalidInput, ModelNotFound, WrongTask

if TYPE_CHECKING:
    from service.config import Settings
    from service.runtime.runner import Runner


class ServedQueries:
    """What is served, asked of the table (the lifecycle provides these four)."""

    def serving(self) -> dict[str, Runner]:
        raise NotImplementedError  # pragma: no cover - the lifecycle's

    def table(self) -> dict[str, Any]:  # name → Status
        raise NotImplementedError  # pragma: no cover

    def versions(self, name: str) -> dict[int, Runner]:
        raise NotImplementedError  # pragma: no cover

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
            if name in serving:  # one row per version served
                for v in self.versions(name):
                    out.append({"name": name, "version": str(v), "state": "READY", "reason": ""})
            elif st is None:
                out.append(
                    {"name": name, "version": "1", "state": "UNAVAILABLE", "reason": "not loaded"}
                )
            else:
                loading = st.state in ("loading", "warming")  # ModelState (a StrEnum)
                code = "LOADING" if loading else "UNAVAILABLE"
                out.append({"name": name, "version": "1", "state": code, "reason": str(st)})
        return out
