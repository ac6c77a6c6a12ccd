"""probe_batch: a fixed, class-balanced probe batch from the user's own data."""

from __future__ import annotations

import numpy as np
import pytest

import ncp_search
from ncp_search import probe_batch


def data(n=200, classes=4, seed=0, features=6):
    rng = np.random.default_rng(seed)
    return rng.random((n, features)).astype("float32"), rng.integers(0, classes, n)


def test_balanced_deterministic_and_from_the_data():
    x, y = data()
    xp, yp = probe_batch(x, y, n=40, seed=3)
    assert xp.shape == (40, 6) and yp.shape == (40,)
    assert np.bincount(yp).tolist() == [10, 10, 10, 10]
    rows = {tuple(r) for r in x}
    assert all(tuple(r) in rows for r in xp)
    # x and y stay paired
    index = {tuple(r): i for i, r in enumerate(x)}
    assert [y[index[tuple(r)]] for r in xp] == yp.tolist()
    again = probe_batch(x, y, n=40, seed=3)
    np.testing.assert_array_equal(again[0], xp)
    other = probe_batch(x, y, n=40, seed=4)
    assert not np.array_equal(other[0], xp)


def test_remainder_goes_to_some_classes_and_non_contiguous_labels():
    x, y = data(classes=3)
    y = y * 5 + 5  # labels 5, 10, 15
    _, yp = probe_batch(x, y, n=32)
    counts = sorted(np.unique(yp, return_counts=True)[1].tolist())
    assert counts == [10, 11, 11]
    assert set(yp.tolist()) == {5, 10, 15}


def test_one_hot_and_column_labels_keep_their_form():
    x, y = data()
    one_hot = np.eye(4, dtype="float32")[y]
    xp, yp = probe_batch(x, one_hot, n=20)
    assert yp.shape == (20, 4)
    assert np.bincount(yp.argmax(axis=1)).tolist() == [5, 5, 5, 5]
    _, column = probe_batch(x, y[:, None], n=20)
    assert column.shape == (20, 1)


def test_several_inputs_are_indexed_together():
    x, y = data()
    both = {"a": x, "b": x[:, :2] * 10}
    xp, yp = probe_batch(both, y, n=12)
    np.testing.assert_allclose(xp["b"], xp["a"][:, :2] * 10)
    listed, _ = probe_batch([x, x[:, :1]], y, n=12)
    assert isinstance(listed, list) and listed[1].shape == (12, 1)


def test_too_few_samples_per_class_says_the_largest_n():
    x, y = data(n=100)
    y[:] = 0
    y[:7] = 1  # class 1 has 7 samples
    with pytest.raises(ValueError, match=r"class 1 has 7 samples but needs 10.*n <= 14"):
        probe_batch(x, y, n=20)
    assert len(probe_batch(x, y, n=14)[1]) == 14


def test_fewer_samples_than_classes():
    x, y = data(classes=4)
    with pytest.raises(ValueError, match=r"each of the 4 classes.*n >= 4"):
        probe_batch(x, y, n=3)


def test_mismatched_lengths():
    x, y = data()
    with pytest.raises(ValueError, match=r"same number of samples.*200 inputs and 199 labels"):
        probe_batch(x, y[:-1], n=8)
    with pytest.raises(ValueError, match=r"x\['b'\] and y"):
        probe_batch({"a": x, "b": x[:-2]}, y, n=8)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_in_inputs_or_labels(value):
    x, y = data()
    x[17, 2] = value
    with pytest.raises(ValueError, match=r"x contains NaN or inf \(1 samples, e.g. at index 17\)"):
        probe_batch(x, y, n=8)
    x, y = data()
    labels = y.astype(float)
    labels[3] = value
    with pytest.raises(ValueError, match="y contains NaN or inf"):
        probe_batch(x, labels, n=8)


@pytest.mark.parametrize("n", [0, -5, 2.5, True])
def test_bad_n(n):
    x, y = data()
    with pytest.raises(ValueError, match="n must be a positive integer"):
        probe_batch(x, y, n=n)


def test_non_integer_labels():
    x, _ = data()
    with pytest.raises(ValueError, match="integer class ids"):
        probe_batch(x, np.linspace(0, 1, len(x)), n=8)


def test_importing_probe_batch_needs_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys, ncp_search; ncp_search.probe_batch; "
            "print('tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert done.stdout.strip() == "False", done.stderr[-1000:]
    assert ncp_search.probe_batch is probe_batch
