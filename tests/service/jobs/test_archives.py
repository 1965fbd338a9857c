"""Archives are unpacked under the job's folder by names framecast makes, or refused with a 4xx:
'..' and absolute paths, links, devices, too many members, zip bombs, lying headers."""

from __future__ import annotations

import pytest

from service.errors import PayloadTooLarge, UnsafeArchive
from service.jobs.archives import ArchiveLimits, check_name, unpack
from tests.service.jobs import hostile as H

LIMITS = ArchiveLimits(max_members=1000, max_unpacked_bytes=50 * 1024 * 1024)


def _unpack(tmp_path, data: bytes, kind: str, limits: ArchiveLimits = LIMITS):
    archive = tmp_path / "job" / "upload"
    archive.parent.mkdir()
    archive.write_bytes(data)
    return unpack(archive, kind, tmp_path / "job" / "members", limits)


def _nothing_escaped(tmp_path) -> None:
    escaped = [p for p in tmp_path.rglob("*") if p.name == H.ESCAPE]
    assert not escaped
    assert not (tmp_path / "job" / "members").exists()  # nothing of the refused archive kept


@pytest.mark.parametrize(
    "make, kind, needle",
    [
        (H.zip_dotdot, "zip", "'..'"),
        (H.zip_absolute, "zip", "absolute"),
        (H.zip_symlink, "zip", "symbolic link"),
        (H.zip_lying_header, "zip", "not a readable zip"),
        (H.zip_bad_crc, "zip", "not a readable zip"),
        (H.tar_symlink, "tar", "link"),
        (H.tar_hardlink, "tar", "link"),
        (H.tar_dotdot, "tar", "'..'"),
        (H.tar_device, "tar", "not a regular file"),
        (H.tar_lying_header, "tar", "not a readable tar"),
    ],
)
def test_hostile_members_are_refused_and_nothing_is_written(tmp_path, make, kind, needle):
    with pytest.raises(UnsafeArchive, match=needle) as e:
        _unpack(tmp_path, make(), kind)
    assert e.value.status == 422
    _nothing_escaped(tmp_path)


def test_a_zip_bomb_is_refused_from_its_headers_before_a_byte_is_unpacked(tmp_path):
    bomb = H.zip_bomb(200 * 1024 * 1024)  # 200 MB of zeros in a few hundred kB
    assert len(bomb) < 1024 * 1024
    with pytest.raises(PayloadTooLarge, match="FRAMECAST_JOB_MAX_UNPACKED_BYTES") as e:
        _unpack(tmp_path, bomb, "zip")
    assert e.value.status == 413
    _nothing_escaped(tmp_path)


def test_100000_members_are_refused(tmp_path):
    with pytest.raises(PayloadTooLarge, match="FRAMECAST_JOB_MAX_MEMBERS"):
        _unpack(tmp_path, H.zip_many(100_000), "zip", ArchiveLimits(50_000, 1 << 30))
    _nothing_escaped(tmp_path)


def test_members_are_written_under_names_framecast_makes(tmp_path):
    data = H.zip_of({"a/b/clip one.npy": b"1", "weird\\name.gif": b"22", "dir/": b""})
    out = _unpack(tmp_path, data, "zip")
    assert [u.name for u in out] == ["a/b/clip one.npy", "weird/name.gif"]
    assert [u.file.name for u in out] == ["m000000.npy", "m000001.gif"]
    assert all(u.file.parent == tmp_path / "job" / "members" for u in out)
    assert [u.file.read_bytes() for u in out] == [b"1", b"22"]


@pytest.mark.parametrize("name", ["", "a/../../b", "/etc/passwd", "C:/x", "a\x00b", "..\\x"])
def test_check_name_refuses_every_way_out(name):
    with pytest.raises(UnsafeArchive):
        check_name(name)


def test_check_name_keeps_a_plain_relative_path():
    assert check_name("./a//b/c.gif") == "a/b/c.gif"
