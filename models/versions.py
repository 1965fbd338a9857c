"""Numbered model versions: the layout, the version policy and the labels.

A model folder is either flat (today's layout, served as version 1)::

    <name>/model.keras

(a flat folder that gains numbered folders beside its checkpoint, ``<name>/2/model.keras``,
keeps its checkpoint as version 1) or holds numbered versions, the layout TF Serving and Triton
read::

    <name>/1/model.keras        each version is a flat model folder of its own (manifest,
    <name>/2/model.keras        card and checkpoint); the model's name is <name>
    <name>/manifest.json        optional: {"version_policy": ...} for this model
    <name>/labels.json          optional: {"stable": 1, "canary": 2}, written by the
                                repository API when a label moves

Which versions are served is the version policy (Triton's three kinds): the latest ``n``, all,
or specific ones. It is read from the model's top-level manifest, else the
``FRAMECAST_VERSION_POLICY`` setting (``latest:1`` by default, as in both servers). Without a
version a request reaches the highest version served.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from models.repository import CHECKPOINTS, MANIFEST, ManifestError, atomic_write_text

LABELS = "labels.json"
KINDS = ("latest", "all", "specific")
FLAT = 1  # the version a flat folder serves as


@dataclass(frozen=True)
class VersionPolicy:
    """``kind`` latest (the ``n`` highest versions), all, or specific (``versions``)."""

    kind: str = "latest"
    n: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: list[int]) -> list[int]:
        """The versions of ``available`` this policy serves, in ascending order."""
        have = sorted(set(available))
        if self.kind == "all":
            return have
        if self.kind == "specific":
            return [v for v in have if v in self.versions]
        return have[-self.n :]

    def as_config(self) -> dict:
        """The policy in Triton's model-configuration JSON shape."""
        if self.kind == "all":
            return {"all": {}}
        if self.kind == "specific":
            return {"specific": {"versions": list(self.versions)}}
        return {"latest": {"num_versions": self.n}}

    def __str__(self) -> str:
        if self.kind == "all":
            return "all"
        if self.kind == "specific":
            return "specific:" + ",".join(map(str, self.versions))
        return f"latest:{self.n}"


def _positive(v: object, where: str, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ManifestError(f"{where}: {what} must be a positive integer, got {v!r}")
    return v


def parse_policy(value: object, where: str = "version policy") -> VersionPolicy:
    """A policy from the setting's text (``latest:2``, ``all``, ``specific:1,3``) or a
    manifest's JSON (``{"latest": {"num_versions": 2}}`` or ``{"latest": 2}``, ``{"all": {}}``
    or ``"all"``, ``{"specific": {"versions": [1, 3]}}`` or ``{"specific": [1, 3]}``)."""
    if isinstance(value, str):
        kind, _, arg = value.strip().partition(":")
        if kind == "all" and not arg:
            return VersionPolicy("all")
        if kind == "latest":
            text = arg or "1"
            if not text.isdigit():
                raise ManifestError(f"{where}: latest:N needs a positive integer, got {arg!r}")
            return VersionPolicy("latest", _positive(int(text), where, "latest's N"))
        if kind == "specific" and arg:
            parts = [p.strip() for p in arg.split(",")]
            if not all(p.isdigit() for p in parts):
                raise ManifestError(f"{where}: specific:1,3 lists version numbers, got {arg!r}")
            return parse_policy({"specific": [int(p) for p in parts]}, where)
        raise ManifestError(
            f"{where}: {value!r} is not a version policy (latest:N, all or specific:1,3)"
        )
    if not isinstance(value, dict) or len(value) != 1:
        raise ManifestError(
            f'{where}: a version policy is one of {{"latest": N}}, {{"all": {{}}}} or '
            f'{{"specific": [1, 3]}}, got {value!r}'
        )
    ((kind, arg),) = value.items()
    if kind == "all":
        return VersionPolicy("all")
    if kind == "latest":
        n = arg.get("num_versions", 1) if isinstance(arg, dict) else arg
        return VersionPolicy("latest", _positive(n, where, "latest's num_versions"))
    if kind == "specific":
        vs = arg.get("versions") if isinstance(arg, dict) else arg
        if not isinstance(vs, list) or not vs:
            raise ManifestError(f"{where}: specific needs a non-empty list of versions")
        return VersionPolicy(
            "specific", versions=tuple(_positive(v, where, "a version") for v in vs)
        )
    raise ManifestError(f"{where}: unknown version policy {kind!r} (known: {', '.join(KINDS)})")


def is_versioned(folder: Path) -> bool:
    """``folder`` holds numbered version folders (not a flat model folder)."""
    return bool(version_folders(folder))


def version_folders(folder: Path) -> dict[int, Path]:
    """The numbered version folders of ``folder`` (``1/``, ``2/``… holding a checkpoint or a
    manifest), by number."""
    out = {}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return {}
    for e in entries:
        if e.is_dir() and e.name.isdigit() and int(e.name) > 0:
            p = Path(e.path)
            if any((p / f).is_file() for f in (MANIFEST,) + CHECKPOINTS):
                out[int(e.name)] = p
    return dict(sorted(out.items()))


def versions_of(folder: Path) -> dict[int, Path]:
    """Every version a model folder holds → its folder: a flat folder is version 1, and stays
    version 1 when numbered folders are added beside its checkpoint (``2/``, ``3/``: a flat
    model gaining versions, as its users would add them). A checkpoint beside a ``1/`` folder
    is a ManifestError (two versions 1: which is served?)."""
    found = version_folders(folder)
    if not found:
        return {FLAT: folder}
    stray = [c for c in CHECKPOINTS if (folder / c).is_file()]
    if stray and FLAT in found:
        raise ManifestError(
            f"{folder} holds both {stray[0]} and numbered version folders "
            f"({', '.join(map(str, found))}): the checkpoint beside them is version {FLAT}, "
            f"as a flat folder's, and so is {FLAT}/; move the checkpoint into a version folder "
            "of its own (or remove one of them)"
        )
    return {FLAT: folder, **found} if stray else found


def read_policy(folder: Path, default: VersionPolicy) -> VersionPolicy:
    """A versioned folder's policy: its top-level manifest's ``version_policy``, else
    ``default``. (A flat folder has one version: the policy does not apply.)"""
    path = folder / MANIFEST
    if not version_folders(folder) or not path.is_file():
        return default
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ManifestError(f"{path} is not readable JSON ({e})") from None
    if not isinstance(raw, dict) or raw.get("version_policy") is None:
        return default
    return parse_policy(raw["version_policy"], f"{path}: version_policy")


def read_labels(folder: Path) -> dict[str, int]:
    """The labels of a model folder (``labels.json``): label → version; {} when none."""
    path = folder / LABELS
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ManifestError(f"{path} is not readable JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path} must hold an object of label → version")
    out = {}
    for label, v in raw.items():
        check_label(label, str(path))
        out[label] = _positive(v, str(path), f"label {label!r}'s version")
    return out


LABEL_CHARS = 64  # the longest label
_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def check_label(label: object, where: str = "label") -> str:
    """A label is a name that is not a number (a number is a version): 1 to 64 letters, digits
    and ``. _ -``, not starting with a dot (so no path, no control character, nothing that
    forges a log line where a label is logged)."""
    if (
        not isinstance(label, str)
        or not 0 < len(label) <= LABEL_CHARS
        or not _LABEL.fullmatch(label)
        or label.isdigit()
    ):
        shown = (
            repr(label[:40]) + ("…" if len(label) > 40 else "")
            if isinstance(label, str)
            else (type(label).__name__)
        )
        raise ManifestError(
            f"{where}: a label is a name of 1 to {LABEL_CHARS} letters, digits and . _ - "
            f"(not starting with a dot, not a number, not a path); got {shown}"
            + (f" ({len(label)} characters)" if isinstance(label, str) else "")
        )
    return label


def write_labels(folder: Path, labels: dict[str, int]) -> None:
    """Persist ``labels`` as ``folder/labels.json`` (atomically: the old file or the new one)."""
    atomic_write_text(folder / LABELS, json.dumps(dict(sorted(labels.items())), indent=2) + "\n")


__all__ = [
    "FLAT",
    "LABELS",
    "VersionPolicy",
    "check_label",
    "is_versioned",
    "parse_policy",
    "read_labels",
    "read_policy",
    "version_folders",
    "versions_of",
    "write_labels",
]
