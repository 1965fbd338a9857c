"""`framecast evaluate --server URL --models a,b DATA`: progress, the verdict and the table, the
report files; `framecast evaluate FOLDER` is still the model card's."""

from __future__ import annotations

import json

import numpy as np

from service.cli.evaluate import evaluate_command
from service.cli.main import build_parser
from tests.service.helpers import clip, npy

NF = "conv2d_lstm_next_frame,convlstm2d_next_frame"


def _args(*argv):
    return build_parser().parse_args(["evaluate", *argv])


def test_a_data_set_on_a_server_prints_the_verdict_and_writes_the_report(client, tmp_path, capsys):
    data = tmp_path / "clips.npy"
    data.write_bytes(npy(np.stack([clip(t=6, seed=i) for i in range(5)])))
    out = tmp_path / "report"
    args = _args(
        "--server",
        "http://testserver",
        "--models",
        NF,
        "--holdout",
        "2",
        str(data),
        "--out",
        str(out),
        "--quiet",
    )
    assert evaluate_command(args, http=client) == 0
    text = capsys.readouterr().out
    assert text.startswith("On these 5 clips")
    assert "conv2d_lstm_next_frame" in text and "GFLOPs/clip" in text and "p = " in text
    assert sorted(p.name for p in out.iterdir()) == [
        "clips.csv",
        "plot.png",
        "report.html",
        "report.json",
    ]
    assert json.loads((out / "report.json").read_text())["result"]["clips"] == 5


def test_json_prints_the_result_and_errors_are_one_line(client, tmp_path, capsys):
    data = tmp_path / "clips.npy"
    data.write_bytes(npy(np.stack([clip(t=6, seed=i) for i in range(3)])))
    args = _args(
        "--server",
        "http://testserver",
        "--models",
        NF,
        "--holdout",
        "2",
        str(data),
        "--json",
        "--quiet",
        "--out",
        str(tmp_path / "r"),
    )
    assert evaluate_command(args, http=client) == 0
    assert json.loads(capsys.readouterr().out)["clips"] == 3
    args = _args("--server", "http://testserver", "--models", NF, str(data), "--quiet")
    assert evaluate_command(args, http=client) == 1
    assert "holdout=k" in capsys.readouterr().err


def test_the_model_card_form_still_parses():
    args = _args("models/convlstm2d_next_frame", "--clips", "8")
    assert args.server is None and args.clips == 8 and str(args.folder).endswith("next_frame")
