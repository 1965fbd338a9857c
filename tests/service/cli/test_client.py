"""The `framecast predict|classify|compare` client subcommands, against a TestClient server."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from service.cli.client import add_client_subcommands
from service.cli.serve import add_serve_subcommand
from tests.service.helpers import FRAMES, H, W, clip, encode, png


def parser():
    p = argparse.ArgumentParser(prog="framecast")
    sub = p.add_subparsers(dest="command", required=True)
    add_client_subcommands(sub)
    add_serve_subcommand(sub)
    return p


@pytest.fixture()
def frame_files(tmp_path):
    paths = []
    for i, f in enumerate(clip(t=FRAMES + 2, seed=30)):
        path = tmp_path / f"f{i:02d}.png"
        path.write_bytes(png(f))
        paths.append(str(path))
    return paths


def run(client, argv):
    args = parser().parse_args(argv)
    return args.func(args, http=client)


def test_predict_saves_a_png_strip(client, frame_files, tmp_path, capsys):
    out = tmp_path / "pred.png"
    code = run(
        client,
        [
            "predict",
            "convlstm2d_next_frame",
            *frame_files[:FRAMES],
            "--horizon",
            "2",
            "--out",
            str(out),
        ],
    )
    assert code == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (H, 2 * W + 2)
    assert "2 frame(s) predicted" in capsys.readouterr().out


@pytest.mark.parametrize("output", ["gif", "npy", "json"])
def test_predict_other_outputs(client, frame_files, tmp_path, output):
    out = tmp_path / f"pred.{output}"
    assert (
        run(
            client,
            [
                "predict",
                "convlstm2d_next_frame",
                *frame_files,
                "--output",
                output,
                "--out",
                str(out),
            ],
        )
        == 0
    )
    if output == "gif":
        assert Image.open(out).n_frames == FRAMES + 1
    elif output == "npy":
        assert np.load(out).shape == (1, H, W, 1)
    else:
        assert json.loads(out.read_text())["shape"] == [1, H, W, 1]


def test_predict_sends_one_gif(client, tmp_path):
    gif = tmp_path / "clip.gif"
    gif.write_bytes(encode(clip(seed=31), "GIF", loop=0))
    out = tmp_path / "p.npy"
    assert (
        run(
            client,
            ["predict", "conv2d_lstm_next_frame", str(gif), "--output", "npy", "--out", str(out)],
        )
        == 0
    )
    assert np.load(out).shape == (1, H, W, 1)


def test_compare_saves_a_montage_and_prints_the_winner(client, frame_files, tmp_path, capsys):
    out = tmp_path / "cmp.png"
    assert (
        run(client, ["compare", "next-frame", *frame_files, "--holdout", "2", "--out", str(out)])
        == 0
    )
    assert Image.open(out).format == "PNG"
    printed = capsys.readouterr().out
    assert "winner: conv" in printed and str(out) in printed


def test_compare_json_prints_metrics(client, frame_files, tmp_path, capsys):
    out = tmp_path / "cmp.json"
    assert (
        run(
            client,
            [
                "compare",
                "next-frame",
                *frame_files[:FRAMES],
                "--truth",
                *frame_files[FRAMES:],
                "--output",
                "json",
                "--out",
                str(out),
            ],
        )
        == 0
    )
    body = json.loads(out.read_text())
    assert body["truth"] == "upload"
    printed = capsys.readouterr().out
    assert "MSE/frame" in printed and "PSNR" in printed


def test_compare_and_classify_for_classifiers(client, frame_files, capsys):
    assert (
        run(
            client,
            ["compare", "classify", *frame_files[:FRAMES], "--label", "E", "--out", "/dev/null"],
        )
        == 0
    )
    assert "winner: conv" in capsys.readouterr().out
    assert (
        run(client, ["classify", "convlstm2d_classify", *frame_files[:FRAMES], "--top-k", "2"]) == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2


def test_server_errors_and_missing_files_give_exit_codes(client, frame_files, tmp_path, capsys):
    assert run(client, ["predict", "convlstm2d_next_frame", frame_files[0]]) == 1
    assert "422" in capsys.readouterr().err
    assert run(client, ["predict", "ghost", *frame_files]) == 1
    assert "404" in capsys.readouterr().err
    assert run(client, ["predict", "x", str(tmp_path / "missing.png")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_unreachable_server_is_exit_code_2(frame_files, capsys):
    args = parser().parse_args(
        ["predict", "m", frame_files[0], "--url", "http://127.0.0.1:9", "--timeout", "2"]
    )
    assert args.func(args) == 2
    assert "cannot reach" in capsys.readouterr().err


def test_serve_subcommand_parses_and_rejects_bad_settings(monkeypatch, capsys):
    args = parser().parse_args(
        ["serve", "--port", "9999", "--models-dir", "/x", "--log-level", "debug"]
    )
    assert args.port == 9999 and args.models_dir == "/x" and callable(args.func)
    monkeypatch.setenv("FRAMECAST_MAX_HORIZON", "zero")
    assert args.func(args) == 2
    assert "FRAMECAST_MAX_HORIZON" in capsys.readouterr().err


def test_the_framecast_cli_registers_the_service_subcommands():
    from service.cli import build_parser

    p = build_parser()
    for argv in (
        ["serve"],
        ["predict", "m", "a.png"],
        ["classify", "m", "a.png"],
        ["compare", "next-frame", "a.gif", "--holdout", "2"],
    ):
        args = p.parse_args(argv)
        assert callable(args.func) and args.command == argv[0]


@pytest.fixture(scope="module")
def live_url(settings):
    """A real server over the fixture models (the client commands make their own connection)."""
    from service.app import create_app
    from tests.service.live import live_server

    with live_server(create_app(settings)) as url:
        yield url


def _successes(url: str, model: str) -> int:
    import httpx

    stats = httpx.get(f"{url}/v2/models/{model}/stats", timeout=30).json()
    return stats["model_stats"][0]["inference_stats"]["success"]["count"]


@pytest.mark.parametrize("how", ["FRAMECAST_URL", "FRAMECAST_PORT"])
def test_the_clients_find_the_server_the_environment_names(
    live_url, frame_files, monkeypatch, capsys, how
):
    """Without --url, compare asks the server of FRAMECAST_URL (else of FRAMECAST_PORT), never
    whatever answers on 8000; the request counts on that server."""
    monkeypatch.delenv("FRAMECAST_URL", raising=False)
    if how == "FRAMECAST_URL":
        monkeypatch.setenv("FRAMECAST_PORT", "9")  # the URL wins over the port
        monkeypatch.setenv("FRAMECAST_URL", live_url)
    else:
        monkeypatch.setenv("FRAMECAST_PORT", live_url.rsplit(":", 1)[1])
    before = _successes(live_url, "convlstm2d_next_frame")
    args = parser().parse_args(["compare", "next-frame", *frame_files, "--holdout", "2", "--json"])
    assert args.func(args) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["truth"] == "holdout"
    assert _successes(live_url, "convlstm2d_next_frame") == before + 1


def test_an_unreachable_server_names_where_its_address_came_from(frame_files, monkeypatch, capsys):
    monkeypatch.delenv("FRAMECAST_URL", raising=False)
    monkeypatch.setenv("FRAMECAST_PORT", "9")
    monkeypatch.setenv("FRAMECAST_CLIENT_TIMEOUT_S", "2")
    args = parser().parse_args(["classify", "m", frame_files[0]])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "cannot reach http://127.0.0.1:9 (FRAMECAST_HOST and FRAMECAST_PORT" in err
    monkeypatch.setenv("FRAMECAST_URL", "127.0.0.1:9")  # no scheme: a bad setting, said
    assert args.func(parser().parse_args(["classify", "m", frame_files[0]])) == 2
    assert "FRAMECAST_URL" in capsys.readouterr().err


def test_json_goes_to_stdout_and_files_only_where_asked(
    client, frame_files, tmp_path, monkeypatch, capsys
):
    """--json: JSON on stdout, no file; --out FILE: that file, its suffix the format; without
    --out an image goes under out/ (which .gitignore covers)."""
    tmp_path = tmp_path / "cwd"  # the frames are in tmp_path itself
    tmp_path.mkdir()
    monkeypatch.chdir(tmp_path)
    ctx = frame_files[:FRAMES]
    assert run(client, ["predict", "convlstm2d_next_frame", *ctx, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shape"] == [1, H, W, 1]
    assert not list(tmp_path.iterdir())  # nothing written
    assert run(client, ["predict", "convlstm2d_next_frame", *ctx, "--out", "p.gif"]) == 0
    assert Image.open(tmp_path / "p.gif").format == "GIF"  # the suffix picked the format
    assert run(client, ["predict", "convlstm2d_next_frame", *ctx]) == 0
    assert (tmp_path / "out" / "convlstm2d_next_frame_prediction.png").is_file()
    assert run(client, ["compare", "classify", *ctx, "--label", "E"]) == 0
    assert "winner:" in capsys.readouterr().out
    assert run(client, ["compare", "next-frame", *frame_files, "--holdout", "2", "--table"]) == 0
    assert "MSE/frame" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "convlstm2d_next_frame_prediction.png"
    ]  # the compare tables were printed, nothing written
    assert _ignored("out/compare_next_frame.png"), ".gitignore does not cover out/"


def _ignored(path: str) -> bool:
    """Whether the repository's .gitignore covers ``path`` (git check-ignore)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        ["git", "-C", str(root), "check-ignore", "-q", path], check=False, capture_output=True
    )
    if done.returncode in (0, 1):
        return done.returncode == 0
    lines = (root / ".gitignore").read_text().split()  # not a git checkout: read the file
    return path.split("/")[0] + "/" in lines or "/" + path.split("/")[0] + "/" in lines


def test_output_json_still_writes_its_file_but_says_it_is_deprecated(
    client, frame_files, tmp_path, capsys
):
    out = tmp_path / "p.json"
    argv = ["predict", "convlstm2d_next_frame", *frame_files, "--output", "json", "--out", str(out)]
    assert run(client, argv) == 0
    assert json.loads(out.read_text())["shape"] == [1, H, W, 1]
    assert "--output json is deprecated" in capsys.readouterr().err
