"""A caller as the server knows it: a :class:`Principal` (the key's id, its scopes, its limits),
what each scope allows, and the one rule of ownership that streams, V2 sequences and evaluation
jobs share.

Scopes (``Scope``):

- ``infer``: predict, classify, compare, V2 and gRPC inference;
- ``stream``: open, feed, read and end its own live streams and V2 sequences;
- ``evaluate``: evaluation jobs (``/v1/evaluations``);
- ``admin``: the model repository (load, unload, labels), every stream and job, ``/metrics``
  when it is protected; an admin key may do what every other scope allows.

Ownership: what a principal creates records its id as ``owner``; :func:`sees` says whether a
caller may see it (no keys: everyone; an admin: everything; else its owner only), and a caller
that may not gets the answer of an unknown id (404), so existence is not revealed. A route of a
new resource uses it so (evaluation jobs, for one)::

    caller = principal_of(request.scope)          # None when keys are off
    job = Job(..., owner=owner_of(caller))        # on create
    if job is None or not sees(caller, job.owner):
        raise JobNotFound(f"no job {job_id!r}")    # the same message as an unknown id
    jobs = [j for j in all_jobs if sees(caller, j.owner)]   # a listing
    check_count(caller, "max_jobs", running_of(caller), "running jobs")   # its limit: 429
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from service.errors import TooManyRequests


class Scope(StrEnum):
    INFER = "infer"
    STREAM = "stream"
    EVALUATE = "evaluate"
    ADMIN = "admin"


ALL_SCOPES = frozenset(Scope)
# where the principal of a request is kept on its ASGI scope (set by the key layer)
PRINCIPAL = "framecast.principal"

# a key's own limits, as the keys file names them (None: no limit of that kind)
LIMIT_NAMES = ("max_streams", "rate_per_s", "burst", "max_concurrent", "max_jobs")


@dataclass(frozen=True, slots=True)
class Limits:
    max_streams: int | None = None  # open streams and V2 sequences
    rate_per_s: float | None = None  # requests per second (a token bucket) ...
    burst: int | None = None  # ... holding at most this many (default: the rate, at least 1)
    max_concurrent: int | None = None  # requests in flight
    max_jobs: int | None = None  # running evaluation jobs

    @property
    def metered(self) -> bool:
        """Whether a request of this key is counted at all (a rate or a concurrency limit)."""
        return self.rate_per_s is not None or self.max_concurrent is not None


@dataclass(frozen=True, slots=True)
class Principal:
    """A key as the server knows it: ``id`` (names it in logs and owns what it creates; never
    the secret), its scopes and limits, and where it was listed (``env`` or ``file``)."""

    id: str
    scopes: frozenset[str] = ALL_SCOPES
    limits: Limits = field(default_factory=Limits)
    source: str = "file"

    @property
    def admin(self) -> bool:
        return Scope.ADMIN in self.scopes

    def can(self, scope: str) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes


def principal_of(scope: Mapping[str, Any]) -> Principal | None:
    """The principal of a request (its ASGI scope, or a Starlette ``request.scope``); None when
    keys are off."""
    return scope.get(PRINCIPAL)


def owner_of(caller: Principal | None) -> str | None:
    """What a new stream, sequence or job records as its owner."""
    return None if caller is None else caller.id


def sees(caller: Principal | None, owner: str | None) -> bool:
    """Whether ``caller`` may see (read, feed, end) what ``owner`` created."""
    return caller is None or caller.admin or owner == caller.id


def check_count(caller: Principal | None, limit: str, held: int, what: str) -> None:
    """429 (with Retry-After) when ``caller`` already holds ``held`` of ``what`` and its limit
    ``limit`` (a :data:`LIMIT_NAMES` name) allows no more."""
    if caller is None:
        return
    most = getattr(caller.limits, limit)
    if most is not None and held + 1 > most:
        raise TooManyRequests(
            f"key {caller.id!r} holds {held} {what}, its limit ({limit}={most} in the keys "
            f"file); end one, or retry when one ends",
            1,
        )


def rate_message(caller: Principal, rate: float, burst: int, wait_s: float) -> TooManyRequests:
    return TooManyRequests(
        f"key {caller.id!r} sent more than {rate:g} requests per second (rate_per_s={rate:g}, "
        f"burst={burst} in the keys file); retry in {math.ceil(wait_s)} s",
        wait_s,
    )
