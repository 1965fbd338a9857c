"""Without ray installed, `framecast serve --ray` says how to install it (runs in every CI run)."""

from __future__ import annotations

import argparse
import sys

from service.cli.serve import add_serve_subcommand
from service.config import Settings
from service.runtime.ray.launch import serve_on_ray


def test_serve_has_the_ray_flag():
    parser = argparse.ArgumentParser()
    add_serve_subcommand(parser.add_subparsers())
    assert parser.parse_args(["serve", "--ray"]).ray is True
    assert parser.parse_args(["serve"]).ray is False


def test_serve_ray_without_ray_says_how_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    assert serve_on_ray(Settings(models_dir=tmp_path)) == 2
    err = capsys.readouterr().err
    assert "pip install 'framecast[ray]'" in err and "--ray" in err
