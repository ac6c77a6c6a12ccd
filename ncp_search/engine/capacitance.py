"""Neural capacitance ``beta_eff`` of a frozen probe, without materialising P.

Notation (Jiang et al. 2024, Methods): the probe is a bias-free ReLU MLP with
weight matrices ``W_1 .. W_L`` on features ``z_0``; ``C`` is the mean softmax
cross-entropy on a batch. ``P`` is the square matrix over all probe weights whose
only non-zero blocks are ``(l, l+1) = d2C / dW_l dW_{l+1}``. With
``delta_in = P 1`` and ``delta_out = 1^T P`` (Eq. 7),

    beta_eff = (delta_out . delta_in) / (1^T P 1)                        (Eq. 2)

How it is computed (no N x N matrix is ever formed): write ``s_m`` for the sum of
the entries of ``dC/dW_m``. Then ``d s_m / dW_{m-1}`` is the row-sum vector of
block ``(m-1, m)`` (``delta_in`` on layer ``m-1``) and ``d s_m / dW_{m+1}`` is the
column-sum vector of block ``(m, m+1)`` (``delta_out`` on layer ``m+1``): each is
one Hessian-vector product, i.e. one extra backward pass. ``1^T P 1`` is the sum of
all ``delta_in`` entries.

With softmax cross-entropy the gradient with respect to the logits sums to zero
over classes, so ``s_L = 0`` identically and ``delta_in`` on layer ``L-1`` is
exactly zero. That term is set to an exact 0 instead of being
computed as round-off; consequently a 3-layer probe has ``beta_eff == 0.0``
exactly, and 4 weight layers are the minimum for an informative value.

References:
    Jiang et al., "Network properties determine neural network performance",
    Nature Communications 15, 5718 (2024): Eq. 2 (beta_eff), Eq. 7 (P),
    Algorithm 1 (probe).
"""

from __future__ import annotations

import json
import logging
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ncp_search.engine.keras_import import keras, tf
from ncp_search.engine.probe import ProbeParts, split_probe

logger = logging.getLogger(__name__)

DEFAULT_EPS = 1e-12
_PRECISIONS = {"float32": tf.float32, "float64": tf.float64}


@dataclass(frozen=True)
class BetaEffTerms:
    """``beta_eff`` with the parts it is made of and cheap diagnostics of the batch.

    Attributes:
        beta_eff: ``numerator / (denominator + eps)`` (Eq. 2); NaN if not computable.
        numerator: ``delta_out . delta_in`` (``1^T P delta_in``).
        denominator: ``1^T P 1`` (a signed sum; it can cross zero).
        loss: mean cross-entropy of the probe on the batch.
        accuracy: probe accuracy on the batch.
        feature_norm: mean L2 norm of the features entering the probe.
        dead_fraction: fraction of hidden probe units that are zero on every sample.
        delta_in_norm: L2 norm of ``delta_in`` over all probe weights.
        delta_out_norm: L2 norm of ``delta_out`` over all probe weights.
    """

    beta_eff: float
    numerator: float
    denominator: float
    loss: float
    accuracy: float
    feature_norm: float
    dead_fraction: float
    delta_in_norm: float
    delta_out_norm: float

    def as_dict(self) -> dict[str, float]:
        """The terms as a plain ``dict`` of floats (for logs and JSON)."""
        return {k: float(v) for k, v in self.__dict__.items()}


_FIELDS = tuple(BetaEffTerms.__dataclass_fields__)
NAN_TERMS = BetaEffTerms(**{name: float("nan") for name in _FIELDS})


def _probe_forward(
    kernels: Sequence[tf.Tensor], features: tf.Tensor
) -> tuple[tf.Tensor, list[tf.Tensor]]:
    z = features
    hidden = []
    for kernel in kernels[:-1]:
        z = tf.nn.relu(tf.matmul(z, kernel))
        hidden.append(z)
    return tf.matmul(z, kernels[-1]), hidden


def _terms_graph(kernels: list[tf.Tensor], features: tf.Tensor, labels: tf.Tensor, eps: tf.Tensor):
    """All of Eq. 2's terms as tensors; ``kernels`` are plain tensors (not variables)."""
    n_layers = len(kernels)
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(kernels)
        with tf.GradientTape() as inner:
            inner.watch(kernels)
            logits, hidden = _probe_forward(kernels, features)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            )
        grads = inner.gradient(loss, kernels)
        # s_m for m = 0 .. L-2 (s_{L-1} is identically zero, see module docstring).
        sums = [tf.reduce_sum(g) for g in grads[:-1]]

    zero = tf.constant(0.0, dtype=features.dtype)
    numerator = zero
    denominator = zero
    in_sq = zero
    out_sq = zero
    # delta_in on layer m-1 and delta_out on layer m+1 from one HVP each (m = 0 .. L-2).
    delta_in: dict[int, tf.Tensor] = {}
    delta_out: dict[int, tf.Tensor] = {}
    for m in range(n_layers - 1):
        targets = {}
        if m >= 1 and m - 1 <= n_layers - 3:
            targets["in"] = m - 1
        if m + 1 <= n_layers - 1:
            targets["out"] = m + 1
        if not targets:
            continue
        names = list(targets)
        parts = outer.gradient(
            sums[m],
            [kernels[targets[name]] for name in names],
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        for name, part in zip(names, parts):
            (delta_in if name == "in" else delta_out)[targets[name]] = part
    del outer
    for layer, d_in in delta_in.items():
        denominator += tf.reduce_sum(d_in)
        in_sq += tf.reduce_sum(tf.square(d_in))
        if layer in delta_out:
            numerator += tf.reduce_sum(d_in * delta_out[layer])
    for d_out in delta_out.values():
        out_sq += tf.reduce_sum(tf.square(d_out))

    beta = numerator / (denominator + eps)
    predictions = tf.argmax(logits, axis=-1, output_type=labels.dtype)
    accuracy = tf.reduce_mean(tf.cast(tf.equal(predictions, labels), features.dtype))
    feature_norm = tf.reduce_mean(tf.norm(features, axis=-1))
    if hidden:
        dead = [tf.reduce_all(tf.equal(h, 0.0), axis=0) for h in hidden]
        dead_fraction = tf.reduce_mean(tf.cast(tf.concat(dead, axis=0), features.dtype))
    else:
        dead_fraction = zero
    return tf.stack(
        [
            beta,
            numerator,
            denominator,
            loss,
            accuracy,
            feature_norm,
            dead_fraction,
            tf.sqrt(in_sq),
            tf.sqrt(out_sq),
        ]
    )


_compiled_terms = tf.function(_terms_graph, reduce_retracing=True)


def _check_precision(precision: str) -> tf.DType:
    if precision not in _PRECISIONS:
        raise ValueError(
            f"precision must be one of {sorted(_PRECISIONS)}, but got precision={precision!r}."
        )
    return _PRECISIONS[precision]


def _sparse_labels(labels: Any, n_samples: int, num_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == num_classes and num_classes > 1:
        if not np.all(np.isfinite(y)):
            raise ValueError(
                "labels contain NaN or inf; pass integer class labels or one-hot rows."
            )
        y = np.argmax(y, axis=1)
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            "labels must be integer class ids of shape (n,) or one-hot of shape "
            f"(n, {num_classes}), but got shape {y.shape}."
        )
    if y.shape[0] != n_samples:
        raise ValueError(
            f"labels and inputs must have the same number of samples, but got {y.shape[0]} labels "
            f"for {n_samples} inputs."
        )
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError("labels must be integer class ids; got non-integer values.")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes - 1}] for a probe with {num_classes} outputs, "
            f"but got values in [{y.min()}, {y.max()}]."
        )
    return y


def _to_terms(values: np.ndarray, context: str) -> BetaEffTerms:
    terms = BetaEffTerms(**{name: float(v) for name, v in zip(_FIELDS, values)})
    if not np.isfinite(terms.beta_eff):
        warnings.warn(
            f"beta_eff is not finite ({context}: numerator={terms.numerator}, "
            f"denominator={terms.denominator}, loss={terms.loss}); returning NaN. "
            "The model has probably diverged.",
            RuntimeWarning,
            stacklevel=3,
        )
        return BetaEffTerms(**{**terms.as_dict(), "beta_eff": float("nan")})
    return terms


def beta_eff_terms_from_weights(
    kernels: Sequence[Any], features: Any, labels: Any, *, precision: str = "float64",
    eps: float = DEFAULT_EPS, compiled: bool = True,
) -> BetaEffTerms:
    """Eq. 2 and its parts for explicit probe weights and features.

    Args:
        kernels: the probe's weight matrices ``W_1 .. W_L`` (arrays, tensors or
            variables), shapes ``(d_0, d_1), (d_1, d_2), ..., (d_{L-1}, classes)``.
        features: ``(n, d_0)`` features entering the probe.
        labels: ``(n,)`` integer class ids or ``(n, classes)`` one-hot rows.
        precision: ``"float64"`` (reference) or ``"float32"`` (fast).
        eps: added to the denominator against 0/0.
        compiled: run the ``tf.function``-compiled graph (else eager).

    Returns:
        The terms; ``beta_eff`` is NaN (with a ``RuntimeWarning``) when the inputs
        or the result are not finite.

    Raises:
        ValueError: on inconsistent shapes, fewer than 2 layers, or bad labels.

    References:
        Jiang et al. 2024, Eq. 2 and Eq. 7.
    """
    dtype = _check_precision(precision)
    if len(kernels) < 2:
        raise ValueError(f"a probe needs at least 2 weight layers, but got {len(kernels)}.")
    mats = [np.asarray(k) for k in kernels]
    x = np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f"features must have shape (n, d), but got shape {x.shape}.")
    expected = x.shape[1]
    for index, mat in enumerate(mats):
        if mat.ndim != 2 or mat.shape[0] != expected:
            raise ValueError(
                f"kernel {index} must have shape ({expected}, units), but got shape {mat.shape}."
            )
        expected = mat.shape[1]
    y = _sparse_labels(labels, x.shape[0], expected)
    if not (np.all(np.isfinite(x)) and all(np.all(np.isfinite(m)) for m in mats)):
        warnings.warn(
            "features or probe weights contain NaN/inf; returning beta_eff=NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
        return NAN_TERMS
    fn = _compiled_terms if compiled else _terms_graph
    values = fn(
        [tf.constant(m, dtype=dtype) for m in mats],
        tf.constant(x, dtype=dtype),
        tf.constant(y),
        tf.constant(eps, dtype=dtype),
    )
    return _to_terms(values.numpy(), "explicit weights")


def beta_eff_from_weights(
    kernels: Sequence[Any], features: Any, labels: Any, *, precision: str = "float64",
    eps: float = DEFAULT_EPS,
) -> float:
    """``beta_eff`` (Eq. 2) for explicit probe weights and features.

    See :func:`beta_eff_terms_from_weights` for the arguments.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> ks = [rng.normal(size=s) for s in [(5, 4), (4, 4), (4, 4), (4, 3)]]
        >>> b = beta_eff_from_weights(ks, rng.normal(size=(8, 5)), rng.integers(0, 3, 8))
        >>> round(b, 3)
        0.226
    """
    return beta_eff_terms_from_weights(
        kernels, features, labels, precision=precision, eps=eps
    ).beta_eff


class BetaEffMeter:
    """Computes ``beta_eff`` of a probed model on one fixed batch, compiled once.

    This is the fast path for use during training: the feature extractor and the
    HVPs run in a single ``tf.function`` that reads the model's current weights, so
    each call costs one forward pass of the bottom on the batch plus ``L - 1``
    Hessian-vector products on the probe.

    The compiled function is shared by every meter on a model of the same
    architecture (layer types and settings, weight shapes, batch shape, probe
    shapes, precision) in the process: the weights are its arguments, so the
    second trial of a search, which builds a new model, does not trace again and
    its first call costs about as much as any later one. Only the first meter on
    each architecture pays the tracing (about half a second on a CPU).

    Args:
        model: a model returned by :func:`ncp_search.attach_probe` or
            :func:`ncp_search.observer_probe`.
        x: the fixed probe batch (inputs of ``model``).
        y: its labels (integer ids or one-hot).
        precision: ``"float32"`` (default, fast) or ``"float64"``.
        eps: added to the denominator of Eq. 2.
        share_trace: reuse the compiled function of an earlier meter on the same
            architecture (default). ``False`` traces a function for this meter
            alone (the behaviour before; for layers whose computation is not
            described by their configuration).

    Raises:
        ncp_search.ProbeError: if ``model`` carries no probe.
        ValueError: on an empty batch, labels that do not fit the probe, or inputs
            whose shape does not match the model's.

    NaN and edge cases:
        Non-finite features, weights or results give ``beta_eff = NaN`` and a
        ``RuntimeWarning``; the meter never raises during training for them.
        A model whose architecture cannot be described (a layer without a
        serialisable configuration) gets its own compiled function, as with
        ``share_trace=False``.

    Example:
        >>> import ncp_search
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
        ...                           keras.layers.Dense(3, activation="softmax")])
        >>> rng = np.random.default_rng(0)
        >>> x_probe, y_probe = rng.random((32, 8), dtype="float32"), rng.integers(0, 3, 32)
        >>> meter = BetaEffMeter(ncp_search.observer_probe(model), x_probe, y_probe)
        >>> terms = meter()  # after each epoch: reads the model's current weights
        >>> bool(np.isfinite(terms.beta_eff))
        True
    """

    def __init__(
        self,
        model: Any,
        x: Any,
        y: Any,
        *,
        precision: str = "float32",
        eps: float = DEFAULT_EPS,
        share_trace: bool = True,
    ) -> None:
        dtype = _check_precision(precision)
        parts = split_probe(model)
        self._parts = parts
        self._source = (x, y, precision, eps)
        self._x = _as_model_input(x)
        n = int(tf.nest.flatten(self._x)[0].shape[0])
        if n < 1:
            raise ValueError("the probe batch is empty; pass at least one sample.")
        _check_input_shapes(parts.feature_model, self._x)
        self._y = tf.constant(_sparse_labels(y, n, parts.num_classes))
        self._eps = tf.constant(eps, dtype=dtype)
        self._dtype = dtype
        self._variables = tuple(parts.feature_model.variables)
        self._local: Any = None
        self._shared: _SharedTrace | None = None
        if share_trace:
            key = _architecture_key(parts, self._variables, self._x, self._y, dtype)
            if key is not None:
                self._shared = _shared_trace(key, parts.feature_model, self._variables, dtype)

    def measures(self, x: Any, y: Any, precision: str, eps: float) -> bool:
        """Whether this meter was built for exactly these batch objects and settings."""
        sx, sy, sp, se = self._source
        return sx is x and sy is y and sp == precision and se == eps

    @property
    def n_samples(self) -> int:
        """Number of samples in the probe batch."""
        return int(self._y.shape[0])

    @property
    def shares_trace(self) -> bool:
        """Whether this meter runs a compiled function shared with other meters."""
        return self._shared is not None

    @property
    def traces(self) -> int:
        """How often the compiled function this meter runs was traced, by any meter
        that shares it (0 before the first call). Stays 1 across the trials of one
        architecture."""
        fn = self._shared.fn if self._shared is not None else self._local
        return 0 if fn is None else int(fn.experimental_get_tracing_count())

    def _graph(self):
        features = self._parts.feature_model(self._x, training=False)
        bottom = [tf.convert_to_tensor(w) for w in self._parts.feature_model.weights]
        kernels = [tf.convert_to_tensor(k) for k in self._parts.kernels]
        return _checked_terms(features, bottom, kernels, self._y, self._eps, self._dtype)

    def _run(self) -> tuple[Any, Any]:
        shared = self._shared
        if shared is not None:
            weights = [_variable_value(v) for v in self._variables]
            kernels = [_variable_value(k) for k in self._parts.kernels]
            try:
                return shared.call(weights, kernels, self._x, self._y, self._eps)
            except Exception as error:  # noqa: BLE001 - fall back to a trace of our own
                if shared.ran:
                    raise
                _drop_shared(shared)
                self._shared = None
                logger.debug("shared beta_eff trace failed (%r); tracing this meter alone",
                             error)
        if self._local is None:
            self._local = tf.function(self._graph, reduce_retracing=True)
        return self._local()

    def __call__(self) -> BetaEffTerms:
        """``beta_eff`` and its terms with the model's current weights."""
        finite, values = self._run()
        if self._shared is not None:
            self._shared.ran = True
        if not bool(finite):
            warnings.warn(
                "features or probe weights contain NaN/inf (diverged model?); "
                "returning beta_eff=NaN.",
                RuntimeWarning,
                stacklevel=2,
            )
            return NAN_TERMS
        return _to_terms(values.numpy(), "probed model")


def _checked_terms(
    features: Any, bottom: Sequence[Any], kernels: Sequence[Any], labels: Any, eps: Any,
    dtype: tf.DType,
) -> tuple[Any, Any]:
    """Eq. 2's terms on ``features`` and whether everything they depend on is finite."""
    features = tf.cast(tf.reshape(features, [tf.shape(features)[0], -1]), dtype)
    kernels = [tf.cast(k, dtype) for k in kernels]
    # A diverged bottom can still emit finite features (ReLU maps NaN to 0 on some
    # kernels), so its weights are checked too: one cheap pass over the parameters.
    finite = tf.reduce_all(tf.math.is_finite(features))
    for weight in [*kernels, *bottom]:
        if weight.dtype.is_floating:
            finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(weight)))
    return finite, _terms_graph(kernels, features, labels, eps)


@dataclass
class _SharedTrace:
    """One compiled ``beta_eff`` function per architecture: it runs the layer code of
    ``template`` (the first feature model seen with that architecture) on weights
    passed as arguments, in the order of ``variables`` (the template's)."""

    key: str
    template: Any
    variables: tuple[Any, ...]
    fn: Any
    ran: bool = False
    concrete: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, *args: Any) -> Any:
        """Run the traced graph (tracing it on the first call). Later calls go to the
        concrete function directly: the key guarantees the same argument types, and
        it skips the dispatch, whose first call with new variables costs about as
        much again as the graph of a small probe."""
        if self.concrete is None:
            with self.lock:
                if self.concrete is None:
                    self.concrete = self.fn.get_concrete_function(*args)
        return self.concrete(*args)


_SHARED_MAX = 8  # architectures kept per process (each keeps its template model alive)
_shared: OrderedDict[str, _SharedTrace] = OrderedDict()
_shared_lock = threading.Lock()


def _shared_trace(
    key: str, template: Any, variables: tuple[Any, ...], dtype: tf.DType
) -> _SharedTrace:
    with _shared_lock:
        found = _shared.get(key)
        if found is not None:
            _shared.move_to_end(key)
            return found

        def graph(weights, kernels, x, labels, eps):
            mapping = list(zip(variables, weights))
            with keras.StatelessScope(state_mapping=mapping):
                features = template(x, training=False)
            bottom = [tf.convert_to_tensor(w) for w in weights]
            kernels = [tf.convert_to_tensor(k) for k in kernels]
            return _checked_terms(features, bottom, kernels, labels, eps, dtype)

        entry = _SharedTrace(key, template, variables, tf.function(graph))
        _shared[key] = entry
        while len(_shared) > _SHARED_MAX:
            _shared.popitem(last=False)
        return entry


def _drop_shared(entry: _SharedTrace) -> None:
    with _shared_lock:
        if _shared.get(entry.key) is entry:
            del _shared[entry.key]


def _variable_value(variable: Any) -> Any:
    """The backend variable behind a Keras variable (read inside the graph, no copy)."""
    return getattr(variable, "value", variable)


def _all_layers(model: Any) -> list[Any]:
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        if getattr(layer, "layers", None):
            found.extend(_all_layers(layer))
    return found


def _canonical_config(config: Any) -> Any:
    """A model configuration with its layer names replaced by their order of first
    appearance: two models of the same architecture built one after the other
    (``dense``, then ``dense_1``) get the same canonical configuration."""
    tokens: dict[str, str] = {}

    def token(name: Any) -> Any:
        return tokens.setdefault(name, f"#{len(tokens)}") if isinstance(name, str) else name

    def refs(obj: Any) -> Any:  # [name, node, tensor] triples, possibly nested
        if isinstance(obj, (list, tuple)):
            if len(obj) == 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
                return [token(obj[0]), obj[1], obj[2]]
            return [refs(v) for v in obj]
        if isinstance(obj, dict):
            return {k: refs(v) for k, v in obj.items()}
        return obj

    def history(obj: Any) -> Any:  # keras_history[0] inside inbound nodes
        if isinstance(obj, dict):
            return {k: ([token(v[0]), *v[1:]] if k == "keras_history"
                        and isinstance(v, (list, tuple)) and v else history(v))
                    for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [history(v) for v in obj]
        return obj

    def layer_entry(entry: Any) -> Any:
        if not isinstance(entry, dict):
            return entry
        out = dict(entry)
        if "name" in out:
            out["name"] = token(out["name"])
        inner = out.get("config")
        if isinstance(inner, dict):
            if isinstance(inner.get("layers"), list):
                out["config"] = model_config(inner)
            elif "name" in inner:
                out["config"] = {**inner, "name": token(inner["name"])}
        if "inbound_nodes" in out:
            out["inbound_nodes"] = history(out["inbound_nodes"])
        return out

    def model_config(cfg: dict[str, Any]) -> dict[str, Any]:
        out = dict(cfg)
        if "name" in out:
            out["name"] = token(out["name"])
        if isinstance(out.get("layers"), list):
            out["layers"] = [layer_entry(e) for e in out["layers"]]
        for name in ("input_layers", "output_layers"):
            if name in out:
                out[name] = refs(out[name])
        return out

    return model_config(config) if isinstance(config, dict) else config


def _architecture_key(
    parts: ProbeParts, variables: tuple[Any, ...], x: Any, y: Any, dtype: tf.DType
) -> str | None:
    """What a compiled ``beta_eff`` function depends on besides the weights' values,
    as a string (``None`` when the model cannot be described: no sharing then)."""
    try:
        model = parts.feature_model
        config = _canonical_config(model.get_config())
        classes = [f"{type(layer).__module__}.{type(layer).__qualname__}@{id(type(layer))}"
                   for layer in _all_layers(model)]
        weights = [(tuple(v.shape), str(v.dtype)) for v in variables]
        kernels = [(tuple(k.shape), str(k.dtype)) for k in parts.kernels]
        inputs = [(tuple(t.shape), t.dtype.name) for t in tf.nest.flatten(x)]
        structure = repr(tf.nest.map_structure(lambda _: 0, x))
        return json.dumps(
            [config, classes, weights, kernels, inputs, structure, tuple(y.shape),
             y.dtype.name, dtype.name],
            sort_keys=True,
        )
    except Exception as error:  # noqa: BLE001 - an undescribable model just does not share
        logger.debug("no shared beta_eff trace for this model (%r)", error)
        return None


def _check_input_shapes(feature_model: Any, x: Any) -> None:
    """Refuse a probe batch whose shape does not fit the model's inputs (dicts of
    inputs are left to Keras)."""
    if isinstance(x, dict):
        return
    try:
        expected = [tuple(t.shape) for t in feature_model.inputs]
    except (AttributeError, TypeError):
        return
    given = [tuple(t.shape) for t in tf.nest.flatten(x)]
    if len(expected) != len(given):
        raise ValueError(
            f"the model takes {len(expected)} inputs, but the probe batch has {len(given)} "
            "arrays; pass x_probe in the same structure as the x you pass to fit()."
        )
    for want, got in zip(expected, given):
        if len(want) != len(got) or any(
            w is not None and w != g for w, g in zip(want[1:], got[1:])
        ):
            raise ValueError(
                f"the probe batch has shape {got}, but the model takes inputs of shape "
                f"{want}; draw it from the data you pass to fit(), e.g. "
                "ncp_search.probe_batch(x_train, y_train)."
            )


def _as_model_input(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return [tf.constant(np.asarray(part)) for part in x]
    if isinstance(x, dict):
        return {k: tf.constant(np.asarray(v)) for k, v in x.items()}
    return tf.constant(np.asarray(x))


_meters: weakref.WeakKeyDictionary[Any, BetaEffMeter] = weakref.WeakKeyDictionary()


def _weakrefable(obj: Any) -> bool:
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


def beta_eff_terms(
    model: Any, x: Any, y: Any, *, precision: str = "float32", eps: float = DEFAULT_EPS
) -> BetaEffTerms:
    """``beta_eff`` (Eq. 2) and its parts for a model returned by ``attach_probe``.

    Repeated calls with the same model and the same batch object reuse one compiled
    :class:`BetaEffMeter`; for a loop over epochs prefer holding a meter yourself.

    Args:
        model: a probed model (see :func:`ncp_search.attach_probe`).
        x: inputs of the batch.
        y: labels of the batch (integer ids or one-hot).
        precision: ``"float32"`` (compiled fast path) or ``"float64"`` (reference).
        eps: added to the denominator.

    Raises:
        ncp_search.ProbeError: if ``model`` carries no probe.
        ValueError: on bad labels or shapes.
    """
    meter = _meters.get(model) if _weakrefable(model) else None
    if meter is None or not meter.measures(x, y, precision, eps):
        meter = BetaEffMeter(model, x, y, precision=precision, eps=eps)
        if _weakrefable(model):
            _meters[model] = meter
    return meter()


def beta_eff(
    model: Any, x: Any, y: Any, *, precision: str = "float32", eps: float = DEFAULT_EPS
) -> float:
    """``beta_eff`` (Eq. 2) of a probed model on a batch.

    Args:
        model: a model returned by :func:`ncp_search.attach_probe`.
        x: inputs of the batch (e.g. 256 training samples, fixed across epochs).
        y: labels of the batch.
        precision: ``"float32"`` (compiled fast path) or ``"float64"`` (reference).
        eps: added to the denominator against 0/0.

    Returns:
        The value, or NaN with a ``RuntimeWarning`` if it cannot be computed
        (non-finite inputs, diverged model).

    Raises:
        ncp_search.ProbeError: if ``model`` carries no probe.
        ValueError: on bad labels or shapes.

    Example:
        >>> import ncp_search
        >>> source_model = keras.Sequential([
        ...     keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
        ...     keras.layers.Dense(3, activation="softmax")])
        >>> probed = ncp_search.attach_probe(source_model, num_classes=5)
        >>> rng = np.random.default_rng(0)
        >>> x_probe, y_probe = rng.random((32, 8), dtype="float32"), rng.integers(0, 5, 32)
        >>> value = ncp_search.beta_eff(probed, x_probe, y_probe)
        >>> bool(np.isfinite(value))
        True

    References:
        Jiang et al. 2024, Eq. 2 and Eq. 7; Algorithm 1.
    """
    return beta_eff_terms(model, x, y, precision=precision, eps=eps).beta_eff
