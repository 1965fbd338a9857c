"""The access group of framecast's settings: API keys (a list, or a keys file of named keys with
scopes and limits), WebSocket tickets and connections, CORS.

A part of :class:`service.config.Settings`, which inherits these fields and reads them from the
environment with the others; declared here only to keep config.py one screenful per group. Never
instantiated on its own. docs/security.md says what each is for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode


class SecuritySettings(BaseSettings):
    # who may call: API keys (service/auth/, service/http/security.py; docs/security.md)
    api_keys: SecretStr | None = Field(
        None,
        description="API keys, comma-separated or a JSON list; when set, /v1 and /v2 need "
        "'Authorization: Bearer KEY' (401 without, 403 wrong) and every key has every scope. "
        "Never logged. For named keys with scopes and limits, FRAMECAST_API_KEYS_FILE",
    )
    api_keys_file: Path | None = Field(
        None,
        description="a TOML keys file: [[keys]] tables of id, sha256 (of the secret), scopes "
        "(infer, stream, evaluate, admin) and optional per-key limits; re-read when it changes "
        "or on SIGHUP, without a restart. `framecast keys new` writes one. Not with "
        "FRAMECAST_API_KEYS",
    )
    protect_metrics: bool = Field(
        False,
        description="GET /metrics needs a key too (the admin scope, when keys are on)",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins allowed by CORS, comma-separated or a JSON "
        "list ('*' for any); empty: CORS off",
    )

    # WebSockets (/v1/streams/{id}/ws)
    ws_ticket_ttl_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="how long a WebSocket ticket (POST /v1/streams/{id}/ticket) may wait to be "
        "used; it is good for one connection",
    )
    ws_tickets_max: int = Field(
        10000,
        ge=1,
        description="tickets waiting to be used, per process (memory store) or in the store; "
        "one more is answered 503 with Retry-After",
    )
    ws_allow_url_key: bool = Field(
        False,
        description="accept ?api_key= on a WebSocket (a key in a URL reaches proxies' logs and "
        "browser history; a warning is logged once); off: refused, naming the ticket route",
    )
    ws_max_connections: int = Field(
        256,
        ge=1,
        description="open WebSockets one server process holds, counted apart from "
        "FRAMECAST_MAX_CONNECTIONS (so idle sockets never starve HTTP); one more is answered "
        "503 with Retry-After",
    )
    ws_idle_timeout_s: float = Field(
        120.0,
        gt=0,
        description="a WebSocket that sends no message for this long is closed (code 4408, "
        "saying why)",
    )
    ws_check_s: float = Field(
        5.0,
        gt=0,
        description="how often an idle WebSocket checks that its stream is still open and its "
        "key still valid; it is closed (4410, 4404) once the stream ended, was deleted or "
        "expired, (4401, 4403) once its key was removed or lost the stream scope",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, v: object) -> object:
        return str_list(v, "origins") if isinstance(v, str) else v

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not str_list(v.get_secret_value(), "keys"):
            return None  # an empty value means no keys
        return v

    @field_validator("api_keys_file", mode="before")
    @classmethod
    def _no_file(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @model_validator(mode="after")
    def _one_source(self) -> SecuritySettings:
        if self.api_keys is not None and self.api_keys_file is not None:
            raise ValueError(
                "FRAMECAST_API_KEYS and FRAMECAST_API_KEYS_FILE both list API keys: set one "
                "(the file's keys have names, scopes and limits; docs/security.md)"
            )
        return self

    def api_key_list(self) -> list[str]:
        """The keys of FRAMECAST_API_KEYS (empty: none listed there)."""
        return [] if self.api_keys is None else str_list(self.api_keys.get_secret_value(), "keys")


def str_list(v: str, what: str) -> list[str]:
    """'a, b' or '["a", "b"]' → ['a', 'b']; the error never repeats the value (keys are secret)."""
    v = v.strip()
    if v.startswith("["):
        try:
            items = json.loads(v)
        except ValueError:
            raise ValueError(f"the {what} look like a JSON list but are not valid JSON") from None
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise ValueError(f"the {what} must be a JSON list of strings")
    else:
        items = v.split(",")
    return [x.strip() for x in items if x.strip()]
