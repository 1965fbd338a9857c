"""The README's test command also lints and type-checks: `ruff check` and `ruff format --check`
over the tree (the rules live in pyproject.toml's [tool.ruff]), and mypy over service/ and
models/ (its settings, check_untyped_defs included, in [tool.mypy])."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

needs_ruff = pytest.mark.skipif(
    importlib.util.find_spec("ruff") is None,
    reason="ruff is not installed: pip install -e '.[dev]' (the dev extra brings it)",
)
needs_mypy = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed: pip install -e '.[dev]' (the dev extra brings it)",
)


@needs_ruff
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


def _mypy(*args: str, cwd: Path, cache_dir: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", cache_dir, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@needs_mypy
def test_mypy():
    # the files and settings come from pyproject.toml; the cache lives outside the checkout (a
    # test run leaves no .mypy_cache there) and is kept between runs (a warm run takes seconds)
    cache = os.path.join(tempfile.gettempdir(), "framecast-mypy-cache")
    result = _mypy(cwd=ROOT, cache_dir=cache)
    assert result.returncode == 0, (
        f"`mypy` failed (exit {result.returncode}); run `python -m mypy` from the repository "
        f"root to see and fix:\n{result.stdout}{result.stderr}"
    )


@needs_mypy
def test_mypy_catches_a_wrong_argument_type(tmp_path: Path):
    # the repository's settings on a module that calls f(x: int) with a str, from a function
    # with no annotations: mypy's defaults skip its body, check_untyped_defs checks it
    module = tmp_path / "wrong_arg.py"
    module.write_text("def f(x: int) -> int:\n    return x\n\n\ndef g():\n    return f('a')\n")
    config = str(ROOT / "pyproject.toml")
    result = _mypy("--config-file", config, str(module), cwd=tmp_path, cache_dir=os.devnull)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "[arg-type]" in result.stdout, result.stdout + result.stderr
