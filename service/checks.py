"""The request checks that more than one route or runner makes, each written once.

Each raises a :mod:`service.errors` error whose message says what was wrong and how to fix it.
"""

from __future__ import annotations

from service.errors import WrongTask

# the route that serves each task, for "use POST ..." hints
TASK_ROUTE = {"next_frame": "predict", "classify": "classify"}


def require_task(name: str, actual: str, wanted: str) -> None:
    """422 unless model ``name`` (whose task is ``actual``) does ``wanted``."""
    if actual != wanted:
        route = TASK_ROUTE.get(actual, "predict")
        raise WrongTask(f"model {name!r} is a {actual} model; use POST /v1/models/{name}/{route}")
