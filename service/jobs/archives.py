"""Data set archives (.zip, .tar, .tar.gz/.bz2/.xz): every member checked, then unpacked under the
job's folder by a name framecast makes, never by the member's own.

Refused with a 4xx before anything is unpacked: a member path that is absolute or holds '..'
(422 :class:`~service.errors.UnsafeArchive`), a link (symbolic or hard), a device or FIFO
member (422), an encrypted member (422), more members than FRAMECAST_JOB_MAX_MEMBERS (413, found
while the index is read: the rest is not read) and members that declare more bytes in all than
FRAMECAST_JOB_MAX_UNPACKED_BYTES (413: a zip bomb). While unpacking, each member's bytes are
counted against what its header declares and the archive's checksums are checked (Python's
``zipfile`` and ``tarfile`` do): a header that lies about its data is a 422. Since every file is
written as ``<dest>/m000017.<ext>``, no member name can reach outside ``dest``, whatever it says.
"""

from __future__ import annotations

import re
import shutil
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from service.errors import PayloadTooLarge, UnsafeArchive

CHUNK = 1 << 20
_EXT = re.compile(r"^\.[a-z0-9]{1,8}$")
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class Unpacked:
    """One regular file of the archive: its path inside it and where it was written."""

    name: str  # '/'-separated, relative, checked
    file: Path
    size: int


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int
    max_unpacked_bytes: int


def check_name(name: str) -> str:
    """The member's path, '/'-separated; UnsafeArchive when it is absolute or climbs out."""
    shown = name[:200]
    if not name or "\x00" in name:
        raise UnsafeArchive(
            f"the archive holds a member with an empty or NUL-bearing name: {shown!r}"
        )
    path = name.replace("\\", "/")
    if path.startswith("/") or _DRIVE.match(path):
        raise UnsafeArchive(
            f"the archive's member {shown!r} has an absolute path; members must be relative "
            "(nothing is unpacked outside the job's folder)"
        )
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(
            f"the archive's member {shown!r} climbs out of its folder with '..'; nothing was "
            "unpacked"
        )
    return "/".join(parts)


def _ext(name: str) -> str:
    ext = PurePosixPath(name).suffix.lower()
    return ext if _EXT.match(ext) else ""


def _count(n: int, limits: ArchiveLimits) -> None:
    if n > limits.max_members:
        raise PayloadTooLarge(
            f"the archive holds more than {limits.max_members} members "
            "(FRAMECAST_JOB_MAX_MEMBERS); nothing was unpacked"
        )


def _declared(total: int, limits: ArchiveLimits) -> None:
    if total > limits.max_unpacked_bytes:
        raise PayloadTooLarge(
            f"the archive's members declare {total} bytes unpacked; at most "
            f"{limits.max_unpacked_bytes} (FRAMECAST_JOB_MAX_UNPACKED_BYTES): a data set that "
            "large, or a zip bomb; nothing was unpacked"
        )


def _copy(src: IO[bytes], dest: Path, name: str, declared: int) -> int:
    """Write ``src`` to ``dest``, at most ``declared`` bytes; a member with more is a lie."""
    seen = 0
    with open(dest, "wb") as out:
        while True:
            chunk = src.read(min(CHUNK, declared - seen + 1))
            if not chunk:
                break
            seen += len(chunk)
            if seen > declared:
                raise UnsafeArchive(
                    f"the archive's member {name!r} unpacks to more than the {declared} bytes "
                    "its header declares (a lying header); nothing is kept"
                )
            out.write(chunk)
    if seen != declared:
        raise UnsafeArchive(
            f"the archive's member {name!r} holds {seen} bytes where its header declares "
            f"{declared} (a lying or truncated header)"
        )
    return seen


def _zip(path: Path, dest: Path, limits: ArchiveLimits) -> list[Unpacked]:
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        _count(len(infos), limits)
        files = []
        total = 0
        for info in infos:
            name = check_name(info.filename)
            mode = (info.external_attr >> 16) & 0o170000
            if mode == 0o120000:
                raise UnsafeArchive(
                    f"the archive's member {info.filename!r} is a symbolic link; links are "
                    "refused (nothing was unpacked)"
                )
            if mode not in (0, 0o100000, 0o040000):
                raise UnsafeArchive(f"the archive's member {info.filename!r} is not a regular file")
            if info.flag_bits & 0x1:
                raise UnsafeArchive(f"the archive's member {info.filename!r} is encrypted")
            if info.is_dir() or mode == 0o040000:
                continue
            total += info.file_size
            _declared(total, limits)
            files.append((name, info))
        out = []
        for i, (name, info) in enumerate(files):
            target = dest / f"m{i:06d}{_ext(name)}"
            with z.open(info) as src:
                size = _copy(src, target, name, info.file_size)
            out.append(Unpacked(name, target, size))
        return out


def _tar(path: Path, dest: Path, limits: ArchiveLimits) -> list[Unpacked]:
    out: list[Unpacked] = []
    with tarfile.open(path, "r:*") as t:
        n = total = 0
        members = []
        while True:
            m = t.next()
            if m is None:
                break
            n += 1
            _count(n, limits)
            name = check_name(m.name)
            if m.issym() or m.islnk():
                raise UnsafeArchive(
                    f"the archive's member {m.name!r} is a link to {m.linkname!r}; links are "
                    "refused (nothing was unpacked)"
                )
            if m.isdir():
                continue
            if not m.isreg() or m.issparse():
                raise UnsafeArchive(
                    f"the archive's member {m.name!r} is not a regular file (a device, FIFO or "
                    "sparse file); refused"
                )
            total += m.size
            _declared(total, limits)
            members.append((name, m))
        for i, (name, m) in enumerate(members):
            src = t.extractfile(m)
            assert src is not None, "a regular member has data"
            target = dest / f"m{i:06d}{_ext(name)}"
            out.append(Unpacked(name, target, _copy(src, target, name, m.size)))
    return out


def unpack(path: Path, kind: str, dest: Path, limits: ArchiveLimits) -> list[Unpacked]:
    """Every regular file of the archive at ``path`` (``kind``: zip or tar), written under
    ``dest``; raises 413/422 (nothing is left in ``dest`` then)."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return (_zip if kind == "zip" else _tar)(path, dest, limits)
    except (UnsafeArchive, PayloadTooLarge):
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as e:
        shutil.rmtree(dest, ignore_errors=True)
        what = "zip" if kind == "zip" else "tar"
        raise UnsafeArchive(
            f"the data set is not a readable {what} archive: {type(e).__name__}: {e} (a "
            "truncated file, a bad checksum or a header that does not match its data)"
        ) from None
    except (NotImplementedError, RuntimeError) as e:  # zipfile: an unknown compression method
        shutil.rmtree(dest, ignore_errors=True)
        raise UnsafeArchive(f"the archive cannot be unpacked: {e}") from None
