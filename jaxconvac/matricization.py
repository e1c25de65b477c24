"""Matricization of a tensor by a subset of its modes (SPEC §3)."""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


def check_row_modes(row_modes: Iterable[int], order: int) -> tuple[int, ...]:
    """Validates a mode subset of an order-``order`` tensor and sorts it.

    Args:
      row_modes: the modes ``I`` that index rows: integers in
        ``[0, order)``, none repeated, neither empty nor all modes.
      order: ``N``, the tensor's number of modes.

    Returns:
      ``I`` as a sorted tuple of Python ints.

    Raises:
      TypeError: if ``row_modes`` is not an iterable of integers.
      ValueError: if a mode is out of range or repeated, or the subset is empty
        or holds every mode.
    """
    if isinstance(row_modes, jax.Array) and isinstance(row_modes, jax.core.Tracer):
        raise TypeError("row_modes must be static Python integers, got a traced array.")
    try:
        modes = list(row_modes)
    except TypeError:
        raise TypeError(
            f"row_modes must be an iterable of integers, got "
            f"{type(row_modes).__name__}."
        ) from None
    checked, seen = [], set()
    for position, mode in enumerate(modes):
        if isinstance(mode, bool | np.bool_):
            raise TypeError(f"row_modes[{position}] must be an integer, got {mode!r}.")
        try:
            index = operator.index(mode)
        except TypeError:
            raise TypeError(
                f"row_modes[{position}] must be an integer, got {mode!r} "
                f"({type(mode).__name__})."
            ) from None
        if not 0 <= index < order:
            raise ValueError(
                f"row_modes[{position}] = {index} is out of range for a tensor of "
                f"order {order}: valid modes are 0 … {order - 1}."
            )
        if index in seen:
            raise ValueError(
                f"row_modes repeats mode {index} (at positions "
                f"{checked.index(index)} and {position}): {_abridged(modes)}."
            )
        checked.append(index)
        seen.add(index)
    if not checked:
        raise ValueError("row_modes must not be empty: a matricization needs rows.")
    if len(checked) == order:
        raise ValueError(
            f"row_modes must be a proper subset of the {order} modes, got all of "
            f"them: {_abridged(modes)}."
        )
    return tuple(sorted(checked))


def _abridged(modes: list) -> str:
    """The modes for an error message: all of them, or the first few of many."""
    if len(modes) <= 16:
        return str(tuple(modes))
    return f"({', '.join(map(str, modes[:8]))}, … {len(modes)} modes in all)"


def matricize(tensor: ArrayLike, row_modes: Iterable[int]) -> jax.Array:
    """The matricization ``[[A]]_I`` of a tensor (SPEC §3).

    Rows are indexed by the modes ``I = row_modes`` (sorted), columns by the
    complement ``J`` (sorted), both row-major with the first mode most
    significant: transpose the axes to ``I + J``, then reshape in C order. With
    this convention ``[[A ⊗ B]]`` is the Kronecker product ``[[A]] ⊙ [[B]]`` for
    the odd/even matricization of even-order tensors. It differs from Kolda and
    Bader's unfolding; ranks and singular values do not.

    Args:
      tensor: ``A``, of shape ``(M_0, …, M_{N-1})``, ``N ≥ 2``.
      row_modes: ``I``, a non-empty proper subset of ``0 … N-1`` as Python
        integers (order does not matter; they are sorted).

    Returns:
      The matrix of shape ``(Π_{i∈I} M_i, Π_{j∈J} M_j)``.

    Raises:
      TypeError: if ``row_modes`` holds a non-integer.
      ValueError: if ``tensor`` has fewer than 2 modes, or ``row_modes`` is out
        of range, repeated, empty or holds every mode.

    Examples:
      >>> A = jnp.arange(8.0).reshape(2, 2, 2)
      >>> matricize(A, (1,))
      Array([[0., 1., 4., 5.],
             [2., 3., 6., 7.]], dtype=float32)
    """
    tensor = jnp.asarray(tensor)
    if tensor.ndim < 2:
        raise ValueError(
            f"tensor must have at least 2 modes to be matricized, got shape "
            f"{tensor.shape}."
        )
    rows = check_row_modes(row_modes, tensor.ndim)
    cols = tuple(m for m in range(tensor.ndim) if m not in rows)
    num_rows = math.prod(tensor.shape[m] for m in rows)
    return jnp.transpose(tensor, rows + cols).reshape(num_rows, -1)


def odd_even_modes(order: int) -> tuple[int, ...]:
    """The even-indexed modes ``(0, 2, 4, …)`` of an order-``order`` tensor.

    With 0-based modes these are the papers' "odd" modes ``1, 3, 5, …``, so
    ``matricize(A, odd_even_modes(N))`` is the odd/even matricization of
    COLT 2016.

    Args:
      order: ``N``, an even number of modes, at least 2.

    Returns:
      ``(0, 2, …, N - 2)``.

    Raises:
      ValueError: if ``order`` is odd or below 2.
    """
    if isinstance(order, bool) or not isinstance(order, int | np.integer):
        raise TypeError(f"order must be an int, got {type(order).__name__}.")
    if order < 2 or order % 2:
        raise ValueError(f"order must be even and at least 2, got {order}.")
    return tuple(range(0, order, 2))
