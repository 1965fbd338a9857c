"""`framecast keys`: make and manage the keys file (FRAMECAST_API_KEYS_FILE).

    framecast keys new --id alice --scopes infer,stream --file keys.toml [--max-streams 4 ...]
    framecast keys list --file keys.toml
    framecast keys remove --id alice --file keys.toml

``new`` draws a secret (``secrets.token_urlsafe(32)``: 256 random bits), prints it once on
stdout (nothing keeps it: give it to the key's holder now) and writes only its SHA-256 to the
file. Every change writes the whole file anew beside it and renames it into place (a server
watching the file reads the old one or the new one, never half of one); a new file is made
readable by its owner only (0600), an existing one keeps its mode, so a file that was not
world-readable never becomes so. A running server takes the change within seconds (or at once
on SIGHUP): docs/security.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import stat
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from service.auth.keys import ID, KeysFileError, parse_keys_file
from service.auth.principals import ALL_SCOPES, LIMIT_NAMES

PREFIX = "fc_"  # a framecast key is recognisable (in a leaked file, a secret scanner's rule)


def add_keys_subcommand(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser(
        "keys",
        help="make and manage API keys (FRAMECAST_API_KEYS_FILE)",
        description="Make, list and remove the named API keys of a keys file (TOML, "
        "FRAMECAST_API_KEYS_FILE). The file holds each key's id, scopes, limits and the SHA-256 "
        "of its secret, never the secret; a running server re-reads it when it changes "
        "(docs/security.md).",
    )
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    new = ksub.add_parser(
        "new",
        help="make a key: prints its secret once, writes its SHA-256 to the file",
        description="Make a key: its secret is printed once, on stdout, and only its SHA-256 is "
        "written to the keys file (made if absent, 0600; an existing file keeps its mode).",
    )
    new.add_argument("--id", required=True, help="the key's name (letters, digits, . _ -)")
    new.add_argument(
        "--scopes", required=True, help=f"comma-separated: {', '.join(sorted(ALL_SCOPES))}"
    )
    new.add_argument("--file", required=True, type=Path, help="the keys file (made if absent)")
    new.add_argument("--max-streams", type=int, help="open streams and V2 sequences at once")
    new.add_argument("--rate-per-s", type=float, help="requests per second (a token bucket)")
    new.add_argument("--burst", type=int, help="requests the bucket holds (default: the rate)")
    new.add_argument("--max-concurrent", type=int, help="requests in flight at once")
    new.add_argument("--max-jobs", type=int, help="evaluation jobs running at once")
    new.add_argument("--note", help="free text kept with the key")
    new.set_defaults(func=_new)
    listed = ksub.add_parser(
        "list",
        help="the keys of a file: ids, scopes, limits (no secret)",
        description="List the keys of a keys file: ids, scopes and limits (no secret is held).",
    )
    listed.add_argument("--file", required=True, type=Path, help="the keys file")
    listed.set_defaults(func=_list)
    remove = ksub.add_parser(
        "remove",
        help="remove a key (refused within seconds)",
        description="Remove a key from a keys file; a running server refuses it within seconds.",
    )
    remove.add_argument("--id", required=True, help="the key's id")
    remove.add_argument("--file", required=True, type=Path, help="the keys file")
    remove.set_defaults(func=_remove)


def _read(path: Path) -> list[dict[str, Any]]:
    """The ``[[keys]]`` tables of ``path`` (checked as a server reads them); [] when absent."""
    if not path.exists():
        return []
    text = path.read_text()
    parse_keys_file(text, str(path))
    return list(tomllib.loads(text).get("keys", []))


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return json.dumps(str(v))  # a TOML basic string is a JSON string (ASCII escapes)


def render(keys: list[dict[str, Any]]) -> str:
    """The keys file of ``keys``."""
    out = ["# framecast API keys (FRAMECAST_API_KEYS_FILE); written by `framecast keys`.",
           "# sha256 is the SHA-256 of a key's secret: the secrets are not here.", ""]  # fmt: skip
    for k in keys:
        out.append("[[keys]]")
        out += [f"{name} = {_value(value)}" for name, value in k.items()]
        out.append("")
    return "\n".join(out)


def write_atomic(path: Path, text: str) -> None:
    """``text`` as ``path``, whole or not at all; the old file's mode, or 0600 for a new one (in
    a new folder, if need be, that only its owner may enter: 0700)."""
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o600
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True)
        print(f"made the folder {path.parent} (0700)", file=sys.stderr)
    fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new(args: argparse.Namespace) -> int:
    if not ID.fullmatch(args.id):
        raise KeysFileError(f"--id {args.id!r}: give 1 to 64 letters, digits and . _ -")
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    if not scopes or not set(scopes) <= set(ALL_SCOPES):
        raise KeysFileError(f"--scopes: choose from {', '.join(sorted(ALL_SCOPES))}")
    keys = _read(args.file)
    if any(k.get("id") == args.id for k in keys):
        raise KeysFileError(f"{args.file}: a key {args.id!r} is there already (remove it first)")
    secret = PREFIX + secrets.token_urlsafe(32)
    entry: dict[str, Any] = {
        "id": args.id,
        "sha256": hashlib.sha256(secret.encode()).hexdigest(),
        "scopes": scopes,
    }
    for name in LIMIT_NAMES:
        value = getattr(args, name)
        if value is not None:
            entry[name] = value
    entry["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.note:
        entry["note"] = args.note
    text = render(keys + [entry])
    parse_keys_file(text, str(args.file))  # what a server will read: checked before written
    write_atomic(args.file, text)
    print(
        f"key {args.id!r} ({', '.join(scopes)}) written to {args.file}; its secret, shown "
        "only now (send it as 'Authorization: Bearer <secret>'):",
        file=sys.stderr,
    )
    print(secret)
    return 0


def _list(args: argparse.Namespace) -> int:
    for k in _read(args.file):
        limits = ", ".join(f"{n}={k[n]}" for n in LIMIT_NAMES if n in k)
        print(f"{k['id']}\t{','.join(k['scopes'])}\t{limits or '-'}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    keys = _read(args.file)
    kept = [k for k in keys if k.get("id") != args.id]
    if len(kept) == len(keys):
        raise KeysFileError(f"{args.file}: no key {args.id!r}")
    write_atomic(args.file, render(kept))
    print(f"key {args.id!r} removed from {args.file}", file=sys.stderr)
    return 0
