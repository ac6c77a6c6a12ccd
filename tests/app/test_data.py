"""Offline data loaders: IDX reading, Fashion-MNIST search order, digits, task specs."""

from __future__ import annotations

import gzip
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ncp_search.app.data as data_module
from ncp_search import DataError
from ncp_search.app.data import TaskData, load_digits, load_fashion_mnist, load_task, read_idx

_CODES = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array`` (uint8, big-endian int32 or float32)."""
    header = bytes([0, 0, _CODES[array.dtype], array.ndim])
    return header + b"".join(int(d).to_bytes(4, "big") for d in array.shape) + array.tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    raw = idx_bytes(array)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def fake_fashion(folder: Path, n: int = 40, brightness: int = 20) -> Path:
    """Fake Fashion-MNIST: image pixels are ``brightness * original label``.

    The train split is gzip-compressed, the t10k split plain.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, compress in (("train", True), ("t10k", False)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = np.repeat(labels * brightness, 28 * 28).reshape(n, 28, 28).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return folder


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No env var, no Debian folder, no network: only what a test provides is found."""
    monkeypatch.delenv(data_module.FASHION_ENV, raising=False)
    monkeypatch.setattr(data_module, "DEBIAN_FASHION_MNIST", str(tmp_path / "no-debian"))

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(data_module, "_keras_download", offline)
    return monkeypatch


# --- read_idx -------------------------------------------------------------------------


_ARRAYS = {
    "uint8": np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
    "int32": (np.arange(24).reshape(2, 3, 4) * -100_003).astype(">i4"),
    "float32": (np.arange(24).reshape(2, 3, 4) / 7).astype(">f4"),
}


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("kind", sorted(_ARRAYS))
def test_read_idx_round_trip(tmp_path, compress, kind):
    array = _ARRAYS[kind]
    path = write_idx(tmp_path / "a", array, compress)
    out = read_idx(path)
    np.testing.assert_array_equal(out, array)
    assert out.shape == (2, 3, 4) and out.dtype.isnative and out.flags.writeable


def test_read_idx_detects_gzip_from_content(tmp_path):
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    path = tmp_path / "no-suffix"
    path.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda raw: raw[:-1], "truncated or corrupt"),
        (lambda raw: raw + b"\x00", "truncated or corrupt"),
        (lambda raw: raw[:6], "header"),
        (lambda raw: b"\x01\x02" + raw[2:], "not an IDX file"),
        (lambda raw: raw[:2] + b"\x07" + raw[3:], "not an IDX file"),
        (lambda raw: raw[:3] + b"\x00" + raw[4:], "not an IDX file"),
        (lambda raw: b"", "not an IDX file"),
        (lambda raw: gzip.compress(raw)[:-12], "cannot read"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path, mangle, match):
    raw = idx_bytes(np.zeros((2, 3), dtype=np.uint8))
    path = tmp_path / "bad-file"
    path.write_bytes(mangle(raw))
    with pytest.raises(DataError, match=match) as caught:
        read_idx(path)
    assert "bad-file" in str(caught.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read IDX file .*missing"):
        read_idx(tmp_path / "missing")


# --- Fashion-MNIST --------------------------------------------------------------------


def test_fashion_from_path_filters_and_remaps(tmp_path, isolated):
    fake_fashion(tmp_path)
    task = load_fashion_mnist((7, 3), path=tmp_path)
    assert task.classes == (7, 3) and task.num_classes == 2
    assert task.name == "fashion_mnist:7,3"
    assert task.x_train.shape == (8, 28, 28, 1) and task.x_train.dtype == np.float32
    assert task.y_train.dtype == np.int64 and set(task.y_train) == {0, 1}
    for x, y in ((task.x_train, task.y_train), (task.x_val, task.y_val)):
        original = np.array(task.classes)[y]  # label i stands for classes[i]
        np.testing.assert_allclose(x[:, 0, 0, 0], original * 20 / 255.0, rtol=1e-6)
    assert 0.0 <= task.x_train.min() and task.x_train.max() <= 1.0
    raw_labels = read_idx(tmp_path / "t10k-labels-idx1-ubyte")
    assert (task.y_val == 0).sum() == (raw_labels == 7).sum()


def test_fashion_subsets_are_seeded(tmp_path, isolated):
    fake_fashion(tmp_path)
    small = load_fashion_mnist(None, path=tmp_path, n_train=10, n_val=5, seed=3)
    assert len(small.y_train) == 10 and len(small.y_val) == 5 and small.num_classes == 10
    again = load_fashion_mnist(None, path=tmp_path, n_train=10, n_val=5, seed=3)
    np.testing.assert_array_equal(small.x_train, again.x_train)
    other = load_fashion_mnist(None, path=tmp_path, n_train=10, n_val=5, seed=4)
    assert not np.array_equal(small.x_train, other.x_train)
    assert len(load_fashion_mnist(None, path=tmp_path, n_train=1000).y_train) == 40


@pytest.mark.parametrize(
    "kwargs",
    [
        {"classes": (3,)},
        {"classes": (1, 1)},
        {"classes": (0, 10)},
        {"classes": (-1, 2)},
        {"n_train": 0},
        {"n_val": -5},
        {"n_train": 2.5},
    ],
)
def test_fashion_rejects_bad_arguments(tmp_path, isolated, kwargs):
    fake_fashion(tmp_path)
    with pytest.raises(ValueError, match="but got"):
        load_fashion_mnist(path=tmp_path, **kwargs)


def test_fashion_not_found_lists_every_place(tmp_path, isolated):
    with pytest.raises(DataError) as caught:
        load_fashion_mnist(path=tmp_path / "empty")
    message = str(caught.value)
    for expected in (
        f"path argument: {tmp_path / 'empty'}",
        f"${data_module.FASHION_ENV}: not given",
        f"dataset-fashion-mnist: {tmp_path / 'no-debian'}",
        "keras.datasets download: OSError: no network",
        "apt-get install dataset-fashion-mnist",
        "path=",
    ):
        assert expected in message, (expected, message)


def test_fashion_search_order(tmp_path, isolated, caplog):
    first = fake_fashion(tmp_path / "first", brightness=10)
    second = fake_fashion(tmp_path / "second", brightness=20)
    isolated.setenv(data_module.FASHION_ENV, str(second))
    isolated.setattr(data_module, "DEBIAN_FASHION_MNIST", str(tmp_path / "nothing-here"))

    def brightness_of_class_1(task: TaskData) -> float:
        return float(task.x_train[task.y_train == 1][0, 0, 0, 0] * 255)

    assert brightness_of_class_1(load_fashion_mnist(path=first)) == pytest.approx(10)
    assert brightness_of_class_1(load_fashion_mnist()) == pytest.approx(20)  # the env var
    (tmp_path / "incomplete").mkdir()
    with caplog.at_level(logging.WARNING, logger="ncp_search.app.data"):
        task = load_fashion_mnist(path=tmp_path / "incomplete")
    assert brightness_of_class_1(task) == pytest.approx(20)
    assert "incomplete" in caplog.text and "train-images-idx3-ubyte" in caplog.text


def test_fashion_debian_folder_then_online(tmp_path, isolated):
    debian = fake_fashion(tmp_path / "debian")
    isolated.setattr(data_module, "DEBIAN_FASHION_MNIST", str(debian))
    assert len(load_fashion_mnist().y_train) == 40
    isolated.setattr(data_module, "DEBIAN_FASHION_MNIST", str(tmp_path / "gone"))
    arrays = {k: read_idx(next(debian.glob(f"{stem}*"))) for k, stem in data_module._FILES.items()}
    isolated.setattr(data_module, "_keras_download", lambda: arrays)
    assert load_fashion_mnist((0, 1)).num_classes == 2


def test_fashion_corrupt_file_is_reported_not_skipped(tmp_path, isolated):
    folder = fake_fashion(tmp_path / "broken")
    fake_fashion(tmp_path / "good")
    isolated.setenv(data_module.FASHION_ENV, str(tmp_path / "good"))
    labels = folder / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-3])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*truncated"):
        load_fashion_mnist(path=folder)


def test_fashion_file_removed_after_the_search_is_a_data_error(tmp_path, isolated):
    folder = fake_fashion(tmp_path)
    find = data_module._find_idx_folder

    def find_then_remove(path):
        found = find(path)
        (folder / "t10k-labels-idx1-ubyte").unlink()  # gone between search and read
        return found

    isolated.setattr(data_module, "_find_idx_folder", find_then_remove)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte \(or .*\.gz\), but it is gone"):
        load_fashion_mnist(path=folder)


@pytest.mark.skipif(
    not Path(data_module.DEBIAN_FASHION_MNIST).exists(),
    reason="the Debian package dataset-fashion-mnist is not installed "
    "(apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv(data_module.FASHION_ENV, raising=False)
    task = load_fashion_mnist((5, 6, 7, 8, 9), n_train=4000)
    assert task.x_train.shape == (4000, 28, 28, 1) and task.x_train.dtype == np.float32
    assert len(task.y_val) == 5000
    assert np.bincount(task.y_val).tolist() == [1000] * 5
    assert 0.0 == task.x_val.min() and task.x_val.max() == 1.0
    full = load_fashion_mnist()
    assert full.x_train.shape == (60000, 28, 28, 1) and len(full.y_val) == 10000


# --- digits ---------------------------------------------------------------------------


def test_digits():
    task = load_digits((5, 6, 7, 8, 9))
    assert task.x_train.shape[1:] == (8, 8, 1) and task.x_train.dtype == np.float32
    assert task.x_train.min() == 0.0 and task.x_train.max() == 1.0
    assert task.y_train.dtype == np.int64 and set(task.y_train) == set(range(5))
    n = len(task.y_train) + len(task.y_val)
    assert n == 896 and abs(len(task.y_val) / n - 0.25) < 0.01
    again = load_digits((5, 6, 7, 8, 9))
    np.testing.assert_array_equal(task.x_val, again.x_val)
    other = load_digits((5, 6, 7, 8, 9), seed=1)
    assert not np.array_equal(task.y_val, other.y_val)
    ratios = np.bincount(task.y_val) / len(task.y_val)
    assert np.all(np.abs(ratios - 0.2) < 0.01)  # stratified


def test_digits_rejects_bad_arguments():
    with pytest.raises(ValueError, match="val_fraction must be in"):
        load_digits(val_fraction=1.0)
    with pytest.raises(ValueError, match="at least 2 distinct"):
        load_digits((4, 4))


# --- load_task ------------------------------------------------------------------------


def test_load_task_specs(tmp_path, isolated):
    assert load_task("digits:0-2").classes == (0, 1, 2)
    assert load_task("digits:0,4,9").classes == (0, 4, 9)
    assert load_task("digits:0-1,7").classes == (0, 1, 7)
    assert load_task("digits").num_classes == 10
    assert load_task(" Digits : 3-4").classes == (3, 4)
    assert len(load_task("digits:0-4", val_fraction=0.5).y_val) == 451
    fake_fashion(tmp_path)
    assert load_task("fashion_mnist:0-4", path=tmp_path, n_train=7).classes == (0, 1, 2, 3, 4)
    assert load_task("fashion-mnist:0,2,4", path=tmp_path).classes == (0, 2, 4)


@pytest.mark.parametrize(
    ("spec", "kwargs", "error", "match"),
    [
        ("cifar10:0-4", {}, ValueError, r"one of \['digits', 'fashion_mnist'\]"),
        ("digits:a-b", {}, ValueError, "cannot read"),
        ("digits:9-5", {}, ValueError, "cannot read"),
        ("digits:3", {}, ValueError, "at least 2 distinct"),
        ("digits:0-4", {"n_train": 10}, TypeError, "val_fraction"),
    ],
)
def test_load_task_errors(spec, kwargs, error, match):
    with pytest.raises(error, match=match):
        load_task(spec, **kwargs)


# --- TaskData -------------------------------------------------------------------------


def test_probe_batch_is_fixed_and_stratified():
    task = load_task("digits:5-9")
    x1, y1 = task.probe_batch(50, seed=0)
    x2, y2 = task.probe_batch(50, seed=0)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert x1.shape == (50, 8, 8, 1)
    assert np.bincount(y1).tolist() == [10] * 5
    assert not np.array_equal(task.probe_batch(50, seed=1)[0], x1)
    rows = task.x_train.reshape(len(task.y_train), -1)
    chosen = [np.flatnonzero((rows == x.ravel()).all(axis=1)) for x in x1]
    assert all(len(c) >= 1 for c in chosen)  # every probe image is a training image
    assert len(np.unique(x1.reshape(50, -1), axis=0)) == 50  # no repeats
    whole = task.probe_batch(len(task.y_train))[1]
    np.testing.assert_array_equal(np.bincount(whole), np.bincount(task.y_train))


def test_probe_batch_stays_balanced_past_the_smallest_class():
    y = np.array([0, 0] + [1] * 10, dtype=np.int64)
    x_val, y_val = np.zeros((0, 2, 2, 1), np.float32), np.zeros(0, np.int64)
    task = TaskData("toy", np.zeros((12, 2, 2, 1), np.float32), y, x_val, y_val, 2, (4, 8))
    assert np.bincount(task.probe_batch(3)[1]).tolist() == [2, 1]
    assert np.bincount(task.probe_batch(6)[1]).tolist() == [2, 4]


@pytest.mark.parametrize("n", [0, -1, 10**6])
def test_probe_batch_rejects_bad_sizes(n):
    task = load_task("digits:0-1")
    with pytest.raises(ValueError, match="probe batch size must be in"):
        task.probe_batch(n)


def test_task_data_checks_consistency():
    x = np.zeros((3, 2, 2, 1), np.float32)
    with pytest.raises(ValueError, match="same length"):
        TaskData("t", x, np.zeros(2, np.int64), x, np.zeros(3, np.int64), 2, (0, 1))
    with pytest.raises(ValueError, match="labels in 0..1"):
        TaskData("t", x, np.array([0, 1, 2]), x, np.zeros(3, np.int64), 2, (0, 1))
    with pytest.raises(ValueError, match="num_classes must equal"):
        TaskData("t", x, np.zeros(3, np.int64), x, np.zeros(3, np.int64), 3, (0, 1))


def test_import_does_not_load_keras():
    script = (
        "import sys, ncp_search.app.data; "
        "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
