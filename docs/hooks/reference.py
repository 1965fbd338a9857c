"""MkDocs hook: the CLI and API reference pages, generated from the code at every build.

- ``reference/cli.md``: every ``framecast`` subcommand's ``--help`` (argparse, as the command
  prints it);
- ``reference/api.md``: every route of the OpenAPI document ``create_app`` serves at
  ``/openapi.json`` (method, path, summary, parameters, request body, answers), so the page
  cannot drift from the routes.

Registered in mkdocs.yml (``hooks:``); nothing is written to the repository.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _cli() -> str:
    sys.path.insert(0, str(ROOT))
    from service.cli.main import build_parser

    parser = build_parser()
    out = [
        "# CLI reference",
        "",
        "Every `framecast` command, as `--help` prints it (generated from the code at each "
        "build of these pages).",
        "",
    ]
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    os.environ.setdefault("COLUMNS", "100")
    buf = io.StringIO()
    with redirect_stdout(buf):
        parser.print_help()
    out += ["## framecast", "", "```text", buf.getvalue().rstrip(), "```", ""]
    for action in subs:
        for name, sub in action.choices.items():
            buf = io.StringIO()
            with redirect_stdout(buf):
                sub.print_help()
            out += [f"## framecast {name}", "", "```text", buf.getvalue().rstrip(), "```", ""]
            nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
            for inner in nested:
                for leaf, p in inner.choices.items():
                    buf = io.StringIO()
                    with redirect_stdout(buf):
                        p.print_help()
                    out += [f"### framecast {name} {leaf}", "", "```text"]
                    out += [buf.getvalue().rstrip(), "```", ""]
    return "\n".join(out)


def _schema_name(schema: dict) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_schema_name(s) for s in schema["anyOf"])
    return schema.get("type", "object")


def _api() -> str:
    sys.path.insert(0, str(ROOT))
    from service.app import create_app
    from service.config import Settings

    doc = create_app(Settings()).openapi()
    out = [
        "# API reference",
        "",
        f"framecast {doc['info']['version']}: every route of the OpenAPI document the server "
        "serves at `/openapi.json` (and as Swagger UI at `/docs`, ReDoc at `/redoc`), generated "
        "from the code at each build of these pages. Errors answer "
        '`{"error", "message", "status"}` on `/v1` and `{"error"}` on `/v2`.',
        "",
    ]
    by_tag: dict[str, list[tuple[str, str, dict]]] = {}
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            tag = (op.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).append((method.upper(), path, op))
    for tag in sorted(by_tag):
        out += [f"## {tag}", ""]
        for method, path, op in by_tag[tag]:
            out += [f"### `{method} {path}`", ""]
            if op.get("summary"):
                out += [op["summary"], ""]
            if op.get("description"):
                out += [op["description"].strip(), ""]
            params = op.get("parameters") or []
            if params:
                out += [
                    "| parameter | in | type | default | description |",
                    "| --- | --- | --- | --- | --- |",
                ]
                for p in params:
                    s = p.get("schema") or {}
                    default = json.dumps(s["default"]) if "default" in s else ""
                    desc = (p.get("description") or s.get("description") or "").replace("|", "\\|")
                    desc = " ".join(desc.split())
                    out.append(
                        f"| `{p['name']}` | {p['in']} | {_schema_name(s)} | {default} | {desc} |"
                    )
                out.append("")
            body = op.get("requestBody", {}).get("content")
            if body:
                out += ["Request body: " + ", ".join(f"`{t}`" for t in body), ""]
            answers = op.get("responses") or {}
            if answers:
                out += [
                    "Answers: "
                    + "; ".join(
                        f"{code} {' '.join((r.get('description') or '').split())}".strip()
                        for code, r in answers.items()
                    ),
                    "",
                ]
    return "\n".join(out)


def on_files(files, config):  # noqa: ANN001, ANN201 - MkDocs' hook signature
    from mkdocs.structure.files import File

    files.append(File.generated(config, "reference/cli.md", content=_cli()))
    files.append(File.generated(config, "reference/api.md", content=_api()))
    return files
