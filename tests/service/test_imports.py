"""The service's import structure: light imports (no Keras, TensorFlow or JAX for the app and the
client commands, checked in fresh interpreters), no import circle, modules small enough to read."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "service"
HEAVY = ("keras", "tensorflow", "jax")
MAX_LINES = 400


def _python(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_importing_the_app_and_the_cli_and_building_the_parser_loads_no_keras():
    code = (
        "import json, sys\n"
        "import service.app, service.cli\n"
        "service.cli.build_parser()\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    r = _python("-c", code)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


def _imported(importtime: str) -> set[str]:
    """Top-level package names in ``python -X importtime`` output."""
    names = set()
    for line in importtime.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name.split(".")[0])
    return names


@pytest.mark.parametrize(
    "command",
    ["predict", "compare", "classify", "serve", "train", "evaluate", "import", "export", "data"],
)
def test_the_client_and_serve_commands_help_loads_no_keras(command):
    r = _python("-X", "importtime", "-m", "service.cli", command, "--help")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"usage: framecast {command}" in r.stdout
    imported = _imported(r.stderr)
    assert "service" in imported  # the output was parsed
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


# --------------------------------------------------------------------------- structure


def _modules() -> dict[str, Path]:
    """Every module under service/ by dotted name (``service.routes.v2.infer``)."""
    out = {}
    for path in sorted(SERVICE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run at import time: at module level, also inside module-level
    ``if``/``try`` blocks, except ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (
                    node.body,
                    node.orelse,
                    node.finalbody,
                    *(h.body for h in node.handlers),
                ):
                    visit(block)

    visit(tree.body)
    return found


def _targets(node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    """The service modules an import statement loads."""
    names = set()
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    elif node.level == 0 and node.module:
        names = {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if n in modules and n != "service"}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: set().union(
            *(_targets(n, modules) for n in _top_level_imports(ast.parse(path.read_text())))
        )
        for name, path in modules.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (``[a, b, ..., a]``), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_circle_among_service_modules():
    graph = import_graph()
    assert "service.errors" in graph["service.checks"]  # the graph sees `from service.x import`
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_app_does_not_import_the_ray_deployment():
    tree = ast.parse((SERVICE / "app.py").read_text())
    imported = {
        alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names
    }
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "service.runtime.ray.app" not in imported


def test_no_service_module_is_over_400_lines():
    too_long = {}
    for path in SERVICE.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            too_long[rel] = n
    assert not too_long, f"over {MAX_LINES} lines: {too_long}"
