"""The local model zoo: architectures, training once, cache hits, broken cache files."""

from __future__ import annotations

import json
import logging
import shutil

import keras
import numpy as np
import pytest

from ncp_search import attach_probe
from ncp_search.app import zoo

SOURCE = {"source": "digits:0-4", "epochs": 1}


@pytest.mark.parametrize("name", zoo.available_models())
@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 1)])
def test_architectures_are_probe_ready_classifiers(name, shape):
    model = zoo.ARCHITECTURES[name](shape, 5, 0)
    last = model.layers[-1]
    assert model.name == name
    assert isinstance(last, keras.layers.Dense) and last.name == "predictions"
    assert last.units == 5 and last.activation is keras.activations.softmax
    features = model.get_layer("features").output
    assert len(features.shape) == 2 and features.shape[-1] > 0  # a flat vector
    assert model.layers[-2].name == "features"
    x = np.random.default_rng(0).random((3, *shape), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0).sum(axis=1), 1.0, rtol=1e-5)
    attach_probe(model, 3)  # finds the features


@pytest.mark.parametrize("name", zoo.available_models())
def test_architectures_are_seeded(name):
    first = zoo.ARCHITECTURES[name]((8, 8, 1), 3, 7).get_weights()
    same = zoo.ARCHITECTURES[name]((8, 8, 1), 3, 7).get_weights()
    other = zoo.ARCHITECTURES[name]((8, 8, 1), 3, 8).get_weights()
    for a, b in zip(first, same):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_registry_and_builder_arguments():
    assert len(zoo.ARCHITECTURES) >= 4
    assert zoo.available_models() == sorted(zoo.ARCHITECTURES)
    with pytest.raises(ValueError, match="input_shape=.*but got"):
        zoo.ARCHITECTURES["cnn_small"]((28, 28), 5, 0)
    with pytest.raises(ValueError, match="num_classes >= 2"):
        zoo.ARCHITECTURES["mlp"]((8, 8, 1), 1, 0)


def test_unknown_model_and_bad_requests(tmp_path):
    with pytest.raises(ValueError, match=r"one of \['cnn_small', .*'resnet_tiny'\].*'vgg16'"):
        zoo.load_source_model("vgg16", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        zoo.load_source_model("mlp", source="digits:0-4", epochs=0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="available_models"):
        zoo.source_model_info("vgg16", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("NCP_SEARCH_CACHE", str(tmp_path))
    assert zoo.cache_folder() == tmp_path / "zoo"
    assert zoo.cache_folder(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("NCP_SEARCH_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert zoo.cache_folder() == tmp_path / "home" / ".cache" / "ncp_search" / "zoo"


def no_training(*args, **kwargs):
    raise AssertionError("trained again instead of using the cache")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A cache folder holding one mlp trained for 1 epoch on digits:0-4, and its messages."""
    folder = tmp_path_factory.mktemp("zoo")
    lines: list[str] = []
    model = zoo.load_source_model("mlp", cache_dir=folder, progress=lines.append, **SOURCE)
    return folder, model, lines


@pytest.fixture
def cache(trained, tmp_path):
    """A private copy of the trained cache folder (tests may break it)."""
    shutil.copytree(trained[0], tmp_path, dirs_exist_ok=True)
    return tmp_path


@pytest.mark.slow
def test_trains_once_then_loads_from_cache(trained, cache, monkeypatch):
    _, model, lines = trained
    assert any("training mlp on digits:0,1,2,3,4" in line for line in lines)
    assert any("epoch 1/1" in line for line in lines)
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".keras"]  # no temp files
    monkeypatch.setattr(zoo, "_train", no_training)
    again = zoo.load_source_model("mlp", cache_dir=cache, **SOURCE)
    assert again is not model
    for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = np.zeros((2, 8, 8, 1), np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), again.predict(x, verbose=0))


@pytest.mark.slow
def test_sidecar_info(cache):
    info = zoo.source_model_info("mlp", cache_dir=cache, **SOURCE)
    assert info["architecture"] == "mlp" and info["source"] == "digits:0-4"
    assert info["epochs"] == 1 and info["seed"] == 0 and info["n_train"] is None
    assert 0.5 < info["val_accuracy"] <= 1.0  # 5 digits after 1 epoch: well above chance
    assert info["val_accuracy_history"] == [info["val_accuracy"]]
    assert info["train_seconds"] > 0 and info["train_samples"] == 675
    assert info["keras"] == keras.__version__ and info["tensorflow"]
    assert info["created"].endswith("Z")
    for other in ({"epochs": 2}, {"seed": 1}, {"n_train": 100}, {"source": "digits:5-9"}):
        assert zoo.source_model_info("mlp", cache_dir=cache, **{**SOURCE, **other}) is None


@pytest.mark.slow
def test_broken_cache_file_is_retrained(cache, caplog):
    (cached,) = cache.glob("*.keras")
    cached.write_bytes(b"not a keras file")
    with caplog.at_level(logging.WARNING, logger="ncp_search.app.zoo"):
        model = zoo.load_source_model("mlp", cache_dir=cache, **SOURCE)
    assert "unreadable" in caplog.text and cached.name in caplog.text
    assert isinstance(model, keras.Model) and model.name == "mlp"
    assert keras.models.load_model(cached).name == "mlp"  # replaced by a good file


@pytest.mark.slow
def test_wrong_model_in_cache_is_retrained(cache, caplog):
    (cached,) = cache.glob("*.keras")
    zoo.ARCHITECTURES["cnn_small"]((8, 8, 1), 5, 0).save(cached)
    with caplog.at_level(logging.WARNING, logger="ncp_search.app.zoo"):
        model = zoo.load_source_model("mlp", cache_dir=cache, **SOURCE)
    assert "'cnn_small'" in caplog.text
    assert model.name == "mlp" and keras.models.load_model(cached).name == "mlp"


@pytest.mark.slow
def test_retrain_and_broken_sidecar(cache, monkeypatch, caplog):
    (sidecar,) = cache.glob("*.json")
    sidecar.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="ncp_search.app.zoo"):
        assert zoo.source_model_info("mlp", cache_dir=cache, **SOURCE) is None
    assert "sidecar" in caplog.text
    calls = []
    real_train = zoo._train

    def counting(*args, **kwargs):
        calls.append(args)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(zoo, "_train", counting)
    zoo.load_source_model("mlp", cache_dir=cache, retrain=True, **SOURCE)
    assert len(calls) == 1
    assert json.loads(sidecar.read_text())["architecture"] == "mlp"


@pytest.mark.slow
def test_build_zoo(cache, monkeypatch):
    monkeypatch.setattr(zoo, "_train", no_training)
    with pytest.raises(ValueError, match="'nope'"):
        zoo.build_zoo(["mlp", "nope"], cache_dir=cache, **SOURCE)  # checked before training
    infos = zoo.build_zoo(["mlp"], cache_dir=cache, progress=[].append, **SOURCE)
    assert list(infos) == ["mlp"] and infos["mlp"]["architecture"] == "mlp"
    monkeypatch.undo()
    infos = zoo.build_zoo(["mlp", "cnn_small"], cache_dir=cache, **SOURCE)
    assert sorted(infos) == ["cnn_small", "mlp"]
    assert infos["cnn_small"]["architecture"] == "cnn_small"
    assert len(list(cache.glob("*.keras"))) == 2
