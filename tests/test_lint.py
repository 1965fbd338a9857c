"""The README's test command also lints: `ruff check` and `ruff format --check` over the tree
(the rules live in pyproject.toml's [tool.ruff])."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ruff") is None,
    reason="ruff is not installed: pip install -e '.[dev]' (the dev extra brings it)",
)


@pytest.mark.parametrize(
    "command",
    [["check", "."], ["format", "--check", "."]],
    ids=["check", "format"],
)
def test_ruff(command: list[str]):
    # --no-cache: a test run leaves no .ruff_cache behind in the checkout
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"`ruff {' '.join(command)}` failed (exit {result.returncode}); run it from the "
        f"repository root to see and fix:\n{result.stdout}{result.stderr}"
    )
