"""WebSocket tickets: how a browser opens a stream's WebSocket without a key in its URL.

A browser cannot set headers on a WebSocket, and a key in a URL reaches proxies' logs and the
browser's history. So the page asks ``POST /v1/streams/{id}/ticket`` with its key in the
``Authorization`` header, and gets ``{"ticket", "expires_in_s"}``: a random token good for one
connection to that stream's ``/v1/streams/{id}/ws?ticket=…``, within FRAMECAST_WS_TICKET_TTL_S.
The store keeps only the SHA-256 of the stream's id and the ticket, and what it grants (the
key's id, the stream), so a ticket issued by one process is taken by whichever process the
socket reaches, once, and shown on another stream's socket it is refused and not used up.
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


def _key(ticket: str, stream_id: str) -> str:
    """What the store keeps a ticket under: bound to its stream, so that a ticket shown on
    another stream's socket finds nothing and is not used up."""
    return hashlib.sha256(f"{stream_id}\n{ticket}".encode()).hexdigest()


async def issue(store: Any, caller: Principal | None, stream_id: str, settings: Any) -> dict:
    """A new ticket for ``caller`` to open ``stream_id``'s WebSocket, once."""
    ticket = secrets.token_urlsafe(32)
    grant = json.dumps({"key": owner_of(caller), "stream": stream_id})
    ttl = settings.ws_ticket_ttl_s
    await store.put_ticket(_key(ticket, stream_id), grant, ttl, settings.ws_tickets_max)
    return {"ticket": ticket, "expires_in_s": ttl}


async def redeem(store: Any, keys: KeyRing, ticket: str, stream_id: str) -> Principal:
    """The principal a ticket stands for, taking it (a second use is refused); 401 for a
    ticket used, expired, never issued or another stream's (which is not used up by it), 403
    for a key since removed."""
    ok = 0 < len(ticket) <= 256
    raw = await store.take_ticket(_key(ticket, stream_id)) if ok else None
    if raw is None:
        raise Unauthorized(
            "the ticket is not valid for this stream (used already, expired, never issued, or "
            f"issued for another stream); get one with {HOW}"
        )
    grant = json.loads(raw)
    if grant.get("stream") != stream_id:
        raise Forbidden(f"the ticket is for another stream; get one for this one with {HOW}")
    found = keys.by_id(grant.get("key") or "")
    if found is None:
        raise Forbidden("the key that asked for this ticket is no longer valid")
    return found
