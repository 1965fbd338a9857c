"""The documentation site builds (``mkdocs build --strict``: a broken link, a page missing from
the navigation, a missing anchor fail it), and its generated reference pages hold every CLI
command and every route."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.helpers import require

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    require("mkdocs", "mkdocs-material")
    require("material", "mkdocs-material")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return out


def test_the_site_builds_with_warnings_as_errors(site):
    assert (site / "index.html").is_file()
    assert (site / "search" / "search_index.json").is_file()


def test_the_cli_reference_has_every_command(site):
    from service.cli.main import build_parser

    page = (site / "reference" / "cli" / "index.html").read_text()
    parser = build_parser()
    (subs,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    for name in subs.choices:
        assert f"framecast {name}" in page, name


def test_the_api_reference_has_every_route(site):
    import html

    from service.app import create_app
    from service.config import Settings

    page = html.unescape((site / "reference" / "api" / "index.html").read_text())
    for path, methods in create_app(Settings()).openapi()["paths"].items():
        for method in methods:
            assert f"{method.upper()} {path}" in page, (method, path)
