"""`framecast export NAME --format saved_model OUT/`: a model folder as a TensorFlow SavedModel.

The SavedModel is what TF Serving (and anything else that reads SavedModels) loads. It is written
with Keras 3's ``model.export(..., format="tf_saved_model")`` and has one endpoint, ``serve``,
taking the model's input ``(batch, frames, height, width, channels)`` float32 in [0, 1] and
returning what the ``.keras`` checkpoint returns. The folder's manifest is copied to
``OUT/assets.extra/framecast-manifest.json`` (TF Serving ignores ``assets.extra``) so the export
still says which shapes and classes it has.

TF Serving wants numbered versions under a base path: export to ``<base>/<name>/1`` and serve
``--model_base_path=<base>/<name>``.

Writes are atomic: the export goes to a hidden temporary folder beside ``OUT`` and is renamed
into place, so ``OUT`` is never half-written. A non-empty ``OUT`` is kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from models.repository import (
    BUNDLED_DIR,
    MANIFEST,
    ManifestError,
    discover,
    ordinary_mode,
    read_manifest,
    verify_checkpoint,
)

FORMATS = ("saved_model",)
MANIFEST_COPY = Path("assets.extra") / "framecast-manifest.json"


class ExportError(ValueError):
    """The export cannot be done as asked (unknown model, OUT in the way); the message says why."""


def resolve_model_folder(name: str, models_dir: str | os.PathLike | None = None) -> Path:
    """``name`` as a model folder under ``models_dir`` (default: the bundled models), or a path."""
    root = Path(models_dir) if models_dir is not None else BUNDLED_DIR
    candidate = root / name
    if (candidate / MANIFEST).is_file():
        return candidate
    as_path = Path(name)
    if (as_path / MANIFEST).is_file():
        return as_path
    try:
        known = ", ".join(p.name for p in discover(root)) or "none"
    except ManifestError:
        known = f"none: {root} does not exist"
    raise ExportError(
        f"unknown model {name!r}: no {MANIFEST} in {candidate} or {as_path} "
        f"(models in {root}: {known})"
    )


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder; choose another OUT")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} exists and is not empty; pass --force to replace it")


def export_saved_model(
    name: str,
    out: str | os.PathLike,
    *,
    models_dir: str | os.PathLike | None = None,
    force: bool = False,
) -> Path:
    """Export model ``name`` (see :func:`resolve_model_folder`) to ``out``; returns ``out``."""
    out = Path(out)
    folder = resolve_model_folder(name, models_dir)
    _check_out(out, force)  # before the (slow) load: fail fast
    manifest = read_manifest(folder)
    checkpoint = verify_checkpoint(folder, manifest)

    import keras

    model = keras.models.load_model(checkpoint, safe_mode=True, compile=False)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".export.tmp"))
    old = None
    try:
        ordinary_mode(tmp, folder=True)  # TF Serving may run as another user (a container)
        model.export(str(tmp), format="tf_saved_model", verbose=False)
        (tmp / MANIFEST_COPY).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / MANIFEST, tmp / MANIFEST_COPY)
        _check_out(out, force)  # again: OUT may have appeared while exporting
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old.tmp"))
            os.rename(out, old / out.name)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():  # put the previous export back
            os.rename(old / out.name, out)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out


def _export_main(args: argparse.Namespace) -> int:
    try:
        out = export_saved_model(args.name, args.out, models_dir=args.models_dir, force=args.force)
    except (ExportError, ManifestError) as e:
        print(f"framecast export: error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


def add_export_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``export`` on an argparse ``add_subparsers()`` object."""
    parser = subparsers.add_parser(
        "export",
        help="write a model as a TensorFlow SavedModel (for TF Serving)",
        description="Export a model folder as a TensorFlow SavedModel with one `serve` endpoint. "
        "For TF Serving, export to <base>/<name>/<version>, e.g. serving/m/1.",
    )
    parser.add_argument(
        "name",
        metavar="NAME",
        help="a model folder name under --models-dir, or a path to a model folder",
    )
    parser.add_argument("out", metavar="OUT", help="the SavedModel folder to write")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="saved_model",
        help="output format (default: %(default)s)",
    )
    parser.add_argument(
        "--models-dir",
        default=None,
        help=f"folder of model folders (default: the bundled {BUNDLED_DIR})",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace OUT when it exists and is not empty"
    )
    parser.set_defaults(func=_export_main)
    return parser
