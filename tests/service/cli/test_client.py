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
