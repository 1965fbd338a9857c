"""Model folders fetched from a URI (fsspec) into a per-node cache, checked by sha256; no Ray
needed for these."""

from __future__ import annotations

import pytest

pytest.importorskip("fsspec", reason="fsspec comes with framecast[ray]")

from service.runtime.ray.model_fetch import SUMS, ModelFetchError, fetch, list_models, write_sums  # noqa: E402


@pytest.fixture
def store(tmp_path):
    """A 'bucket' (a file:// URI) holding two model folders with their SHA256SUMS."""
    from tests.service.conftest import save_tiny

    root = tmp_path / "bucket"
    for name in ("convlstm2d_next_frame", "conv2d_lstm_classify"):
        arch, task = (
            name.split("_", 1) if name.startswith("convlstm2d") else ("conv2d_lstm", "classify")
        )
        save_tiny(root, name, arch, task)
        write_sums(root / name)
    (root / "not_a_model").mkdir()
    return root


def test_lists_folders_with_sums_and_fetches_a_checked_copy(store, tmp_path):
    uri = store.as_uri()
    assert list_models(uri) == ["conv2d_lstm_classify", "convlstm2d_next_frame"]
    local = fetch(uri, "convlstm2d_next_frame", tmp_path / "cache")
    assert (local / "model.keras").read_bytes() == (
        store / "convlstm2d_next_frame" / "model.keras"
    ).read_bytes()
    assert fetch(uri, "convlstm2d_next_frame", tmp_path / "cache") == local  # cached

    from models.checkpoint import open_folder

    manifest, _ = open_folder(local)  # servable as fetched
    assert manifest.task == "next_frame"


def test_a_changed_file_fails_the_fetch_and_leaves_nothing(store, tmp_path):
    path = store / "conv2d_lstm_classify" / "model.keras"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelFetchError, match="does not match its sha256"):
        fetch(store.as_uri(), "conv2d_lstm_classify", tmp_path / "cache")
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert leftovers == []


def test_bad_sums_and_missing_files_say_which(store, tmp_path):
    (store / "conv2d_lstm_classify" / SUMS).write_text("nonsense\n")
    with pytest.raises(ModelFetchError, match="line 1"):
        fetch(store.as_uri(), "conv2d_lstm_classify", tmp_path / "cache")
    (store / "convlstm2d_next_frame" / "card.json").unlink(missing_ok=True)
    (store / "convlstm2d_next_frame" / "manifest.json").unlink()
    with pytest.raises(ModelFetchError, match="manifest.json"):
        fetch(store.as_uri(), "convlstm2d_next_frame", tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFetchError, match="no model folder"):
        list_models((tmp_path / "empty").as_uri())
