"""Generalized tensor products ``⊗_g`` and the channel-wise pooling they induce.

A network with activation ``σ`` and pooling ``P`` computes with
``g(a, b) = P(σ(a), σ(b))`` (SPEC §2). The built-in operators:

============== ======================= ==========================================
name           ``g(a, b)``             network
============== ======================= ==========================================
``product``    ``a · b``               linear activation, product pooling (ConvAC)
``relu_max``   ``max(a, b, 0)``        ReLU, max pooling
``relu_sum``   ``max(a,0) + max(b,0)`` ReLU, sum (average) pooling
``relu_of_sum`` ``max(a + b, 0)``      size-2 convolution then ReLU (dilated)
============== ======================= ==========================================

The first three are associative and commutative, so they pool windows of any
size; ``relu_of_sum`` is commutative but not associative and pools windows of
exactly two. A user ``g`` (an element-wise, broadcasting callable) pools windows
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
}


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
        ``"relu_of_sum"``) or an element-wise callable ``g(a, b)``.

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
