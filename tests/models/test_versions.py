"""Numbered versions (models/versions.py): the layout, the three version policies, labels."""

from __future__ import annotations

import json

import pytest

from models.repository import ManifestError, discover, is_model_folder
from models.versions import (
    VersionPolicy,
    parse_policy,
    read_labels,
    read_policy,
    version_folders,
    versions_of,
    write_labels,
)


def _version(root, name, v):
    folder = root / name / str(v)
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"x")
    return folder


@pytest.mark.parametrize(
    "text,kind,n,versions",
    [
        ("latest:1", "latest", 1, ()),
        ("latest:3", "latest", 3, ()),
        ("latest", "latest", 1, ()),
        ("all", "all", 1, ()),
        ("specific:2,5", "specific", 1, (2, 5)),
    ],
)
def test_the_settings_text_reads_every_kind(text, kind, n, versions):
    p = parse_policy(text)
    assert (p.kind, p.n, p.versions) == (kind, n, versions)
    assert parse_policy(str(p)) == p  # the text round-trips


@pytest.mark.parametrize(
    "raw,want",
    [
        ({"latest": {"num_versions": 2}}, VersionPolicy("latest", 2)),
        ({"latest": 2}, VersionPolicy("latest", 2)),
        ({"all": {}}, VersionPolicy("all")),
        ({"specific": {"versions": [1, 3]}}, VersionPolicy("specific", versions=(1, 3))),
        ({"specific": [3]}, VersionPolicy("specific", versions=(3,))),
    ],
)
def test_a_manifests_json_reads_tritons_shape_and_a_short_one(raw, want):
    assert parse_policy(raw) == want
    assert parse_policy(want.as_config()) == want  # Triton's shape round-trips


@pytest.mark.parametrize(
    "bad",
    ["latest:0", "latest:x", "newest", "specific:", "specific:a,b", {"latest": 0}, {"x": 1},
     {"specific": []}, {"latest": 1, "all": {}}, 3, {"specific": [True]}],
)  # fmt: skip
def test_a_bad_policy_says_what_is_accepted(bad):
    with pytest.raises(ManifestError, match="policy|integer|version"):
        parse_policy(bad, "here")


def test_each_policy_selects_from_what_is_there():
    have = [3, 1, 7, 2]
    assert VersionPolicy("latest", 1).select(have) == [7]
    assert VersionPolicy("latest", 2).select(have) == [3, 7]
    assert VersionPolicy("latest", 9).select(have) == [1, 2, 3, 7]
    assert VersionPolicy("all").select(have) == [1, 2, 3, 7]
    assert VersionPolicy("specific", versions=(2, 5)).select(have) == [2]  # 5 is not there
    assert VersionPolicy("specific", versions=(5,)).select(have) == []


def test_a_folder_of_versions_is_a_model_folder_and_a_flat_one_is_version_1(tmp_path):
    _version(tmp_path, "a", 1)
    _version(tmp_path, "a", 12)
    (tmp_path / "a" / "notes").mkdir()  # not a number: not a version
    (tmp_path / "a" / "3").mkdir()  # a number without a checkpoint: not a version
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "model.keras").write_bytes(b"x")
    (tmp_path / "c").mkdir()  # nothing in it
    assert is_model_folder(tmp_path / "a") and is_model_folder(tmp_path / "b")
    assert not is_model_folder(tmp_path / "c")
    assert [p.name for p in discover(tmp_path)] == ["a", "b"]
    assert list(version_folders(tmp_path / "a")) == [1, 12]
    assert versions_of(tmp_path / "a") == {1: tmp_path / "a" / "1", 12: tmp_path / "a" / "12"}
    assert versions_of(tmp_path / "b") == {1: tmp_path / "b"}


def test_a_flat_folder_that_gains_numbered_folders_keeps_its_checkpoint_as_version_1(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "model.keras").write_bytes(b"x")
    assert versions_of(flat) == {1: flat}
    _version(tmp_path, "flat", 2)
    _version(tmp_path, "flat", 5)
    assert versions_of(flat) == {1: flat, 2: flat / "2", 5: flat / "5"}


def test_a_checkpoint_beside_version_folders_is_refused(tmp_path):
    _version(tmp_path, "a", 1)
    (tmp_path / "a" / "model.keras").write_bytes(b"x")
    with pytest.raises(ManifestError, match="both model.keras and numbered version folders"):
        versions_of(tmp_path / "a")


def test_the_policy_comes_from_the_top_manifest_else_the_default(tmp_path):
    _version(tmp_path, "a", 1)
    default = VersionPolicy("latest", 1)
    assert read_policy(tmp_path / "a", default) == default
    (tmp_path / "a" / "manifest.json").write_text(json.dumps({"version_policy": {"all": {}}}))
    assert read_policy(tmp_path / "a", default) == VersionPolicy("all")
    (tmp_path / "a" / "manifest.json").write_text(json.dumps({"version_policy": "newest"}))
    with pytest.raises(ManifestError, match="manifest.json: version_policy"):
        read_policy(tmp_path / "a", default)


def test_labels_are_written_whole_and_read_back(tmp_path):
    folder = tmp_path / "a"
    folder.mkdir()
    assert read_labels(folder) == {}
    write_labels(folder, {"stable": 1, "canary": 2})
    assert read_labels(folder) == {"canary": 2, "stable": 1}
    assert [p.name for p in folder.iterdir()] == ["labels.json"]  # no temporary file left
    for bad in ({"2": 1}, {"stable": 0}, {"stable": "1"}, ["stable"]):
        (folder / "labels.json").write_text(json.dumps(bad))
        with pytest.raises(ManifestError, match="labels.json"):
            read_labels(folder)
