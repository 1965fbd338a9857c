"""The `framecast` command (``service.cli:main``): :mod:`service.cli.main` builds the parser."""

from service.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
