"""models/runs/progress.py: a tqdm bar on a terminal, plain periodic lines in a log, nothing when
quiet; the Keras callback that shows `fit` in clips; and `framecast train`/`evaluate` using them."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import numpy as np
import pytest

from models.runs.progress import format_duration, is_terminal, keras_callback, progress


class FakeTTY(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_plain_lines_with_rate_and_time_left_when_not_a_terminal():
    out = io.StringIO()
    with progress(1600, desc="train epoch 3/60", stream=out, min_interval=0) as p:
        for _ in range(16):
            p.update(100)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # one per 10%, the last one says it is done
    assert re.fullmatch(
        r"train epoch 3/60: 800/1600 clips, [\d.]+ clips/s, \d+(m\d\ds|s) left", lines[4]
    ), lines[4]
    assert re.fullmatch(
        r"train epoch 3/60: 1600/1600 clips, [\d.]+ clips/s, done in \d+s", lines[-1]
    )
    assert "\r" not in out.getvalue() and "|" not in out.getvalue()  # no bar in a log


def test_plain_lines_are_spaced_in_time():
    out = io.StringIO()
    with progress(100, desc="evaluate m", unit="frame", stream=out, min_interval=3600) as p:
        for _ in range(100):
            p.update(1)
    # no 10% mark is worth a line within the hour (min_interval); the one saying done always is
    [line] = out.getvalue().splitlines()
    assert line.startswith("evaluate m: 100/100 frames, ") and "done in" in line


def test_stage_lines_and_unknown_total():
    out = io.StringIO()
    with progress(None, desc="evaluate m", stream=out, interval=0) as p:
        p.stage("making 4 test clips")
        p.update(2)
    lines = out.getvalue().splitlines()
    assert lines[0] == "evaluate m: making 4 test clips"
    assert lines[1].startswith("evaluate m: 2 clips, ")


def test_a_tqdm_bar_on_a_terminal():
    tty = FakeTTY()
    assert is_terminal(tty) and not is_terminal(io.StringIO())
    with progress(1600, desc="train epoch 3/60", stream=tty) as p:
        for _ in range(16):
            p.update(100)
        p.stage("validating")
    text = tty.getvalue()
    assert "\r" in text  # redrawn in place
    assert "train epoch 3/60" in text and "1600/1600" in text and "clip/s" in text
    assert "validating" in text
    assert "clips/s" not in text and "left" not in text  # no plain lines


def test_stages_on_a_terminal_and_none_in_a_log_with_lines_off():
    tty = FakeTTY()
    with progress(None, desc="import", stream=tty, lines=False) as p:
        p.stage("timing a call…")
    assert "import: timing a call…" in tty.getvalue()
    log = io.StringIO()
    with progress(None, desc="import", stream=log, lines=False) as p:
        p.stage("timing a call…")
    assert log.getvalue() == ""


@pytest.mark.parametrize("stream", [io.StringIO(), FakeTTY()])
def test_quiet_prints_nothing(stream):
    with progress(10, desc="x", stream=stream, quiet=True, min_interval=0) as p:
        p.stage("loading")
        p.update(10)
    assert p.n == 10 and stream.getvalue() == ""


def test_format_duration():
    assert [format_duration(s) for s in (0.4, 45, 62, 3600 + 180)] == [
        "0s",
        "45s",
        "1m02s",
        "1h03m",
    ]


def test_importing_the_helper_does_not_load_keras():
    code = "import sys, models.runs.progress; print('keras' in sys.modules, 'tqdm' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["False", "False"]


def test_keras_callback_counts_clips_per_batch():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).random((12, 4)).astype("float32")
    y = np.random.default_rng(1).random((12, 1)).astype("float32")
    err, out = io.StringIO(), io.StringIO()
    cb = keras_callback(batch_size=4, desc="train", stream=err, out=out, min_interval=0)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(cb.display.n)

    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[cb, Spy()])
    assert cb.clips == 2 * 3 * 4  # epochs × batches × batch size
    assert seen == [4, 8, 12, 4, 8, 12]  # updated after every batch, anew each epoch
    lines = err.getvalue().splitlines()
    assert any(line.startswith("train epoch 1/2: 12/12 clips") for line in lines)
    assert any(line.startswith("train epoch 2/2: 4/12 clips") for line in lines)
    # the per-epoch summary, as Keras' verbose=2 writes it
    summary = out.getvalue().splitlines()
    assert summary[0] == "Epoch 1/2" and summary[2] == "Epoch 2/2"
    assert re.fullmatch(r"3/3 - \d+s - \d+(s|ms|us)/step - loss: \d\.\d{4}(e-\d+)?", summary[1])


def test_keras_callback_quiet_keeps_the_summary_only():
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    err, out = FakeTTY(), io.StringIO()
    cb = keras_callback(batch_size=2, quiet=True, stream=err, out=out)
    x = np.zeros((4, 2), "float32")
    model.fit(x, x[:, :1], batch_size=2, epochs=1, verbose=0, callbacks=[cb])
    assert err.getvalue() == "" and cb.clips == 4
    assert re.match(r"2/2 - \d+s - .* - loss: ", out.getvalue())


def test_train_and_evaluate_print_progress_lines_in_a_log(tmp_path, synthetic_mnist_npz, capsys):
    from service.cli import main

    out = tmp_path / "m"
    common = ["--mnist-dir", str(synthetic_mnist_npz), "--batch-size", "2"]
    args = ["train", "--arch", "conv2d_lstm", "--task", "classify", "--epochs", "2"]
    args += ["--steps", "2", "--val-clips", "2", "--seed", "3", "--out", str(out)]
    args += ["--config", '{"conv_filters": [4, 4, 4], "lstm_units": 8}', *common]
    assert main(args) == 0
    got = capsys.readouterr()
    assert re.search(r"^train epoch 2/2: 4/4 clips, [\d.]+ clips/s, done in \d+s$", got.err, re.M)
    assert "Epoch 2/2" in got.out and re.search(r"^2/2 - \d+s - .*val_loss: ", got.out, re.M)

    assert main(["evaluate", str(out), "--clips", "4", *common]) == 0
    got = capsys.readouterr()
    assert re.search(r"^evaluate m: 4/4 clips, [\d.]+ clips/s, done in \d+s$", got.err, re.M)
    assert "accuracy" in got.out

    # --quiet: the epoch lines and results, no progress
    assert main([*args, "--epochs", "3", "--quiet"]) == 0  # the last --epochs counts
    got = capsys.readouterr()
    assert "resuming" in got.out and "Epoch 3/3" in got.out and "clips/s" not in got.err
    assert main(["evaluate", str(out), "--clips", "4", *common, "--quiet"]) == 0
    got = capsys.readouterr()
    assert "clips/s" not in got.err and "accuracy" in got.out
