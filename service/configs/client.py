"""The client group of framecast's settings: where ``framecast predict|classify|compare|stream``
send their requests (``FRAMECAST_URL``) and how long they wait (``FRAMECAST_CLIENT_TIMEOUT_S``).

A part of :class:`service.config.Settings`, which inherits these fields and reads them from the
environment with the others; declared here only to keep config.py one screenful per group. Never
instantiated on its own. Without ``FRAMECAST_URL`` a client talks to the server that
``framecast serve`` would start with the same environment: ``FRAMECAST_HOST`` (127.0.0.1 for
a wildcard such as 0.0.0.0) and ``FRAMECAST_PORT`` (:func:`service.cli.sockets.url_for`).
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings


class ClientSettings(BaseSettings):
    # the client commands (service/cli/client.py, service/cli/stream.py)
    url: str | None = Field(
        None,
        description="the server the client commands (predict, classify, compare, stream) talk "
        "to, e.g. http://gpu-box:8000 (their --url wins); unset: http://FRAMECAST_HOST:"
        "FRAMECAST_PORT, with 127.0.0.1 for a wildcard host (0.0.0.0, ::)",
    )
    client_timeout_s: float = Field(
        60.0,
        gt=0,
        description="seconds a client command waits for each answer of the server (their "
        "--timeout wins)",
    )

    @field_validator("url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        v = v.strip().rstrip("/")
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://, e.g. http://127.0.0.1:8000")
        return v
