"""The `framecast` command: data, train, evaluate (model side) and the service's subcommands."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) hides our own messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _data_main(args: argparse.Namespace) -> int:
    from models.preview import write_preview

    paths = write_preview(
        args.out,
        task=args.task,
        n=args.clips,
        seed=args.seed,
        mnist_dir=args.mnist_dir,
        split=args.split,
    )
    for p in paths:
        print(p)
    return 0


def _figure_main(args: argparse.Namespace) -> int:
    from models.preview import write_rollout_figure

    print(write_rollout_figure(args.models, args.out, index=args.index, mnist_dir=args.mnist_dir))
    return 0


def _train_main(args: argparse.Namespace) -> int:
    from models.training.run import main

    return main(args)


def _evaluate_main(args: argparse.Namespace) -> int:
    if args.server:  # a data set on a running server (service/cli/evaluate.py)
        from service.cli.evaluate import evaluate_command

        return evaluate_command(args)
    from models.evaluation.card import main

    return main(args)


class LazyParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that may add its arguments when it is first used: ``add_arguments``
    (a keyword of ``add_parser``) runs before it parses or prints help. `framecast train` takes
    its flags from ``models.training.args``, not from its loop, which imports Keras."""

    def __init__(
        self,
        *args: Any,
        add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.add_arguments_later = add_arguments

    def add_arguments_now(self) -> None:
        add, self.add_arguments_later = self.add_arguments_later, None
        if add is not None:
            add(self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self.add_arguments_now()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self.add_arguments_now()
        return super().format_usage()

    def format_help(self) -> str:
        self.add_arguments_now()
        return super().format_help()


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from models.training.args import add_arguments  # no Keras: `train --help` stays fast

    add_arguments(parser)


def _add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    from models.evaluation.card import add_arguments  # NumPy and the data module: only when used
    from service.cli.evaluate import add_server_arguments

    add_arguments(parser)  # FOLDER: a model folder, or with --server the data set's file
    add_server_arguments(parser)


def _default_models_dir() -> Path:
    """Where `framecast import` writes by default: what `framecast serve` serves."""
    from service.config import load_settings

    return Path(load_settings().models_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="framecast",
        description="Serve, train and evaluate Conv2D+LSTM and ConvLSTM2D video models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=LazyParser)

    data = sub.add_parser("data", help="look at the Moving MNIST data")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    preview = data_sub.add_parser("preview", help="write a PNG grid and a GIF of a few clips")
    preview.add_argument("--task", choices=("next_frame", "classify"), default="next_frame")
    preview.add_argument("--clips", type=int, default=4)
    preview.add_argument("--seed", type=int, default=0)
    preview.add_argument("--split", choices=("train", "test"), default="train")
    preview.add_argument("--mnist-dir", default=None)
    preview.add_argument("--out", default="preview", help="output folder")
    preview.set_defaults(func=_data_main)
    figure = data_sub.add_parser(
        "figure", help="PNG of a held-out test clip, its truth and next-frame models' rollouts"
    )
    figure.add_argument("models", nargs="+", help="next-frame model folders, one row each")
    figure.add_argument("--index", type=int, default=0, help="which test clip")
    figure.add_argument("--mnist-dir", default=None)
    figure.add_argument("--out", default="docs/rollout.png")
    figure.set_defaults(func=_figure_main)

    train = sub.add_parser(
        "train", help="train a model (resumable)", add_arguments=_add_train_arguments
    )
    train.set_defaults(func=_train_main)

    evaluate = sub.add_parser(
        "evaluate",
        help="evaluate a model folder and write its model card; with --server URL --models "
        "a,b DATA, models on a data set through a running server (a report)",
        add_arguments=_add_evaluate_arguments,
    )
    evaluate.set_defaults(func=_evaluate_main)

    from models.export import add_export_subcommand

    add_export_subcommand(sub)
    from models.importer import add_import_subcommand

    add_import_subcommand(sub, _default_models_dir)
    _add_service_subcommands(sub)
    return parser


def _add_service_subcommands(sub: argparse._SubParsersAction) -> None:
    """`serve` (service/cli/serve.py) and `predict`, `classify`, `compare`
    (service/cli/client.py)."""
    from service.cli.client import add_client_subcommands
    from service.cli.serve import add_serve_subcommand

    add_serve_subcommand(sub)
    add_client_subcommands(sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # recorded in manifests
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `framecast compare … --json | head`: the reader left; so do we
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0
    except Exception as e:  # domain errors print one clear line, not a traceback
        from models.data import MNISTError
        from models.repository import ManifestError

        if isinstance(e, (MNISTError, ManifestError, ValueError)):
            print(f"framecast {args.command}: error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
