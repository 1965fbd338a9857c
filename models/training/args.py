"""The flags of `framecast train`, apart from the training code so that `--help` loads no Keras."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from models import data as D
from models.repository import ARCHITECTURES, TASKS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", required=True, choices=ARCHITECTURES, help="the architecture")
    p.add_argument("--task", required=True, choices=TASKS, help="what the model learns")
    p.add_argument("--out", required=True, type=Path, help="model folder to write (and resume)")
    p.add_argument("--epochs", type=int, default=10, help="epochs to train")
    p.add_argument("--steps", type=int, default=100, help="batches per epoch")
    p.add_argument("--batch-size", type=int, default=16, help="clips per batch")
    p.add_argument("--seed", type=int, default=0, help="random seed (weights, clips)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (cosine decay)")
    p.add_argument(
        "--loss",
        choices=("bce", "mse", "l1l2"),
        default="bce",
        help="next_frame loss (l1l2: mean absolute + mean squared error per pixel)",
    )
    p.add_argument(
        "--precision",
        choices=("float32", "mixed_bfloat16"),
        default="float32",
        help="dtype policy while training (the written model is always float32)",
    )
    p.add_argument(
        "--mnist-dir",
        default=None,
        help=f"MNIST IDX files or mnist.npz (default: ${D.MNIST_DIR_ENV}, else download)",
    )
    p.add_argument(
        "--config",
        type=json.loads,
        default={},
        help="JSON of builder keyword arguments overriding the defaults, "
        "e.g. '{\"filters\": [32, 32]}'",
    )
    p.add_argument("--val-clips", type=int, default=128, help="validation clips per epoch")
    p.add_argument(
        "--rollout",
        type=int,
        default=0,
        metavar="K",
        help="next_frame: train on the model's own K-frame rollout from the 10-frame "
        "window (closed loop, as served); 0 = teacher forcing (default)",
    )
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        metavar="MODEL_DIR",
        help="start from the weights of a trained model folder of the same arch/task "
        "(recorded in the manifest; clips seen there count toward the budget)",
    )
    p.add_argument(
        "--forecast",
        action="store_true",
        help="next_frame: train the carried-state encoder-forecaster on 20-frame clips "
        "(10 context + 10 fed back) with scheduled sampling (see --sampling-clips)",
    )
    p.add_argument(
        "--sampling-clips",
        type=int,
        default=16000,
        metavar="N",
        help="--forecast: anneal the chance of feeding back the true frame from "
        "--sampling-start to 0 over the run's first N clips (0 = closed loop "
        "from the start)",
    )
    p.add_argument(
        "--sampling-start",
        type=float,
        default=1.0,
        help="--forecast: the chance of feeding back the true frame at the start",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar (one line per epoch)")
