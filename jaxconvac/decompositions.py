"""Tree decompositions of coefficient tensors, as pure functions (SPEC §4).

Parameters are a tuple ``(W_0, W_1, …, W_L)`` over the levels of a
:class:`~jaxconvac.mode_trees.ModeTree` of depth ``L``, each weight array of
shape ``(groups, out, in)``:

========== ============================== =====================================
level      shape                          meaning
========== ============================== =====================================
``0``      ``(groups, r_0, M)``           leaf ``i``: ``c^i = W^i · e``
``l``      ``(groups, r_l, r_{l-1})``     interior: ``c^ν = W^ν · g-pool(children)``
``L``      ``(1, Y, r_{L-1})``            root: ``A^y = c^root[y]``
========== ============================== =====================================

``groups`` says how a level shares its weights, and is read off the shape:
``num_nodes(l)`` for ``sharing="none"`` (one matrix per node, in tree order:
locally connected), ``windows[l]`` for ``"per_tap"`` (one matrix per position in
the parent's window: a strided convolution), ``1`` for ``"full"`` (one matrix per
level: a 1×1 convolution). The level just below the root has as many nodes as
the root's window, so there ``"none"`` and ``"per_tap"`` coincide.

Evaluation is level by level: gather the input rows by the tree's leaf order
once, then per level one reshape to ``(nodes, window, channels)``, one
channel-wise ``g``-reduction and one batched contraction. Work is linear in
``N`` and compile time grows with the depth, not the number of nodes.

In log space (``space="log"``) the weights are positive and stored as their
logarithms, features are log-descriptors, products are sums and contractions
are log-sum-exp: deep products over thousands of positions neither underflow nor
overflow in float32. Linear space with signed weights is the theory's setting;
for large ``N`` it underflows or overflows in float32, as products of ``N``
numbers do — use log space to train, linear space (in float64) to analyse.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxconvac.mode_trees import ModeTree
from jaxconvac.tensor_products import (
    GeneralizedProduct,
    GFunction,
    check_window,
    resolve_operator,
)

SHARING_MODES = ("none", "per_tap", "full")
SPACES = ("linear", "log")
Params = tuple[jax.Array, ...]
Initializer = Callable[[jax.Array, Sequence[int], jnp.dtype], jax.Array]


def _check_tree(tree: object) -> ModeTree:
    if not isinstance(tree, ModeTree):
        raise TypeError(f"tree must be a ModeTree, got {type(tree).__name__}.")
    return tree


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")
    return value


def _group_count(tree: ModeTree, level: int, sharing: str) -> int:
    if level == tree.depth or sharing == "full":
        return 1
    if sharing == "per_tap":
        return tree.windows[level]
    return tree.num_nodes(level)


def check_widths(tree: ModeTree, widths: Sequence[int]) -> tuple[int, ...]:
    """Validates ``widths = (r_0, …, r_{L-1})`` against ``tree``.

    Raises:
      TypeError: if ``widths`` is not a sequence of ints.
      ValueError: if there is not one positive width per level below the root.
    """
    try:
        widths = tuple(widths)
    except TypeError:
        raise TypeError(
            f"widths must be a sequence of ints (r_0, …, r_{{L-1}}), one per level "
            f"below the root ({tree.depth} for this tree), got {widths!r}."
        ) from None
    if len(widths) != tree.depth:
        raise ValueError(
            f"widths must have one entry per level below the root, "
            f"{tree.depth} for this tree (windows {tree.windows}), got "
            f"{len(widths)}: {widths}."
        )
    for level, width in enumerate(widths):
        if isinstance(width, bool) or not isinstance(width, int | np.integer):
            raise TypeError(f"widths[{level}] must be an int, got {width!r}.")
        if width < 1:
            raise ValueError(f"widths[{level}] must be positive, got {width}.")
    return tuple(int(w) for w in widths)


def init_decomposition(
    key: jax.Array,
    tree: ModeTree,
    *,
    num_descriptors: int,
    widths: Sequence[int],
    num_outputs: int,
    sharing: str = "none",
    dtype: jnp.dtype = jnp.float32,
    initializer: Initializer | None = None,
) -> Params:
    """Random parameters of a tree decomposition.

    Args:
      key: a ``jax.random.key``.
      tree: the mode tree, depth ``L``.
      num_descriptors: ``M``, the descriptors per position.
      widths: ``(r_0, …, r_{L-1})``, the channels of each level below the root.
      num_outputs: ``Y``, the number of classes (coefficient tensors).
      sharing: ``"none"``, ``"per_tap"`` or ``"full"`` (see the module
        docstring).
      dtype: the parameters' dtype.
      initializer: ``initializer(key, shape, dtype)`` for every weight array
        (a ``jax.nn.initializers`` function fits); standard normal by default.
        For log-space use it draws the logarithms of the weights.

    Returns:
      ``(W_0, …, W_L)``, ``W_l`` of shape ``(groups, r_l, r_{l-1})`` with
      ``r_{-1} = M`` and ``r_L = Y``.

    Raises:
      ValueError: for widths of the wrong length, an unknown sharing mode or
        non-positive sizes.

    Examples:
      >>> params = init_decomposition(
      ...     jax.random.key(0), ModeTree.balanced(8), num_descriptors=3,
      ...     widths=(4, 5, 6), num_outputs=2)
      >>> [p.shape for p in params]
      [(8, 4, 3), (4, 5, 4), (2, 6, 5), (1, 2, 6)]
    """
    tree = _check_tree(tree)
    _check_choice("sharing", sharing, SHARING_MODES)
    widths = check_widths(tree, widths)
    for name, value in (
        ("num_descriptors", num_descriptors),
        ("num_outputs", num_outputs),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | np.integer)
            or value < 1
        ):
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if initializer is None:
        initializer = jax.random.normal

    sizes = (num_descriptors, *widths, num_outputs)
    keys = jax.random.split(key, tree.depth + 1)
    return tuple(
        initializer(
            keys[level],
            (_group_count(tree, level, sharing), sizes[level + 1], sizes[level]),
            dtype,
        )
        for level in range(tree.depth + 1)
    )


def check_params(params: Sequence[ArrayLike], tree: ModeTree) -> Params:
    """Validates a parameter tuple against ``tree``; returns it as arrays.

    Raises:
      TypeError: if ``params`` is not a tuple or list.
      ValueError: if the number of levels, a rank, a group count or a chained
        channel count does not fit, or a channel count is 0.
    """
    check_param_shapes(params, tree)
    return tuple(jnp.asarray(p) for p in params)


def check_param_shapes(params: Sequence[ArrayLike], tree: ModeTree) -> None:
    """:func:`check_params` without converting: only the shapes are read.

    For callers that keep the values on the host in their own precision
    (``jnp.asarray`` rounds float64 to float32 unless x64 is enabled).

    Raises:
      TypeError: if ``params`` is not a tuple or list.
      ValueError: as :func:`check_params`.
    """
    if not isinstance(params, tuple | list):
        raise TypeError(
            f"params must be a tuple of {tree.depth + 1} weight arrays, got "
            f"{type(params).__name__}."
        )
    if len(params) != tree.depth + 1:
        raise ValueError(
            f"params must hold {tree.depth + 1} weight arrays for a tree of depth "
            f"{tree.depth} (leaves to root), got {len(params)}."
        )
    shapes = tuple(np.shape(p) for p in params)
    for level, shape in enumerate(shapes):
        if len(shape) != 3:
            raise ValueError(
                f"params[{level}] must have shape (groups, out, in), got {shape}."
            )
        if 0 in shape[1:]:
            raise ValueError(
                f"params[{level}] has shape {shape}: its channel counts "
                "(out, in) must be positive."
            )
        allowed = {_group_count(tree, level, s) for s in SHARING_MODES}
        if shape[0] not in allowed:
            raise ValueError(
                f"params[{level}] has {shape[0]} weight groups; level "
                f"{level} allows {sorted(allowed)} (full, per_tap, none)."
            )
        if level and shape[2] != shapes[level - 1][1]:
            raise ValueError(
                f"params[{level}] takes {shape[2]} input channels but "
                f"params[{level - 1}] gives {shapes[level - 1][1]}."
            )
    if shapes[-1][0] != 1:
        raise ValueError(f"params[-1] (the root) must have 1 group, got {shapes[-1]}.")


def _apply_linear(weights: jax.Array, values: jax.Array) -> jax.Array:
    """Applies a level's weights ``(groups, out, in)`` to every node.

    ``values`` has shape ``(nodes, in, *rest)``; the result ``(nodes, out,
    *rest)``. ``groups`` is ``nodes`` (one matrix per node), ``1`` (one for all)
    or a window size (one per tap: node ``j`` uses matrix ``j % groups``).
    """
    nodes, groups = values.shape[0], weights.shape[0]
    if groups == nodes:
        return jnp.einsum("noi,ni...->no...", weights, values)
    if groups == 1:
        return jnp.einsum("oi,ni...->no...", weights[0], values)
    grouped = values.reshape(nodes // groups, groups, *values.shape[1:])
    out = jnp.einsum("woi,pwi...->pwo...", weights, grouped)
    return out.reshape(nodes, *out.shape[2:])


def _finite_max(x: jax.Array, axis: int) -> jax.Array:
    shift = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    return jnp.where(jnp.isfinite(shift), shift, 0)


def _apply_log(log_weights: jax.Array, log_values: jax.Array) -> jax.Array:
    """:func:`_apply_linear` on logarithms: a stable log-sum-exp contraction.

    ``log Σ_i exp(w[o, i] + v[i])`` as one matrix product: each weight column
    is shifted by its maximum ``c_i`` over the outputs, each node's values by
    ``s = max_i (v[i] + c_i)``, so every factor lies in ``[0, 1]`` and the
    best output of a node keeps a term equal to 1. An output underflows (to
    ``-inf``, with a zero gradient) only when it is more than the float range
    (about 87 nats in float32) below the best output of the same node; an all
    ``-inf`` input gives ``-inf``.
    """
    nodes, groups = log_values.shape[0], log_weights.shape[0]
    column_max = _finite_max(log_weights, axis=1)  # (groups, 1, in)
    per_node = jnp.tile(column_max[:, 0, :], (nodes // groups, 1))  # (nodes, in)
    per_node = per_node.reshape(*per_node.shape, *(1,) * (log_values.ndim - 2))
    shifted = log_values + per_node
    shift = _finite_max(shifted, axis=1)  # (nodes, 1, *rest)
    total = _apply_linear(jnp.exp(log_weights - column_max), jnp.exp(shifted - shift))
    positive = total > 0
    safe_log = jnp.log(jnp.where(positive, total, 1))
    return jnp.where(positive, safe_log + shift, -jnp.inf)


def evaluate(
    params: Sequence[ArrayLike],
    tree: ModeTree,
    features: ArrayLike,
    *,
    g: str | GFunction | GeneralizedProduct = "product",
    space: str = "linear",
) -> jax.Array:
    """Scores of one example under a tree decomposition: the network's forward pass.

    In linear space with ``g="product"`` this is
    ``h_y = Σ_d A^y[d_0 … d_{N-1}] Π_i F[i, d_i]`` with ``A^y`` the coefficient
    tensor, computed in ``O(N)`` without forming ``A^y``. With another ``g`` it
    is the generalized network (ReLU with max or sum pooling, …). Batch it with
    ``jax.vmap`` over ``features``.

    Args:
      params: ``(W_0, …, W_L)`` from :func:`init_decomposition`.
      tree: the mode tree, ``N`` leaves, depth ``L``.
      features: ``F``, the representation matrix of shape
        ``(num_modes, num_descriptors)``; log-descriptors in log space. Or, for
        indicator descriptors, the integer values ``x`` of shape
        ``(num_modes,)`` with ``F[i, d] = [d == x_i]``: the leaf level is then
        a lookup ``W^i[:, x_i]`` (in either space), the same scores at a
        fraction of the cost. Values outside ``[0, num_descriptors)`` raise
        when they are known, and give NaN scores under ``jit``.
      g: the generalized product pooling each window: a built-in name, a
        callable or a :class:`~jaxconvac.GeneralizedProduct`.
      space: ``"linear"``, or ``"log"`` (weights stored as logs, log
        features, result ``log h_y``; ``g`` must be ``"product"``).

    Returns:
      The scores ``h`` (or ``log h``) of shape ``(num_outputs,)``.

    Raises:
      ValueError: if ``features`` does not have shape ``(N, M)`` for this tree
        and these parameters, for a bad ``space`` or ``g``, or a window larger
        than 2 with a ``g`` not known to be associative.

    Examples:
      >>> tree = ModeTree.balanced(4)
      >>> params = init_decomposition(jax.random.key(0), tree,
      ...     num_descriptors=2, widths=(3, 3), num_outputs=1)
      >>> evaluate(params, tree, jnp.ones((4, 2))).shape
      (1,)
    """
    tree = _check_tree(tree)
    params = check_params(params, tree)
    operator = _check_operator(g, space, tree)
    apply = _apply_log if space == "log" else _apply_linear
    values = leaf_values(params, tree, features, space=space)
    for level, window in enumerate(tree.windows, start=1):
        values = apply(params[level], pool_values(values, window, operator, space))
    return values[0]


def leaf_values(
    params: Params, tree: ModeTree, features: ArrayLike, *, space: str = "linear"
) -> jax.Array:
    """Level 0 of :func:`evaluate`: ``c^i = W^i · F[i, :]`` for every leaf.

    A building block for evaluations that run several decompositions level by
    level (:mod:`jaxconvac.mixed`); ``params`` must already be checked.

    Args:
      params: checked ``(W_0, …, W_L)``.
      tree: the mode tree.
      features: as for :func:`evaluate`: ``(num_modes, num_descriptors)``
        floats or ``(num_modes,)`` integer indicator values.
      space: ``"linear"`` or ``"log"``.

    Returns:
      The leaves' channels in tree order, shape ``(num_modes, r_0)``.

    Raises:
      ValueError: for features of the wrong shape or out-of-range integers.
    """
    features = jnp.asarray(features)
    if jnp.issubdtype(features.dtype, jnp.integer):
        return _leaf_lookup(params[0], tree, features)
    expected = (tree.num_modes, params[0].shape[2])
    if features.shape != expected:
        raise ValueError(
            "features must have shape (num_modes, num_descriptors) = "
            f"{expected} for this tree and params (one example; vmap for "
            f"batches), or integer indices of shape ({tree.num_modes},); got "
            f"{features.shape}."
        )
    apply = _apply_log if space == "log" else _apply_linear
    return apply(params[0], features[np.asarray(tree.order)])


def pool_values(
    values: jax.Array, window: int, operator: GeneralizedProduct, space: str
) -> jax.Array:
    """One level's pooling in :func:`evaluate`: ``(nodes · window, r) -> (nodes, r)``.

    Consecutive ``window`` rows (the children of one node, in tree order) are
    combined channel-wise with ``g`` (a sum of logs in log space).
    """
    windows = values.reshape(-1, window, values.shape[-1])
    return jnp.sum(windows, axis=1) if space == "log" else operator.pool(windows, 1)


def _leaf_lookup(weights: jax.Array, tree: ModeTree, values: jax.Array) -> jax.Array:
    """Leaf level for indicator descriptors: node ``j`` gives ``W^j[:, x_j]``."""
    num_descriptors = weights.shape[2]
    if values.shape != (tree.num_modes,):
        raise ValueError(
            f"integer features must have shape (num_modes,) = ({tree.num_modes},) "
            f"for this tree (one example; vmap for batches), got {values.shape}."
        )
    if not isinstance(values, jax.core.Tracer):
        bad = np.flatnonzero((np.asarray(values) < 0) | (values >= num_descriptors))
        if bad.size:
            raise ValueError(
                f"integer features must lie in [0, {num_descriptors}) "
                f"(num_descriptors); position {bad[0]} holds {int(values[bad[0]])}."
            )
    leaves = values[np.asarray(tree.order)]
    # Out-of-range values point past the end, where the lookup fills in NaN.
    leaves = jnp.where(
        (leaves < 0) | (leaves >= num_descriptors), num_descriptors, leaves
    )
    groups = np.arange(tree.num_modes) % weights.shape[0]
    return weights.at[groups, :, leaves].get(mode="fill", fill_value=jnp.nan)


def _check_operator(g, space: str, tree: ModeTree) -> GeneralizedProduct:
    _check_choice("space", space, SPACES)
    operator = resolve_operator(g)
    if space == "log" and operator.name != "product":
        raise ValueError(
            f"space='log' computes products of positive numbers as sums, so g "
            f"must be 'product' there; got g={operator.name!r}."
        )
    for level, window in enumerate(tree.windows, start=1):
        check_window(operator, window, where=f"level {level}'s ")
    return operator


def coefficient_tensor(
    params: Sequence[ArrayLike],
    tree: ModeTree,
    *,
    space: str = "linear",
    modulus: int | None = None,
    max_entries: int = 2**24,
) -> jax.Array:
    """The coefficient tensors ``A^y`` a tree decomposition realises (SPEC §4).

    ``Φ^{i,α} = W^i[α, :]`` at the leaves and
    ``Φ^{ν,γ} = Σ_α W^ν[γ, α] · ⊗_{t} Φ^{child_t, α}`` above, with the modes
    put back in position order at the root. Contracting the result with
    features gives :func:`evaluate`'s scores.

    Args:
      params: ``(W_0, …, W_L)`` from :func:`init_decomposition`.
      tree: the mode tree, ``N`` leaves.
      space: ``"linear"``, or ``"log"``: params are log-weights and the result
        is ``log A`` (computed with log-sum-exp).
      modulus: a prime ``p`` for exact integer arithmetic: params must be
        integers and the result is ``A mod p`` in ``int64`` (needs
        ``jax_enable_x64``); :func:`~jaxconvac.exact_rank` of its
        matricizations is a certified lower bound on the real rank.
      max_entries: the largest array that may be formed: the result
        (``Y · M^N`` entries) or an intermediate (a level's pooled children,
        ``nodes · r_{l-1} · M^{size}``).

    Returns:
      ``A`` of shape ``(num_outputs, M, …, M)`` with ``N`` modes of size ``M``.

    Raises:
      ValueError: if ``Y · M^N`` exceeds ``max_entries`` (the message gives
        the size), for a bad ``space``, or a modulus whose products could
        overflow ``int64``.
      TypeError: for non-integer params with a modulus.
    """
    tree = _check_tree(tree)
    params = check_params(params, tree)
    _check_choice("space", space, SPACES)
    num_descriptors = params[0].shape[2]
    _check_entries("coefficient tensor", params, num_descriptors, tree, max_entries)
    if modulus is not None:
        params = _modular_params(params, modulus, space)
    outer, apply = tensor_operations(space, modulus)
    eye = jnp.eye(num_descriptors, dtype=params[0].dtype)
    leaves = jnp.log(eye) if space == "log" else eye
    return _materialize(params, tree, leaves, outer, apply)


def tensor_operations(space: str, modulus: int | None):
    """``(outer, apply)`` of :func:`coefficient_tensor`'s contraction.

    ``outer(a, b)`` combines entries of two children (a product, a sum of
    logs, or a product modulo ``modulus``); ``apply(weights, values)`` applies
    a level's weights (log-sum-exp in log space, reduced modulo ``modulus``).
    """

    def outer(a: jax.Array, b: jax.Array) -> jax.Array:
        if space == "log":
            return a + b
        return a * b if modulus is None else (a * b) % modulus

    def apply(weights: jax.Array, values: jax.Array) -> jax.Array:
        if space == "log":
            return _apply_log(weights, values)
        out = _apply_linear(weights, values)
        return out if modulus is None else out % modulus

    return outer, apply


def grid_tensor(
    params: Sequence[ArrayLike],
    tree: ModeTree,
    template_features: ArrayLike,
    *,
    g: str | GFunction | GeneralizedProduct = "product",
    max_entries: int = 2**24,
) -> jax.Array:
    """The grid tensor of a (generalized) tree decomposition (SPEC §4, ICML 2016).

    For template points ``x^(0) … x^(K-1)`` with ``F[k, d] = f_d(x^(k))``, the
    grid tensor holds the network's scores on every combination of templates:
    ``G^y[k_0 … k_{N-1}] = h_y(x^(k_0), …, x^(k_{N-1}))``. It is the tree
    decomposition with leaves ``F · W^i[α, :]`` and ``⊗_g`` at every node, so
    for ``g="product"`` it is the coefficient tensor with every mode multiplied
    by ``F``. Results about ReLU networks are ranks of its matricizations.

    Args:
      params: ``(W_0, …, W_L)`` from :func:`init_decomposition` (linear space).
      tree: the mode tree, ``N`` leaves.
      template_features: ``F`` of shape ``(num_templates, num_descriptors)``.
      g: the generalized product: a built-in name, a callable or a
        :class:`~jaxconvac.GeneralizedProduct`.
      max_entries: the largest array that may be formed: the result
        (``Y · K^N`` entries) or an intermediate (a level's pooled children).

    Returns:
      ``G`` of shape ``(num_outputs, K, …, K)`` with ``N`` modes of size ``K``.

    Raises:
      ValueError: if ``template_features`` is not ``(K, M)`` for these params,
        the size exceeds ``max_entries``, or ``g`` is unknown or may not pool
        the tree's windows.

    Examples:
      >>> tree = ModeTree.balanced(4)
      >>> params = init_decomposition(jax.random.key(0), tree,
      ...     num_descriptors=2, widths=(3, 3), num_outputs=1)
      >>> grid_tensor(params, tree, jnp.eye(2), g="relu_max").shape
      (1, 2, 2, 2, 2)
    """
    tree = _check_tree(tree)
    params = check_params(params, tree)
    operator = _check_operator(g, "linear", tree)
    templates = jnp.asarray(template_features)
    num_descriptors = params[0].shape[2]
    if templates.ndim != 2 or templates.shape[1] != num_descriptors:
        raise ValueError(
            "template_features must have shape (num_templates, num_descriptors) "
            f"with num_descriptors={num_descriptors} for these params, got "
            f"{templates.shape}."
        )
    _check_entries("grid tensor", params, templates.shape[0], tree, max_entries)
    return _materialize(params, tree, templates.T, operator.binary, _apply_linear)


def _check_entries(what, params, mode_size, tree, max_entries) -> None:
    """Refuses a tensor, or an intermediate on the way to it, above the limit."""
    num_outputs = params[-1].shape[1]
    entries = num_outputs * mode_size**tree.num_modes
    if entries > max_entries:
        raise ValueError(
            f"the {what} has num_outputs * {mode_size}**N = {num_outputs} * "
            f"{mode_size}**{tree.num_modes} = {entries} entries, above "
            f"max_entries={max_entries}; raise max_entries to form it."
        )
    for level in range(1, tree.depth + 1):
        # The pooled children of level ``level``: (nodes, channels, K**size).
        pooled = (
            tree.num_nodes(level)
            * params[level].shape[2]
            * mode_size ** tree.node_size(level)
        )
        if pooled > max_entries:
            raise ValueError(
                f"forming the {what} needs an intermediate of {pooled} entries at "
                f"level {level} (nodes * r_{level - 1} * {mode_size}**"
                f"{tree.node_size(level)}), above max_entries={max_entries}; raise "
                "max_entries to form it."
            )


def _materialize(params, tree, leaves, outer, apply) -> jax.Array:
    """Bottom-up over the level plan, keeping every node's full tensor.

    ``leaves`` is ``(M, K)``: leaf ``i`` of channel ``α`` is ``W^i[α] @ leaves``.
    ``outer(a, b)`` combines entries of two children (``g``, or ``+`` in log
    space); each node's tensor is flattened over its leaves in tree order,
    which the final transpose puts back in position order.
    """
    phi = leaf_tensors(params, tree, leaves, apply)
    for level, window in enumerate(tree.windows, start=1):
        phi = apply(params[level], pool_tensors(phi, window, outer))
    return root_tensor(phi, tree, leaves.shape[1])


def leaf_tensors(params: Params, tree: ModeTree, leaves: jax.Array, apply) -> jax.Array:
    """Level 0 of :func:`_materialize`: ``Φ^{i,α} = W^i[α] @ leaves``.

    Args:
      params: checked ``(W_0, …, W_L)``.
      tree: the mode tree.
      leaves: ``(M, K)``: the identity for the coefficient tensor, ``F^T`` for
        a grid tensor.
      apply: a level's contraction (see :func:`tensor_operations`).

    Returns:
      ``(num_modes, r_0, K)``, leaves in tree order.
    """
    leaves = jnp.broadcast_to(leaves, (tree.num_modes, *leaves.shape))
    return apply(params[0], leaves)


def pool_tensors(phi: jax.Array, window: int, outer) -> jax.Array:
    """One level's ``⊗_g`` of children, as :func:`_materialize` pools them.

    ``(nodes · window, r, K^s)`` becomes ``(nodes, r, K^(s · window))``: each
    node's tensor is flattened over its leaves in tree order, the first
    child's leaves most significant.
    """
    children = phi.reshape(-1, window, *phi.shape[1:])
    pooled = children[:, 0]
    for k in range(1, window):
        # (nodes, channels, K) with (nodes, channels, K') -> (…, K * K').
        child = children[:, k]
        pooled = outer(pooled[..., :, None], child[..., None, :])
        pooled = pooled.reshape(*child.shape[:-1], -1)
    return pooled


def root_tensor(phi: jax.Array, tree: ModeTree, mode_size: int) -> jax.Array:
    """The root's ``(1, Y, K^N)`` tensor as ``(Y, K, …, K)`` in position order."""
    num_outputs = phi.shape[1]
    tensor = phi[0].reshape(num_outputs, *(mode_size,) * tree.num_modes)
    position_of_leaf = np.argsort(tree.order)
    return jnp.transpose(tensor, (0, *(1 + position_of_leaf)))


def _modular_params(params: Params, modulus: int, space: str) -> Params:
    if space != "linear":
        raise ValueError(f"modulus needs space='linear', got space={space!r}.")
    if isinstance(modulus, bool) or not isinstance(modulus, int) or modulus < 2:
        raise ValueError(f"modulus must be an int of at least 2, got {modulus!r}.")
    widest = max(max(p.shape[2] for p in params), 2)
    if widest * (modulus - 1) ** 2 >= 2**63:
        raise ValueError(
            f"modulus={modulus} is too large: sums of {widest} products of "
            "residues would overflow int64."
        )
    for level, weights in enumerate(params):
        if not jnp.issubdtype(weights.dtype, jnp.integer):
            raise TypeError(
                f"with a modulus, params must be integers; params[{level}] has "
                f"dtype {weights.dtype}."
            )
    if not jax.config.jax_enable_x64:
        raise ValueError(
            "modulus needs 64-bit integers: enable them with "
            "jax.config.update('jax_enable_x64', True) or `with "
            "jax.enable_x64(True):`."
        )
    return tuple(jnp.asarray(p, jnp.int64) % modulus for p in params)
