"""Attach a frozen neural capacitance probe to a pre-trained Keras classifier.

Algorithm 1, steps 1-2 (Jiang et al. 2024): remove the output layer of a
pre-trained model, put a randomly initialised, bias-free ReLU MLP with softmax
output on the remaining features, and freeze it. Fine-tuning then trains the bottom
only; ``beta_eff`` is read off the probe.

The probe's layers carry fixed names (``ncp_probe_features``,
``ncp_probe_dense_1`` ...), so a probed model can be saved, reloaded and still be
recognised by :func:`split_probe`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from ncp_search.engine.keras_import import keras
from ncp_search.errors import ProbeError

FEATURES_NAME = "ncp_probe_features"
FLATTEN_NAME = "ncp_probe_flatten"
DENSE_PREFIX = "ncp_probe_dense_"
MIN_WEIGHT_LAYERS = 4
DEFAULT_HIDDEN = (64, 64, 64)

# Layers that may follow the output Dense without changing what the features are.
_PASS_THROUGH = (keras.layers.Activation, keras.layers.Softmax, keras.layers.Dropout)


@dataclass(frozen=True)
class ProbeParts:
    """The pieces of a probed model that ``beta_eff`` needs.

    Attributes:
        feature_model: maps the model's inputs to the (flattened) probe input.
        kernels: the probe's frozen weight variables ``W_1 .. W_L``.
        num_classes: number of probe outputs.
    """

    feature_model: Any
    kernels: tuple[Any, ...]
    num_classes: int


def _check_backend() -> None:
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "ncp_search needs the TensorFlow backend of Keras, but Keras runs on "
            f"{keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow before importing keras."
        )


def _output_tensor(model: Any) -> Any:
    try:
        outputs = model.outputs
    except AttributeError:
        outputs = None
    if not outputs:
        raise ProbeError(
            f"model {model.name!r} has no symbolic outputs (it was never built on an Input). "
            "Build it first, e.g. keras.Sequential([keras.Input(shape), ...]) or "
            "model.build(input_shape)."
        )
    if len(outputs) != 1:
        raise ProbeError(
            f"attach_probe needs a single-output classifier, but model {model.name!r} has "
            f"{len(outputs)} outputs. Pass feature_layer=<name> to cut at a layer instead."
        )
    return outputs[0]


def _producer(tensor: Any) -> Any:
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        raise ProbeError("cannot trace the model's output back to a layer.")
    return history[0]


def classifier_features(model: Any) -> Any:
    """The input tensor of a classifier's output Dense layer (its feature output).

    Raises:
        ncp_search.ProbeError: if the model does not end in a classifier head.
    """
    layer = _producer(_output_tensor(model))
    while isinstance(layer, _PASS_THROUGH):
        layer = _producer(layer.input)
    activation = getattr(getattr(layer, "activation", None), "__name__", None)
    units = getattr(layer, "units", 0)
    is_classifier_head = (
        isinstance(layer, keras.layers.Dense)
        and units >= 2
        and activation in ("softmax", "linear")
    )
    if not is_classifier_head:
        names = [lay.name for lay in model.layers]
        raise ProbeError(
            f"model {model.name!r} does not end in a classifier head (a Dense layer with "
            f">= 2 units and softmax or linear activation, optionally followed by "
            f"Softmax/Activation/Dropout); its last layer is {layer.name!r} "
            f"({type(layer).__name__}). Pass feature_layer=<name> to cut at a layer; "
            f"layers: {names}."
        )
    return layer.input


def _named_features(model: Any, feature_layer: str) -> Any:
    try:
        layer = model.get_layer(feature_layer)
    except ValueError:
        names = [lay.name for lay in model.layers]
        raise ProbeError(
            f"feature_layer={feature_layer!r} is not a layer of model {model.name!r}; "
            f"available layers: {names}."
        ) from None
    return layer.output


def _check_hidden(hidden: Sequence[int]) -> tuple[int, ...]:
    widths = tuple(hidden)
    if any(not isinstance(w, (int, np.integer)) or w < 1 for w in widths):
        raise ValueError(f"hidden must be positive integers, but got hidden={widths}.")
    if len(widths) + 1 < MIN_WEIGHT_LAYERS:
        raise ValueError(
            f"the probe needs at least {MIN_WEIGHT_LAYERS} weight layers (at least "
            f"{MIN_WEIGHT_LAYERS - 1} hidden layers), but got hidden={widths} "
            f"({len(widths) + 1} weight layers). With softmax cross-entropy the row sums of "
            "P on the last hidden layer vanish exactly (the gradient with respect to the logits "
            "sums to zero over the classes), so a 3-layer probe has beta_eff == 0 whatever "
            "the model. Use e.g. hidden=(64, 64, 64)."
        )
    return tuple(int(w) for w in widths)


def attach_probe(
    model: Any,
    num_classes: int,
    *,
    hidden: Sequence[int] = DEFAULT_HIDDEN,
    feature_layer: str | None = None,
    seed: int = 0,
    clone: bool = False,
) -> Any:
    """Replace a classifier's output layer with a frozen random probe (Algorithm 1).

    Args:
        model: a built Keras classifier (Sequential or functional, including a
            ``keras.applications`` model), pre-trained on a source task.
        num_classes: number of classes of the target task (probe outputs).
        hidden: widths of the probe's hidden ReLU layers; at least 3, so that the
            probe has at least 4 weight layers.
        feature_layer: cut at this layer instead of before the output layer.
            Its output is flattened if it is not a vector.
        seed: seed of the probe's random initialisation (He normal, no biases).
        clone: fine-tune a copy of ``model`` (same weights) instead of sharing its
            layers. Without it, training the probed model changes ``model``'s layers.

    Returns:
        A ``keras.Model`` with the same inputs whose output is the probe's softmax.
        Its bottom layers keep their ``trainable`` flags; the probe is frozen.

    Raises:
        ValueError: on bad ``num_classes`` or ``hidden`` (fewer than 4 weight layers).
        ncp_search.ProbeError: if the model has no identifiable feature output.

    Example:
        >>> source_model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, "relu"),
        ...                                  keras.layers.Dense(10, "softmax")])
        >>> probed = attach_probe(source_model, num_classes=5, hidden=(64, 64, 64))
        >>> probed.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        >>> probed.output.shape  # the probe's 5 classes replace the source's 10
        (None, 5)

    References:
        Jiang et al. 2024, Algorithm 1, steps 1-2.
    """
    _check_backend()
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(
            f"num_classes must be an integer >= 2, but got num_classes={num_classes!r}."
        )
    widths = _check_hidden(hidden)
    if clone:
        source = keras.models.clone_model(model)
        source.set_weights(model.get_weights())
        model = source
    if feature_layer is None:
        features = classifier_features(model)
    else:
        features = _named_features(model, feature_layer)
    return _attach(model, features, int(num_classes), widths, seed)


def _attach(model: Any, features: Any, num_classes: int, widths: tuple[int, ...],
            seed: int) -> Any:
    """A model with ``model``'s inputs and a frozen probe on ``features``."""
    if len(features.shape) > 2:
        features = keras.layers.Flatten(name=FLATTEN_NAME)(features)
    if features.shape[-1] is None:
        raise ProbeError(
            f"the feature output of model {model.name!r} has unknown width {features.shape}; "
            "the probe needs a fixed feature size."
        )
    x = keras.layers.Identity(name=FEATURES_NAME)(features)
    sizes = widths + (num_classes,)
    for index, units in enumerate(sizes, start=1):
        last = index == len(sizes)
        x = keras.layers.Dense(
            units,
            activation="softmax" if last else "relu",
            use_bias=False,
            kernel_initializer=keras.initializers.HeNormal(seed=seed * 1000 + index),
            trainable=False,
            name=f"{DENSE_PREFIX}{index}",
        )(x)
    return keras.Model(inputs=_inputs(model), outputs=x, name=f"{model.name}_ncp_probe")


def carries_probe(model: Any) -> bool:
    """Whether ``model`` has a probe from :func:`attach_probe` (a layer named
    ``ncp_probe_features``)."""
    return any(getattr(layer, "name", None) == FEATURES_NAME
               for layer in getattr(model, "layers", []))


def observer_probe(
    model: Any,
    num_classes: int | None = None,
    *,
    hidden: Sequence[int] = DEFAULT_HIDDEN,
    feature_layer: str | None = None,
    seed: int = 0,
) -> Any:
    """A frozen probe beside a classifier's own head, that only observes.

    The returned model shares ``model``'s layers up to the features (the input of
    its output layer, or ``feature_layer``'s output) and puts the frozen probe on
    them; ``model`` itself is not changed and keeps training its own head, and the
    probe sees every update of the shared layers. This is the observer mode of
    the README: what :class:`ncp_search.NCPCallback`, :class:`ncp_search.NCPTuneCallback`
    and :class:`ncp_search.BetaEffLogger` attach to a plain model.

    Args:
        model: a built Keras classifier, Sequential or functional, whose output
            layer is a Dense softmax (or linear, logits) layer with >= 2 units,
            optionally followed by Softmax/Activation/Dropout.
        num_classes: the probe's number of outputs; default: the output layer's units.
        hidden: widths of the probe's hidden ReLU layers (at least 3).
        feature_layer: put the probe on this layer's output instead (for a model
            that is not a classifier in the sense above; ``num_classes`` is then
            required unless the model is one).
        seed: seed of the probe's random initialisation.

    Returns:
        A ``keras.Model`` with ``model``'s inputs and the probe's softmax as output,
        to pass where a probed model is expected (``probed_model=``,
        :class:`ncp_search.BetaEffMeter`).

    Raises:
        ncp_search.ProbeError: when no probe can be attached (no symbolic graph, not
            a classifier and no ``feature_layer``, or features that come straight
            from the inputs, with no layer that training changes); the message says
            how to fix it.
        ValueError: on bad ``num_classes`` or ``hidden``.

    Example:
        >>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, "relu"),
        ...                           keras.layers.Dense(10, "softmax")])
        >>> probed = observer_probe(model)   # probe on the 32 hidden units, 10 outputs

    References:
        Jiang et al. 2024, Algorithm 1, steps 1-2 (the probe), used beside the head.
    """
    _check_backend()
    widths = _check_hidden(hidden)
    _require_graph(model)
    head_units: int | None = None
    if feature_layer is None:
        try:
            features = classifier_features(model)
        except ProbeError as error:
            raise ProbeError(
                f"{error} For a model that is not a softmax/logits classifier, put the probe "
                "on a layer yourself: feature_layer=<name>, num_classes=<number of classes>."
            ) from None
        head_units = _head_units(model)
    else:
        features = _named_features(model, feature_layer)
        try:
            classifier_features(model)
            head_units = _head_units(model)
        except ProbeError:
            head_units = None
    if num_classes is None:
        if head_units is None:
            raise ProbeError(
                f"model {model.name!r} is not a softmax/logits classifier, so the number of "
                "classes cannot be read off its output layer; pass num_classes=<number of "
                "classes>."
            )
        num_classes = head_units
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(
            f"num_classes must be an integer >= 2, but got num_classes={num_classes!r}."
        )
    _require_learned_features(model, features)
    return _attach(model, features, int(num_classes), widths, seed)


def _require_graph(model: Any) -> None:
    if not isinstance(model, keras.Model):
        raise ProbeError(
            f"a probe needs a keras.Model, but got {type(model).__name__}."
        )
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        outputs = None
    if not outputs:
        raise ProbeError(
            f"model {model.name!r} ({type(model).__name__}) has no symbolic graph to attach a "
            "probe to: a subclassed keras.Model, or a Sequential model that was never built. "
            "Build it on an input, e.g. keras.Sequential([keras.Input(shape), ...]) or the "
            "functional API, or pass probed_model=<a functional model that shares its layers "
            "and ends in ncp_search.attach_probe's probe>."
        )


def _head_units(model: Any) -> int:
    """Units of the output Dense of a classifier (``classifier_features`` passed)."""
    layer = _producer(_output_tensor(model))
    while isinstance(layer, _PASS_THROUGH):
        layer = _producer(layer.input)
    return int(layer.units)


def _require_learned_features(model: Any, features: Any) -> None:
    """Refuse features that no weight of the model influences (the head sits on the
    inputs): beta_eff would never change during training."""
    bottom = keras.Model(inputs=_inputs(model), outputs=features)
    if not bottom.weights:
        names = [lay.name for lay in model.layers]
        raise ProbeError(
            f"model {model.name!r} has no weighted layer below its output layer (layers: "
            f"{names}): the probe would see the raw inputs, which training never changes, so "
            "beta_eff would be constant. Add a hidden layer (e.g. "
            "keras.layers.Dense(64, activation='relu')) before the output layer, or put the "
            "probe on a deeper layer with feature_layer=<name>."
        )
    if not bottom.trainable_weights:
        warnings.warn(
            f"every layer below the probe of model {model.name!r} is frozen: beta_eff will not "
            "change until some are made trainable.",
            RuntimeWarning,
            stacklevel=3,
        )


class ProbeOptions(TypedDict, total=False):
    """Where a Keras callback reads ``beta_eff`` while a model trains: the keyword
    arguments of :func:`probe_for`, which :class:`ncp_search.BetaEffLogger`,
    :class:`ncp_search.NCPCallback` and :class:`ncp_search.NCPTuneCallback` take too.

    ``beta_eff`` is read on ``probed_model`` when given; on the model being fit when it
    carries a probe (:func:`ncp_search.attach_probe`, the probe as its head);
    otherwise on a frozen observer probe attached beside the model's own head
    (:func:`ncp_search.observer_probe`), as the other four options say.

    Attributes:
        probed_model: the model carrying the probe, when it is not the model being fit
            (e.g. an :func:`ncp_search.observer_probe` built by hand, or
            :func:`ncp_search.engine.finetune.build_trial_models`' ``probed``).
        num_classes: the observer probe's outputs; default: the model's output units.
        hidden: widths of the observer probe's hidden layers (at least 3); default
            ``(64, 64, 64)``.
        feature_layer: put the observer probe on this layer's output instead of the
            output layer's input.
        probe_seed: seed of the observer probe's initialisation; default 0.
    """

    probed_model: Any
    num_classes: int | None
    hidden: Sequence[int]
    feature_layer: str | None
    probe_seed: int


def check_probe_options(owner: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` if each is a :class:`ProbeOptions` key, or a TypeError naming the
    others (``owner`` is the class or function that received them)."""
    unknown = sorted(set(options) - ProbeOptions.__optional_keys__)
    if unknown:
        raise TypeError(
            f"{owner} got unexpected keyword argument(s) {unknown}; the probe options are "
            f"{sorted(ProbeOptions.__optional_keys__)} (ncp_search.engine.probe.ProbeOptions)."
        )
    return options


def probe_for(
    model: Any,
    x_probe: Any = None,
    *,
    probed_model: Any = None,
    num_classes: int | None = None,
    hidden: Sequence[int] = DEFAULT_HIDDEN,
    feature_layer: str | None = None,
    probe_seed: int = 0,
) -> Any:
    """The probed model to measure ``beta_eff`` on while ``model`` trains.

    ``probed_model`` when given; ``model`` itself when it carries a probe (from
    :func:`attach_probe`, the probe as its head); otherwise an
    :func:`observer_probe` on ``model``. A Sequential model without an ``Input``
    that was not built yet is built from ``x_probe``'s shape first (as Keras
    would on its first batch). The keyword arguments: :class:`ProbeOptions`.

    Raises:
        ncp_search.ProbeError: as :func:`observer_probe`.
    """
    if probed_model is not None:
        return probed_model
    if carries_probe(model):
        return model
    if (isinstance(model, keras.Sequential) and not _has_outputs(model)
            and x_probe is not None and not isinstance(x_probe, (list, tuple, dict))):
        model.build((None, *np.shape(x_probe)[1:]))
    return observer_probe(model, num_classes, hidden=hidden, feature_layer=feature_layer,
                          seed=probe_seed)


def _has_outputs(model: Any) -> bool:
    try:
        return bool(model.outputs)
    except (AttributeError, ValueError):
        return False


def _inputs(model: Any) -> Any:
    inputs = model.inputs
    return inputs[0] if len(inputs) == 1 else inputs


def _probe_layers(model: Any) -> list[Any]:
    layers = [lay for lay in model.layers if lay.name.startswith(DENSE_PREFIX)]
    layers.sort(key=lambda lay: int(lay.name[len(DENSE_PREFIX):]))
    return layers


def split_probe(model: Any) -> ProbeParts:
    """Find the feature extractor and probe weights of a model from :func:`attach_probe`.

    Raises:
        ncp_search.ProbeError: if ``model`` carries no (well-formed) probe.
    """
    _check_backend()
    try:
        features = model.get_layer(FEATURES_NAME).output
    except (ValueError, AttributeError):
        raise ProbeError(
            f"model {getattr(model, 'name', model)!r} carries no ncp_search probe (no layer "
            f"named {FEATURES_NAME!r}). Build it with ncp_search.attach_probe(model, num_classes)."
        ) from None
    layers = _probe_layers(model)
    for position, layer in enumerate(layers):
        last = position == len(layers) - 1
        want = "softmax" if last else "relu"
        if layer.use_bias or getattr(layer.activation, "__name__", "") != want:
            raise ProbeError(
                f"probe layer {layer.name!r} must be bias-free with {want} activation; the "
                "probe was modified after attach_probe."
            )
    if len(layers) < 2:
        raise ProbeError(f"the probe of model {model.name!r} has fewer than 2 weight layers.")
    feature_model = keras.Model(inputs=_inputs(model), outputs=features)
    kernels = tuple(layer.kernel for layer in layers)
    return ProbeParts(feature_model, kernels, int(layers[-1].units))
