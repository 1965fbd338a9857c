"""The dependency metadata never installs two wheels of one package (issue 13).

``tensorflow-cpu`` and ``tensorflow`` (``tensorflow[and-cuda]``) are different distributions that
unpack the same ``tensorflow`` package: with both, pip leaves whichever it unpacked last. So the
TensorFlow wheel is an extra, ``[cpu]`` or ``[gpu]``, never a base dependency, and every
combination of extras is checked here: no two requirements may provide one import package, except
in combinations that ``[tool.uv] conflicts`` declares impossible (uv refuses them; pip users are
told by the README to pick one). Every install command the docs and CI give is checked too.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
EXTRAS = PROJECT["optional-dependencies"]
TF_EXTRAS = {"cpu", "gpu"}

# Distributions that install the same import package as another one (normalized names). A
# distribution not listed provides the package of its own name.
ALIASES = {
    "tensorflow": "tensorflow",
    "tensorflow-cpu": "tensorflow",
    "tensorflow-gpu": "tensorflow",
    "tensorflow-intel": "tensorflow",
    "tensorflow-macos": "tensorflow",
    "tf-nightly": "tensorflow",
    "tf-nightly-cpu": "tensorflow",
    "opencv-python": "cv2",
    "opencv-python-headless": "cv2",
    "opencv-contrib-python": "cv2",
    "opencv-contrib-python-headless": "cv2",
    "onnxruntime": "onnxruntime",
    "onnxruntime-gpu": "onnxruntime",
    "pillow": "PIL",
    "pillow-simd": "PIL",
    "jaxlib": "jaxlib",
    "psycopg2": "psycopg2",
    "psycopg2-binary": "psycopg2",
}


def _name(req: str) -> str:
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req).group(1)
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(extras: tuple[str, ...]) -> list[str]:
    """Base requirements plus those of ``extras``, following ``framecast[...]`` self-references."""
    reqs, todo, seen = list(PROJECT["dependencies"]), list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in EXTRAS[extra]:
            if _name(req) == _name(PROJECT["name"]):
                todo += re.search(r"\[(.*?)\]", req).group(1).split(",")
            else:
                reqs.append(req)
    return reqs


def _providers(reqs: list[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for req in reqs:
        name = _name(req)
        out.setdefault(ALIASES.get(name, name), set()).add(name)
    return out


def _declared_conflicts() -> list[set[str]]:
    groups = PYPROJECT.get("tool", {}).get("uv", {}).get("conflicts", [])
    return [{item["extra"] for item in group} for group in groups]


def _combinations():
    names = sorted(EXTRAS)
    for n in range(len(names) + 1):
        yield from itertools.combinations(names, n)


def test_no_tensorflow_wheel_in_the_base_dependencies():
    packages = _providers(PROJECT["dependencies"])
    assert "tensorflow" not in packages, "the TensorFlow wheel belongs to the [cpu]/[gpu] extras"
    assert {_name(r) for r in EXTRAS["cpu"]} == {"tensorflow-cpu"}
    assert [_name(r) for r in EXTRAS["gpu"]] == ["tensorflow"]
    assert "and-cuda" in EXTRAS["gpu"][0]


def test_cpu_and_gpu_are_declared_alternatives():
    assert TF_EXTRAS in _declared_conflicts()
    # a declared conflict may not hide anything else
    assert all(group == TF_EXTRAS for group in _declared_conflicts())


@pytest.mark.parametrize("extras", list(_combinations()), ids=lambda e: ",".join(e) or "base")
def test_no_two_requirements_install_one_package(extras):
    if any(group <= set(extras) for group in _declared_conflicts()):
        pytest.skip(f"[{','.join(extras)}] is declared impossible in [tool.uv] conflicts")
    dupes = {pkg: d for pkg, d in _providers(_requirements(extras)).items() if len(d) > 1}
    assert not dupes, f"framecast[{','.join(extras)}]: one package from several wheels: {dupes}"


def test_the_alias_table_catches_the_old_mistake():
    old = ["tensorflow-cpu>=2.16", "keras>=3.5", "tensorflow[and-cuda]>=2.16"]
    assert _providers(old)["tensorflow"] == {"tensorflow-cpu", "tensorflow"}


# Install commands people are told to type: each must bring exactly one TensorFlow wheel.
DOCS = ["README.md", "docs/ray.md", ".ci/run"]
INSTALL = re.compile(r"pip install (?:-e )?'?(?:\.|framecast)(?:\[([a-z,]*)\])?'?")


def _install_commands():
    """Install commands in the docs' code blocks (prose may name a wrong one as a warning)."""
    for doc in DOCS:
        text = (ROOT / doc).read_text()
        if doc.endswith(".md"):
            text = "\n".join(re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S))
        for m in INSTALL.finditer(text):
            yield doc, m.group(0), set(filter(None, (m.group(1) or "").split(",")))


def test_documented_installs_pick_one_tensorflow():
    found = list(_install_commands())
    assert any(doc == ".ci/run" for doc, _, _ in found), "CI's install command not found"
    for doc, cmd, extras in found:
        assert len(extras & TF_EXTRAS) == 1, f"{doc}: `{cmd}` must pick [cpu] or [gpu], once"
        assert extras <= set(EXTRAS), f"{doc}: `{cmd}` names an unknown extra"


def test_dockerfile_installs_one_variant_extra():
    text = (ROOT / "Dockerfile").read_text()
    assert "['optional-dependencies'][sys.argv[1]]" in text  # VARIANT (gpu|cpu) picks the extra
    assert "tensorflow-cpu" not in re.sub(r"#.*", "", text)  # no hand-made TF swap any more


def test_this_environment_has_one_tensorflow():
    """Where framecast is installed: at most one distribution per import package (an old
    ``pip install 'framecast[gpu]'`` could leave two)."""
    installed = {
        _name(d.metadata["Name"]) for d in importlib.metadata.distributions() if d.metadata["Name"]
    }
    dupes = {pkg: d for pkg, d in _providers(sorted(installed)).items() if len(d) > 1}
    assert not dupes, (
        f"several wheels of one package installed: {dupes}; pip uninstall them all, then "
        "pip install -e '.[cpu]' (or '.[gpu]')"
    )


def test_the_package_data_takes_every_file_of_the_page():
    """An installed framecast serves the page from the wheel: every file under service/static
    (the scripts in js/ too) must match a package-data pattern (a pattern's "*" does not cross a
    folder, as setuptools globs it)."""
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["*"]
    service = ROOT / "service"
    taken = {p for pattern in patterns for p in service.glob(pattern) if p.is_file()}
    files = {p for p in (service / "static").rglob("*") if p.is_file()}
    missing = sorted(p.relative_to(service).as_posix() for p in files - taken)
    assert not missing, f"not in the wheel: {missing}"
