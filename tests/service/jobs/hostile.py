"""Hostile data set archives, made byte by byte: each tries to write outside the job's folder, to
unpack to far more than it weighs, or lies about its members. ``ESCAPE`` is the name every
escaping member aims for (a test checks that no file of that name appears anywhere near)."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib

ESCAPE = "framecast_escaped.txt"


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def zip_dotdot() -> bytes:
    return zip_of({"clips/a.npy": b"x", f"../../{ESCAPE}": b"owned"})


def zip_absolute() -> bytes:
    return zip_of({f"/tmp/{ESCAPE}": b"owned"})


def zip_symlink() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("clips/link.gif")
        info.external_attr = 0o120777 << 16  # a symbolic link, as Info-ZIP stores one
        z.writestr(info, f"../../../{ESCAPE}")
    return buf.getvalue()


def zip_many(n: int) -> bytes:
    """``n`` empty members (a zip of 100,000 members weighs a few MB)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(n):
            z.writestr(f"m/{i}.txt", b"")
    return buf.getvalue()


def zip_bomb(unpacked: int) -> bytes:
    """One member of ``unpacked`` zero bytes, deflated to a thousandth of that."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("clips/zeros.npy", "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            left = unpacked
            while left > 0:
                f.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
    return buf.getvalue()


def zip_lying_header(data: bytes = b"\x93NUMPY" + bytes(4000)) -> bytes:
    """A stored member whose headers declare 10 bytes where it holds ``len(data)``."""
    raw = bytearray(zip_of({"clips/a.npy": data}))
    # local file header: sizes at offsets 18 (compressed) and 22 (uncompressed)
    struct.pack_into("<II", raw, 18, 10, 10)
    cd = raw.rfind(b"PK\x01\x02")  # central directory entry: sizes at 20 and 24
    struct.pack_into("<II", raw, cd + 20, 10, 10)
    return bytes(raw)


def zip_bad_crc() -> bytes:
    raw = bytearray(zip_of({"clips/a.npy": b"\x93NUMPY" + bytes(100)}))
    struct.pack_into("<I", raw, 14, zlib.crc32(b"other"))  # the local header's CRC-32
    cd = raw.rfind(b"PK\x01\x02")
    struct.pack_into("<I", raw, cd + 16, zlib.crc32(b"other"))
    return bytes(raw)


def tar_of(members: list[tarfile.TarInfo], data: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for info in members:
            payload = data.get(info.name)
            t.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def tar_symlink() -> bytes:
    link = tarfile.TarInfo("clips/a.gif")
    link.type, link.linkname = tarfile.SYMTYPE, f"/tmp/{ESCAPE}"
    return tar_of([link], {})


def tar_hardlink() -> bytes:
    link = tarfile.TarInfo("clips/a.gif")
    link.type, link.linkname = tarfile.LNKTYPE, f"../../{ESCAPE}"
    return tar_of([link], {})


def tar_dotdot() -> bytes:
    info = tarfile.TarInfo(f"../{ESCAPE}")
    info.size = 5
    return tar_of([info], {info.name: b"owned"})


def tar_lying_header() -> bytes:
    """A member whose header declares more bytes than the archive holds (truncated data)."""
    info = tarfile.TarInfo("clips/a.npy")
    info.size = 3000
    raw = tar_of([info], {info.name: bytes(3000)}, mode="w")
    return raw[:1024]  # the header and 512 bytes of its data


def tar_device() -> bytes:
    info = tarfile.TarInfo("clips/dev")
    info.type = tarfile.CHRTYPE
    return tar_of([info], {})
