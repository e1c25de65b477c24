"""Entanglement measures of a matricization, from its singular values (SPEC §6).

A matricization ``[[A]]_I`` with singular values ``σ_0 ≥ σ_1 ≥ …`` has the
normalised *Schmidt spectrum* ``p_k = σ_k² / Σ_j σ_j²``, a probability vector.
The measures here are functions of it:

* entanglement entropy ``−Σ_k p_k log p_k`` (nats unless ``base`` says
  otherwise, with ``0 · log 0 = 0``);
* geometric measure ``1 − p_0`` (the papers' definition, *not* its square
  root);
* Schmidt number: the numerical rank of SPEC §3;
* Rényi entropy ``log(Σ_k p_k^α) / (1 − α)`` (:func:`renyi_entropy`), whose
  order 2 is minus the log of the *purity* ``Σ_k p_k²``.

They take singular values, never singular vectors, so that their gradients
stay finite where singular values repeat or vanish. Pass the result of
:func:`~jaxconvac.singular_values` of :func:`~jaxconvac.matricize`, or the
exact spectrum of a large network from :func:`exact_spectrum`, which never
forms its coefficient tensor; where even that is out of reach,
:func:`exact_purity` gives the purity across any partition. Everything works
on one spectrum and under ``jax.jit``; batches come from ``jax.vmap``.

**The zero tensor** has no entanglement: its spectrum is all zeros, its
entropy, geometric measure and Schmidt number are ``0``, and the gradients of
the entropy and the geometric measure there are ``0`` too (never NaN).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxconvac.decompositions import check_param_shapes
from jaxconvac.matricization import check_row_modes
from jaxconvac.mode_trees import ModeTree


def _as_spectrum(singular_values: ArrayLike) -> jax.Array:
    values = jnp.asarray(singular_values)
    if values.ndim != 1:
        raise ValueError(
            "singular_values must have 1 dimension ``(num_values,)``, got shape "
            f"{values.shape}."
        )
    if not jnp.issubdtype(values.dtype, jnp.floating):
        values = values.astype(jnp.result_type(float))
    return values


def _real_number(value, name: str, expected: str = "a number") -> float:
    """A concrete real Python or NumPy scalar as a float (huge ints: inf)."""
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{name} must be a concrete number, got a traced value; under "
            f"jax.jit pass it as a static argument (static_argnames=({name!r},))."
        )
    if isinstance(value, jax.Array) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {value!r}.")
    try:
        return float(value)
    except OverflowError:  # An int beyond float range.
        return math.inf if value > 0 else -math.inf


def _check_base(base: float | None) -> float | None:
    if base is None:
        return None
    base = _real_number(base, "base", "a number or None")
    if not base > 0 or base == 1 or math.isinf(base):
        raise ValueError(f"base must be positive, finite and not 1, got {base}.")
    return base


def schmidt_spectrum(singular_values: ArrayLike) -> jax.Array:
    """The normalised Schmidt spectrum ``p_k = σ_k² / Σ_j σ_j²``.

    The values are first divided by the largest ``|σ|``, so large or tiny
    singular values neither overflow nor underflow when squared.

    Args:
      singular_values: ``σ`` of shape ``(num_values,)``, in any order (the
        result keeps it); non-negative.

    Returns:
      ``p`` of shape ``(num_values,)``, summing to 1; all zeros for the zero
      tensor (and for an empty spectrum); all NaN if a value is NaN or
      infinite (every measure here is then NaN too, except the Schmidt number,
      which counts only values above its tolerance).

    Raises:
      ValueError: if ``singular_values`` is not one-dimensional.

    Examples:
      >>> schmidt_spectrum(jnp.array([1.0, 1.0, 0.0])).tolist()
      [0.5, 0.5, 0.0]
    """
    values = _as_spectrum(singular_values)
    if values.shape[0] == 0:
        return values
    largest = jnp.max(jnp.abs(values))
    safe_largest = jnp.where(largest > 0, largest, 1)
    squares = jnp.square(values / safe_largest)
    total = jnp.sum(squares)
    p = squares / jnp.where(total > 0, total, 1)
    # A NaN (or infinite) singular value leaves no spectrum to speak of.
    return jnp.where(jnp.isnan(total), jnp.nan, p)


def _nan_if_nan(p: jax.Array, measure: jax.Array) -> jax.Array:
    """``measure``, or NaN where the spectrum ``p`` is NaN (never hidden)."""
    return jnp.where(jnp.any(jnp.isnan(p)), jnp.nan, measure)


def entanglement_entropy(
    singular_values: ArrayLike, *, base: float | None = None
) -> jax.Array:
    """The entanglement entropy ``−Σ_k p_k log p_k`` of a Schmidt spectrum.

    Args:
      singular_values: ``σ`` of shape ``(num_values,)``.
      base: the base of the logarithm; ``None`` for the natural logarithm
        (nats), ``2`` for bits.

    Returns:
      The entropy, a scalar of shape ``()``: 0 for a product state (one
      non-zero singular value) and for the zero tensor, ``log(k)`` for ``k``
      equal non-zero singular values. Its gradient is finite everywhere,
      including at zero and repeated singular values.

    Raises:
      TypeError: if ``base`` is not a number.
      ValueError: if ``singular_values`` is not one-dimensional or ``base``
        is not a valid logarithm base.

    Examples:
      >>> float(entanglement_entropy(jnp.array([1.0, 1.0, 0.0]), base=2))
      1.0
    """
    base = _check_base(base)
    p = schmidt_spectrum(singular_values)
    positive = p > 0
    safe_p = jnp.where(positive, p, 1)
    entropy = -jnp.sum(jnp.where(positive, p * jnp.log(safe_p), 0))
    if base is not None:
        entropy = entropy / math.log(base)
    return _nan_if_nan(p, entropy)


def geometric_measure(singular_values: ArrayLike) -> jax.Array:
    """The geometric measure of entanglement ``1 − p_0 = 1 − σ_max² / Σ σ²``.

    This is the definition of the papers' slides: one minus the squared
    overlap of the normalised tensor with its nearest product state across
    the partition. Some code reports its square root instead; this function
    does not.

    Args:
      singular_values: ``σ`` of shape ``(num_values,)``.

    Returns:
      ``1 − p_0``, a scalar of shape ``()`` in ``[0, 1 − 1/k]`` for ``k``
      values; 0 for a product state and for the zero tensor.

    Raises:
      ValueError: if ``singular_values`` is not one-dimensional.

    Examples:
      >>> float(geometric_measure(jnp.array([1.0, 1.0])))
      0.5
    """
    p = schmidt_spectrum(singular_values)
    if p.shape[0] == 0:
        return jnp.zeros((), p.dtype)
    return _nan_if_nan(p, jnp.where(jnp.sum(p) > 0, 1 - jnp.max(p), 0))


def schmidt_number(
    singular_values: ArrayLike,
    *,
    rtol: ArrayLike | None = None,
    atol: ArrayLike | None = None,
    matrix_shape: tuple[int, int] | None = None,
) -> jax.Array:
    """The Schmidt number: the numerical rank of the matricization (SPEC §3).

    Counts the singular values strictly above ``tol = max(rtol · σ_max,
    atol)``, as :func:`~jaxconvac.numerical_rank` does on the matrix itself.

    Args:
      singular_values: ``σ`` of shape ``(num_values,)``.
      rtol: the tolerance relative to ``σ_max``. By default
        ``max(matrix_shape) · eps`` (SPEC §3) when ``matrix_shape`` is given,
        else ``num_values · eps``, with ``eps`` of the values' dtype.
      atol: the absolute tolerance, 0 by default.
      matrix_shape: ``(rows, cols)`` of the matricization, for the default
        ``rtol`` only.

    Returns:
      The count, an integer scalar of shape ``()``; 0 for the zero tensor.
        NaN values are not counted (an integer cannot be NaN).

    Raises:
      ValueError: if ``singular_values`` is not one-dimensional, a tolerance is
        negative, or ``matrix_shape`` is not two positive integers.

    Examples:
      >>> int(schmidt_number(jnp.array([1.0, 1.0, 0.0, 0.0])))
      2
    """
    values = _as_spectrum(singular_values)
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if isinstance(tol, int | float) and tol < 0:
            raise ValueError(f"{name} must be non-negative, got {tol}.")
    if rtol is None:
        if matrix_shape is None:
            size = values.shape[0]
        else:
            shape = tuple(matrix_shape)
            if len(shape) != 2 or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape
            ):
                raise ValueError(
                    f"matrix_shape must be two positive ints (rows, cols), got "
                    f"{matrix_shape!r}."
                )
            size = max(shape)
        rtol = size * float(jnp.finfo(values.dtype).eps)
    if atol is None:
        atol = 0.0
    if values.shape[0] == 0:
        return jnp.zeros((), jnp.int32)
    # NaN values are not counted, and do not set the tolerance.
    tol = jnp.maximum(rtol * jnp.nanmax(jnp.abs(values)), atol)
    return jnp.sum(jnp.abs(values) > tol)


# -- exact spectra of a tree decomposition ---------------------------------


class ExactSpectrum(NamedTuple):
    """The spectrum of ``[[A^y]]_I`` for every output ``y``, normalised.

    Attributes:
      singular_values: ``(num_outputs, num_values)``: the singular values of
        each ``[[A^y]]_I`` divided by ``‖A^y‖_F`` (so their squares sum to 1;
        all zero for a zero tensor), in descending order. ``num_values`` is
        the dimension the computation tracked; every singular value beyond
        them is 0. With ``outputs`` given, one row per requested output, in
        that order.
      log_norm: ``(num_outputs,)``: ``ln ‖A^y‖_F`` (``-inf`` for a zero
        tensor); the true singular values are
        ``singular_values * exp(log_norm)[:, None]``, which may overflow for
        large networks while the logarithm does not.
      cut_dimension: the dimension the limit applies to (see
        :func:`exact_spectrum`).
    """

    singular_values: jax.Array
    log_norm: jax.Array
    cut_dimension: int


def exact_spectrum(
    params: Sequence[ArrayLike],
    tree: ModeTree,
    row_modes: Iterable[int],
    *,
    space: str = "linear",
    max_cut_dimension: int = 4096,
    outputs: Iterable[int] | None = None,
    max_entries: int = 2**27,
    rank_rtol: float | None = None,
) -> ExactSpectrum:
    """Singular values of a network's matricized coefficient tensors, exactly.

    Computes the spectrum of ``[[A^y]]_I`` for a ConvAC's tree decomposition
    (``g = product``) without forming the ``M^N`` tensor. One side of the
    partition is *tracked* (whichever is cheaper); the other is traced out.
    Nodes of the tree whose leaves all lie on one side (*pure* nodes) are
    reduced to the Gram matrices of their channel tensors,
    ``G^ν = W^ν (⊙_t G^t) W^νᵀ`` (``⊙`` the entry-wise product over the
    children ``t``), ``r × r`` each. The nodes with leaves on both sides
    (*cut* nodes, the ancestors of the partition's boundary) are contracted
    along one path from the root down:

    * an *environment* ``C[a, b]`` is carried down the path: at the root
      ``W[y, a] W[y, b] G_J[a, b]``, and at each node below
      ``(W^νᵀ C W^ν)[a, b] · G_J[a, b]``, where ``G_J`` is the entry-wise
      product of the Gram matrices of the node's pure children on the traced
      side;
    * the node's pure children on the tracked side enter through a factor
      ``F`` with ``F Fᵀ = ⊙_t G^t`` (orthonormal coordinates of their joint
      span), and cut children off the path through their partial traces
      ``S^t[a, b] = Tr_J(Φ^{t,a} Φ^{t,b}ᵀ)`` (computed bottom-up the same
      way); each adds *open* indices to ``C``;
    * the path ends at a node whose largest tracked piece is its factor
      ``F``: ``Tr_J([[A^y]] [[A^y]]ᵀ) = Σ_{a,b} C[a, b] ⊗ F[a] F[b]ᵀ``,
      whose eigenvalues are ``σ²``.

    So a partition into unions of whole tree nodes below one cut node —
    halves and quadrants of an image under square pooling, any block of it,
    any union of sibling blocks — costs a few ``r × r`` products per level
    and one ``r × r`` eigenproblem per output. Each further tracked piece
    multiplies the open dimension; nothing is truncated except to a dimension
    proven to contain the whole span (a partial trace's rank is at most
    ``r_out`` times its traced side's dimension).

    The *cut dimension* is the size of the final eigenproblem (the tracked
    side's dimension: the product of the tracked pieces' dimensions, each
    the numerical rank of its Gram matrix, see ``rank_rtol``), or of an
    intermediate partial trace if one is larger; it bounds the rank from
    above, and time grows as its cube. The final eigenproblem itself costs
    ``O(D² k)`` rather than ``O(D³)`` when the traced matrix (``D × D``) has a
    numerical rank ``k ≤ D / 8``, as trained networks' often do: a pivoted
    Cholesky factorisation finds its nonzero eigenvalues, to ``D · eps`` of
    the largest (about the dense solver's own error). A separate guard,
    ``max_entries``, refuses plans whose largest intermediate array would
    exceed it.

    Computation is in NumPy ``float64`` (every Gram matrix and environment
    is rescaled and its scale kept as a logarithm, so thousand-pixel
    networks neither overflow nor underflow); the results come back in the
    params' floating dtype (the default float for integer or boolean params).
    Not traceable (``jit``) or differentiable.

    Channels of very different scales are no problem: a tracked Gram matrix
    is factored and cut to its rank after weighting each channel by what the
    rest of the network makes of it (its *environment*, computed top-down
    over the cut nodes), so a channel that one layer shrinks by ``e^-30`` and
    the layers above enlarge again — common in log-space networks — keeps its
    precision, and one that stays negligible is cut.

    .. warning::
       Working with Gram matrices squares the condition number: a singular
       value is resolved to about ``sqrt(eps) · σ_max`` (``1.5e-8 · σ_max`` in
       ``float64``), so smaller ones come out as noise of that size (or 0). The
       entropy and the geometric measure are unaffected at that level; for a
       Schmidt number pass ``schmidt_number(values, rtol=1e-7)`` or so, not
       the default tolerance. For the same reason cancellation is resolved
       only to about ``eps`` of the terms that cancel: a node whose signed
       channels combine to something far smaller than themselves loses that
       combination if a parent enlarges it again, and a whole tensor that
       (nearly) cancels to zero gets a norm and a spectrum of round-off.

    Args:
      params: ``(W_0, …, W_L)`` as :func:`~jaxconvac.init_decomposition`
        makes them, any sharing.
      tree: the mode tree, ``N`` leaves.
      row_modes: the positions ``I``: a non-empty proper subset of
        ``0 … N-1``.
      space: ``"linear"`` (signed weights), or ``"log"``: ``params`` are
        log-weights (a log-space network), exponentiated here after
        subtracting each level's maximum (the factors removed go into
        ``log_norm``).
      max_cut_dimension: the largest cut dimension to compute.
      outputs: the outputs ``y`` to compute, distinct indices into the
        root's outputs; ``None`` for all. The time is linear in their number.
      max_entries: the largest intermediate array (``float64`` entries) to
        allow; the default is 1 GiB.
      rank_rtol: the pure nodes' channel spaces are cut to their numerical
        rank: the eigenvalues of their Gram matrix ``G`` weighted by the
        environment ``H`` of their channels (``D G D``, ``D² = diag H``: what
        each direction contributes to ``‖A^y‖²``, for every selected output
        alike) above ``rank_rtol`` times the largest (by default ``r · eps``
        for an ``r × r`` Gram matrix, the level at which a computed Gram
        matrix's eigenvalues are noise). A
        trained network's nodes often span far fewer than ``r`` dimensions, so
        its cut dimension — and time — can be far below the bound from the
        widths. ``0`` keeps the proven bounds only. A larger ``rank_rtol``
        drops more, from the spectrum and from ``log_norm`` alike: both are
        those of the tensor on the kept directions.

    Returns:
      An :class:`ExactSpectrum`.

    Raises:
      TypeError: if ``tree`` is no :class:`~jaxconvac.ModeTree`, a limit is
        not an int or ``rank_rtol`` is not a number.
      ValueError: for a bad partition (out of range, empty, repeated, every
        position), params that do not fit the tree or hold NaN or infinite
        weights, bad ``outputs``, a non-positive limit, ``rank_rtol`` outside
        ``[0, 1)``, or a cut dimension
        above ``max_cut_dimension`` or an intermediate above ``max_entries``
        (the message gives the values).

    Examples:
      >>> import jaxconvac as jc
      >>> tree = jc.ModeTree.balanced(8)
      >>> params = jc.init_decomposition(jax.random.key(0), tree,
      ...     num_descriptors=2, widths=(2, 2, 2), num_outputs=1)
      >>> spectrum = exact_spectrum(params, tree, (0, 1, 2, 3))
      >>> spectrum.singular_values.shape
      (1, 2)
    """
    weights, log_scale, rows, selected, dtype = _checked_weights(
        params,
        tree,
        row_modes,
        space,
        outputs,
        (("max_cut_dimension", max_cut_dimension), ("max_entries", max_entries)),
    )
    sizes = (weights[0].shape[2], *(w.shape[1] for w in weights))
    tracked = np.zeros(tree.num_modes, bool)
    tracked[list(rows)] = True
    if rank_rtol is not None:
        rank_rtol = _real_number(rank_rtol, "rank_rtol", "None or a number")
        if not 0 <= rank_rtol < 1:
            raise ValueError(f"rank_rtol must be in [0, 1), got {rank_rtol!r}.")
    grams, gram_logs = _pure_grams(weights, tree)
    environments = _Environments(weights, tree, grams, selected)
    joint_rank = None
    if rank_rtol is None or rank_rtol > 0:
        joint_rank = _JointRank(grams, environments, rank_rtol)
    plans = [
        _plan(tree, side, sizes, len(selected), joint_rank)
        for side in (tracked, ~tracked)
    ]
    plan = min(
        plans,
        key=lambda p: (
            p.cut_dimension > max_cut_dimension or p.peak_entries > max_entries,
            p.flops,
        ),
    )
    if plan.cut_dimension > max_cut_dimension:
        raise ValueError(
            f"the cut dimension of this partition is {_describe(plan.cut_dimension)} "
            "(the tracked side's dimension: the size of the final eigenproblem, "
            "or of a partial trace on the way), above "
            f"max_cut_dimension={max_cut_dimension}; raise max_cut_dimension to "
            "compute it (time grows as its cube)."
        )
    if plan.peak_entries > max_entries:
        raise ValueError(
            f"this partition needs an intermediate array of "
            f"{_describe(plan.peak_entries)} float64 entries (cut dimension "
            f"{_describe(plan.cut_dimension)}), above max_entries={max_entries}; "
            "raise max_entries if the memory is there."
        )

    contraction = _Contraction(weights, tree, plan, grams, gram_logs, environments)
    eigenvalues, root_logs = contraction.run(selected)
    totals = eigenvalues.sum(axis=1)
    safe = np.where(totals > 0, totals, 1.0)
    values = np.sqrt(eigenvalues / safe[:, None])
    with np.errstate(divide="ignore"):
        log_norm = 0.5 * (np.log(totals) + root_logs) + log_scale
    return ExactSpectrum(
        jnp.asarray(values, dtype), jnp.asarray(log_norm, dtype), plan.cut_dimension
    )


def _checked_weights(params, tree, row_modes, space, outputs, limits):
    """Validates the arguments; float64 linear weights and their log scale."""
    if not isinstance(tree, ModeTree):
        raise TypeError(f"tree must be a ModeTree, got {type(tree).__name__}.")
    if space not in ("linear", "log"):
        raise ValueError(f"space must be 'linear' or 'log', got {space!r}.")
    for name, limit in limits:
        if isinstance(limit, bool) or not isinstance(limit, int | np.integer):
            raise TypeError(f"{name} must be an int, got {limit!r}.")
        if limit < 1:
            raise ValueError(f"{name} must be positive, got {limit}.")
    arrays = _real_arrays(params)
    check_param_shapes(arrays, tree)
    rows = check_row_modes(row_modes, tree.num_modes)
    selected = _check_outputs(outputs, arrays[-1].shape[1])
    # Integer or boolean weights give float results (a spectrum, a logarithm).
    canonical = (jax.dtypes.canonicalize_dtype(a.dtype) for a in arrays)
    dtype = jnp.result_type(*canonical, float)
    # From the caller's arrays, not as jnp arrays: without x64 those
    # would have been rounded to float32 (and 1e50 made infinite) first.
    weights = [a.astype(np.float64) for a in arrays]
    for level, level_weights in enumerate(weights):
        # Log-weights may be -inf (a zero weight); nothing else may be infinite.
        bad = ~np.isfinite(level_weights)
        if space == "log":
            bad &= level_weights != -np.inf
        if np.any(bad):
            raise ValueError(
                f"params[{level}] has {int(bad.sum())} non-finite entries (NaN or "
                f"{'+inf' if space == 'log' else '±inf'}); every weight must be "
                f"finite{' (log-weights may be -inf)' if space == 'log' else ''}."
            )
    weights, log_scale = _unit_scaled(weights, tree, space)
    return weights, log_scale, rows, selected, dtype


def _real_arrays(params) -> list[np.ndarray]:
    """``params`` as NumPy arrays of real numbers (bool, int or float)."""
    if not isinstance(params, tuple | list):
        return params  # check_param_shapes names what it expected.
    arrays = []
    for level, weights in enumerate(params):
        array = np.asarray(weights)
        kind = array.dtype
        if not (
            jnp.issubdtype(kind, jnp.floating)
            or jnp.issubdtype(kind, jnp.integer)
            or kind == np.bool_
        ):
            raise TypeError(
                f"params[{level}] must hold real numbers (bool, int or float), "
                f"got dtype {kind}."
            )
        arrays.append(array)
    return arrays


def _check_outputs(outputs, num_outputs: int) -> tuple[int, ...]:
    if outputs is None:
        return tuple(range(num_outputs))
    try:
        chosen = list(outputs)
    except TypeError:
        raise TypeError(
            f"outputs must be an iterable of ints or None, got "
            f"{type(outputs).__name__}."
        ) from None
    if not chosen:
        raise ValueError(
            f"outputs is empty; pass None for all {num_outputs} outputs or "
            f"indices in 0 … {num_outputs - 1}."
        )
    checked = []
    for position, output in enumerate(chosen):
        if isinstance(output, jax.Array) and output.ndim == 0:
            output = output.item()
        if isinstance(output, bool) or not isinstance(output, int | np.integer):
            raise TypeError(f"outputs[{position}] must be an int, got {output!r}.")
        if not 0 <= output < num_outputs:
            raise ValueError(
                f"outputs[{position}] = {output} is out of range: the root has "
                f"{num_outputs} outputs, 0 … {num_outputs - 1}."
            )
        checked.append(int(output))
    if len(set(checked)) != len(checked):
        raise ValueError(f"outputs repeats an index: {checked}.")
    return tuple(checked)


def _describe(number: int) -> str:
    return str(number) if number < 10**12 else f"about 10^{len(str(number)) - 1}"


def _unit_scaled(weights, tree, space: str):
    """Linear weights, each group scaled to a largest entry of 1; the log scale.

    The coefficient tensor is linear in each node's weight matrix, so a group
    used by ``k`` nodes and divided by ``c`` divides it by ``c^k``: the factors
    go into the log scale, and weights of any magnitude (``1e±200``, or
    log-weights hundreds of nats apart) neither overflow nor underflow when
    their Gram matrices are formed. Log-weights are shifted by each group's
    maximum before they are exponentiated.
    """
    linear, log_scale = [], 0.0
    for level, level_weights in enumerate(weights):
        groups = level_weights.shape[0]
        users = np.bincount(np.arange(tree.num_nodes(level)) % groups, minlength=groups)
        if space == "log":
            shifts = np.max(level_weights, axis=(1, 2))
            shifts = np.where(np.isfinite(shifts), shifts, 0.0)
            linear.append(np.exp(level_weights - shifts[:, None, None]))
        else:
            largest = np.max(np.abs(level_weights), axis=(1, 2))
            largest = np.where(largest > 0, largest, 1.0)  # A zero group stays.
            linear.append(level_weights / largest[:, None, None])
            shifts = np.log(largest)
        log_scale += float(users @ shifts)
    return linear, log_scale


def _node_weights(weights: np.ndarray, nodes: int) -> np.ndarray:
    """``(nodes, out, in)``: each node's matrix under the level's sharing."""
    groups = weights.shape[0]
    return weights[np.arange(nodes) % groups]


def _normalise(grams: np.ndarray, logs: np.ndarray):
    """Divides each ``(r, r)`` Gram matrix by its largest diagonal entry."""
    largest = np.diagonal(grams, axis1=1, axis2=2).max(axis=1)
    safe = np.where(largest > 0, largest, 1.0)
    with np.errstate(divide="ignore"):
        return grams / safe[:, None, None], logs + np.log(np.maximum(largest, 0.0))


@dataclasses.dataclass(frozen=True)
class _LevelGrams:
    """One level's Gram matrices: the distinct ones and each node's index."""

    distinct: np.ndarray  # (num_distinct, r, r)
    ids: np.ndarray  # (num_nodes,)

    def __getitem__(self, node):
        return self.distinct[self.ids[node]]


def _pure_grams(weights, tree):
    """Normalised Gram matrices of every node's channel tensors, level by level.

    The root's level is left out: its Gram matrices are never needed. Nodes
    whose subtrees carry the same weights (under ``"full"`` or ``"per_tap"``
    sharing, all nodes of a level, or one per tap) are computed once: each
    level keeps its distinct Gram matrices and an index of every node into
    them (a :class:`_LevelGrams`); the logs come per node.
    """
    groups = weights[0].shape[0]
    ids = np.arange(tree.num_modes) % groups  # Leaf -> distinct subtree.
    distinct = weights[0][np.arange(groups)]
    gram, logs = _normalise(
        np.einsum("nam,nbm->nab", distinct, distinct), np.zeros(groups)
    )
    grams, gram_logs = [_LevelGrams(gram, ids)], [logs[ids]]
    for level, window in enumerate(tree.windows[:-1], start=1):
        nodes = tree.num_nodes(level)
        # A node's subtree: its own weight group and its children's subtrees.
        signature = np.concatenate(
            [
                (np.arange(nodes) % weights[level].shape[0])[:, None],
                ids.reshape(nodes, window),
            ],
            axis=1,
        )
        unique, ids = np.unique(signature, axis=0, return_inverse=True)
        ids = ids.reshape(-1)
        children = unique[:, 1:]  # Distinct ids of the level below.
        previous, previous_logs = gram, logs
        pooled = np.prod(previous[children], axis=1)
        logs = previous_logs[children].sum(axis=1)
        node_w = weights[level][unique[:, 0]]
        gram = node_w @ pooled @ np.swapaxes(node_w, 1, 2)
        gram, logs = _normalise(gram, logs)
        grams.append(_LevelGrams(gram, ids))
        gram_logs.append(logs[ids])
    return grams, gram_logs


class _Environments:
    """How much the rest of the network weighs each cut node's channels.

    For a node ``ν`` the coefficient tensor is ``A = Σ_a Φ^ν_a ⊗ Ψ_a``
    (``Φ^ν_a`` the node's channel tensors, ``Ψ_a`` everything else), so a
    direction of ``ν``'s channel space matters to ``A`` in proportion to the
    Gram matrix ``H[a, b] = ⟨Ψ_a, Ψ_b⟩`` of its *environment*, not to its own
    size: a channel a node shrinks by ``e^-30`` may be enlarged again by
    ``e^30`` above it. ``H`` comes top-down over the cut nodes only, from the
    root (each selected output weighted by ``1 / ‖A^y‖²``, so every output's
    spectrum counts alike) through ``Wᵀ H W`` and the entry-wise product with
    the siblings' Gram matrices. Every matrix is scaled to a largest entry of
    1: only their shapes matter here.
    """

    def __init__(self, weights, tree, grams, outputs):
        self.weights, self.tree, self.grams = weights, tree, grams
        self.inputs: dict[tuple[int, int], np.ndarray] = {}
        root = weights[-1][0][list(outputs)]
        pooled = self.siblings(tree.depth, 0, ())
        norms = np.einsum("ya,ab,yb->y", root, pooled, root)
        weight = 1 / np.where(norms > 0, norms, np.inf)
        self.inputs[tree.depth, 0] = _unit_max((root.T * weight) @ root)

    def siblings(self, level: int, node: int, excluded) -> np.ndarray:
        """The entry-wise product of the node's children's Gram matrices.

        Children in ``excluded`` are left out; all ones if none is left.
        """
        window = self.tree.windows[level - 1]
        product = np.ones((self.weights[level].shape[2],) * 2)
        for child in range(node * window, (node + 1) * window):
            if child not in excluded:
                product = product * self.grams[level - 1][child]
        return product

    def input_side(self, level: int, node: int) -> np.ndarray:
        """``H`` of the node's pooled input channels, ``(r_in, r_in)``."""
        if (level, node) not in self.inputs:
            parent = node // self.tree.windows[level]
            outer = self.input_side(level + 1, parent)
            output_side = outer * self.siblings(level + 1, parent, (node,))
            level_weights = self.weights[level]
            weight = level_weights[node % level_weights.shape[0]]
            self.inputs[level, node] = _unit_max(weight.T @ output_side @ weight)
        return self.inputs[level, node]

    def of_children(self, level: int, node: int, children) -> np.ndarray:
        """``H`` of the entry-wise product of some of the node's children."""
        return self.input_side(level, node) * self.siblings(level, node, children)


def _unit_max(matrix: np.ndarray) -> np.ndarray:
    largest = float(np.max(np.abs(matrix))) if matrix.size else 0.0
    return matrix / largest if largest > 0 else matrix


class _JointRank:
    """Numerical ranks of entry-wise products of pure nodes' Gram matrices.

    Each is weighted by its environment (:func:`_weighted`).
    """

    def __init__(self, grams, environments, rtol):
        self.grams, self.environments = grams, environments
        self.rtol, self.cache = rtol, {}

    def __call__(self, level: int, children: tuple[int, ...]) -> int:
        if (level, children) not in self.cache:
            product = np.prod(self.grams[level][list(children)], axis=0)
            node = children[0] // self.environments.tree.windows[level]
            environment = self.environments.of_children(level + 1, node, children)
            eigenvalues = np.linalg.eigvalsh(_weighted(product, environment)[0])
            rtol = self.rtol
            if rtol is None:
                rtol = product.shape[0] * np.finfo(np.float64).eps
            largest = eigenvalues[-1]
            rank = int(np.sum(eigenvalues > rtol * largest)) if largest > 0 else 0
            self.cache[level, children] = max(rank, 1)
        return self.cache[level, children]


class _NodeDims(NamedTuple):
    """Exact dimension bounds at one cut node (tracked side = rows)."""

    rows: int  # factor_rank times the cut children's kept rows.
    cols: int  # the same on the traced side.
    kept_rows: int  # min(rows, r_out * cols): the span of the node's rows.
    kept_cols: int  # min(cols, r_out * kept_rows).
    factor_rank: int  # span of the tracked pure children together (1: none).
    has_factor: bool  # whether the node has a tracked pure child.


@dataclasses.dataclass
class _Plan:
    """Which nodes are cut, their dimensions, and the contraction path."""

    kinds: list[np.ndarray]  # per level: 0 traced side, 1 tracked side, 2 cut.
    dims: dict[tuple[int, int], _NodeDims]
    # (level, node, finisher): the cut child the path continues into, or None
    # where it ends on the node's tracked factor.
    path: list[tuple[int, int, int | None]]
    cut_dimension: int = 1
    peak_entries: int = 1
    flops: int = 0  # Python ints: exact and unbounded (no float overflow).


def _plan(
    tree: ModeTree,
    tracked: np.ndarray,
    sizes: tuple[int, ...],
    num_selected: int,
    joint_rank=None,
) -> _Plan:
    """Dimensions and cost of the computation when ``tracked`` are the rows.

    ``joint_rank(level, children)``, where given, is the numerical rank of the
    entry-wise product of the Gram matrices of those pure ``children`` (nodes
    of ``level``); it can only lower the proven bounds used otherwise.
    """
    in_order = tracked[np.asarray(tree.order)]
    kinds, pure_dims = [], []
    for level in range(tree.depth + 1):
        size = tree.node_size(level)
        counts = in_order.reshape(-1, size).sum(axis=1)
        kinds.append(np.where(counts == 0, 0, np.where(counts == size, 1, 2)))
        pure_dims.append(min(sizes[level + 1], sizes[0] ** size))
    dims = {}
    for level, window in enumerate(tree.windows, start=1):
        r_in, r_out = sizes[level], sizes[level + 1]
        if level == tree.depth:
            r_out = 1  # One output at a time.
        for node in np.flatnonzero(kinds[level] == 2):
            child_kinds = kinds[level - 1][node * window : (node + 1) * window]
            side_dims = []
            for side in (1, 0):
                count = int(np.sum(child_kinds == side))
                dim = min(r_in, pure_dims[level - 1] ** count) if count else 1
                if count and joint_rank is not None:
                    pure = node * window + np.flatnonzero(child_kinds == side)
                    dim = min(dim, joint_rank(level - 1, tuple(pure.tolist())))
                side_dims.append(dim)
            rows, cols = side_dims
            for child in np.flatnonzero(child_kinds == 2):
                child_dims = dims[level - 1, int(node * window + child)]
                rows *= child_dims.kept_rows
                cols *= child_dims.kept_cols
            kept_rows = min(rows, r_out * cols)
            dims[level, int(node)] = _NodeDims(
                rows,
                cols,
                kept_rows,
                min(cols, r_out * kept_rows),
                side_dims[0],
                bool(np.any(child_kinds == 1)),
            )
    plan = _Plan(kinds, dims, [])
    _plan_path(plan, tree, sizes, num_selected)
    return plan


def _plan_path(plan: _Plan, tree: ModeTree, sizes, num_selected: int) -> None:
    """Chooses the path down the cut nodes; estimates flops and memory."""

    def note(entries: int) -> None:
        plan.peak_entries = max(plan.peak_entries, entries)

    def subtree_cost(level: int, node: int) -> None:
        """Bottom-up partial traces of a cut node off the path."""
        window = tree.windows[level - 1]
        for child in range(node * window, (node + 1) * window):
            if plan.kinds[level - 1][child] == 2:
                subtree_cost(level - 1, child)
        dims = plan.dims[level, node]
        r_in, r_out, rows = sizes[level], sizes[level + 1], dims.rows
        plan.cut_dimension = max(plan.cut_dimension, rows)
        plan.flops += (r_in + r_out) * r_in * (r_in + r_out) * rows**2
        note(max(r_in, r_out) ** 2 * rows**2)
        if dims.kept_rows < rows:
            plan.flops += rows**3 + 2 * r_out**2 * rows**2 * dims.kept_rows

    level, node, open_dim = tree.depth, 0, 1
    while True:
        dims = plan.dims[level, node]
        r_in = sizes[level]
        r_node = 1 if level == tree.depth else sizes[level + 1]
        plan.flops += num_selected * r_node * r_in * (r_node + r_in) * open_dim**2
        note(max(r_in, r_node) ** 2 * open_dim**2)
        window = tree.windows[level - 1]
        cut_children = [
            (child, plan.dims[level - 1, child].kept_rows)
            for child in range(node * window, (node + 1) * window)
            if plan.kinds[level - 1][child] == 2
        ]
        finisher = None
        if cut_children:
            child, rank = max(cut_children, key=lambda item: item[1])
            if not dims.has_factor or rank > dims.factor_rank:
                finisher = child
        folded = [rank for child, rank in cut_children if child != finisher]
        if dims.has_factor and finisher is not None:
            folded.append(dims.factor_rank)
        for child, _ in cut_children:
            if child != finisher:
                subtree_cost(level - 1, child)
        for rank in folded:
            open_dim *= rank
            plan.flops += num_selected * r_in**2 * open_dim**2
            note(r_in**2 * open_dim**2)
        plan.cut_dimension = max(plan.cut_dimension, open_dim)
        plan.path.append((level, node, finisher))
        if finisher is None:
            rank = dims.factor_rank
            final = open_dim * rank
            plan.flops += num_selected * (
                r_in * rank * (r_in + rank) * open_dim**2 + final**3
            )
            note(final**2 + r_in * rank * open_dim**2)
            plan.cut_dimension = max(plan.cut_dimension, final)
            return
        level, node = level - 1, finisher


def _weighted(gram: np.ndarray, environment: np.ndarray):
    """``K = D G D`` with ``D = sqrt(diag H)``, ``H`` the environment; and ``D``.

    The eigenvalues of ``K`` are what each direction of the channel space
    contributes to ``‖A‖²`` (up to a factor ``r``: ``H ≼ r D²``), whatever the
    channels' own scales: an eigensolver resolves them to ``eps`` of the
    largest contribution, and a rank cut of ``K`` drops only directions that
    cannot change ``A`` by more than that. Channels whose contribution is
    below ``eps²`` of the largest get ``D = 0``: they do not matter, and
    dividing by their ``D`` would only blow up round-off.
    """
    scales = np.sqrt(np.maximum(np.diagonal(environment), 0.0))
    contribution = scales**2 * np.maximum(np.diagonal(gram), 0.0)
    largest = float(np.max(contribution)) if contribution.size else 0.0
    eps = np.finfo(np.float64).eps
    scales = np.where(contribution > eps**2 * largest, scales, 0.0)
    return scales[:, None] * gram * scales[None, :], scales


def _row_factor(gram: np.ndarray, environment: np.ndarray, rank: int) -> np.ndarray:
    """``F`` of shape ``(r, rank)`` with ``F Fᵀ = gram`` where it matters.

    ``gram`` has rank ≤ ``rank`` as far as its ``environment`` can tell
    (:func:`_weighted`); rows of channels that do not matter are 0.
    """
    weighted, scales = _weighted(gram, environment)
    eigenvalues, vectors = np.linalg.eigh(weighted)
    eigenvalues, vectors = eigenvalues[-rank:], vectors[:, -rank:]
    inverse = np.divide(1.0, scales, out=np.zeros_like(scales), where=scales > 0)
    return inverse[:, None] * vectors * np.sqrt(np.maximum(eigenvalues, 0.0))


def _sandwich(weight: np.ndarray, state: np.ndarray) -> np.ndarray:
    """``Σ_{a,b} weight[g, a] weight[h, b] state[a, b, …]``, by two GEMMs."""
    r_in, rest = state.shape[0], state.shape[2:]
    r_out = weight.shape[0]
    half = (weight @ state.reshape(r_in, -1)).reshape(r_out, r_in, -1)
    half = np.ascontiguousarray(half.transpose(1, 0, 2)).reshape(r_in, -1)
    full = (weight @ half).reshape(r_out, r_out, *rest)  # [h, g, …]
    return full.transpose(1, 0, *range(2, 2 + len(rest)))


def _fold(state: np.ndarray, piece: np.ndarray) -> np.ndarray:
    """``state[a, b] ⊗ piece[a, b]`` for every ``(a, b)``: open indices multiply."""
    r, _, o, _ = state.shape
    p = piece.shape[2]
    joined = state[:, :, :, None, :, None] * piece[:, :, None, :, None, :]
    return joined.reshape(r, r, o * p, o * p)


def _fold_factor(state: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """``state[a, b] ⊗ factor[a] factor[b]ᵀ`` for every ``(a, b)``."""
    return _fold(state, factor[:, None, :, None] * factor[None, :, None, :])


def _close(state: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """``Σ_{a,b} state[a, b] ⊗ factor[a] factor[b]ᵀ`` as a square matrix."""
    r, _, o, _ = state.shape
    p = factor.shape[1]
    half = (factor.T @ state.reshape(r, -1)).reshape(p, r, o, o)  # [i, b, x, y]
    half = np.ascontiguousarray(half.transpose(2, 0, 3, 1))  # [x, i, y, b]
    return (half.reshape(-1, r) @ factor).reshape(o, p, o, p).reshape(o * p, -1)


def _rescale(state: np.ndarray, log: float):
    """Divides by the largest absolute entry; returns the state and its log scale."""
    largest = float(np.max(np.abs(state))) if state.size else 0.0
    if largest > 0:
        return state / largest, log + math.log(largest)
    return state, -math.inf


class _Contraction:
    """Carries out a :class:`_Plan` on float64 weights."""

    def __init__(self, weights, tree, plan, grams, gram_logs, environments):
        self.weights, self.tree, self.plan = weights, tree, plan
        self.grams, self.gram_logs = grams, gram_logs
        self.environments = environments

    def weight(self, level: int, node: int) -> np.ndarray:
        level_weights = self.weights[level]
        return level_weights[node % level_weights.shape[0]]

    def children(self, level: int, node: int):
        """The node's traced Gram, tracked factor (or None), log, cut children."""
        window = self.tree.windows[level - 1]
        r_in = self.weights[level].shape[2]
        traced, tracked = np.ones((r_in, r_in)), None
        log, cut, tracked_children = 0.0, [], []
        for child in range(node * window, (node + 1) * window):
            kind = self.plan.kinds[level - 1][child]
            if kind == 2:
                cut.append(child)
                continue
            log += self.gram_logs[level - 1][child]
            gram = self.grams[level - 1][child]
            if kind == 0:
                traced = traced * gram
            else:
                tracked = gram if tracked is None else tracked * gram
                tracked_children.append(child)
        factor = None
        if tracked is not None:
            environment = self.environments.of_children(level, node, tracked_children)
            rank = self.plan.dims[level, node].factor_rank
            factor = _row_factor(tracked, environment, rank)
        return traced, factor, log, cut

    def partial_trace(self, level: int, node: int):
        """``S[g, h] = Tr_J(Φ^g Φ^hᵀ)`` of a cut node, bottom-up; and its log."""
        traced, factor, log, cut = self.children(level, node)
        state = traced[:, :, None, None]
        if factor is not None:
            state = _fold_factor(state, factor)
        for child in cut:
            child_state, child_log = self.partial_trace(level - 1, child)
            state, log = _fold(state, child_state), log + child_log
        state = _sandwich(self.weight(level, node), state)
        kept = self.plan.dims[level, node].kept_rows
        if kept < state.shape[2]:
            # The span of every channel's open part: each channel weighs the
            # same, so none is lost to another's scale (the parent may
            # amplify it).
            diagonal = np.einsum("ggij->gij", state)
            traces = np.einsum("gii->g", diagonal)
            safe = np.where(traces > 0, traces, np.inf)
            total = np.einsum("gij,g->ij", diagonal, 1 / safe)
            basis = np.linalg.eigh(total)[1][:, -kept:]
            state = np.einsum("ip,ghij,jq->ghpq", basis, state, basis, optimize=True)
        return _rescale(state, log)

    def run(self, outputs):
        """Eigenvalues ``(len(outputs), D)`` (descending) and their log scales."""
        steps = []  # Per path node: weight, traced Gram, pieces to fold, factor.
        for level, node, finisher in self.plan.path:
            traced, factor, log, cut = self.children(level, node)
            pieces = []
            if factor is not None and finisher is not None:
                pieces.append(("factor", factor))
            for child in cut:
                if child != finisher:
                    child_state, child_log = self.partial_trace(level - 1, child)
                    pieces.append(("state", child_state))
                    log += child_log
            steps.append(
                (self.weight(level, node), traced, pieces, factor, finisher, log)
            )
        spectra, logs = [], []
        for output in outputs:
            environment, total_log = None, 0.0
            for weight, traced, pieces, factor, finisher, log in steps:
                if environment is None:  # The root: W[y, a] W[y, b].
                    row = weight[output]
                    state = (np.outer(row, row) * traced)[:, :, None, None]
                else:
                    state = _sandwich(weight.T, environment)
                    state = state * traced[:, :, None, None]
                # Pieces are normalised to entries of at most 1: rescaling
                # before folding them in touches the smaller array.
                state, total_log = _rescale(state, total_log + log)
                for kind, piece in pieces:
                    state = (_fold_factor if kind == "factor" else _fold)(state, piece)
                if finisher is None:
                    traces = _close(state, factor)
                    break
                environment = state
            spectra.append(_psd_eigenvalues(0.5 * (traces + traces.T)))
            logs.append(total_log)
        return np.stack(spectra), np.asarray(logs)


def _psd_eigenvalues(matrix: np.ndarray) -> np.ndarray:
    """Eigenvalues of a symmetric positive semi-definite matrix, descending, ``≥ 0``.

    A trained network's traced matrix often has a numerical rank ``k`` far
    below its dimension ``n``, and the dense eigensolver (``~4/3 n³`` flops)
    would then dominate everything else. So a pivoted Cholesky factorisation
    ``K ≈ F Fᵀ`` (``F`` of shape ``(n, k)``, one pivot column at a time,
    ``O(n k²)``) is tried first: it stops once every diagonal entry of the
    residual ``K − F Fᵀ`` (positive semi-definite) is at most ``eps`` times
    ``K``'s largest diagonal entry, so each eigenvalue moves by at most
    ``n · eps · max K_ii`` (Weyl) — the level of ``K``'s own round-off, and of
    a dense solver's error — and the nonzero ones are those of ``Fᵀ F``
    (``k × k``). If ``k`` would exceed ``n / 8``, the dense solver runs
    instead, after at most ``n³ / 64`` flops spent on the attempt.
    """
    size = matrix.shape[0]
    diagonal = np.diagonal(matrix).copy()
    largest = float(np.max(diagonal)) if size else 0.0
    budget = size // 8
    if budget >= 8 and largest > 0:
        tolerance = np.finfo(np.float64).eps * largest
        factor = np.zeros((budget, size))  # Fᵀ, one contiguous row per pivot.
        for step in range(budget):
            pivot = int(np.argmax(diagonal))
            if diagonal[pivot] <= tolerance:
                values = np.zeros(size)
                found = factor[:step]
                values[:step] = np.linalg.eigvalsh(found @ found.T)[::-1]
                return np.maximum(values, 0.0)
            # The pivot's row of K (= its column) less what F already explains.
            row = matrix[pivot] - factor[:step, pivot] @ factor[:step]
            factor[step] = row / math.sqrt(diagonal[pivot])
            diagonal -= factor[step] ** 2
            diagonal[pivot] = 0.0  # Eliminated exactly (round-off aside).
    return np.maximum(np.linalg.eigvalsh(matrix)[::-1], 0.0)


# -- exact purity (Rényi-2) of a tree decomposition --------------------------


def renyi_entropy(
    singular_values: ArrayLike, order: float = 2.0, *, base: float | None = None
) -> jax.Array:
    """The Rényi entropy ``log(Σ_k p_k^α) / (1 − α)`` of a Schmidt spectrum.

    A lower bound on the entanglement entropy for ``α > 1`` (the Rényi
    entropies decrease with the order), and ``log`` of a lower bound on the
    Schmidt number: ``exp(S_α) ≤ rank`` for every ``α``. At ``α = 2`` it is
    ``−log Σ_k p_k²``, minus the log of the *purity* that
    :func:`exact_purity` computes for networks whose spectrum is out of reach.

    Args:
      singular_values: ``σ`` of shape ``(num_values,)``.
      order: ``α``, a concrete number (static under ``jit``), positive and
        not 1 (use :func:`entanglement_entropy`, the limit ``α → 1``, which
        orders near 1 approach to round-off); ``inf`` gives ``−log p_0``.
      base: the base of the logarithm; ``None`` for nats.

    Returns:
      A scalar of shape ``()``: 0 for a product state and for the zero tensor,
      ``log(k)`` for ``k`` equal non-zero singular values.

    Raises:
      TypeError: if ``order`` or ``base`` is not a number.
      ValueError: if ``singular_values`` is not one-dimensional, ``order`` is
        not positive or is 1, or ``base`` is not a valid logarithm base.

    Examples:
      >>> float(renyi_entropy(jnp.array([1.0, 1.0, 0.0, 0.0]), base=2))
      1.0
    """
    base = _check_base(base)
    order = _real_number(order, "order")
    if not order > 0 or order == 1:
        raise ValueError(
            f"order must be positive and not 1 (for 1 use entanglement_entropy), "
            f"got {order}."
        )
    p = schmidt_spectrum(singular_values)
    if p.shape[0] == 0:
        return jnp.zeros((), p.dtype)
    largest = jnp.max(p)
    nonzero = largest > 0
    if math.isinf(order):
        entropy = -jnp.log(jnp.where(nonzero, largest, 1))
    elif abs(order - 1) < 1e-3:
        # Near α = 1 the formula below divides a difference of two large logs
        # by 1 − α. Instead: Σ p^α = Σ p + Σ p (p^(α−1) − 1), the second sum
        # by expm1, so S_α = log1p(Σ p expm1((α−1) ln p) / Σ p) / (1 − α)
        # (+ ln Σ p = 0 up to round-off, left out).
        positive = p > 0
        log_p = jnp.log(jnp.where(positive, p, 1))
        terms = jnp.where(positive, p * jnp.expm1((order - 1) * log_p), 0)
        total = jnp.where(nonzero, jnp.sum(p), 1)
        entropy = jnp.log1p(jnp.sum(terms) / total) / (1 - order)
    else:
        # Σ p^α = p_max^α Σ (p / p_max)^α: no underflow for large α.
        safe = jnp.where(nonzero, largest, 1)
        ratio = p / safe
        positive = ratio > 0
        powers = jnp.where(positive, jnp.where(positive, ratio, 1) ** order, 0)
        entropy = (order * jnp.log(safe) + jnp.log(jnp.sum(powers))) / (1 - order)
    entropy = jnp.where(nonzero, entropy, 0)
    if base is not None:
        entropy = entropy / math.log(base)
    return _nan_if_nan(p, entropy)


class ExactPurity(NamedTuple):
    """The purity ``Σ_k p_k²`` of ``[[A^y]]_I`` for every output ``y``, as a log.

    Attributes:
      log_purity: ``(num_outputs,)``: ``ln Tr ρ²`` of the normalised
        ``ρ = [[A^y]]_I [[A^y]]_Iᵀ / ‖A^y‖²``, that is ``ln Σ_k p_k²`` over
        the Schmidt spectrum; in ``[−ln rank, 0]``, ``-inf`` for a zero
        tensor, NaN where cancellation left it unresolved (see
        :func:`exact_purity`). (The purity itself, ``exp`` of it, underflows for the
        entanglement of large networks: hundreds of nats.)
      log_norm: ``(num_outputs,)``: ``ln ‖A^y‖_F`` (``-inf`` for a zero
        tensor), as :class:`ExactSpectrum` has it.
    """

    log_purity: jax.Array
    log_norm: jax.Array

    def renyi2_entropy(self, *, base: float | None = None) -> jax.Array:
        """``−ln(purity)`` per output: the Rényi-2 entanglement entropy.

        It is a lower bound on the entanglement entropy, and
        ``exp(S_2) = 1 / purity`` a lower bound on the Schmidt number. Zero
        tensors get 0, as :func:`entanglement_entropy` gives them; an
        unresolved purity (NaN) stays NaN.

        Args:
          base: the base of the logarithm; ``None`` for nats.

        Returns:
          ``(num_outputs,)`` entropies.
        """
        base = _check_base(base)
        log_purity = jnp.asarray(self.log_purity)
        zero = log_purity == -jnp.inf  # The zero tensor.
        entropy = jnp.where(zero, 0.0, 0.0 - jnp.where(zero, 0.0, log_purity))
        return entropy if base is None else entropy / math.log(base)


def exact_purity(
    params: Sequence[ArrayLike],
    tree: ModeTree,
    row_modes: Iterable[int],
    *,
    space: str = "linear",
    outputs: Iterable[int] | None = None,
    max_entries: int = 2**27,
) -> ExactPurity:
    """The purity ``Σ_k p_k²`` (Rényi-2) across any partition, exactly.

    Where :func:`exact_spectrum` is out of reach — a partition that cuts many
    pooling windows, like the halves of a mirror-pooled image network, has a
    cut dimension of ``10^100`` and more — the purity still is not:
    ``Tr ρ² = Σ M[i,j] M[i',j] M[i',j'] M[i,j']`` for ``M = [[A^y]]_I`` is a
    contraction of four copies of the network, and over a tree it factorises
    node by node. Each node ``ν`` carries a four-copy tensor
    ``X^ν[c_1, c_2, c_3, c_4]`` of its channels, summed over the descriptors
    of its leaves with copies 1 and 4 (and 2 and 3) sharing the rows' leaves,
    1 and 2 (and 3 and 4) the columns'. A node with all leaves in ``I`` has
    ``X = G[c_1, c_4] G[c_2, c_3]`` (``G`` its Gram matrix), one with none
    ``G[c_1, c_2] G[c_3, c_4]``; any other node takes the entry-wise product
    of its children's tensors and applies its weights to each of the four
    indices. The cost is ``8 r⁵`` flops per such node and width ``r`` (nodes
    with identical weights and identical partition patterns below are
    computed once), whatever the partition, with ``r⁴`` entries of memory.

    The purity bounds what the spectrum would show:
    ``S_2 = −log Σ p_k² ≤`` the entanglement entropy, and
    ``1 / Σ p_k² ≤`` the Schmidt number (:meth:`ExactPurity.renyi2_entropy`).

    Computation is in NumPy ``float64``, every tensor rescaled and its scale
    kept as a logarithm. Not traceable (``jit``) or differentiable.

    .. warning::
       The four-copy sum is a fourth moment, so cancellation costs four times
       the digits: signed weights whose terms cancel to a tensor ``δ`` times
       smaller than themselves leave the purity with a relative error of about
       ``eps / δ⁴`` (``1e-4`` at ``δ = 1e-3``; :func:`exact_spectrum`, a second
       moment, has ``eps / δ²``). Where round-off leaves no positive sum, or a
       purity above 1, ``log_purity`` is NaN, never a silent 0 or ``-inf``;
       ``log_norm`` is still given unless the norm itself is lost (``δ²``
       below ``eps``: then it is NaN too, and so is the purity of a tensor
       whose terms cancel exactly). Only a tensor with no terms (zero
       weights) is reported as the zero tensor. Positive weights (log-space
       networks) cannot cancel.

    Args:
      params: ``(W_0, …, W_L)`` as :func:`~jaxconvac.init_decomposition`
        makes them, any sharing.
      tree: the mode tree, ``N`` leaves.
      row_modes: the positions ``I``: a non-empty proper subset of
        ``0 … N-1``.
      space: ``"linear"`` or ``"log"``, as for :func:`exact_spectrum`.
      outputs: the outputs ``y`` to compute; ``None`` for all.
      max_entries: the largest four-copy tensor (``float64`` entries,
        ``r⁴`` for the widest level below the root) to allow; the default is
        1 GiB.

    Returns:
      An :class:`ExactPurity`.

    Raises:
      TypeError: if ``tree`` is no :class:`~jaxconvac.ModeTree` or
        ``max_entries`` is not an int.
      ValueError: for a bad partition, params that do not fit the tree or
        hold NaN or infinite weights, bad ``outputs``, or a width whose
        ``r⁴`` is above ``max_entries``.

    Examples:
      >>> import jaxconvac as jc
      >>> tree = jc.ModeTree.image(4, 4, "mirror")
      >>> params = jc.init_decomposition(jax.random.key(0), tree,
      ...     num_descriptors=2, widths=(3, 3), num_outputs=1)
      >>> purity = exact_purity(params, tree, (0, 1, 4, 5, 8, 9, 12, 13))
      >>> bool(purity.log_purity[0] <= 0)
      True
    """
    weights, log_scale, rows, selected, dtype = _checked_weights(
        params, tree, row_modes, space, outputs, (("max_entries", max_entries),)
    )
    widest = max(w.shape[1] for w in weights[:-1])
    if widest**4 > max_entries:
        raise ValueError(
            f"the four-copy tensors of width r = {widest} have r^4 = {widest**4} "
            f"float64 entries, above max_entries={max_entries}; raise max_entries "
            "if the memory is there."
        )
    grams, gram_logs = _pure_grams(weights, tree)
    tracked = np.zeros(tree.num_modes, bool)
    tracked[list(rows)] = True
    in_order = tracked[np.asarray(tree.order)]
    counts = [
        in_order.reshape(-1, tree.node_size(level)).sum(axis=1)
        for level in range(tree.depth + 1)
    ]
    memo: dict[tuple, tuple[np.ndarray, float]] = {}
    keys: dict[tuple[int, int], tuple] = {}

    def key(level: int, node: int) -> tuple:
        """Equal keys: equal weights below and an equal partition pattern."""
        if (level, node) not in keys:
            group = node % weights[level].shape[0]
            if level == 0:
                keys[level, node] = (0, group, bool(in_order[node]))
            else:
                window = tree.windows[level - 1]
                below = tuple(
                    key(level - 1, child)
                    for child in range(node * window, (node + 1) * window)
                )
                keys[level, node] = (level, group, below)
        return keys[level, node]

    def child_tensor(level: int, node: int) -> tuple[np.ndarray, float]:
        """The four-copy tensor of a node's output channels, and its log."""
        size = tree.node_size(level)
        count = counts[level][node]
        if count in (0, size):
            gram, log = grams[level][node], gram_logs[level][node]
            if count == size:  # Rows: copies (1, 4) and (2, 3) pair up.
                tensor = gram[:, None, None, :] * gram[None, :, :, None]
            else:  # Columns: copies (1, 2) and (3, 4).
                tensor = gram[:, :, None, None] * gram[None, None, :, :]
            return tensor, 2 * log
        signature = key(level, node)
        if signature not in memo:
            pooled, log = pooled_tensor(level, node)
            weight = weights[level][node % weights[level].shape[0]]
            memo[signature] = _rescale(_apply_four(weight, pooled), log)
        return memo[signature]

    def pooled_tensor(level: int, node: int) -> tuple[np.ndarray, float]:
        """The entry-wise product of the children's four-copy tensors."""
        window = tree.windows[level - 1]
        pooled, log = None, 0.0
        for child in range(node * window, (node + 1) * window):
            tensor, child_log = child_tensor(level - 1, child)
            pooled = tensor if pooled is None else pooled * tensor
            log += child_log
        return _rescale(pooled, log)

    pooled, pooled_log = pooled_tensor(tree.depth, 0)
    window = tree.windows[-1]
    gram = np.prod(grams[-1][np.arange(window)], axis=0)
    gram_log = float(np.sum(gram_logs[-1]))
    root = weights[-1][0]
    purities, log_norms = [], []
    for output in selected:
        row = root[output]
        fourth = float(np.einsum("abcd,a,b,c,d->", pooled, row, row, row, row))
        square = float(row @ gram @ row)
        if not square > 0:
            # The zero tensor (-inf), or terms that cancel below round-off
            # (NaN: neither the norm nor the purity is resolved).
            unresolved = float(np.abs(row) @ np.abs(gram) @ np.abs(row)) > 0
            purities.append(math.nan if unresolved else -math.inf)
            log_norms.append(math.nan if unresolved else -math.inf)
            continue
        log_norms.append(0.5 * (math.log(square) + gram_log) + log_scale)
        # ‖A‖⁴ = square² · exp(2 gram_log); Σ σ⁴ = fourth · exp(pooled_log).
        log_purity = math.nan  # Lost to cancellation (see the warning).
        if fourth > 0:
            log_purity = (
                math.log(fourth) - 2 * math.log(square) + pooled_log - 2 * gram_log
            )
            # A purity is at most 1: above it by more than round-off, it is
            # not resolved either.
            log_purity = min(log_purity, 0.0) if log_purity < 1e-9 else math.nan
        purities.append(log_purity)
    return ExactPurity(
        jnp.asarray(np.asarray(purities), dtype), jnp.asarray(log_norms, dtype)
    )


def _apply_four(weight: np.ndarray, tensor: np.ndarray) -> np.ndarray:
    """``weight`` (``(out, in)``) applied to each of the four indices."""
    for _ in range(4):
        # Contract the leading index; it comes back as the trailing one, so
        # four rounds restore the order.
        r_in = tensor.shape[0]
        tensor = (tensor.reshape(r_in, -1).T @ weight.T).reshape(
            *tensor.shape[1:], weight.shape[0]
        )
    return tensor
