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


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's formatter that adds "(default: …)" to each option's help, except where the
    help already says its default or there is none to say (unset, a flag that is off)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        d = action.default
        if "default" in text or d is None or d is False or d is argparse.SUPPRESS or d in ([], ""):
            return text
        return super()._get_help_string(action)


class LazyParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that may add its arguments when it is first used: ``add_arguments``
    (a keyword of ``add_parser``) runs before it parses or prints help. `framecast train` takes
    its flags from ``models.training.args``, not from its loop, which imports Keras. Its help
    shows every option's default (:class:`DefaultsFormatter`)."""

    def __init__(
        self,
        *args: Any,
        add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
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


def version() -> str:
    """framecast's installed version (the package metadata), with Python's."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        mine = installed("framecast")
    except PackageNotFoundError:  # run from a checkout that was never installed
        mine = "unknown (not installed)"
    return f"framecast {mine} (Python {sys.version.split()[0]})"


MNIST_HELP = "MNIST IDX files or mnist.npz (default: $FRAMECAST_MNIST_DIR, else download)"


def build_parser() -> argparse.ArgumentParser:
    parser = LazyParser(
        prog="framecast",
        description="Serve, train and evaluate Conv2D+LSTM and ConvLSTM2D video models "
        "(`framecast serve`, then the client commands predict, classify, compare and stream).",
    )
    parser.add_argument("--version", action="version", version=version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=LazyParser)

    data = sub.add_parser(
        "data",
        help="look at the Moving MNIST data",
        description="Look at the Moving MNIST clips the bundled models were trained and tested "
        "on: a preview of a few clips, or a figure of a test clip with models' rollouts.",
    )
    data_sub = data.add_subparsers(dest="data_command", required=True)
    preview = data_sub.add_parser(
        "preview",
        help="write a PNG grid and a GIF of a few clips",
        description="Make a few Moving MNIST clips and write them as a PNG grid and a GIF.",
    )
    preview.add_argument(
        "--task", choices=("next_frame", "classify"), default="next_frame", help="which clips"
    )
    preview.add_argument("--clips", type=int, default=4, help="how many clips")
    preview.add_argument("--seed", type=int, default=0, help="random seed of the clips")
    preview.add_argument(
        "--split", choices=("train", "test"), default="train", help="which MNIST digits"
    )
    preview.add_argument("--mnist-dir", default=None, help=MNIST_HELP)
    preview.add_argument("--out", default="out/preview", help="output folder")
    preview.set_defaults(func=_data_main)
    figure = data_sub.add_parser(
        "figure",
        help="PNG of a held-out test clip, its truth and next-frame models' rollouts",
        description="Write one PNG: a held-out test clip's context and truth, and each "
        "next-frame model's 10-frame rollout below them (the figure in the docs).",
    )
    figure.add_argument("models", nargs="+", help="next-frame model folders, one row each")
    figure.add_argument("--index", type=int, default=0, help="which test clip")
    figure.add_argument("--mnist-dir", default=None, help=MNIST_HELP)
    figure.add_argument("--out", default="docs/rollout.png", help="the PNG to write")
    figure.set_defaults(func=_figure_main)

    train = sub.add_parser(
        "train",
        help="train a model (resumable)",
        description="Train a Conv2D+LSTM or ConvLSTM2D model on Moving MNIST into a model "
        "folder (checkpoint and manifest); run it again to resume.",
        add_arguments=_add_train_arguments,
    )
    train.set_defaults(func=_train_main)

    evaluate = sub.add_parser(
        "evaluate",
        help="evaluate a model folder and write its model card; with --server URL --models "
        "a,b DATA, models on a data set through a running server (a report)",
        description="Evaluate a model folder on the fixed Moving MNIST test clips (64x64 grey; "
        "next frame: 10 frames of context rolled out; classify: the 8 directions) and write "
        "its card (card.json, card.md); a model of another input or other classes is refused "
        "with the reason. With --server URL --models a,b DATA: run an evaluation job of those "
        "models on your data set on a running server, with a progress bar, and write its "
        "report (docs/evaluate.md).",
        add_arguments=_add_evaluate_arguments,
    )
    evaluate.set_defaults(func=_evaluate_main)

    from models.interop.export import add_export_subcommand

    add_export_subcommand(sub)
    from models.interop.importer import add_import_subcommand

    add_import_subcommand(sub, _default_models_dir)
    _add_service_subcommands(sub)
    return parser


def _add_service_subcommands(sub: argparse._SubParsersAction) -> None:
    """`serve` (service/cli/serve.py), `predict`, `classify`, `compare`
    (service/cli/client.py) and `keys` (service/cli/keys.py)."""
    from service.cli.client import add_client_subcommands
    from service.cli.keys import add_keys_subcommand
    from service.cli.serve import add_serve_subcommand

    add_serve_subcommand(sub)
    add_client_subcommands(sub)
    add_keys_subcommand(sub)


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
