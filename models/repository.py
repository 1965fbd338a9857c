"""The model repository: what a checkpoint is, for whom, with which shapes.

A model folder holds::

    <name>/model.keras      the Keras 3 checkpoint (fixed input shape: context frames, H, W, C)
    <name>/manifest.json    this module's Manifest, written by `framecast train`
    <name>/card.json        metrics written by `framecast evaluate` (optional until evaluated)
    <name>/card.md          the same, for people

The service reads manifests through :func:`discover` and :func:`read_manifest`; it never guesses
shapes from the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the service reads manifests without Keras
    import keras

# The names a manifest may use. Here, not in models/architectures.py, so that reading a manifest
# (the service, the client) never imports Keras.
ARCHITECTURES = ("conv2d_lstm", "convlstm2d")
TASKS = ("next_frame", "classify")
MANIFEST = "manifest.json"
CHECKPOINT = "model.keras"
CARD_JSON = "card.json"
CARD_MD = "card.md"
FORMAT_VERSION = 1
ROLLOUTS = ("sliding_window", "carried_state")
BUNDLED_DIR = Path(__file__).resolve().parent


class ManifestError(ValueError):
    """A manifest is missing, unreadable or inconsistent; the message names the file."""


@dataclass
class Manifest:
    name: str
    architecture: str  # one of ARCHITECTURES
    task: str  # one of TASKS
    frames: int  # frames of context the model takes (fixed input time axis)
    height: int
    width: int
    channels: int
    class_names: list[str] | None = None  # classify models only
    checkpoint: str = CHECKPOINT
    sha256: str = ""
    params: int = 0
    flops_per_clip: int = 0
    builder_kwargs: dict = field(default_factory=dict)
    # next_frame only: how k frames are rolled out. "sliding_window": call the model on the last
    # `frames` frames, append its prediction, drop the oldest; "carried_state": read the context
    # once, then one frame a step with every recurrent state carried (models/rollout.py)
    rollout: str = "sliding_window"
    training: dict = field(default_factory=dict)  # data, command, seed, clips seen, versions...
    format_version: int = FORMAT_VERSION

    def validate(self, where: str = "manifest") -> None:
        if self.architecture not in ARCHITECTURES:
            raise ManifestError(
                f"{where}: unknown architecture {self.architecture!r} "
                f"(known: {', '.join(ARCHITECTURES)})"
            )
        if self.task not in TASKS:
            raise ManifestError(f"{where}: unknown task {self.task!r} (known: {', '.join(TASKS)})")
        for key in ("frames", "height", "width", "channels"):
            v = getattr(self, key)
            if not isinstance(v, int) or v < 1:
                raise ManifestError(f"{where}: {key} must be a positive integer, got {v!r}")
        if self.rollout not in ROLLOUTS:
            raise ManifestError(
                f"{where}: rollout must be one of {', '.join(ROLLOUTS)}, got {self.rollout!r}"
            )
        if self.task == "classify" and not self.class_names:
            raise ManifestError(f"{where}: a classify model needs class_names")
        if os.sep in self.checkpoint or self.checkpoint.startswith(".."):
            raise ManifestError(f"{where}: checkpoint must be a file name inside the folder")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_manifest(folder: str | os.PathLike) -> Manifest:
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path} does not exist") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path} is not readable JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path} must hold a JSON object")
    known = set(Manifest.__dataclass_fields__)
    missing = {"name", "architecture", "task", "frames", "height", "width", "channels"} - set(raw)
    if missing:
        raise ManifestError(f"{path} lacks {', '.join(sorted(missing))}")
    m = Manifest(**{k: v for k, v in raw.items() if k in known})
    m.validate(str(path))
    return m


def write_manifest(folder: str | os.PathLike, manifest: Manifest) -> None:
    manifest.validate()
    atomic_write_text(Path(folder) / MANIFEST, manifest.to_json())


def read_card(folder: str | os.PathLike) -> dict | None:
    """The model card's JSON (metrics), or None when the model has not been evaluated."""
    path = Path(folder) / CARD_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path} is not readable JSON ({e})") from None


def discover(root: str | os.PathLike) -> list[Path]:
    """Model folders (those holding a manifest.json) directly under ``root``, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"models directory {root} does not exist")
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / MANIFEST).is_file())


def verify_checkpoint(folder: str | os.PathLike, manifest: Manifest) -> Path:
    """Path of the checkpoint after checking that its sha256 matches the manifest."""
    path = Path(folder) / manifest.checkpoint
    if not path.is_file():
        raise ManifestError(f"{path} (named by {Path(folder) / MANIFEST}) does not exist")
    digest = sha256_file(path)
    if manifest.sha256 and digest != manifest.sha256:
        raise ManifestError(
            f"{path} has sha256 {digest}, but its manifest says {manifest.sha256}: "
            "the file was changed or corrupted"
        )
    if not manifest.sha256:
        raise ManifestError(f"{Path(folder) / MANIFEST} has no sha256 for {path.name}")
    return path


def save_model_folder(
    folder: str | os.PathLike, model: keras.Model, manifest: Manifest
) -> Manifest:
    """Save ``model`` as ``folder/model.keras`` and its manifest (with sha256, params) atomically.

    The checkpoint is written to a temporary name and renamed, then the manifest is written: a
    crash leaves either the previous pair or a new checkpoint whose manifest still names the old
    sha256 (caught at load), never a half-written file under the final name.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / manifest.checkpoint
    tmp = folder / f".{manifest.checkpoint}.tmp.keras"
    model.save(tmp)
    os.replace(tmp, final)
    manifest.sha256 = sha256_file(final)
    manifest.params = int(model.count_params())
    write_manifest(folder, manifest)
    return manifest
