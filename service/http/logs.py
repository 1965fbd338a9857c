"""Logging set-up (text or JSON lines) and one access-log line per request.

Every request gets an id: the client's ``X-Request-ID`` when it is a sane token (1-128 of
``A-Z a-z 0-9 . _ : -``), else a new one; it is echoed in the response's ``X-Request-ID`` and in
the log line ``method route model status duration_ms request_id`` (logger ``framecast.access``).
With FRAMECAST_LOG_FORMAT=json every ``framecast`` log record is one JSON object a line. Headers
are never logged (so API keys never are); with keys on the line ends ``key=<id>`` (the key's id,
never its secret).

No input forges a log line: the text format writes control characters of a message escaped
(``\\n``, ``\\x00``: one record, one line), JSON lines are escaped by JSON, and names a client
chose are cut to a bounded length where they are logged (:func:`loggable`). No secret reaches a
line either: :class:`Redact` rewrites the values of ``api_key``, ``ticket``, ``token`` and
``password`` query parameters (uvicorn's WebSocket lines write the URL with its query) and the
password of a URL.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Container

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("framecast")
access_log = logging.getLogger("framecast.access")

_SANE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# ?api_key=..., &ticket=..., a URL's user:password@: the values a log must never show. The
# scheme starts at a word's start (\b): tried at every character of a long word, \w+ made the
# scan quadratic (a 200,000-character query took a minute)
_SECRET = re.compile(
    r"(?i)((?:[?&;]|\b)(?:api_key|apikey|ticket|token|access_token|password|secret)=)"
    r"[^&\s\"']*|(\b\w+://[^:/@\s]*:)[^@\s/]+(@)"
)


def loggable(text: str, limit: int = 200) -> str:
    """A name a client chose (a path, a label, an id), safe in a log line: control characters
    escaped, at most ``limit`` characters (then an ellipsis)."""
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return text if len(text) <= limit else text[:limit] + "…"


# any query parameter whose name says it may hold a secret (?key=, ?X-Auth-Token=, ?session=…);
# the name is bounded, so a long line costs a scan, never a backtrack
_PARAM = re.compile(r"([?&;])([^=&;?\s\"']{1,64})=([^&;\s\"']+)")
_SECRET_NAME = re.compile(r"(?i)key|token|secret|passw|pwd|auth|ticket|credential|sig|sess")


def redact(text: str) -> str:
    """``text`` with the values of secret query parameters and URL passwords replaced by ***."""
    text = _SECRET.sub(lambda m: (m.group(1) or "") + "***" if m.group(1) else
                       m.group(2) + "***" + m.group(3), text)  # fmt: skip
    if "=" not in text:
        return text
    return _PARAM.sub(lambda m: f"{m[1]}{m[2]}=***" if _SECRET_NAME.search(m[2]) else m[0], text)


class Redact(logging.Filter):
    """Rewrites a record's message and arguments through :func:`redact` (installed on uvicorn's
    loggers, whose WebSocket lines write the URL with its query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


# uvicorn's lines about a client's fault that it logs as an ERROR with a traceback → one line
_CLIENT_FAULTS = {
    "Invalid UTF-8 sequence received from client.": "a WebSocket client sent a text message "
    "that is not UTF-8: closed with 1007",
}


class ClientFaults(logging.Filter):
    """A client's fault that uvicorn logs as an ERROR with a traceback (a WebSocket text
    message that is not UTF-8) becomes one INFO line: nothing failed in the server."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and isinstance(record.msg, str):
            plain = _CLIENT_FAULTS.get(record.msg)
            if plain is not None:
                record.levelno, record.levelname = logging.INFO, "INFO"
                record.msg, record.args = plain, ()
                record.exc_info = record.exc_text = None
        return True


class OneLine(logging.Formatter):
    """The text format, one record a line: control characters in the message are escaped (a
    traceback, added after it, keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = _CONTROL.sub(
            lambda m: m.group().encode("unicode_escape").decode("ascii"), record.message
        )
        return super().formatMessage(record)


REDACTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def install_redaction(*more: logging.Filterer) -> None:
    """:class:`Redact` on uvicorn's loggers (their records, wherever they are handled) and on
    ``more`` (framecast's handlers: every ``framecast.*`` record passes them), once each; and
    :class:`ClientFaults` on uvicorn's error logger."""
    for target in [logging.getLogger(n) for n in REDACTED_LOGGERS] + list(more):
        if not any(isinstance(f, Redact) for f in target.filters):
            target.addFilter(Redact())
    faults = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, ClientFaults) for f in faults.filters):
        faults.addFilter(ClientFaults())


_STD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for k, v in vars(record).items():
            if k not in _STD_ATTRS and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


JsonFormatter.converter = time.gmtime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str, fmt: str = "text") -> None:
    """A handler on the ``framecast`` logger (unless logging is configured already), and the
    frameworks quiet below ``debug``: TensorFlow's C++ notices (oneDNN, absl) and its Python
    warnings (the retracing notices of warm-up, which compiles one shape per batch bucket on
    purpose) are shown only with FRAMECAST_LOG_LEVEL=debug."""
    formatter = JsonFormatter() if fmt == "json" else OneLine(TEXT_FORMAT)
    if not log.handlers and not logging.getLogger().handlers:
        log.addHandler(logging.StreamHandler())
    for h in log.handlers:
        h.setFormatter(formatter)
    install_redaction(*log.handlers)
    log.setLevel(level.upper())
    quiet = level.lower() != "debug"
    if quiet:  # read by TensorFlow when it loads (after this: Keras loads with the models)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("tensorflow", "absl", "jax._src.xla_bridge"):
        logging.getLogger(name).setLevel(logging.ERROR if quiet else logging.DEBUG)


_serial = itertools.count()
_prefix: list = [None, ""]  # (pid, 16 random hex digits): new in each worker process


def new_request_id() -> str:
    """32 hex digits, unique across processes and restarts: a random per-process prefix and a
    counter (``uuid4()`` asks the kernel for 16 random bytes on every request)."""
    pid = os.getpid()
    if _prefix[0] != pid:
        _prefix[:] = [pid, uuid.uuid4().hex[:16]]
    return f"{_prefix[1]}{next(_serial) & (1 << 64) - 1:016x}"


def request_id(headers: dict[bytes, bytes]) -> str:
    given = headers.get(b"x-request-id", b"").decode("latin-1").strip()
    return given if _SANE_ID.fullmatch(given) else new_request_id()


# health probes and metric scrapes: a poller's every few seconds, logged at DEBUG unless
# FRAMECAST_LOG_PROBES is set
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"})


class RequestLogMiddleware:
    """Request id in and out, and one access-log line when the response is done (pure ASGI).
    Probe paths (:data:`PROBE_PATHS`) are logged at DEBUG unless ``log_probes``."""

    def __init__(
        self,
        app: ASGIApp,
        models: Callable[[], Container[str]] | None = None,
        log_probes: bool = False,
    ):
        self.app = app
        self.models = models  # () -> names of the loaded models (anything else logs "unknown")
        self.log_probes = log_probes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        rid = request_id(dict(scope.get("headers") or ()))
        scope.setdefault("state", {})["request_id"] = rid
        status = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message = dict(message)
                message["headers"] = list(message.get("headers") or ()) + [
                    (b"x-request-id", rid.encode())
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            probe = not self.log_probes and scope.get("path") in PROBE_PATHS
            level = logging.DEBUG if probe else logging.INFO
            if access_log.isEnabledFor(level):  # else nothing to write: no line is built
                self._line(scope, level, status["code"], start, rid)

    def _line(self, scope: Scope, level: int, status: int, start: float, rid: str) -> None:
        """The access-log line of one request."""
        route = getattr(scope.get("route"), "path", None) or scope.get("path", "")
        route = route.encode("unicode_escape").decode("ascii")[:300]  # one line, always
        name = (scope.get("path_params") or {}).get("name")
        known = self.models() if self.models is not None else ()
        model = "" if name is None else (name if name in known else "unknown")
        if not model:  # a route named by something else (a stream's id) may say its model
            model = str((scope.get("state") or {}).get("model") or "")
        ms = (time.perf_counter() - start) * 1000.0
        who = scope.get("framecast.principal")  # service.auth.principals.PRINCIPAL
        extra = {
            "method": scope.get("method"),
            "route": route,
            "model": model,
            "status": status,
            "duration_ms": round(ms, 2),
            "request_id": rid,
        }
        line = "%s %s model=%s status=%d duration_ms=%.1f request_id=%s"
        args: tuple = (scope.get("method"), route, model or "-", status, ms, rid)
        if who is not None:
            line += " key=%s"
            args += (who.id,)
            extra["key"] = who.id
        access_log.log(level, line, *args, extra=extra)
