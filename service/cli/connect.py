"""Where the client commands (service/cli/client.py, service/cli/stream.py) find the server,
what they say when they cannot reach it, and where they write what no ``--out`` names."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

OUT_DIR = Path("out")  # what a command writes without --out goes here (.gitignore covers it)
URL_HELP = (
    "the server (default: FRAMECAST_URL, else http://FRAMECAST_HOST:FRAMECAST_PORT, which are "
    "127.0.0.1 and 8000 unless set)"
)


def resolve_server(args: argparse.Namespace) -> int | None:
    """Fill ``args.url`` and ``args.timeout`` from the settings where the flags left them out
    (``args.url_from`` says where the URL came from); an exit code when a setting is bad."""
    if getattr(args, "url", None) is not None and getattr(args, "timeout", None) is not None:
        args.url_from = "--url"
        return None
    from service.cli.sockets import url_for
    from service.config import SettingsError, load_settings

    try:
        s = load_settings()
    except SettingsError as e:
        print(f"framecast {getattr(args, 'command', '')}: {e}", file=sys.stderr)
        return 2
    if args.url is not None:
        args.url_from = "--url"
    elif s.url is not None:
        args.url, args.url_from = s.url, "FRAMECAST_URL"
    else:
        args.url = url_for(s.host, s.port)
        args.url_from = "FRAMECAST_HOST and FRAMECAST_PORT; set --url or FRAMECAST_URL"
    if args.timeout is None:
        args.timeout = s.client_timeout_s
    return None


def unreachable(args: argparse.Namespace, e: Exception, command: str = "framecast") -> int:
    where = getattr(args, "url_from", "--url")
    print(f"{command}: cannot reach {args.url} ({where}): {e}", file=sys.stderr)
    return 2
