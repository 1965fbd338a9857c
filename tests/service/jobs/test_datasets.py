"""Data sets in the forms users have them → clips and labels, decoded as uploads are."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from service.errors import FrameDecodeError, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.jobs.archives import ArchiveLimits
from service.jobs.datasets import open_dataset
from service.media.frames import Limits
from tests.service.helpers import clip, encode, npy, png
from tests.service.jobs.hostile import zip_of

LIMITS = Limits(64, 4096 * 4096, 64 * 1024 * 1024)


def _open(tmp_path, data: bytes, **kw):
    path = tmp_path / "dataset.upload"
    path.write_bytes(data)
    kw.setdefault("max_clips", 100)
    return open_dataset(
        path,
        tmp_path,
        limits=LIMITS,
        archive=ArchiveLimits(1000, 1 << 30),
        max_video_frames=kw.pop("max_video_frames", 500),
        **kw,
    )


def test_an_npy_of_uint8_clips_is_memory_mapped_and_kept_as_bytes(tmp_path):
    clips = np.stack([clip(t=5, seed=i) for i in range(3)])  # (3, 5, 16, 16)
    ds = _open(tmp_path, npy(clips))
    assert ds.form == "npy" and len(ds.clips) == 3 and isinstance(ds.array, np.memmap)
    frames = ds.frames(2)
    assert len(frames) == 5 and frames[0].u8 is not None
    np.testing.assert_array_equal(frames[4].u8[..., 0], clips[2, 4])
    assert ds.summary()["frames_per_clip"] == 5


def test_float_clips_outside_0_1_are_a_422_naming_the_clip(tmp_path):
    clips = np.full((2, 4, 8, 8, 1), 2.0, np.float32)
    ds = _open(tmp_path, npy(clips))
    with pytest.raises(FrameDecodeError, match="clip 'clip 1'.*\\[0, 1\\]"):
        ds.frames(1)


def test_an_npz_brings_labels_by_index_or_name(tmp_path):
    clips = np.stack([clip(seed=i) for i in range(4)])
    buf = io.BytesIO()
    np.savez_compressed(buf, clips=clips, labels=np.array([0, 3, 1, 3]))
    ds = _open(tmp_path, buf.getvalue())
    assert ds.form == "npz" and [c.label for c in ds.clips] == ["0", "3", "1", "3"]
    assert ds.labels_from == "labels (.npz)"
    buf = io.BytesIO()
    np.savez(buf, clips=clips, labels=np.array(["E", "N", "W", "S"]))
    (tmp_path / "2").mkdir()
    ds = _open(tmp_path / "2", buf.getvalue())
    assert [c.label for c in ds.clips] == ["E", "N", "W", "S"]


def test_a_zip_of_gifs_npys_and_image_folders_with_labels_from_folders(tmp_path):
    members = {
        "E/one.gif": encode(clip(seed=1), "GIF"),
        "N/two.npy": npy(clip(seed=2)),
        "W/three/0010.png": png(clip(seed=3)[1]),
        "W/three/0002.png": png(clip(seed=3)[0]),  # name order: 2 before 10
        "README.txt": b"hello",
        "__MACOSX/E/._one.gif": b"junk",
    }
    ds = _open(tmp_path, zip_of(members))
    assert [(c.name, c.label) for c in ds.clips] == [
        ("E/one", "E"),
        ("N/two", "N"),
        ("W/three", "W"),
    ]
    assert ds.labels_from == "folder names"
    assert sorted(ds.ignored) == ["README.txt", "__MACOSX/E/._one.gif"]
    frames = ds.frames(2)
    np.testing.assert_array_equal(frames[0].u8[..., 0], clip(seed=3)[0])
    assert len(ds.frames(0)) == 4


def test_a_tar_gz_with_labels_csv(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in {
            "clips/a.gif": encode(clip(seed=1), "GIF"),
            "clips/b.gif": encode(clip(seed=2), "GIF"),
            "labels.csv": b"clip,label\nclips/a.gif,left\nclips/b,right\n",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    ds = _open(tmp_path, buf.getvalue())
    assert ds.form == "tar" and [c.label for c in ds.clips] == ["left", "right"]
    assert ds.labels_from == "labels.csv"


def test_labels_csv_naming_an_unknown_clip_is_a_422(tmp_path):
    data = zip_of({"a.gif": encode(clip(), "GIF"), "labels.csv": b"nope.gif,x\n"})
    with pytest.raises(InvalidInput, match="'nope.gif'"):
        _open(tmp_path, data)


def test_a_video_is_cut_into_windows(tmp_path):
    av = pytest.importorskip("av")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        s = out.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for i in range(25):
            img = np.zeros((32, 32, 3), np.uint8)
            img[:, i : i + 4] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    data = buf.getvalue()
    with pytest.raises(InvalidInput, match="window="):
        _open(tmp_path, data)
    ds = _open(tmp_path, data, window=10, stride=5)
    assert ds.form == "video" and [c.index for c in ds.clips] == [0, 5, 10, 15]
    assert len(ds.frames(3)) == 10
    with pytest.raises(PayloadTooLarge, match="FRAMECAST_JOB_MAX_CLIPS"):
        _open(tmp_path, data, window=2, stride=1, max_clips=5)


@pytest.mark.parametrize(
    "data, error, needle",
    [
        (b"GIF89a" + bytes(20), UnsupportedMediaType, "not a form framecast reads"),
        (npy(np.zeros((3, 8, 8), np.uint8)), FrameDecodeError, "\\(N, T, H, W\\)"),
        (npy(np.zeros((2, 3, 4, 4), np.int64)), FrameDecodeError, "dtype int64"),
        (npy(np.zeros((200, 2, 4, 4), np.uint8)), PayloadTooLarge, "FRAMECAST_JOB_MAX_CLIPS"),
        (npy(np.zeros((4, 3, 8, 8), np.uint8))[:-100], FrameDecodeError, "truncated"),
        (zip_of({"README.txt": b"x"}), InvalidInput, "holds no clip"),
    ],
)
def test_what_a_data_set_gets_wrong_is_a_4xx_saying_what(tmp_path, data, error, needle):
    with pytest.raises(error, match=needle):
        _open(tmp_path, data)


def test_labels_as_whole_floats_or_one_hot_rows_are_class_indices(tmp_path):
    clips = np.stack([clip(seed=i) for i in range(3)])
    for labels in (np.array([1.0, 0.0, 1.0], np.float32), np.eye(2, dtype=np.float32)[[1, 0, 1]]):
        folder = tmp_path / str(labels.ndim)
        folder.mkdir()
        buf = io.BytesIO()
        np.savez(buf, clips=clips, labels=labels)
        assert [c.label for c in _open(folder, buf.getvalue()).clips] == ["1", "0", "1"]
    buf = io.BytesIO()
    np.savez(buf, clips=clips, labels=np.array([0.5, 1, 0]))
    (tmp_path / "bad").mkdir()
    with pytest.raises(InvalidInput, match="class indices"):
        _open(tmp_path / "bad", buf.getvalue())
