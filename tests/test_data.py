"""Offline data loaders: idx reading, Fashion-MNIST search order, digits, task specs."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from ncp_search import DataError
from ncp_search import data as data_module
from ncp_search.data import load_digits, load_fashion_mnist, load_task, read_idx


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    raw = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(f"{path}.gz", "wb") as handle:
            handle.write(raw)
    else:
        path.write_bytes(raw)


def fake_fashion(folder: Path, n: int = 40) -> None:
    rng = np.random.default_rng(0)
    for prefix, compress in (("train", True), ("t10k", False)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, size=(n, 28, 28))
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, compress)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, compress):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", array, compress)
    path = tmp_path / ("a.gz" if compress else "a")
    np.testing.assert_array_equal(read_idx(path), array)


def test_read_idx_rejects_corrupt_files(tmp_path):
    write_idx(tmp_path / "a", np.zeros((2, 3), dtype=np.uint8))
    raw = (tmp_path / "a").read_bytes()
    (tmp_path / "cut").write_bytes(raw[:-1])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(tmp_path / "cut")
    (tmp_path / "magic").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "magic")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "missing")


def test_fashion_from_path_filters_and_remaps(tmp_path):
    fake_fashion(tmp_path)
    task = load_fashion_mnist((7, 3), path=tmp_path)
    assert task.x_train.shape == (8, 28, 28, 1) and task.x_train.dtype == np.float32
    assert 0.0 <= task.x_train.min() and task.x_train.max() <= 1.0
    assert set(task.y_train) == {0, 1} and task.classes == (7, 3)
    raw_labels = read_idx(tmp_path / "t10k-labels-idx1-ubyte")
    assert (task.y_val == 0).sum() == (raw_labels == 7).sum()
    small = load_fashion_mnist(None, path=tmp_path, n_train=10, n_val=5)
    assert len(small.y_train) == 10 and len(small.y_val) == 5 and small.num_classes == 10


def test_fashion_not_found_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "DEBIAN_FASHION_MNIST", str(tmp_path / "nope"))
    monkeypatch.delenv(data_module.FASHION_ENV, raising=False)

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(data_module, "_keras_download", offline)
    with pytest.raises(DataError) as caught:
        load_fashion_mnist(path=tmp_path / "empty")
    message = str(caught.value)
    assert "path argument" in message and "dataset-fashion-mnist" in message
    assert "no network" in message and "apt-get install" in message


def test_fashion_env_var(tmp_path, monkeypatch):
    fake_fashion(tmp_path)
    monkeypatch.setenv(data_module.FASHION_ENV, str(tmp_path))
    monkeypatch.setattr(data_module, "DEBIAN_FASHION_MNIST", str(tmp_path / "nope"))
    assert load_fashion_mnist((0, 1)).num_classes == 2


@pytest.mark.skipif(
    not Path(data_module.DEBIAN_FASHION_MNIST).exists(),
    reason="Debian package dataset-fashion-mnist not installed (.ci/run installs it)",
)
def test_real_fashion_mnist():
    task = load_fashion_mnist((5, 6, 7, 8, 9), n_train=4000)
    assert task.x_train.shape == (4000, 28, 28, 1)
    assert len(task.y_val) == 5000
    assert np.bincount(task.y_val).tolist() == [1000] * 5


def test_digits():
    task = load_digits((5, 6, 7, 8, 9))
    assert task.x_train.shape[1:] == (8, 8, 1) and task.x_train.max() <= 1.0
    assert set(task.y_train) == set(range(5))
    again = load_digits((5, 6, 7, 8, 9))
    np.testing.assert_array_equal(task.y_val, again.y_val)
    ratios = np.bincount(task.y_val) / len(task.y_val)
    assert np.all(np.abs(ratios - 0.2) < 0.03)  # stratified


def test_load_task_specs():
    assert load_task("digits:0-2").classes == (0, 1, 2)
    assert load_task("digits:0,4,9").classes == (0, 4, 9)
    assert load_task("digits").num_classes == 10
    with pytest.raises(ValueError, match="unknown dataset"):
        load_task("cifar10:0-4")
    with pytest.raises(ValueError, match="cannot read the classes"):
        load_task("digits:a-b")
    with pytest.raises(ValueError, match="at least 2 distinct"):
        load_task("digits:3")


def test_probe_batch_is_fixed_and_stratified():
    task = load_task("digits:5-9")
    x1, y1 = task.probe_batch(50, seed=0)
    x2, y2 = task.probe_batch(50, seed=0)
    np.testing.assert_array_equal(x1, x2)
    assert np.bincount(y1).tolist() == [10] * 5
    assert not np.array_equal(task.probe_batch(50, seed=1)[1], y1) or not np.array_equal(
        task.probe_batch(50, seed=1)[0], x1
    )
    with pytest.raises(ValueError, match="probe batch size"):
        task.probe_batch(0)
    with pytest.raises(ValueError, match="probe batch size"):
        task.probe_batch(len(task.y_train) + 1)
