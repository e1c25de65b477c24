"""Generalized tensor products ``⊗_g`` and the channel-wise pooling they induce.

A network with activation ``σ`` and pooling ``P`` computes with
``g(a, b) = P(σ(a), σ(b))`` (SPEC §2). The built-in operators:

================ ======================= ===========================================
name             ``g(a, b)``             network
================ ======================= ===========================================
``product``      ``a · b``               linear activation, product pooling (ConvAC)
``relu_max``     ``max(a, b, 0)``        ReLU, max pooling
``relu_sum``     ``max(a,0) + max(b,0)`` ReLU, sum (average) pooling
``relu_of_sum``  ``max(a + b, 0)``       size-2 convolution then ReLU (dilated)
``relu_product`` ``max(a,0) · max(b,0)`` ReLU, product pooling
``linear_max``   ``max(a, b)``           linear activation, max pooling
``linear_sum``   ``a + b``               linear activation, sum pooling
================ ======================= ===========================================

All but ``relu_of_sum`` are associative and commutative, so they pool windows of
any size; ``relu_of_sum`` is commutative but not associative and pools windows of
exactly two. :func:`operator_for` names the ``g`` of an (activation, pooling)
pair. A user ``g`` (an element-wise, broadcasting callable) pools windows
of two, or larger windows by a left fold when the caller vouches for it with
``associative=True``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

GFunction = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class GeneralizedProduct:
    """A generalized product ``g`` with what the library knows of it.

    Attributes:
      name: the built-in name, or the callable's name.
      binary: ``g(a, b)``, element-wise with broadcasting.
      associative: whether ``g`` is associative and commutative, so a window
        of any size may be pooled.
      reduce: pools axis ``axis`` of an array with ``g`` in one call, or
        ``None`` to fold ``binary`` over the axis.
    """

    name: str
    binary: GFunction
    associative: bool
    reduce: Callable[[jax.Array, int], jax.Array] | None = None

    def pool(self, values: jax.Array, axis: int) -> jax.Array:
        """Pools ``values`` along ``axis`` with ``g``, removing that axis."""
        if self.reduce is not None:
            return self.reduce(values, axis)
        values = jnp.moveaxis(values, axis, 0)
        result = values[0]
        for k in range(1, values.shape[0]):
            result = self.binary(result, values[k])
        return result


def _relu(x: jax.Array) -> jax.Array:
    return jnp.maximum(x, 0)


BUILTIN_OPERATORS: dict[str, GeneralizedProduct] = {
    "product": GeneralizedProduct(
        "product", lambda a, b: a * b, True, lambda x, axis: jnp.prod(x, axis=axis)
    ),
    "relu_max": GeneralizedProduct(
        "relu_max",
        lambda a, b: jnp.maximum(jnp.maximum(a, b), 0),
        True,
        lambda x, axis: _relu(jnp.max(x, axis=axis)),
    ),
    "relu_sum": GeneralizedProduct(
        "relu_sum",
        lambda a, b: _relu(a) + _relu(b),
        True,
        lambda x, axis: jnp.sum(_relu(x), axis=axis),
    ),
    "relu_of_sum": GeneralizedProduct("relu_of_sum", lambda a, b: _relu(a + b), False),
    "relu_product": GeneralizedProduct(
        "relu_product",
        lambda a, b: _relu(a) * _relu(b),
        True,
        lambda x, axis: jnp.prod(_relu(x), axis=axis),
    ),
    "linear_max": GeneralizedProduct(
        "linear_max", jnp.maximum, True, lambda x, axis: jnp.max(x, axis=axis)
    ),
    "linear_sum": GeneralizedProduct(
        "linear_sum", lambda a, b: a + b, True, lambda x, axis: jnp.sum(x, axis=axis)
    ),
}

ACTIVATIONS = ("linear", "relu")
POOLINGS = ("product", "max", "sum")
_PAIR_NAMES = {
    ("linear", "product"): "product",
    ("linear", "max"): "linear_max",
    ("linear", "sum"): "linear_sum",
    ("relu", "product"): "relu_product",
    ("relu", "max"): "relu_max",
    ("relu", "sum"): "relu_sum",
}


def operator_for(activation: str, pooling: str) -> GeneralizedProduct:
    """The ``g(a, b) = P(σ(a), σ(b))`` of a network's activation and pooling.

    A level of the network applies ``σ`` to its convolution's output and pools
    a window with ``P``; its tree decomposition pools the children's
    convolution outputs with ``g`` (SPEC §2, §4). Folding ``g`` over a window
    gives ``P`` over the whole window because ``σ`` leaves ``P``'s output
    unchanged (``P`` of non-negative numbers is non-negative for ``σ = ReLU``),
    so every pair here is associative and commutative.

    Average pooling is sum pooling times ``1 / window``, a linear factor that
    belongs to the next level's weights, not to ``g``: ask for ``"sum"`` here
    and scale the weights (:class:`jaxconvac.nn.generalized.GeneralizedConvNet`
    does both for ``pooling="average"``).

    Args:
      activation: ``σ``: ``"linear"`` (identity) or ``"relu"``.
      pooling: ``P``: ``"product"``, ``"max"`` or ``"sum"``.

    Returns:
      The built-in operator: ``("linear", "product")`` is ``"product"`` (the
      ConvAC), ``("relu", "max")`` is ``"relu_max"``, ``("relu", "sum")`` is
      ``"relu_sum"``, the others ``"relu_product"``, ``"linear_max"`` and
      ``"linear_sum"``.

    Raises:
      ValueError: for an unknown ``activation`` or ``pooling`` (``"average"``
        included, with a pointer to ``"sum"``).

    Examples:
      >>> operator_for("relu", "max").name
      'relu_max'
      >>> float(operator_for("relu", "sum").binary(jnp.array(-1.0), 2.0))
      2.0
    """
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {ACTIVATIONS}, got {activation!r}."
        )
    if pooling == "average":
        raise ValueError(
            "pooling='average' is pooling='sum' with the next level's weights "
            "divided by the window; ask for pooling='sum' here and scale the "
            "weights, or use GeneralizedConvNet(pooling='average')."
        )
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    return BUILTIN_OPERATORS[_PAIR_NAMES[activation, pooling]]


def resolve_operator(
    g: str | GFunction | GeneralizedProduct, *, associative: bool = False
):
    """Turns a ``g`` argument into an :class:`GeneralizedProduct`.

    Args:
      g: a built-in name (see the module docstring), an :class:`GeneralizedProduct`, or
        an element-wise callable ``g(a, b)``.
      associative: for a callable, whether the caller vouches that it is
        associative and commutative (so windows larger than 2 may be pooled).

    Returns:
      The operator.

    Raises:
      ValueError: for an unknown name.
      TypeError: for anything that is neither a name nor callable.
    """
    if isinstance(g, GeneralizedProduct):
        return g
    if isinstance(g, str):
        if g not in BUILTIN_OPERATORS:
            raise ValueError(
                f"g must be one of {sorted(BUILTIN_OPERATORS)} or a callable, "
                f"got {g!r}."
            )
        return BUILTIN_OPERATORS[g]
    if callable(g):
        return GeneralizedProduct(getattr(g, "__name__", "user g"), g, associative)
    raise TypeError(
        f"g must be a name in {sorted(BUILTIN_OPERATORS)} or a callable, got "
        f"{type(g).__name__}."
    )


def check_window(operator: GeneralizedProduct, window: int, *, where: str = "") -> None:
    """Refuses to pool a window larger than 2 with a non-associative ``g``."""
    if window > 2 and not operator.associative:
        raise ValueError(
            f"g={operator.name!r} is not known to be associative and commutative, "
            f"so it pools windows of 2 only; {where}window is {window}. Pass a "
            "user g with associative=True to fold it over larger windows."
        )


def generalized_tensor_product(
    a: ArrayLike, b: ArrayLike, g: str | GFunction = "product"
) -> jax.Array:
    """The generalized tensor product ``A ⊗_g B`` (SPEC §2).

    ``(A ⊗_g B)[d_0 … d_{P+Q-1}] = g(A[d_0 … d_{P-1}], B[d_P … d_{P+Q-1}])``.

    Args:
      a: ``A``, of shape ``(M_0, …, M_{P-1})`` (order ``P ≥ 0``).
      b: ``B``, of shape ``(M_P, …, M_{P+Q-1})``.
      g: a built-in name (``"product"``, ``"relu_max"``, ``"relu_sum"``,
        ``"relu_of_sum"``, ``"relu_product"``, ``"linear_max"``,
        ``"linear_sum"``) or an element-wise callable ``g(a, b)``.

    Returns:
      The tensor of shape ``(M_0, …, M_{P+Q-1})``.

    Raises:
      ValueError: for an unknown name of ``g``.

    Examples:
      >>> generalized_tensor_product(jnp.array([1.0, -2.0]), jnp.array([3.0]))
      Array([[ 3.],
             [-6.]], dtype=float32)
      >>> generalized_tensor_product(
      ...     jnp.array([1.0, -2.0]), jnp.array([-3.0]), "relu_max")
      Array([[1.],
             [0.]], dtype=float32)
    """
    operator = resolve_operator(g)
    a, b = jnp.asarray(a), jnp.asarray(b)
    left = jnp.reshape(a, a.shape + (1,) * b.ndim)
    right = jnp.reshape(b, (1,) * a.ndim + b.shape)
    left, right = jnp.broadcast_arrays(left, right)
    return operator.binary(left, right)
