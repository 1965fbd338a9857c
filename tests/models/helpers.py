"""What the models tests share: tiny builder configs and `framecast train` on a tiny budget."""

from service.cli import main

TINY = {
    "convlstm2d": '{"filters": [4], "kernel_size": 3}',
    "conv2d_lstm": '{"conv_filters": [4, 4, 4], "lstm_units": 8}',
}


def train_tiny(out, arch, task, mnist, epochs=1):
    return main(
        [
            "train",
            "--arch",
            arch,
            "--task",
            task,
            "--epochs",
            str(epochs),
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--val-clips",
            "2",
            "--mnist-dir",
            str(mnist),
            "--seed",
            "3",
            "--config",
            TINY[arch],
            "--out",
            str(out),
            "--quiet",
        ]
    )
