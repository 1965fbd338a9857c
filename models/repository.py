"""The model repository: what a checkpoint is, for whom, with which shapes.

A model folder holds::

    <name>/model.keras      the checkpoint (Keras 3), or <name>/model.h5 (legacy HDF5, TF 2.x)
    <name>/manifest.json    optional: this module's Manifest (written by `framecast train` and
                            `framecast import`), or a partial one a user wrote (class names,
                            context, display name, description, sha256)
    <name>/card.json        metrics written by `framecast evaluate` (optional until evaluated)
    <name>/card.md          the same, for people

Whatever a manifest does not say is read from the checkpoint (``models/checkpoint.py``):
shapes, task, architecture. :func:`discover` finds the folders; :func:`read_manifest` reads a
complete manifest and :func:`read_manifest_fields` a partial one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the service reads manifests without Keras
    import keras

# The names a manifest may use. Here, not in models/architectures.py, so that reading a manifest
# (the service, the client) never imports Keras.
ARCHITECTURES = ("conv2d_lstm", "convlstm2d")  # the two framecast builds and compares
KINDS = ARCHITECTURES + ("other",)  # what a served model may be ("other": neither)
TASKS = ("next_frame", "classify")
OUTPUTS = ("sequence", "frame", "scores")  # one frame per input frame / one frame / scores
MANIFEST = "manifest.json"
CHECKPOINT = "model.keras"
CHECKPOINTS = ("model.keras", "model.h5")  # looked for, in this order, when none is named
CARD_JSON = "card.json"
CARD_MD = "card.md"
FORMAT_VERSION = 1
ROLLOUTS = ("sliding_window", "carried_state", "growing")
BUNDLED_DIR = Path(__file__).resolve().parent


class ManifestError(ValueError):
    """A manifest is missing, unreadable or inconsistent; the message names the file."""


@dataclass
class Manifest:
    name: str
    architecture: str  # one of KINDS
    task: str  # one of TASKS
    frames: int | None  # the input's time axis; None: free (any number of frames)
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
    # once, then one frame a step with every recurrent state carried (models/carried.py);
    # "growing" (free time axis): call the model on the context and every prediction so far
    rollout: str = "sliding_window"
    training: dict = field(default_factory=dict)  # data, command, seed, clips seen, versions...
    format_version: int = FORMAT_VERSION
    # what the output is: "sequence" (batch, T', H, W, C), the last frame being the next one;
    # "frame" (batch, H, W, C), the next frame (many-to-one); "scores" (batch, K)
    output: str = ""  # "" = by task: "sequence" for next_frame, "scores" for classify
    # classify with one output unit: "sigmoid" (the positive class's probability, answered with
    # its complement as two classes) or "score" (a raw score, answered as one class)
    binary: str = ""
    context: int | None = None  # free time axis only: frames read (None: all uploaded)
    display_name: str = ""
    description: str = ""
    source: str = "manifest"  # "manifest": written by framecast; "checkpoint": read from it

    def __post_init__(self) -> None:
        if not self.output:
            self.output = "scores" if self.task == "classify" else "sequence"

    @property
    def reads(self) -> int | None:
        """Frames of context one request reads: the fixed time axis, else the manifest's
        context, else None (every uploaded frame, up to the upload limit)."""
        return self.frames or self.context

    def validate(self, where: str = "manifest") -> None:
        if self.architecture not in KINDS:
            raise ManifestError(
                f"{where}: unknown architecture {self.architecture!r} (known: {', '.join(KINDS)})"
            )
        if self.task not in TASKS:
            raise ManifestError(f"{where}: unknown task {self.task!r} (known: {', '.join(TASKS)})")
        for key in ("height", "width", "channels"):
            v = getattr(self, key)
            if not isinstance(v, int) or v < 1:
                raise ManifestError(f"{where}: {key} must be a positive integer, got {v!r}")
        for key in ("frames", "context"):
            v = getattr(self, key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ManifestError(f"{where}: {key} must be a positive integer or null, got {v!r}")
        if self.frames is not None and self.context is not None and self.context != self.frames:
            raise ManifestError(
                f"{where}: context={self.context} but the model's time axis is fixed at "
                f"{self.frames} frames (context is for a free time axis)"
            )
        if self.output not in OUTPUTS:
            raise ManifestError(f"{where}: output must be one of {', '.join(OUTPUTS)}")
        if (self.output == "scores") != (self.task == "classify"):
            raise ManifestError(f"{where}: output {self.output!r} does not fit task {self.task!r}")
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


def umask() -> int:
    """This process's umask: read from /proc on Linux (changing it to read it races other
    threads), else set and put back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ordinary_mode(path: str | os.PathLike, folder: bool = False) -> None:
    """Give a file or folder made by ``mkstemp`` / ``mkdtemp`` (0600 / 0700: private) the mode
    ``open`` / ``mkdir`` would have given it (0644 / 0755 under the usual umask 022), so that a
    server running as another user (a container) can read what framecast wrote."""
    os.chmod(path, (0o777 if folder else 0o666) & ~umask())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half of one;
    the file gets the mode a plain ``open`` would give it (:func:`ordinary_mode`)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        ordinary_mode(tmp)
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
    try:
        m = Manifest(**{k: v for k, v in raw.items() if k in known})
    except TypeError as e:
        raise ManifestError(f"{path}: {e}") from None
    m.validate(str(path))
    return m


# What a user's own (partial) manifest may say; the rest is read from the checkpoint.
USER_FIELDS: dict[str, type[Any]] = {  # the model's name is its folder's
    "class_names": list,
    "labels": list,  # the same as class_names
    "context": int,
    "display_name": str,
    "description": str,
    "sha256": str,
    "checkpoint": str,
    "rollout": str,
}


def read_manifest_fields(folder: str | os.PathLike) -> dict | None:
    """The manifest of ``folder`` as a dict of known fields (None when there is none). Partial
    manifests are fine; a field of the wrong type, or unreadable JSON, is a ManifestError."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path} is not readable JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path} must hold a JSON object")
    for key, kind in USER_FIELDS.items():
        v = raw.get(key)
        if v is None:
            continue
        if not isinstance(v, kind) or (kind is int and (isinstance(v, bool) or v < 1)):
            raise ManifestError(f"{path}: {key} must be a {kind.__name__}, got {v!r}")
        if kind is list and (not v or not all(isinstance(x, str) and x for x in v)):
            raise ManifestError(f"{path}: {key} must be a non-empty list of names")
    if raw.get("labels") is not None and raw.get("class_names") is None:
        raw["class_names"] = raw["labels"]
    return raw


def find_checkpoint(folder: str | os.PathLike, named: str | None = None) -> Path | None:
    """The checkpoint file of ``folder``: the one ``named``, else model.keras, else model.h5."""
    folder = Path(folder)
    for name in [named] if named else CHECKPOINTS:
        if (folder / name).is_file():
            return folder / name
    return None


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


def is_model_folder(path: Path) -> bool:
    """A folder holding a manifest.json, a model.keras or a model.h5, or numbered version
    folders that do (``models/versions.py``); hidden ones are not."""
    if not path.is_dir() or path.name.startswith("."):
        return False
    if any((path / f).is_file() for f in (MANIFEST,) + CHECKPOINTS):
        return True
    return any(
        v.is_dir()
        and v.name.isdigit()
        and any((v / f).is_file() for f in (MANIFEST,) + CHECKPOINTS)
        for v in path.iterdir()
    )


def discover(root: str | os.PathLike) -> list[Path]:
    """Model folders (holding a manifest.json, model.keras or model.h5) directly under
    ``root``, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"models directory {root} does not exist")
    return sorted(p for p in root.iterdir() if is_model_folder(p))


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
