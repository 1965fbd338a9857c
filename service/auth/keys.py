"""The API keys a server accepts: FRAMECAST_API_KEYS (a list; each key has every scope) or the
keys file FRAMECAST_API_KEYS_FILE (named keys, scopes, limits), re-read when it changes.

The keys file is TOML, one ``[[keys]]`` table per key::

    [[keys]]
    id = "alice"                 # names the key in logs and owns what it creates
    sha256 = "9f86d08…"          # hex SHA-256 of the secret: the file never holds a secret
    scopes = ["infer", "stream"] # any of infer, stream, evaluate, admin
    max_streams = 4              # optional limits: max_streams, rate_per_s, burst,
    rate_per_s = 20              # max_concurrent, max_jobs
    created = "2026-…"           # optional, free text: created, note

A request's ``Authorization: Bearer SECRET`` is hashed once (SHA-256) and looked up in a table
of hashes, so a request costs one hash whatever the number of keys, and the server holds no
secret of a keys file. The hash is fine for random, high-entropy keys (what ``framecast keys new``
makes); it is not a password hash.

Rotation: the file is watched (``watchfiles``: inotify where the kernel has it, polling
elsewhere; and its stat compared every second, for a change made before the watch began) and
read again when it changes, and on SIGHUP; the new table replaces the old one in
one assignment, so a request in flight keeps the principal it was given and none is lost. A file
that does not parse leaves the keys as they were (an ERROR line says why). Every reload is one
line of the audit log (``framecast.audit``) naming the keys added and removed, by id.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import tomllib
from pathlib import Path
from typing import Any

from service.auth.principals import ALL_SCOPES, LIMIT_NAMES, Limits, Principal, Scope
from service.errors import Forbidden, Unauthorized

audit = logging.getLogger("framecast.audit")
log = logging.getLogger("framecast.security")

ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
HEX = re.compile(r"[0-9a-f]{64}")
FIELDS = {"id", "sha256", "scopes", "created", "note", *LIMIT_NAMES}
WATCH_DEBOUNCE_MS = 300  # changes within this window are read once
STAT_EVERY_MS = 1000  # and the file's stat compared this often (a change the events missed)


class KeysFileError(ValueError):
    """The keys file cannot be used; the message names the file, the key and the field."""


def digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def _limit(raw: dict, name: str, where: str) -> Any:
    value = raw.get(name)
    if value is None:
        return None
    kind = float if name == "rate_per_s" else int
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise KeysFileError(f"{where}: {name} must be a number above 0, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise KeysFileError(f"{where}: {name} must be a whole number, got {value!r}")
    return kind(value)


def parse_keys_file(text: str, path: str = "keys file") -> dict[bytes, Principal]:
    """The keys of a keys file's text: SHA-256 digest → principal. KeysFileError on any fault."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise KeysFileError(f"{path}: not valid TOML ({e})") from None
    extra = set(doc) - {"keys"}
    if extra:
        raise KeysFileError(f"{path}: unknown top-level entries {sorted(extra)}; keep [[keys]]")
    keys = doc.get("keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise KeysFileError(f"{path}: keys must be [[keys]] tables")
    table: dict[bytes, Principal] = {}
    ids: set[str] = set()
    for i, raw in enumerate(keys):
        where = f"{path}: key {i + 1}"
        kid = raw.get("id")
        if not isinstance(kid, str) or not ID.fullmatch(kid):
            raise KeysFileError(
                f"{where}: id must be 1 to 64 letters, digits and . _ - (starting with a letter "
                "or digit)"
            )
        where = f"{path}: key {kid!r}"
        unknown = set(raw) - FIELDS
        if unknown:  # a field of a newer framecast, or a typo: said, not fatal
            log.warning("%s: fields %s are not framecast's and are ignored (known: %s)",
                        where, sorted(unknown), ", ".join(sorted(FIELDS)))  # fmt: skip
        if kid in ids:
            raise KeysFileError(f"{where}: the id is listed twice")
        ids.add(kid)
        hexed = raw.get("sha256")
        if not isinstance(hexed, str) or not HEX.fullmatch(hexed.lower()):
            raise KeysFileError(f"{where}: sha256 must be 64 hex digits (the secret's SHA-256)")
        scopes = raw.get("scopes")
        if not isinstance(scopes, list) or not scopes or not set(scopes) <= set(ALL_SCOPES):
            raise KeysFileError(
                f"{where}: scopes must be a non-empty list of {', '.join(s.value for s in Scope)}"
            )
        limits = Limits(**{name: _limit(raw, name, where) for name in LIMIT_NAMES})
        key = bytes.fromhex(hexed)
        if key in table:
            raise KeysFileError(f"{where}: the same sha256 as key {table[key].id!r}")
        table[key] = Principal(kid, frozenset(scopes), limits, "file")
    return table


def env_keys(keys: list[str]) -> dict[bytes, Principal]:
    """FRAMECAST_API_KEYS: each key has every scope; its id is its place in the list (env-1, …)."""
    return {digest(k.encode()): Principal(f"env-{i}", ALL_SCOPES, Limits(), "env")
            for i, k in enumerate(keys, 1)}  # fmt: skip


class KeyRing:
    """The keys of a server and the principal of each; ``enabled`` is False when keys are off
    (every check then costs nothing: the layers are not installed)."""

    def __init__(self, settings: Any):
        self.path: Path | None = settings.api_keys_file
        self._table: dict[bytes, Principal] = {}
        self._by_id: dict[str, Principal] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stamp: tuple | None = None  # the file's (inode, size, mtime) when last read
        if self.path is not None:
            self._set(self._read())
        else:
            self._set(env_keys(settings.api_key_list()))
        self.enabled = self.path is not None or bool(self._table)

    def _stat(self) -> tuple | None:
        assert self.path is not None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self) -> dict[bytes, Principal]:
        assert self.path is not None
        try:
            self._stamp = self._stat()
            text = self.path.read_text()
        except OSError as e:
            raise KeysFileError(
                f"FRAMECAST_API_KEYS_FILE={self.path}: cannot be read ({e.strerror})"
            ) from None
        return parse_keys_file(text, str(self.path))

    def _set(self, table: dict[bytes, Principal]) -> None:
        self._by_id = {p.id: p for p in table.values()}
        self._table = table  # one assignment: a request sees the old table or the new one

    def __len__(self) -> int:
        return len(self._table)

    def by_id(self, kid: str) -> Principal | None:
        return self._by_id.get(kid)

    def authenticate(self, authorization: bytes | None) -> Principal:
        """The principal of ``Authorization: Bearer SECRET`` (the HTTP header or the gRPC
        ``authorization`` metadata); 401 without one, 403 for a key not listed."""
        if not authorization:
            raise Unauthorized("this route needs an API key: send 'Authorization: Bearer KEY'")
        scheme, _, token = authorization.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            raise Unauthorized("the Authorization header must be 'Bearer KEY'")
        return self.check(token)

    def check(self, secret: bytes) -> Principal:
        found = self._table.get(digest(secret))
        if found is None:
            raise Forbidden("the API key is not valid for this server")
        return found

    # -- rotation ----------------------------------------------------------------------------
    def reload(self, why: str) -> bool:
        """Read the keys file again (True when its keys were taken); a file that cannot be used
        leaves the keys as they were."""
        if self.path is None:
            return False
        with self._lock:
            try:
                table = self._read()
            except KeysFileError as e:
                log.error("keys file not reloaded (%s); the previous keys stay: %s", why, e)
                return False
            before, after = set(self._by_id), {p.id for p in table.values()}
            changed = {p.id for p in table.values() if self._by_id.get(p.id) != p}
            self._set(table)
        audit.info(
            "keys file reloaded (%s): %d key(s); added: %s; removed: %s; changed: %s",
            why, len(table), _ids(after - before), _ids(before - after),
            _ids(changed - (after - before)),
        )  # fmt: skip
        return True

    def start(self) -> None:
        """Watch the keys file (a thread; nothing when keys come from FRAMECAST_API_KEYS)."""
        if self.path is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="framecast-keys", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)

    def _watch(self) -> None:
        import watchfiles

        assert self.path is not None
        path = self.path.resolve()
        name = path.name

        def ours(change: Any, changed: str) -> bool:
            return Path(changed).name == name

        try:
            for changes in watchfiles.watch(
                path.parent,
                watch_filter=ours,
                debounce=WATCH_DEBOUNCE_MS,
                stop_event=self._stop,
                recursive=False,
                raise_interrupt=False,
                rust_timeout=STAT_EVERY_MS,
                yield_on_timeout=True,  # an empty set each second: the stat is compared then
            ):
                stamp = self._stat()
                if stamp is None:  # a rename in place: deleted, then there again
                    continue
                if changes or stamp != self._stamp:
                    self.reload("the file changed")
        except Exception as e:  # noqa: BLE001 - the watch failed: SIGHUP still reloads
            log.error("keys file %s is no longer watched (%s); send SIGHUP to reload it", path, e)


def _ids(ids: set[str]) -> str:
    return ", ".join(sorted(ids)) or "none"
