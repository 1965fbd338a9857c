"""WebSocket tickets: how a browser opens a stream's WebSocket without a key in its URL.

A browser cannot set headers on a WebSocket, and a key in a URL reaches proxies' logs and the
browser's history. So the page asks ``POST /v1/streams/{id}/ticket`` with its key in the
``Authorization`` header, and gets ``{"ticket", "expires_in_s"}``: a random token good for one
connection to that stream's ``/v1/streams/{id}/ws?ticket=…``, within FRAMECAST_WS_TICKET_TTL_S.
The store keeps only the ticket's SHA-256 and what it grants (the key's id, the stream), so a
ticket issued by one process is taken by whichever process the socket reaches, once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from service.auth.keys import KeyRing
from service.auth.principals import Principal, owner_of
from service.errors import Forbidden, Unauthorized

HOW = "POST /v1/streams/{id}/ticket"


def _key(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


async def issue(store: Any, caller: Principal | None, stream_id: str, settings: Any) -> dict:
    """A new ticket for ``caller`` to open ``stream_id``'s WebSocket, once."""
    ticket = secrets.token_urlsafe(32)
    grant = json.dumps({"key": owner_of(caller), "stream": stream_id})
    ttl = settings.ws_ticket_ttl_s
    await store.put_ticket(_key(ticket), grant, ttl, settings.ws_tickets_max)
    return {"ticket": ticket, "expires_in_s": ttl}


async def redeem(store: Any, keys: KeyRing, ticket: str, stream_id: str) -> Principal:
    """The principal a ticket stands for, taking it (a second use is refused); 401 for a
    ticket used, expired or never issued, 403 for another stream's or a key since removed."""
    raw = await store.take_ticket(_key(ticket)) if 0 < len(ticket) <= 256 else None
    if raw is None:
        raise Unauthorized(
            f"the ticket is not valid (used already, expired, or never issued); get one with {HOW}"
        )
    grant = json.loads(raw)
    if grant.get("stream") != stream_id:
        raise Forbidden(f"the ticket is for another stream; get one for this one with {HOW}")
    found = keys.by_id(grant.get("key") or "")
    if found is None:
        raise Forbidden("the key that asked for this ticket is no longer valid")
    return found
