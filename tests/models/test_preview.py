"""`framecast data preview` and `framecast data figure` (models/preview.py)."""

from service.cli import main
from tests.models.helpers import train_tiny


def test_bad_mnist_dir_is_one_clear_line(tmp_path, capsys):
    rc = main(
        ["data", "preview", "--mnist-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "p")]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "missing" in err and "Traceback" not in err


def test_data_preview_writes_png_and_gif(tmp_path, synthetic_mnist_npz):
    from PIL import Image

    assert (
        main(
            [
                "data",
                "preview",
                "--clips",
                "2",
                "--mnist-dir",
                str(synthetic_mnist_npz),
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    png = Image.open(tmp_path / "next_frame_clips.png")
    assert png.size == (2 * (20 * 66 - 2), 2 * (2 * 66 - 2))
    gif = Image.open(tmp_path / "next_frame_clips.gif")
    assert gif.n_frames == 20


def test_rollout_figure(tmp_path, synthetic_mnist_npz):
    from PIL import Image

    a, b = tmp_path / "a", tmp_path / "b"
    assert train_tiny(a, "convlstm2d", "next_frame", synthetic_mnist_npz) == 0
    assert train_tiny(b, "conv2d_lstm", "next_frame", synthetic_mnist_npz) == 0
    out = tmp_path / "fig.png"
    assert (
        main(
            [
                "data",
                "figure",
                str(a),
                str(b),
                "--mnist-dir",
                str(synthetic_mnist_npz),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    img = Image.open(out)
    assert img.height == 2 * (4 * 66 - 2)  # context, truth, two model rows
    assert (
        main(
            [
                "data",
                "figure",
                str(tmp_path / "nope"),
                "--out",
                str(out),
                "--mnist-dir",
                str(synthetic_mnist_npz),
            ]
        )
        == 2
    )
