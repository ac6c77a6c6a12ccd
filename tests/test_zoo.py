"""The local model zoo: architectures, training once, cache hits, broken cache files."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ncp_search import attach_probe, zoo


@pytest.mark.parametrize("name", zoo.available_models())
@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 1)])
def test_architectures_are_probe_ready_classifiers(name, shape):
    model = zoo.ARCHITECTURES[name](shape, 5, 0)
    last = model.layers[-1]
    assert last.name == "predictions" and last.units == 5
    assert model.get_layer("features").output.shape[-1] > 0
    attach_probe(model, 3)  # finds the features


@pytest.mark.slow
def test_trains_once_then_loads_from_cache(tmp_path, monkeypatch):
    model = zoo.load_source_model("mlp", source="digits:0-4", epochs=1, cache_dir=tmp_path)
    info = zoo.source_model_info("mlp", source="digits:0-4", epochs=1, cache_dir=tmp_path)
    assert info["architecture"] == "mlp" and 0.0 <= info["val_accuracy"] <= 1.0

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of using the cache")

    monkeypatch.setattr(zoo, "_train", no_training)
    again = zoo.load_source_model("mlp", source="digits:0-4", epochs=1, cache_dir=tmp_path)
    assert again is not model
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_broken_cache_file_is_retrained(tmp_path, caplog):
    zoo.load_source_model("mlp", source="digits:0-4", epochs=1, cache_dir=tmp_path)
    (cached,) = tmp_path.glob("*.keras")
    cached.write_bytes(b"not a keras file")
    with caplog.at_level("WARNING"):
        model = zoo.load_source_model("mlp", source="digits:0-4", epochs=1, cache_dir=tmp_path)
    assert "unreadable" in caplog.text
    assert isinstance(model, keras.Model)
    keras.models.load_model(cached)  # replaced by a good file


def test_unknown_model_and_cache_folder(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="available"):
        zoo.load_source_model("vgg16")
    monkeypatch.setenv("NCP_SEARCH_CACHE", str(tmp_path))
    assert zoo.cache_folder() == tmp_path / "zoo"
    assert zoo.cache_folder("x").name == "x"
