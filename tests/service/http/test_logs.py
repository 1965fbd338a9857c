"""Log lines (service/http/logs.py): one record is one line whatever a client sent, and no secret
(a URL's ?api_key= or ?ticket=, a store's password) survives into one."""

from __future__ import annotations

import io
import logging

from service.http.logs import TEXT_FORMAT, OneLine, Redact, loggable, redact


def test_secret_query_values_and_url_passwords_are_redacted():
    line = '127.0.0.1:5 - "WebSocket /v1/streams/s/ws?api_key=alice-key&horizon=1" [accepted]'
    assert redact(line) == line.replace("alice-key", "***")
    assert redact("/ws?ticket=Zx_9-a&b=1") == "/ws?ticket=***&b=1"
    assert (
        redact("redis://:pw@h:6379/0 rediss://u:pw@h/0")
        == "redis://:***@h:6379/0 rediss://u:***@h/0"
    )
    assert redact("(dsn=x+redis://u:pw@h)") == "(dsn=x+redis://u:***@h)"  # glued to other text
    assert redact("key=alice model=m") == "key=alice model=m"  # the access log's key id stays
    # any parameter named like a secret, whatever the client called it
    for name in ("key", "KEY", "x-api-key", "auth", "Authorization", "session_id", "pwd", "sig"):
        got = redact(f'"WebSocket /v1/streams/s/ws?horizon=1&{name}=fc_s3cret&on_close=keep"')
        assert "fc_s3cret" not in got and "horizon=1" in got and "on_close=keep" in got, got
    assert redact("/ws?horizon=2&fit=crop") == "/ws?horizon=2&fit=crop"
    long = "/ws?" + "a" * 200_000 + "&key=fc_s3cret"
    assert redact(long).endswith("&key=***")


def test_uvicorns_lines_pass_through_the_filter():
    logger = logging.getLogger("test.redact")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger.addHandler(handler)
    logger.addFilter(Redact())
    try:
        logger.warning('%s - "WebSocket %s" 403', "1.2.3.4:5", "/v1/streams/s/ws?ticket=abc123")
    finally:
        logger.removeHandler(handler)
    assert "abc123" not in out.getvalue() and "ticket=***" in out.getvalue()


def test_no_input_forges_a_line():
    record = logging.LogRecord(
        "framecast", logging.INFO, "", 0, "label %s", ("x\n2026 ERROR forged\x00",), None
    )
    text = OneLine(TEXT_FORMAT).format(record)
    assert "\n" not in text and "x\\n2026 ERROR forged\\x00" in text
    assert loggable("a" * 500, 10) == "a" * 10 + "…"
    assert loggable("p\r\nq") == "p\\r\\nq"


def test_the_access_line_is_built_only_when_it_is_written(monkeypatch):
    """RequestLogMiddleware writes one line a request at INFO (DEBUG for probes); with the access
    log off at that level it builds none (a request pays nothing for a line nobody reads)."""
    import asyncio

    from service.http.logs import RequestLogMiddleware, access_log

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message):
        pass

    async def receive():
        return {"type": "http.request", "body": b""}

    built: list[int] = []
    mw = RequestLogMiddleware(app)
    real = mw._line
    monkeypatch.setattr(mw, "_line", lambda *a: built.append(a[2]) or real(*a))
    scope = {"type": "http", "method": "GET", "path": "/v1/models", "headers": []}
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    access_log.addHandler(handler)
    level = access_log.level
    try:
        for on in (logging.WARNING, logging.INFO):
            access_log.setLevel(on)
            asyncio.run(mw(dict(scope), receive, send))
    finally:
        access_log.setLevel(level)
        access_log.removeHandler(handler)
    assert built == [204]  # at INFO only
    assert len(records) == 1 and "status=204" in records[0].getMessage()
