"""The layout's rules, read from the code's own imports (every kind: module level, inside functions
and under ``if TYPE_CHECKING:``), so that they hold themselves (issue #24):

- no import circle anywhere in ``service/`` and ``models/``;
- ``models/`` imports nothing from ``service/``;
- no folder of ``service/`` holds more than 12 modules;
- route modules reach models through ``service.inference``: they import no batcher, runner or
  registry module;
- the page's script is plain ES modules (``service/static/js/``) of at most 400 lines each, with
  no circle either;
- ``models/`` is grouped by role and ``bench/`` by what it measures: no folder of either holds
  more than 12 modules; a bench script imports only from its own folder and the shared harness
  beside the folders (``bench/*.py``), and the bench scripts have no circle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("service", "models")
MAX_MODULES_PER_FOLDER = 12
MAX_LINES = 400


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports_of(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """Every project module that ``path`` imports, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            candidates = {base} | {f"{base}.{a.name}" for a in node.names}
        else:
            continue
        for c in candidates:
            # `import a.b.c` loads a, a.b and a.b.c; count the deepest project module named
            while c and c not in known:
                c = c.rpartition(".")[0]
            if c and c not in PACKAGES and c != name:
                found.add(c)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, name, known) for name, path in known.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(g):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_graph_sees_every_kind_of_import():
    g = graph()
    assert "service.errors" in g["service.checks"]  # module level
    assert "service.routes.v1.predict" in g["service.http.hotpath"]  # inside a function
    cyc = find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}})
    assert cyc == ["a", "b", "c", "a"]


def test_no_import_circle_in_service_or_models():
    g = graph()
    cycle = find_cycle(g)
    assert cycle is None, " -> ".join(cycle or [])


def test_models_import_nothing_from_service():
    bad = {m: sorted(t for t in ts if t.startswith("service")) for m, ts in graph().items()}
    bad = {m: ts for m, ts in bad.items() if m.startswith("models") and ts}
    assert not bad, bad


@pytest.mark.parametrize("top", ["service", "models", "bench"])
def test_no_folder_holds_more_than_12_modules(top):
    crowded = {}
    for folder in [ROOT / top, *(p for p in (ROOT / top).rglob("*") if p.is_dir())]:
        n = len([p for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")])
        if n > MAX_MODULES_PER_FOLDER:
            crowded[folder.relative_to(ROOT).as_posix()] = n
    assert not crowded, crowded


def bench_graph() -> dict[str, set[str]]:
    """The bench scripts (``bench/[GROUP/]X.py``, by path) and the bench scripts each imports. A
    script imports its siblings and the shared harness as plain modules (its folder and
    ``bench/`` are on ``sys.path``); a name found in neither is not a bench module."""
    bench = ROOT / "bench"
    g: dict[str, set[str]] = {}
    for path in sorted(bench.rglob("*.py")):
        here = {p.stem: p for p in path.parent.glob("*.py")}
        shared = {p.stem: p for p in bench.glob("*.py")}
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module.split(".")[0]]
            else:
                continue
            for n in names:
                target = here.get(n) or shared.get(n)
                if target is not None and target != path:
                    found.add(target.relative_to(ROOT).as_posix())
        g[path.relative_to(ROOT).as_posix()] = found
    return g


def test_bench_scripts_import_their_folder_and_the_harness_only_and_have_no_circle():
    g = bench_graph()
    assert "bench/harness.py" in g["bench/streams/stream_scale.py"]  # the graph sees them
    assert "bench/streams/stream_bench.py" in g["bench/streams/stream_scale.py"]
    grouped = [p for p in g if p.count("/") == 2]
    assert len(grouped) >= 20, "the scripts live in folders by what they measure"
    for script, targets in g.items():
        folder = script.rpartition("/")[0]
        strays = {t for t in targets if t.rpartition("/")[0] not in (folder, "bench")}
        assert not strays, f"{script} imports another folder's scripts: {sorted(strays)}"
    cycle = find_cycle(g)
    assert cycle is None, " -> ".join(cycle or [])


def test_routes_reach_models_through_the_inference_module():
    forbidden = ("service.runtime.batcher", "service.runtime.runner", "service.runtime.registry")
    bad = {
        m: sorted(t for t in ts if t.startswith(forbidden))
        for m, ts in graph().items()
        if m.startswith("service.routes")
    }
    bad = {m: ts for m, ts in bad.items() if ts}
    assert not bad, bad


def _classes_and_calls(path: Path) -> tuple[list[tuple[str, list[str]]], list[str]]:
    tree = ast.parse(path.read_text())
    classes = [
        (n.name, [ast.unparse(b) for b in n.bases])
        for n in ast.walk(tree)
        if isinstance(n, ast.ClassDef)
    ]
    calls = [
        ast.unparse(n.func)
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, (ast.Name, ast.Attribute))
    ]
    return classes, calls


ERROR_BASES = {
    "FramecastError",
    "InvalidInput",
    "BadRequest",
    "NotReady",
    "PayloadTooLarge",
    "ModelNotFound",
}


def test_one_error_map():
    """Every failure kind is declared once, in service/errors.py, and only that module turns one
    into an HTTP answer (no JSONResponse built from an exception's status elsewhere, no
    hand-made ASGI error start); the gRPC status of each is its companion's,
    service/routes/v2/grpc_status.py."""
    bad = {}
    for path in (ROOT / "service").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel in ("service/errors.py", "service/routes/v2/grpc_status.py"):
            continue
        classes, _ = _classes_and_calls(path)
        kinds = [name for name, bases in classes if set(bases) & ERROR_BASES]
        text = path.read_text()
        answers = re.findall(r"\b(?:e|exc|err)\.status\b|\"error\": (?:e|exc)\.", text)
        if '"type": "http.response.start"' in text and "status_code" not in text:
            answers += [m for m in re.findall(r'"status": (\d+)', text) if m.startswith("4")]
        if kinds or answers:
            bad[rel] = kinds + answers
    assert not bad, bad


def test_no_module_over_400_lines():
    long = {}
    for top in ("service", "models"):
        for path in (ROOT / top).rglob("*.py"):
            n = len(path.read_text().splitlines())
            if n > MAX_LINES:
                long[path.relative_to(ROOT).as_posix()] = n
    assert not long, long


def test_only_the_lifecycle_changes_which_runner_serves():
    """Model states are one enum and the serving table is private to the lifecycle: nothing
    else assigns into a runners dict or parses a state out of a string."""
    bad = {}
    for path in (ROOT / "service").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        found = [
            needle
            for needle in ('startswith("failed', ".runners[", ".runners.pop", "status.models[")
            if needle in text
        ]
        if found and rel != "service/runtime/lifecycle.py":
            bad[rel] = found
    assert not bad, bad


def test_settings_are_read_only_by_settings():
    """service/ reads the environment in one place, service/config.py (Settings); elsewhere it
    only passes the environment on (to workers) or sets a library's default. models/ reads its
    one variable (FRAMECAST_MNIST_DIR) in models/data.py."""
    allowed = {"service/config.py", "models/data.py"}
    pattern = re.compile(r"os\.environ\.get\(|os\.getenv\(|os\.environ\[|environ\.get\(")
    bad = {}
    for top in ("service", "models"):
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            found = pattern.findall(path.read_text())
            if found and rel not in allowed:
                bad[rel] = found
    assert not bad, bad


def test_tests_in_a_subfolder_mirror_a_module():
    """tests/service/media/test_decode.py tests service/media/decode.py: every test file in a
    subfolder of tests/service or tests/models is named after a module of the same folder
    (test_<module>.py, or test_<module>_<aspect>.py). The top folders also hold the
    end-to-end tests that cross modules (reliability, own checkpoints, backends, ...)."""
    bad = []
    for top in ("service", "models"):
        for test in (ROOT / "tests" / top).rglob("test_*.py"):
            folder = test.parent.relative_to(ROOT / "tests" / top)
            if folder == Path("."):
                continue
            name = test.stem.removeprefix("test_")
            modules = [p.stem for p in (ROOT / top / folder).glob("*.py")]
            if not any(name == m or name.startswith(m + "_") for m in modules):
                bad.append(test.relative_to(ROOT).as_posix())
    assert not bad, f"test files that mirror no module: {bad}"


# ---------------------------------------------------------------- the page's script

STATIC = ROOT / "service" / "static"
JS_IMPORT = re.compile(r'^import\s+(?:[^"\']*?\s+from\s+)?["\'](\./[\w./-]+\.js)["\'];?\s*$', re.M)


def page_modules() -> dict[str, set[str]]:
    """Every script of the page (service/static/**.js) → the page modules it imports."""
    out = {}
    for path in sorted(STATIC.rglob("*.js")):
        name = path.relative_to(STATIC).as_posix()
        deps = {(path.parent / dep).resolve().relative_to(STATIC).as_posix()
                for dep in JS_IMPORT.findall(path.read_text())}  # fmt: skip
        out[name] = deps
    return out


def test_the_page_script_is_es_modules_of_at_most_400_lines_without_a_circle():
    """The page loads one entry module (no classic scripts sharing globals); every script is an
    ES module of at most 400 lines that imports only page modules that exist, with no circle;
    plain files the browser runs as they are (no build step: no bundler's config)."""
    page = (STATIC / "index.html").read_text()
    scripts = re.findall(r"<script\b([^>]*)>", page)
    assert scripts == [' type="module" src="/static/js/app.js"'], scripts
    mods = page_modules()
    assert len(mods) >= 4, mods  # split by role, not one file
    long = {m: n for m in mods if (n := len((STATIC / m).read_text().splitlines())) > MAX_LINES}
    assert not long, long
    for name, deps in mods.items():
        text = (STATIC / name).read_text()
        assert re.search(r"^(import|export) ", text, re.M), f"{name} is not an ES module"
        assert '"use strict"' not in text, f"{name}: modules are strict already"
        assert deps <= set(mods), f"{name} imports {sorted(deps - set(mods))}"
    cycle = find_cycle(mods)
    assert cycle is None, " -> ".join(cycle or [])
    assert not [p for p in ROOT.glob("*") if p.name in ("package.json", "webpack.config.js")]
