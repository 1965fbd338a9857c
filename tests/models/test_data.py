import gzip
import math
import struct

import numpy as np
import pytest

from models import data as D


def _write_idx(path, arr, gz=True):
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_roundtrip(tmp_path, gz):
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    _write_idx(
        tmp_path / "t10k-images-idx3-ubyte" if not gz else tmp_path / "t10k-images-idx3-ubyte.gz",
        arr,
        gz,
    )
    name = "t10k-images-idx3-ubyte" + (".gz" if gz else "")
    np.testing.assert_array_equal(D.read_idx(tmp_path / name), arr)


def test_load_mnist_idx_dir(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (10_000, 28, 28)).astype(np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(10_000) % 10)
    m = D.load_mnist(tmp_path)
    assert m.images.shape == (10_000, 28, 28)
    assert "IDX files" in m.source
    np.testing.assert_array_equal(m.digits("train"), imgs[:8000])
    np.testing.assert_array_equal(m.digits("test"), imgs[8000:])


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(D.MNISTError, match="t10k-images-idx3-ubyte.gz"):
        D.load_mnist(tmp_path)
    arr = np.zeros((3, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", arr)
    raw = gzip.decompress((tmp_path / "t10k-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-10]))  # truncated
    with pytest.raises(D.MNISTError, match="corrupt"):
        D.load_mnist(tmp_path)
    with pytest.raises(D.MNISTError, match="does not exist"):
        D.load_mnist(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(D.MNISTError, match="neither"):
        D.load_mnist(empty)


def test_load_npz_and_env(tmp_path, synthetic_mnist_npz, monkeypatch):
    m = D.load_mnist(synthetic_mnist_npz)
    assert m.images.shape == (10_000, 28, 28) and "x_test" in m.source
    monkeypatch.setenv(D.MNIST_DIR_ENV, str(synthetic_mnist_npz.parent))
    assert D.load_mnist().images.shape == (10_000, 28, 28)
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((1, 28, 28)))
    with pytest.raises(D.MNISTError, match="x_test"):
        D.load_mnist(bad)


def test_real_mnist_checksum_and_counts(real_mnist_dir):
    m = D.load_mnist(real_mnist_dir)
    assert m.images.shape == (10_000, 28, 28)
    counts = np.bincount(m.labels, minlength=10).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_split_is_disjoint(synthetic_mnist_npz):
    m = D.load_mnist(synthetic_mnist_npz)
    assert set(D.TRAIN_DIGITS).isdisjoint(D.TEST_DIGITS)
    assert D.TRAIN_DIGITS.stop == D.TEST_DIGITS.start == 8000
    train, test = m.digits("train"), m.digits("test")
    assert len(train) == 8000 and len(test) == 2000
    # clips built from the test split contain only test digits: marking every test digit with a
    # sentinel value that train digits never use shows up in test clips and never in train clips
    marked = m.images.copy()
    marked[marked == 77] = 78
    marked[8000:][marked[8000:] > 0] = 77
    mm = D.MNIST(marked, m.labels, "marked")
    assert (D.next_frame_clips(mm.digits("test"), 4, 1) * 255).round().astype(int).max() == 77
    tr = (D.next_frame_clips(mm.digits("train"), 16, 1) * 255).round().astype(int)
    assert not np.any(tr == 77)


def test_next_frame_clips_shape_range_determinism(synthetic_mnist_npz):
    digits = D.load_mnist(synthetic_mnist_npz).digits("train")
    a = D.next_frame_clips(digits, 5, seed=3)
    b = D.next_frame_clips(digits, 5, seed=3)
    c = D.next_frame_clips(digits, 5, seed=4)
    assert a.shape == (5, 20, 64, 64, 1) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_trajectory_stays_inside_and_bounces():
    rng = np.random.default_rng(0)
    bounced = 0
    for _ in range(200):
        traj = D.moving_mnist_trajectory(rng, 40)
        assert traj.min() >= 0 and traj.max() <= 64 - 28
        steps = np.abs(np.diff(traj, axis=0))
        assert steps.max() <= 4  # 0.1 * 36 px = 3.6 px per frame, integer positions
        sign_changes = np.diff(np.sign(np.diff(traj[:, 1])))
        bounced += int(np.any(sign_changes != 0))
    assert bounced > 50  # 40 frames of 3.6 px in a 36 px range bounce often


def test_digit_pasted_whole_inside_canvas():
    digit = np.full((1, 28, 28), 255, dtype=np.uint8)
    clips = D.next_frame_clips(digit, 20, seed=0, num_digits=1)
    # every frame holds the whole 28x28 digit: exactly 784 lit pixels
    assert np.all((clips[..., 0] > 0).sum(axis=(2, 3)) == 28 * 28)


def test_direction_clips_labels_and_motion():
    digit = np.zeros((1, 28, 28), dtype=np.uint8)
    digit[0, 10:18, 10:18] = 255
    clips, labels = D.direction_clips(digit, 400, seed=5)
    assert clips.shape == (400, 10, 64, 64, 1) and labels.shape == (400,)
    assert set(labels.tolist()) == set(range(8))
    lit = (clips[..., 0] > 0).sum(axis=(2, 3))
    assert np.all(lit == 64)  # the digit never leaves the canvas
    for clip, label in zip(clips[:, :, :, :, 0], labels):
        ys, xs = [], []
        for f in clip:
            r, c = np.nonzero(f)
            ys.append(r.mean())
            xs.append(c.mean())
        dx, dy = xs[-1] - xs[0], -(ys[-1] - ys[0])  # screen up = positive
        angle = math.degrees(math.atan2(dy, dx)) % 360
        centre = 45 * label
        diff = min(abs(angle - centre), 360 - abs(angle - centre))
        assert diff <= 15 + 6, (label, angle)  # +-15 deg, plus integer rounding of positions
        speed = math.hypot(dx, dy) / 9
        assert 1.3 <= speed <= 3.7


def test_fixed_test_sets_are_fixed(synthetic_mnist_npz):
    m = D.load_mnist(synthetic_mnist_npz)
    a = D.test_set(m, "next_frame", 3)
    b = D.test_set(m, "next_frame", 3)
    np.testing.assert_array_equal(a, b)
    x1, y1 = D.test_set(m, "classify", 5)
    x2, y2 = D.test_set(m, "classify", 5)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)


def test_training_seeds_never_hit_fixed_seeds():
    seeds = {D.clip_seed(s, e, b) for s in range(3) for e in range(5) for b in range(20)}
    assert len(seeds) == 300
    assert D.TEST_SEED_NEXT_FRAME not in seeds and D.VALIDATION_SEED not in seeds
    assert min(seeds) >= 1_000_000_000


def test_the_data_source_a_card_names_is_never_this_machines_absolute_path(tmp_path):
    """Relative to the project when it is inside or beside it, else the setting's name."""
    from pathlib import Path

    project = Path(D.__file__).resolve().parent.parent
    assert D.portable_path(project / "models") == "models"
    assert D.portable_path(project.parent / "shared" / "data" / "mnist") == "../shared/data/mnist"
    far = project.parent.parent / "framecast-test-elsewhere" / "mnist"  # two levels out
    if far.parent.parent != project.parent:  # (a project at the file system's root has none)
        assert D.portable_path(far) == "$FRAMECAST_MNIST_DIR"
        assert D.portable_path(far / "mnist.npz") == "$FRAMECAST_MNIST_DIR (mnist.npz)"
    imgs = np.zeros((10_000, 28, 28), np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(10_000) % 10)
    assert str(tmp_path) not in D.load_mnist(tmp_path).source


def test_a_data_folder_linked_beside_the_project_is_named_by_the_link(tmp_path):
    """``../shared`` as a link to a folder elsewhere: named as reached, not as its far target."""
    project = tmp_path / "checkout" / "framecast"
    (project / "models").mkdir(parents=True)
    target = tmp_path / "disks" / "big" / "shared"
    (target / "data" / "mnist").mkdir(parents=True)
    (project.parent / "shared").symlink_to(target, target_is_directory=True)
    linked = project.parent / "shared" / "data" / "mnist"
    assert linked.resolve() == (target / "data" / "mnist").resolve()  # the link is followed
    assert D.portable_path(linked, project=project) == "../shared/data/mnist"
    assert (
        D.portable_path(linked / "mnist.npz", project=project) == "../shared/data/mnist/mnist.npz"
    )
    assert D.portable_path(project / "models", project=project) == "models"
    # The far target itself, named directly, is two levels out: the setting's name, not its path.
    far = target / "data" / "mnist"
    assert D.portable_path(far, project=project) == "$FRAMECAST_MNIST_DIR"
    # A link elsewhere that leads into the project falls back to the resolved form.
    (tmp_path / "into").symlink_to(project / "models", target_is_directory=True)
    assert D.portable_path(tmp_path / "into", project=project) == "models"
    for p in (linked, far, tmp_path / "into"):
        assert str(tmp_path) not in D.portable_path(p, project=project)
