"""`framecast serve`: the entry point service/cli.py looks for (the app itself is in service/app.py)."""

from __future__ import annotations

from service.app import add_serve_subcommand, create_app, serve_command

__all__ = ["add_serve_subcommand", "create_app", "serve_command"]
