"""Entanglement measures of a matricization, from its singular values (SPEC §6).

A matricization ``[[A]]_I`` with singular values ``σ_0 ≥ σ_1 ≥ …`` has the
normalised *Schmidt spectrum* ``p_k = σ_k² / Σ_j σ_j²``, a probability vector.
The measures here are functions of it:

* entanglement entropy ``−Σ_k p_k log p_k`` (nats unless ``base`` says
  otherwise, with ``0 · log 0 = 0``);
* geometric measure ``1 − p_0`` (the papers' definition, *not* its square
  root);
* Schmidt number: the numerical rank of SPEC §3.

They take singular values, never singular vectors, so that their gradients
stay finite where singular values repeat or vanish. Pass the result of
:func:`~jaxconvac.singular_values` of :func:`~jaxconvac.matricize`, or the
exact spectrum of a large network from
:func:`~jaxconvac.exact_spectrum`. Everything works on one spectrum and under
``jax.jit``; batches come from ``jax.vmap``.

**The zero tensor** has no entanglement: its spectrum is all zeros, its
entropy, geometric measure and Schmidt number are ``0``, and the gradients of
the entropy and the geometric measure there are ``0`` too (never NaN).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxconvac.decompositions import check_params
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


def _check_base(base: float | None) -> float | None:
    if base is None:
        return None
    if isinstance(base, bool) or not isinstance(base, int | float):
        raise TypeError(f"base must be a number or None, got {base!r}.")
    if not base > 0 or base == 1 or math.isinf(base):
        raise ValueError(f"base must be positive, finite and not 1, got {base}.")
    return float(base)


def schmidt_spectrum(singular_values: ArrayLike) -> jax.Array:
    """The normalised Schmidt spectrum ``p_k = σ_k² / Σ_j σ_j²``.

    The values are first divided by the largest ``|σ|``, so large or tiny
    singular values neither overflow nor underflow when squared.

    Args:
      singular_values: ``σ`` of shape ``(num_values,)``, in any order (the
        result keeps it); non-negative.

    Returns:
      ``p`` of shape ``(num_values,)``, summing to 1; all zeros for the zero
      tensor (and for an empty spectrum).

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
    return squares / jnp.where(total > 0, total, 1)


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
    return entropy


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
    return jnp.where(jnp.sum(p) > 0, 1 - jnp.max(p), 0)


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
    tol = jnp.maximum(rtol * jnp.max(jnp.abs(values)), atol)
    return jnp.sum(jnp.abs(values) > tol)


# -- exact spectra of a tree decomposition ---------------------------------


class ExactSpectrum(NamedTuple):
    """The spectrum of ``[[A^y]]_I`` for every output ``y``, normalised.

    Attributes:
      singular_values: ``(num_outputs, num_values)``: the singular values of
        each ``[[A^y]]_I`` divided by ``‖A^y‖_F`` (so their squares sum to 1;
        all zero for a zero tensor), in descending order. ``num_values`` is
        the dimension the computation tracked; every singular value beyond
        them is 0.
      log_norm: ``(num_outputs,)``: ``ln ‖A^y‖_F`` (``-inf`` for a zero
        tensor); the true singular values are
        ``singular_values * exp(log_norm)[:, None]``, which may overflow for
        large networks while the logarithm does not.
      cut_dimension: the cost figure the limit applies to (see
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
) -> ExactSpectrum:
    """Singular values of a network's matricized coefficient tensors, exactly.

    Computes the spectrum of ``[[A^y]]_I`` for a ConvAC's tree decomposition
    (``g = product``) without forming the ``M^N`` tensor, by propagating small
    matrices up the tree:

    * a node whose leaves all lie on one side of the partition keeps the Gram
      matrix of its channel tensors, ``G^ν = W^ν (⊙_t G^t) W^νᵀ`` (``⊙`` the
      entry-wise product over its children ``t``) — ``r × r`` per node;
    * a node with leaves on both sides (a *cut node*, an ancestor of the
      partition's boundary) keeps the partial traces
      ``R^ν[γ, γ'] = Tr_J(Φ^{ν,γ} Φ^{ν,γ'}ᵀ)`` over the tracked side's
      orthonormal coordinates, of shape ``(r, r, a, a)``, where ``a`` is
      capped exactly at ``min(A, r_out · B)`` (``A``, ``B`` the dimensions of
      the two sides of its pooled children);
    * at the root the eigenvalues of ``R[y, y]`` are ``σ²``.

    No rank is decided numerically along the way: every truncation is to a
    dimension proven to contain the whole span. Whichever side of the
    partition is cheaper is tracked. The *cut dimension* is the largest
    ``r_in · A`` over the cut nodes below the root (``r_in`` the channels
    pooled there, ``A`` the tracked side's dimension) and ``A`` at the root
    (the size of the final eigenproblem); memory grows as its square and time
    as its cube. A partition
    that is a union of few tree nodes (halves and quadrants of an image under
    square pooling) has a cut dimension of a few times ``r``; interleaved
    partitions of deep trees grow like the true rank.

    Computation is in NumPy ``float64`` (every Gram matrix is rescaled and
    its scale kept as a logarithm, so thousand-pixel networks neither
    overflow nor underflow); the results come back in the params' dtype.
    Not traceable (``jit``) or differentiable.

    .. warning::
       Working with Gram matrices squares the condition number: a singular
       value is resolved to about ``sqrt(eps) · σ_max`` (``1.5e-8 · σ_max`` in
       ``float64``), so smaller ones come out as noise of that size (or 0). The
       entropy and the geometric measure are unaffected at that level; for a
       Schmidt number pass ``schmidt_number(values, rtol=1e-7)`` or so, not
       the default tolerance.

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

    Returns:
      An :class:`ExactSpectrum`.

    Raises:
      ValueError: for a bad partition (out of range, empty, repeated, every
        position), params that do not fit the tree, or a cut dimension above
        ``max_cut_dimension`` (the message gives it).

    Examples:
      >>> import jaxconvac as jc
      >>> tree = jc.ModeTree.balanced(8)
      >>> params = jc.init_decomposition(jax.random.key(0), tree,
      ...     num_descriptors=2, widths=(2, 2, 2), num_outputs=1)
      >>> spectrum = exact_spectrum(params, tree, (0, 1, 2, 3))
      >>> spectrum.singular_values.shape
      (1, 2)
    """
    if not isinstance(tree, ModeTree):
        raise TypeError(f"tree must be a ModeTree, got {type(tree).__name__}.")
    if space not in ("linear", "log"):
        raise ValueError(f"space must be 'linear' or 'log', got {space!r}.")
    if isinstance(max_cut_dimension, bool) or not isinstance(max_cut_dimension, int):
        raise TypeError(f"max_cut_dimension must be an int, got {max_cut_dimension!r}.")
    params = check_params(params, tree)
    rows = check_row_modes(row_modes, tree.num_modes)
    dtype = params[0].dtype
    weights = [np.asarray(p, np.float64) for p in params]
    log_scale = 0.0
    if space == "log":
        weights, log_scale = _exponentiate(weights, tree)

    sizes = (weights[0].shape[2], *(w.shape[1] for w in weights))
    tracked = np.zeros(tree.num_modes, bool)
    tracked[list(rows)] = True
    plans = [_plan(tree, side, sizes) for side in (tracked, ~tracked)]
    plan = min(plans, key=lambda p: p.cost)
    if plan.cost > max_cut_dimension:
        raise ValueError(
            f"the cut dimension of this partition is {_describe(plan.cost)} "
            "(channels times "
            f"the tracked side's dimension at the costliest cut node, level "
            f"{plan.costliest}), above max_cut_dimension={max_cut_dimension}; "
            "raise max_cut_dimension to compute it (memory grows as its square)."
        )

    grams, gram_logs = _pure_grams(weights, tree)
    eigenvalues, root_log = _propagate_cut(weights, tree, plan, grams, gram_logs)
    totals = eigenvalues.sum(axis=1)
    safe = np.where(totals > 0, totals, 1.0)
    values = np.sqrt(eigenvalues / safe[:, None])
    with np.errstate(divide="ignore"):
        log_norm = 0.5 * (np.log(totals) + root_log) + log_scale
    return ExactSpectrum(
        jnp.asarray(values, dtype), jnp.asarray(log_norm, dtype), plan.cost
    )


def _describe(number: int) -> str:
    return str(number) if number < 10**12 else f"about 10^{len(str(number)) - 1}"


def _exponentiate(weights, tree):
    """Log-weights to weights, each level shifted by its maximum."""
    linear, log_scale = [], 0.0
    for level, log_weights in enumerate(weights):
        shift = float(np.max(log_weights))
        shift = shift if np.isfinite(shift) else 0.0
        linear.append(np.exp(log_weights - shift))
        # Every node of the level carries one factor exp(shift).
        log_scale += shift * tree.num_nodes(level)
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


def _pure_grams(weights, tree):
    """Normalised Gram matrices of every node's channel tensors, level by level."""
    leaf = _node_weights(weights[0], tree.num_modes)
    gram, logs = _normalise(
        np.einsum("nam,nbm->nab", leaf, leaf), np.zeros(tree.num_modes)
    )
    grams, gram_logs = [gram], [logs]
    for level, window in enumerate(tree.windows, start=1):
        nodes = tree.num_nodes(level)
        children = grams[-1].reshape(nodes, window, *grams[-1].shape[1:])
        pooled = np.prod(children, axis=1)
        logs = gram_logs[-1].reshape(nodes, window).sum(axis=1)
        node_w = _node_weights(weights[level], nodes)
        gram = node_w @ pooled @ np.swapaxes(node_w, 1, 2)
        gram, logs = _normalise(gram, logs)
        grams.append(gram)
        gram_logs.append(logs)
    return grams, gram_logs


@dataclasses.dataclass
class _Plan:
    """Which nodes are cut, and the exact dimensions tracked at each."""

    kinds: list[np.ndarray]  # per level: 0 other side, 1 tracked side, 2 cut.
    pure_dims: list[int]  # per level: bound on a pure node's span.
    dims: dict[tuple[int, int], tuple[int, int, int, int, int]]
    cost: int = 0
    costliest: int = 0


def _plan(tree: ModeTree, tracked: np.ndarray, sizes: tuple[int, ...]) -> _Plan:
    """Dimensions of the computation when ``tracked`` positions are the rows."""
    in_order = tracked[np.asarray(tree.order)]
    kinds, pure_dims = [], []
    for level in range(tree.depth + 1):
        size = tree.node_size(level)
        counts = in_order.reshape(-1, size).sum(axis=1)
        kinds.append(np.where(counts == 0, 0, np.where(counts == size, 1, 2)))
        pure_dims.append(min(sizes[level + 1], sizes[0] ** size))
    plan = _Plan(kinds, pure_dims, {})
    for level, window in enumerate(tree.windows, start=1):
        r_in, r_out = sizes[level], sizes[level + 1]
        for node in np.flatnonzero(kinds[level] == 2):
            children = range(node * window, (node + 1) * window)
            child_kinds = kinds[level - 1][children.start : children.stop]
            side_dims = []
            for side in (1, 0):
                count = int(np.sum(child_kinds == side))
                side_dims.append(
                    min(r_in, pure_dims[level - 1] ** count) if count else 1
                )
            rows, cols = side_dims
            for child in children:
                if kinds[level - 1][child] == 2:
                    rows *= plan.dims[level - 1, child][2]
                    cols *= plan.dims[level - 1, child][3]
            kept_rows = min(rows, r_out * cols)
            kept_cols = min(cols, r_out * kept_rows)
            plan.dims[level, int(node)] = (
                rows,
                cols,
                kept_rows,
                kept_cols,
                side_dims[0],
            )
            cost = rows if level == tree.depth else r_in * rows
            if cost > plan.cost:
                plan.cost, plan.costliest = cost, level
    return plan


def _row_factor(gram: np.ndarray, rank: int) -> np.ndarray:
    """``F`` of shape ``(r, rank)`` with ``F Fᵀ = gram`` (``gram`` of rank ≤ rank)."""
    eigenvalues, vectors = np.linalg.eigh(gram)
    eigenvalues, vectors = eigenvalues[-rank:], vectors[:, -rank:]
    return vectors * np.sqrt(np.maximum(eigenvalues, 0.0))


def _kronecker_states(pooled, cut_children):
    """Joins partial traces ``(r, r, a, a)`` by Kronecker products of the last axes."""
    r_in = pooled.shape[0]
    for child_state, _ in cut_children:
        a, b = pooled.shape[2], child_state.shape[2]
        pooled = np.einsum("abij,abkl->abikjl", pooled, child_state)
        pooled = pooled.reshape(r_in, r_in, a * b, a * b)
    return pooled


def _root_traces(weight, col_gram, pooled, last):
    """``R[y, y] = Σ_{α,α'} W[y,α] W[y,α'] g[α,α'] pooled[α,α'] ⊗ last[α,α']``.

    Contracted as one matrix product per output, without forming the joint
    ``(r, r, A, A)`` partial traces of the root's children.
    """
    r_in, a = pooled.shape[0], pooled.shape[2]
    coefficients = np.einsum("ya,yb,ab->yab", weight, weight, col_gram)
    if last is None:
        return np.einsum("yab,abij->yij", coefficients, pooled, optimize=True)
    b = last.shape[2]
    left = pooled.reshape(r_in * r_in, a * a).T
    right = last.reshape(r_in * r_in, b * b)
    traces = np.stack(
        [(left * c.reshape(1, -1)) @ right for c in coefficients]
    )  # (Y, a * a, b * b) indexed [y, (i, j), (k, l)].
    traces = traces.reshape(-1, a, a, b, b).transpose(0, 1, 3, 2, 4)
    return traces.reshape(-1, a * b, a * b)


def _propagate_cut(weights, tree, plan, grams, gram_logs):
    """Partial traces up the cut nodes; the root's ``σ²`` and their log scale."""
    states = {}
    for level, window in enumerate(tree.windows, start=1):
        node_weights = _node_weights(weights[level], tree.num_nodes(level))
        r_in = weights[level].shape[2]
        for node in np.flatnonzero(plan.kinds[level] == 2):
            node = int(node)
            _, _, kept_rows, _, row_rank = plan.dims[level, node]
            row_gram, col_gram = np.ones((r_in, r_in)), np.ones((r_in, r_in))
            log, has_rows = 0.0, False
            cut_children = []
            for child in range(node * window, (node + 1) * window):
                kind = plan.kinds[level - 1][child]
                if kind == 2:
                    cut_children.append(states.pop((level - 1, child)))
                    continue
                log += gram_logs[level - 1][child]
                if kind == 1:
                    row_gram = row_gram * grams[level - 1][child]
                    has_rows = True
                else:
                    col_gram = col_gram * grams[level - 1][child]
            if has_rows:
                factor = _row_factor(row_gram, row_rank)
                pooled = np.einsum("ai,bj->abij", factor, factor)
            else:
                pooled = np.ones((r_in, r_in, 1, 1))
            log += sum(child_log for _, child_log in cut_children)
            weight = node_weights[node]
            if level == tree.depth:
                last = cut_children.pop()[0] if cut_children else None
                pooled = _kronecker_states(pooled, cut_children)
                traces = _root_traces(weight, col_gram, pooled, last)
                eigenvalues = np.linalg.eigvalsh(traces)[:, ::-1]
                return np.maximum(eigenvalues, 0.0), log
            pooled = _kronecker_states(pooled, cut_children)
            pooled = pooled * col_gram[:, :, None, None]
            state = np.einsum("ga,hb,abij->ghij", weight, weight, pooled, optimize=True)
            if kept_rows < state.shape[2]:
                total = np.einsum("ggij->ij", state)
                basis = np.linalg.eigh(total)[1][:, -kept_rows:]
                state = np.einsum(
                    "ip,ghij,jq->ghpq", basis, state, basis, optimize=True
                )
            largest = np.einsum("ggii->g", state).max()
            if largest > 0:
                state, log = state / largest, log + np.log(largest)
            else:
                log = -np.inf
            states[level, node] = (state, log)
    raise AssertionError("the root is always a cut node")
