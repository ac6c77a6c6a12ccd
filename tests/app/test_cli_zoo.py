"""``ncp-search zoo``: it says what it will train, where and roughly how long before it
starts; ``--list`` stops there; ``demo`` and ``zoo`` help show names and defaults."""

from __future__ import annotations

import json

import pytest

import ncp_search.app.cli as cli
import ncp_search.app.zoo as zoo


def _fake_cached(folder, name, *, source="fashion_mnist:0-4", epochs=3, seed=0,
                 train_seconds=None):
    """A cache entry for ``name`` (an empty model file), with a sidecar whose
    ``train_seconds`` says how fast this machine trained it."""
    path = folder / f"{zoo._key(name, source, epochs, seed, None)}.keras"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    if train_seconds is not None:
        path.with_suffix(".json").write_text(json.dumps({
            "architecture": name, "source": source, "epochs": epochs, "input_shape": [28, 28, 1],
            "train_samples": 30000, "val_samples": 5000, "train_seconds": train_seconds}))
    return path


def test_list_names_every_model_the_cache_and_the_estimate_and_trains_nothing(tmp_path,
                                                                               capsys):
    cache = tmp_path / "zoo"
    assert cli.main(["zoo", "--list", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert f"cache folder {cache}" in out
    for name in zoo.available_models():
        assert f"  {name} " in out
    assert "would train 4 model(s)" in out and " min (from reference times" in out
    assert not cache.exists()  # nothing trained, nothing written


def test_cached_models_are_listed_as_cached_and_measured_times_are_used(tmp_path, capsys):
    cache = tmp_path / "zoo"
    # mlp trained here: 3 epochs x (30000 + 5000 / 3) sample-epochs in 95 s = 1 ms each
    _fake_cached(cache, "mlp", train_seconds=95.0)
    plan = {m.name: m for m in zoo.plan_zoo(["mlp", "cnn_small"], cache_dir=cache)}
    assert plan["mlp"].cached and not plan["mlp"].train and plan["mlp"].seconds == 0.0
    assert not plan["cnn_small"].cached and plan["cnn_small"].train
    retrain = zoo.plan_zoo(["mlp"], cache_dir=cache, retrain=True)[0]
    assert retrain.measured and retrain.seconds == pytest.approx(zoo.FIXED_SECONDS + 95.0)
    assert cli.main(["zoo", "--list", "mlp", "cnn_small", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "  mlp          cached" in out
    assert "would train 1 model(s) (cnn_small)" in out and "cached: mlp" in out
    assert cli.main(["zoo", "--list", "mlp", "--retrain", "--cache-dir", str(cache)]) == 0
    assert "about 2 min (from models trained here)" in capsys.readouterr().out  # 100 s


def test_reference_estimate_scales_with_images_epochs_and_classes(tmp_path):
    def seconds(**kwargs):
        return zoo.plan_zoo(["cnn_wide"], cache_dir=tmp_path, **kwargs)[0].seconds

    fashion = seconds() - zoo.FIXED_SECONDS
    ms = zoo.REFERENCE_MS_PER_SAMPLE["cnn_wide"]
    assert fashion == pytest.approx(3 * (30000 + 5000 / 3) * ms / 1000)
    assert seconds(epochs=6) - zoo.FIXED_SECONDS == pytest.approx(2 * fashion)
    assert seconds(source="fashion_mnist") - zoo.FIXED_SECONDS == pytest.approx(2 * fashion)
    digits = seconds(source="digits:0-4") - zoo.FIXED_SECONDS
    assert digits == pytest.approx(3 * (5 * 135 + 5 * 45 / 3) * ms / 1000 * 64 / 784)


def test_zoo_says_what_it_will_train_before_it_trains(tmp_path, capsys, monkeypatch):
    printed_before = []

    def build_zoo(names, **kwargs):
        printed_before.append(capsys.readouterr().out)
        return {}

    monkeypatch.setattr(zoo, "build_zoo", build_zoo)
    _fake_cached(tmp_path, "cnn_small")
    assert cli.main(["zoo", "--cache-dir", str(tmp_path)]) == 0
    assert len(printed_before) == 1
    said = printed_before[0]
    assert f"cache folder {tmp_path}" in said
    assert "will train 3 model(s) (cnn_wide, mlp, resnet_tiny)" in said
    assert "cached: cnn_small" in said and " min (" in said


def test_unknown_name_is_a_clean_error_before_anything_runs(tmp_path, capsys):
    assert cli.main(["zoo", "--list", "vgg16", "--cache-dir", str(tmp_path)]) == 2
    assert "cnn_small" in capsys.readouterr().err


@pytest.mark.parametrize("command, defaults", [
    ("zoo", ["(default: fashion_mnist:0-4)", "(default: 3)", "(default: all)",
             "(default: 0)"]),
    ("demo", ["(default: cnn_small)", "(default: 15)", "(default: digits:0-4)",
              "(default: 64,64,64)", "(default: 256)"]),
])
def test_help_lists_the_zoo_names_and_the_defaults(command, defaults, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for name in zoo.available_models():
        assert name in text
    for default in defaults:
        assert default in text
    assert "~/.cache/ncp_search/zoo" in text
