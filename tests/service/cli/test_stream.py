"""`framecast stream MODEL VIDEO` (service/cli/stream.py) against a TestClient server, the
client's --json rule in every command, and a closed output pipe."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.service.cli.test_client import parser
from tests.service.conftest import CARRY, CARRY2, CL
from tests.service.helpers import FRAMES, clip, encode
from tests.service.live import live_server
from tests.service.routes.v1.test_streams import _settings


@pytest.fixture(scope="module")
def sc(stream_models):
    with TestClient(create_app(_settings(stream_models))) as c:
        yield c


@pytest.fixture()
def gif(tmp_path):
    path = tmp_path / "clip.gif"
    frames = clip(FRAMES + 4, seed=12)
    frames[FRAMES + 2] = 255  # one white frame: the surprise peaks there
    path.write_bytes(encode(frames, "GIF", loop=0, duration=100))
    return path


def run(client, argv):
    args = parser().parse_args(argv)
    return args.func(args, http=client)


def test_stream_writes_the_surprise_of_every_predicted_frame(sc, gif, tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert run(sc, ["stream", CARRY, str(gif), "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [int(r["step"]) for r in rows] == list(range(FRAMES + 1, FRAMES + 5))
    assert {r["model"] for r in rows} == {CARRY}
    worst = max(rows, key=lambda r: float(r["mse_per_frame"]))
    assert int(worst["step"]) == FRAMES + 3
    err = capsys.readouterr().err
    assert f"frame {FRAMES + 4}/{FRAMES + 4}" in err and str(out) in err
    assert sc.get("/v1/streams").json()["streams"] == []  # closed at the end


def test_stream_side_by_side_as_json_on_stdout(sc, gif, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(sc, ["stream", CARRY, str(gif), "--models", CARRY2, "--json", "--quiet"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["frames"] == FRAMES + 4
    assert {r["model"] for r in body["surprise"]} == {CARRY, CARRY2}
    assert not list(tmp_path.glob("*.csv"))  # --json: a file only when asked


def test_stream_csv_to_stdout_and_clear_errors(sc, gif, tmp_path, capsys):
    assert run(sc, ["stream", CARRY, str(gif), "--csv", "-", "--quiet"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4
    assert run(sc, ["stream", CL, str(gif)]) == 1
    assert "next-frame" in capsys.readouterr().err
    assert run(sc, ["stream", CARRY, str(tmp_path / "missing.mp4")]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.gif"
    bad.write_bytes(b"GIF89a broken")
    assert run(sc, ["stream", CARRY, str(bad)]) == 2


def test_json_prints_and_writes_no_file_unless_asked(sc, gif, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(sc, ["predict", CARRY, str(gif), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == CARRY
    assert run(sc, ["classify", CL, str(gif), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == CL
    assert run(sc, ["compare", "next-frame", str(gif), "--models", f"{CARRY},{CARRY2}",
                    "--holdout", "2", "--json"]) == 0  # fmt: skip
    assert set(json.loads(capsys.readouterr().out)["results"]) == {CARRY, CARRY2}
    assert list(tmp_path.iterdir()) == [gif] or not list(tmp_path.glob("*.json"))
    assert run(sc, ["predict", CARRY, str(gif), "--json", "--out", "p.json"]) == 0
    assert json.loads((tmp_path / "p.json").read_text())["model"] == CARRY


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")
def test_a_closed_output_pipe_ends_quietly(stream_models, gif):
    """More JSON than a pipe holds (64 KiB), read 20 bytes of: exit 0, no traceback."""
    with live_server(create_app(_settings(stream_models, max_horizon=30))) as url:
        cmd = [sys.executable, "-m", "service.cli", "predict", CARRY, str(gif)]
        cmd += ["--horizon", "30", "--raw", "--json", "--url", url]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
        p = subprocess.run(
            " ".join(f"'{c}'" for c in cmd) + " | head -c 20",
            shell=True, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert p.returncode == 0 and len(p.stdout) == 20
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr


def test_the_progress_line_names_every_number(sc, gif, tmp_path, capsys):
    """Each step's line says which frame, each model's surprise by name (or how many frames it
    still needs), and the step's time; the CSV goes to --out (else under out/)."""
    out = tmp_path / "s.csv"
    assert run(sc, ["stream", CARRY, str(gif), "--models", CARRY2, "--out", str(out)]) == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("frame ")]
    assert len(lines) == FRAMES + 4
    first, last = lines[0], lines[-1]
    assert first.startswith(f"frame 1/{FRAMES + 4}  surprise (MSE per frame): ")
    assert f"{CARRY} needs" in first and "more frame(s)" in first
    assert f"frame {FRAMES + 4}/{FRAMES + 4}" in last and last.endswith(" ms")
    for name in (CARRY, CARRY2):  # each model's number after its name
        assert re.search(rf"{name} \d+\.\d", last), last
    assert {r["model"] for r in csv.DictReader(out.open())} == {CARRY, CARRY2}
