"""Model folders from a URI that every Ray node reads, checked by sha256 on each node.

``FRAMECAST_RAY_MODELS_URI`` names a folder of model folders that every node can read:
``file:///shared/models``, ``s3://bucket/models``, ``gs://bucket/models``, … read through
`fsspec <https://filesystem-spec.readthedocs.io/>`_ (``s3fs``/``gcsfs`` for the clouds: install
the one your URI needs). Each model folder there holds a ``SHA256SUMS`` (``sha256sum``'s format,
one ``<hex>  <file>`` line per file; ``python -m service.runtime.ray.model_fetch sums DIR`` writes
them for every model folder under DIR). Each replica copies its folder into a local cache named
after the sums (``~/.cache/framecast/models/<sha256 of SHA256SUMS>/<name>``, or
``FRAMECAST_MODEL_CACHE``), checks every file's sha256 on that node, and loads from the cache; a
mismatch or a missing file fails that replica with the file named, and nothing half-copied is
ever used (the copy is assembled under a temporary name and renamed into place; replicas on one
node that copy at once each verify their own copy and keep whichever landed first).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

SUMS = "SHA256SUMS"


class ModelFetchError(RuntimeError):
    """A model folder could not be fetched or did not match its sums; the message says which."""


def _fs(uri: str):  # noqa: ANN202 - an fsspec filesystem and the path inside it
    try:
        import fsspec
    except ModuleNotFoundError:
        raise ModelFetchError(
            "FRAMECAST_RAY_MODELS_URI needs fsspec: pip install 'framecast[ray]' (and s3fs or "
            "gcsfs for s3:// or gs:// URIs)"
        ) from None
    try:
        return fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as e:
        raise ModelFetchError(f"cannot read {uri}: {e}") from None


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_sums(text: str, where: str) -> dict[str, str]:
    """``SHA256SUMS`` text → file name → hex digest (files directly in the folder only)."""
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        name = name.lstrip("*")
        if len(digest) != 64 or not name or "/" in name or name.startswith("."):
            raise ModelFetchError(f"{where} line {n}: expected '<sha256>  <file name>'")
        out[name] = digest.lower()
    if not out:
        raise ModelFetchError(f"{where} lists no files")
    return out


def list_models(uri: str) -> list[str]:
    """The model folders under ``uri`` (those holding a SHA256SUMS), by name."""
    fs, root = _fs(uri)
    try:
        entries = fs.ls(root, detail=True)
    except (FileNotFoundError, OSError) as e:
        raise ModelFetchError(f"cannot list {uri}: {e}") from None
    names = []
    for entry in entries:  # (not `e`: the name of the caught exception above)
        if entry.get("type") == "directory" and fs.exists(f"{entry['name'].rstrip('/')}/{SUMS}"):
            names.append(entry["name"].rstrip("/").rsplit("/", 1)[-1])
    if not names:
        raise ModelFetchError(f"no model folder (one holding {SUMS}) under {uri}")
    return sorted(names)


def fetch(uri: str, name: str, cache: Path) -> Path:
    """``uri/name`` as a local folder, every file checked against its SHA256SUMS here."""
    fs, root = _fs(uri)
    base = f"{root.rstrip('/')}/{name}"
    try:
        sums_text = fs.cat_file(f"{base}/{SUMS}")
    except (FileNotFoundError, OSError) as e:
        raise ModelFetchError(f"{uri}/{name}/{SUMS}: {e}") from None
    sums = parse_sums(sums_text.decode("utf-8", "replace"), f"{uri}/{name}/{SUMS}")
    dest = cache / _digest(sums_text) / name
    if dest.is_dir() and all(_file_ok(dest / f, d) for f, d in sums.items()):
        return dest  # fetched before, and still intact
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{name}."))
    try:
        for file, digest in sums.items():
            try:
                fs.get_file(f"{base}/{file}", str(tmp / file))
            except (FileNotFoundError, OSError) as e:
                raise ModelFetchError(f"{uri}/{name}/{file}: {e}") from None
            if not _file_ok(tmp / file, digest):
                raise ModelFetchError(
                    f"{uri}/{name}/{file} does not match its sha256 in {SUMS} (changed or "
                    "corrupted in storage or on the way)"
                )
        try:
            os.replace(tmp, dest)  # atomic: readers see no folder or a whole one
        except OSError:  # there already: another replica on this node won, or a stale copy
            if all(_file_ok(dest / f, d) for f, d in sums.items()):
                return dest
            stale = dest.with_name(f".{name}.stale-{os.getpid()}")
            os.replace(dest, stale)
            os.replace(tmp, dest)
            shutil.rmtree(stale, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _file_ok(path: Path, digest: str) -> bool:
    if not path.is_file():
        return False
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest() == digest


def write_sums(folder: Path) -> Path:
    """Write ``folder/SHA256SUMS`` for every (non-hidden) file directly in ``folder``."""
    lines = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.name != SUMS:
            lines.append(f"{_digest(path.read_bytes())}  {path.name}")
    out = folder / SUMS
    out.write_text("\n".join(lines) + "\n")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "sums":
        print("usage: python -m service.runtime.ray.model_fetch sums MODELS_DIR", file=sys.stderr)
        return 2
    from models.repository import discover

    for folder in discover(argv[1]):
        print(write_sums(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
