"""How the Ray ingress (service/runtime/ray/ingress.py) raises what a call to a model's replicas
raised: a domain error as itself, gRPC's RESOURCE_EXHAUSTED (a sent-together call past a
replica's message limit) as a 500 that names the setting, anything else unchanged. No Ray
needed: stand-ins raise as Ray's responses do."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from service.errors import InferenceError, Overloaded
from service.runtime.ray import ingress


class Raises:
    """An awaitable (a DeploymentResponse's stand-in) that raises ``error``."""

    def __init__(self, error: BaseException):
        self.error = error

    def __await__(self):
        raise self.error
        yield  # pragma: no cover - a generator, as __await__ must be


class GrpcError(Exception):
    """What grpc.aio raises: a ``code()`` whose value has a ``name``."""

    def __init__(self, name: str):
        super().__init__(f"<AioRpcError {name}>")
        self.name = name

    def code(self):
        return SimpleNamespace(name=self.name)


def unwrap(error: BaseException):
    return asyncio.run(ingress._unwrap(Raises(error)))


def test_a_message_past_a_replicas_limit_is_a_500_that_names_the_setting():
    with pytest.raises(InferenceError) as got:
        unwrap(GrpcError("RESOURCE_EXHAUSTED"))
    assert got.value.status == 500
    assert "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH" in got.value.message
    assert "docs/ray.md" in got.value.message and "nothing of this request" in got.value.message


def test_a_domain_error_is_itself_and_anything_else_unchanged():
    wrapped = RuntimeError("task failed")
    wrapped.cause = Overloaded("queue full")  # type: ignore[attr-defined]
    with pytest.raises(Overloaded):
        unwrap(wrapped)
    other = GrpcError("UNAVAILABLE")
    with pytest.raises(GrpcError) as got:
        unwrap(other)
    assert got.value is other
    odd = RuntimeError("no code")
    odd.code = "not callable"  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        unwrap(odd)
