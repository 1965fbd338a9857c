"""`framecast import PATH`: take a user's own Keras checkpoint into a models folder.

It loads the file in safe mode, reads what it is (``models/checkpoint.py``: shapes, task,
architecture, labels), makes one timed call, and writes ``DIR/NAME/`` with the checkpoint and a
manifest carrying its sha256, readable by every user as a plain copy would be (0644 files in a
0755 folder under the usual umask), so a server running as another user (a container) reads
it. What it cannot serve (several inputs, a wrong rank, a Lambda layer in safe mode, a corrupt
file) is refused with one line, and nothing is written: the folder is assembled under a hidden
temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.repository import MANIFEST, ordinary_mode, write_manifest

if TYPE_CHECKING:  # annotations only
    import keras

    from models.repository import Manifest

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ImportRefused(ValueError):
    """The checkpoint cannot be imported as asked; the message says what and why."""


def add_import_subcommand(
    sub: argparse._SubParsersAction, default_models_dir: Callable[[], Path]
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "import",
        help="take your own .keras/.h5 video model into a models folder, ready to serve",
        description="Load a Keras checkpoint in safe mode, print what framecast reads from it "
        "(shapes, task, architecture, labels, params, one timed call) and write "
        "DIR/NAME/ (the checkpoint and a manifest with its sha256). Nothing is written "
        "when the model cannot be served.",
    )
    p.add_argument("path", help="the checkpoint: a .keras file, or a legacy .h5 (TF 2.x)")
    p.add_argument("--name", help="model name (default: the file name without its suffix)")
    p.add_argument(
        "--labels",
        help="class names, comma-separated (a one-unit sigmoid head: negative,positive)",
    )
    p.add_argument(
        "--context",
        type=int,
        help="free time axis only: frames one request reads (default: all uploaded)",
    )
    p.add_argument("--display-name", default="", help="a name for people (the web page)")
    p.add_argument("--description", default="", help="one line on what the model does")
    p.add_argument(
        "--models-dir",
        help="where to write NAME/ (default: FRAMECAST_MODELS_DIR, else what `framecast "
        "serve` serves by default)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing DIR/NAME/")
    p.add_argument(
        "--quiet", action="store_true", help="no progress display while it loads and times"
    )
    p.set_defaults(func=import_main, default_models_dir=default_models_dir)
    return p


def _timed_call(model: keras.Model, manifest: Manifest) -> tuple[float, float, tuple]:
    """Two calls on a zero clip (the first compiles): (first ms, second ms, output shape)."""
    import numpy as np

    from models.interop.adapters import PerLength, at_length

    t = manifest.frames or manifest.context or 10
    x = np.zeros((1, t, manifest.height, manifest.width, manifest.channels), np.float32)
    fn = model if manifest.frames else PerLength(at_length(model))
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        out = fn.predict_on_batch(x)
        times.append((time.perf_counter() - t0) * 1000.0)
    return times[0], times[1], tuple(np.shape(out))


def import_checkpoint(
    path: str | os.PathLike,
    models_dir: str | os.PathLike,
    *,
    name: str | None = None,
    labels: list[str] | None = None,
    context: int | None = None,
    display_name: str = "",
    description: str = "",
    force: bool = False,
    say: Callable[[str], object] = print,
    quiet: bool = False,
) -> Path:
    """Import one checkpoint; returns the written folder. Raises ImportRefused / CheckpointError.

    While it loads, reads and times the model, a terminal shows the stage on stderr (cleared
    before the report); a log gets no such lines (the report is the log), nor does ``quiet``."""
    from models.checkpoint import load, manifest_for
    from models.runs.progress import progress

    src = Path(path)
    if src.is_dir():
        raise ImportRefused(
            f"{src} is a folder (a SavedModel?); framecast imports a .keras or .h5 file: "
            "save the model with model.save('model.keras')"
        )
    name = name or src.stem
    if not NAME.match(name):
        raise ImportRefused(
            f"model name {name!r} must be letters, digits, '.', '_' or '-' (and start with a "
            "letter or digit); choose one with --name"
        )
    if context is not None and context < 1:
        raise ImportRefused(f"--context must be a positive number of frames, got {context}")
    root = Path(models_dir)
    dest = root / name
    if dest.exists() and not force:
        raise ImportRefused(f"{dest} exists; choose another --name or pass --force")
    with progress(None, desc="import", quiet=quiet, lines=False) as shown:
        shown.stage(f"loading {src.name}…")
        model = load(src)
        shown.stage("reading shapes…")
        fields: dict[str, Any] = {
            "context": context,
            "display_name": display_name,
            "description": description,
        }
        if labels:
            fields["class_names"] = labels
        manifest = manifest_for(dest, model, fields, Path(f"model{src.suffix}"))
        manifest.training = {"imported_from": str(src.resolve())}
        shown.stage("timing a call…")
        first, second, out_shape = _timed_call(model, manifest)
    m = manifest
    say(f"checkpoint   {src} ({src.stat().st_size / 1e6:.1f} MB)")
    say(f"input        (batch, {m.frames or 'any'}, {m.height}, {m.width}, {m.channels})")
    say(f"output       {out_shape[1:]} per clip -> {m.output}")
    say(f"task         {m.task}" + (f" ({m.binary} head)" if m.binary else ""))
    say(f"architecture {m.architecture}")
    if m.class_names:
        say(f"labels       {', '.join(m.class_names)}")
    if m.frames is None:
        say(f"context      {m.context or 'every uploaded frame (free time axis)'}")
    say(f"params       {m.params:,}")
    say(f"one call     {first:.1f} ms (first, compiles), {second:.1f} ms (second), batch 1")

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.import-"))
    try:
        ordinary_mode(tmp, folder=True)  # readable by a server running as another user
        shutil.copyfile(src, tmp / m.checkpoint)
        from models.repository import sha256_file

        m.sha256 = sha256_file(tmp / m.checkpoint)
        write_manifest(tmp, m)
        if dest.exists():
            old = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.old-"))
            os.replace(dest, old / name)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"wrote        {dest}/ ({m.checkpoint}, {MANIFEST}; sha256 {m.sha256[:12]}...)")
    say(f"serve it     framecast serve --models-dir {root}")
    return dest


def import_main(args: argparse.Namespace) -> int:
    models_dir = args.models_dir
    if models_dir is None:  # the caller's default (the CLI: what `framecast serve` serves)
        models_dir = args.default_models_dir()
    labels = [x.strip() for x in args.labels.split(",") if x.strip()] if args.labels else None
    import_checkpoint(
        args.path,
        models_dir,
        name=args.name,
        labels=labels,
        context=args.context,
        display_name=args.display_name,
        description=args.description,
        force=args.force,
        quiet=getattr(args, "quiet", False),
    )
    return 0
