"""Mixed tensor decompositions of two mode trees (SPEC §5, ICLR 2018 eq. 4).

Two tree decompositions over the same positions, with trees ``T`` and ``T̄``
(say a standard and a swapped dilated network, :meth:`ModeTree.dilated`), run
bottom-up side by side. At every *mixture node* ``μ`` — an interior node below
the root that both trees have (same set of positions) — the two decompositions
swap the first half of their channels there: ``φ^{μ,γ} ↔ φ̄^{μ,γ}`` for
``γ < r/2``. At the root the two outputs are summed: ``A^y = A_T^y + A_T̄^y``.
With no mixture nodes that is the sum of two separate networks.

The exchanged tensors ``φ^μ`` are the node's *pooled* channels (the
``g``-combination of its children, before the node's own weights ``W^μ``): in
network terms the output of a hidden layer, the quantity the paper swaps and the
one two dilated stacks can exchange at every time step
(:class:`~jaxconvac.nn.dilated.MixedDilatedConvNet`). At level ``l`` it has
``r_{l-1}`` channels (``params[l].shape[2]``), which must agree in both
decompositions and be even.

Parameters are a pair ``(params, params_bar)``, each in the layout of
:func:`~jaxconvac.init_decomposition` for its own tree, and every level runs the
same per-level code as :func:`~jaxconvac.evaluate` and
:func:`~jaxconvac.coefficient_tensor`. The nodes are scheduled by size, so the
trees may even have different windows.

:func:`tree_rank_bounds` gives the ranks theorem 1 of the paper allows a single
tree decomposition on an index set; :func:`hybrid_tree` builds the hybrid trees
(def. 2) whose decompositions a mixed decomposition of width ``2r`` realises
with width ``r`` (claim 1).

References:
  Cohen, Tamari, Shashua. Boosting Dilated Convolutional Networks with Mixed
  Tensor Decompositions. ICLR 2018 (arXiv:1703.06846): eq. 4, def. 2, def. 3,
  theorem 1, claim 1, corollary 1, appendix F.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxconvac import decompositions as dec
from jaxconvac.mode_trees import ModeTree
from jaxconvac.tensor_products import GeneralizedProduct, GFunction

MixedParams = tuple[dec.Params, dec.Params]


@dataclasses.dataclass(frozen=True)
class MixedTrees:
    """Two mode trees and the nodes where their decompositions exchange channels.

    Hashable and immutable: a static argument of ``jax.jit``.

    Attributes:
      tree: ``T``.
      tree_bar: ``T̄``, over the same ``num_modes``.
      mixture_nodes: interior nodes below the root present in both trees, each
        a sorted tuple of positions, ordered by size, then smallest position.

    Examples:
      >>> standard = ModeTree.dilated(16, (1, 2, 4, 8))
      >>> swapped = ModeTree.dilated(16, (2, 1, 8, 4))
      >>> mixed = MixedTrees(standard, swapped, standard.shared_nodes(swapped))
      >>> len(mixed.mixture_nodes)
      4
    """

    tree: ModeTree
    tree_bar: ModeTree
    mixture_nodes: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self):
        for name in ("tree", "tree_bar"):
            value = getattr(self, name)
            if not isinstance(value, ModeTree):
                raise TypeError(
                    f"{name} must be a ModeTree, got {type(value).__name__}."
                )
        shared = set(self.tree.shared_nodes(self.tree_bar))
        nodes = []
        for node in self.mixture_nodes:
            node = tuple(sorted(int(i) for i in node))
            if node not in shared:
                raise ValueError(_not_shared_message(node, self.tree, self.tree_bar))
            if node in nodes:
                raise ValueError(f"mixture node {node} is listed twice.")
            nodes.append(node)
        nodes.sort(key=lambda n: (len(n), n))
        object.__setattr__(self, "mixture_nodes", tuple(nodes))

    def exchanges(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Mixture nodes by size: ``{size: (indices in T, indices in T̄)}``.

        The indices are the nodes' places in tree order at the level of that
        node size in each tree.
        """
        by_size: dict[int, tuple[list[int], list[int]]] = {}
        for node in self.mixture_nodes:
            _, index = self.tree.locate(node)
            _, index_bar = self.tree_bar.locate(node)
            ours, theirs = by_size.setdefault(len(node), ([], []))
            ours.append(index)
            theirs.append(index_bar)
        return {s: (np.array(a), np.array(b)) for s, (a, b) in by_size.items()}


def _not_shared_message(node, tree, tree_bar) -> str:
    if len(node) == tree.num_modes:
        return (
            f"mixture node {node[:8]}… is the root, where the two outputs are "
            "summed; an exchange there changes nothing a mixed decomposition can "
            "express. Choose interior nodes below the root."
        )
    present = [
        name
        for name, t in (("tree", tree), ("tree_bar", tree_bar))
        if frozenset(node) in t._node_index and len(node) > 1
    ]
    where = f"only in {present[0]}" if present else "in neither tree"
    return (
        f"mixture node {node} must be an interior node of both trees, but it is "
        f"{where}; the shared ones are {tree.shared_nodes(tree_bar)}."
    )


def _check_mixed(mixed: object) -> MixedTrees:
    if not isinstance(mixed, MixedTrees):
        raise TypeError(f"mixed must be a MixedTrees, got {type(mixed).__name__}.")
    return mixed


def init_mixed_decomposition(
    key: jax.Array,
    mixed: MixedTrees,
    *,
    num_descriptors: int,
    widths: Sequence[int],
    num_outputs: int,
    widths_bar: Sequence[int] | None = None,
    sharing: str = "none",
    dtype: jnp.dtype = jnp.float32,
    initializer: dec.Initializer | None = None,
) -> MixedParams:
    """Random parameters of a mixed decomposition: one set per tree.

    Args:
      key: a ``jax.random.key``.
      mixed: the two trees and the mixture nodes.
      num_descriptors: ``M``.
      widths: ``(r_0, …, r_{L-1})`` of ``T``.
      num_outputs: ``Y``.
      widths_bar: the widths of ``T̄``; ``widths`` when ``None``.
      sharing: as for :func:`~jaxconvac.init_decomposition`, for both trees.
      dtype: the parameters' dtype.
      initializer: as for :func:`~jaxconvac.init_decomposition`.

    Returns:
      ``(params, params_bar)``.

    Raises:
      ValueError: for widths that do not fit the trees, or a width that is odd
        (or differs between the trees) where channels are exchanged.
    """
    mixed = _check_mixed(mixed)
    key_tree, key_bar = jax.random.split(key)
    common = dict(
        num_descriptors=num_descriptors,
        num_outputs=num_outputs,
        sharing=sharing,
        dtype=dtype,
        initializer=initializer,
    )
    params = dec.init_decomposition(key_tree, mixed.tree, widths=widths, **common)
    params_bar = dec.init_decomposition(
        key_bar,
        mixed.tree_bar,
        widths=widths if widths_bar is None else widths_bar,
        **common,
    )
    check_mixed_params((params, params_bar), mixed)
    return params, params_bar


def check_mixed_params(params: object, mixed: MixedTrees) -> MixedParams:
    """Validates ``(params, params_bar)`` against the two trees and the exchanges.

    Raises:
      ValueError: if either set does not fit its tree, the two disagree on
        ``M`` or ``Y``, or the channels exchanged at a mixture node differ in
        number or are odd.
      TypeError: if ``params`` is not a pair.
    """
    mixed = _check_mixed(mixed)
    if not isinstance(params, tuple | list) or len(params) != 2:
        raise TypeError(
            "params must be a pair (params, params_bar), one parameter tuple per "
            f"tree; got {type(params).__name__} of length "
            f"{len(params) if isinstance(params, tuple | list) else '?'}."
        )
    ours = dec.check_params(params[0], mixed.tree)
    theirs = dec.check_params(params[1], mixed.tree_bar)
    for what, a, b in (
        ("num_descriptors (params[0].shape[2])", ours[0].shape[2], theirs[0].shape[2]),
        ("num_outputs (params[-1].shape[1])", ours[-1].shape[1], theirs[-1].shape[1]),
    ):
        if a != b:
            raise ValueError(
                f"both decompositions need the same {what}; got {a} and {b}."
            )
    for size in mixed.exchanges():
        level = _level_of_size(mixed.tree, size)
        level_bar = _level_of_size(mixed.tree_bar, size)
        width, width_bar = ours[level].shape[2], theirs[level_bar].shape[2]
        if width != width_bar or width % 2:
            raise ValueError(
                f"half the channels are exchanged at the mixture nodes of size {size} "
                f"(level {level} of tree, {level_bar} of tree_bar), so both must have "
                f"the same even number there; got {width} and {width_bar}."
            )
    return ours, theirs


def _level_of_size(tree: ModeTree, size: int) -> int | None:
    for level in range(1, tree.depth + 1):
        if tree.node_size(level) == size:
            return level
    return None


def _run_mixed(params, mixed: MixedTrees, start, start_bar, pool, apply, exchange):
    """Both decompositions bottom-up, node sizes in increasing order.

    ``pool(values, tree, level)`` pools one level's children, ``apply`` applies
    a level's weights and ``exchange(pooled, pooled_bar, indices, indices_bar,
    nodes)`` swaps half the channels of the mixture nodes of one size.
    """
    trees = (mixed.tree, mixed.tree_bar)
    values, levels = [start, start_bar], [1, 1]
    sizes = sorted({t.node_size(lv) for t in trees for lv in range(1, t.depth + 1)})
    exchanges = mixed.exchanges()
    for size in sizes:
        pooled = [None, None]
        for k, tree in enumerate(trees):
            if levels[k] <= tree.depth and tree.node_size(levels[k]) == size:
                pooled[k] = pool(values[k], tree, levels[k])
        if size in exchanges:
            nodes = [n for n in mixed.mixture_nodes if len(n) == size]
            pooled = list(exchange(pooled[0], pooled[1], *exchanges[size], nodes))
        for k in range(2):
            if pooled[k] is not None:
                values[k] = apply(params[k][levels[k]], pooled[k])
                levels[k] += 1
    return values


def _swap_halves(pooled, pooled_bar, indices, indices_bar, align=None):
    """Swaps the first half of the channels of the listed nodes of each side."""
    half = pooled.shape[1] // 2
    ours, theirs = pooled[indices, :half], pooled_bar[indices_bar, :half]
    if align is not None:
        ours, theirs = align(ours, theirs)
    return (
        pooled.at[indices, :half].set(theirs),
        pooled_bar.at[indices_bar, :half].set(ours),
    )


def mixed_evaluate(
    params: MixedParams,
    mixed: MixedTrees,
    features: ArrayLike,
    *,
    g: str | GFunction | GeneralizedProduct = "product",
) -> jax.Array:
    """Scores of one example under a mixed decomposition (linear space).

    Args:
      params: ``(params, params_bar)`` (see :func:`init_mixed_decomposition`).
      mixed: the trees and mixture nodes.
      features: ``F`` of shape ``(num_modes, num_descriptors)``, or integer
        indicator values of shape ``(num_modes,)`` (see
        :func:`~jaxconvac.evaluate`).
      g: the generalized product, for both decompositions.

    Returns:
      ``h_T + h_T̄`` after the exchanges, shape ``(num_outputs,)``.

    Raises:
      ValueError: for parameters that do not fit (see
        :func:`check_mixed_params`), features of the wrong shape, or a ``g``
        that may not pool a tree's windows.

    Examples:
      >>> tree, tree_bar = ModeTree.dilated(4, (1, 2)), ModeTree.dilated(4, (2, 1))
      >>> mixed = MixedTrees(tree, tree_bar)
      >>> params = init_mixed_decomposition(jax.random.key(0), mixed,
      ...     num_descriptors=2, widths=(2, 2), num_outputs=1)
      >>> mixed_evaluate(params, mixed, jnp.ones((4, 2))).shape
      (1,)
    """
    params = check_mixed_params(params, _check_mixed(mixed))
    operator = dec._check_operator(g, "linear", mixed.tree)
    dec._check_operator(operator, "linear", mixed.tree_bar)
    start = dec.leaf_values(params[0], mixed.tree, features)
    start_bar = dec.leaf_values(params[1], mixed.tree_bar, features)

    def pool(values, tree, level):
        return dec.pool_values(values, tree.windows[level - 1], operator, "linear")

    def exchange(pooled, pooled_bar, indices, indices_bar, nodes):
        return _swap_halves(pooled, pooled_bar, indices, indices_bar)

    values = _run_mixed(
        params, mixed, start, start_bar, pool, dec._apply_linear, exchange
    )
    return values[0][0] + values[1][0]


def _tensor_exchange(mixed: MixedTrees, mode_size: int):
    """The exchange for materialised tensors: leaves re-ordered between trees.

    A node's tensor is flattened over its leaves in its own tree's order, so
    a tensor crossing over is transposed to the other tree's leaf order.
    """

    def permutation(source: tuple[int, ...], target: tuple[int, ...]) -> list[int]:
        where = {leaf: axis for axis, leaf in enumerate(source)}
        return [where[leaf] for leaf in target]

    def exchange(pooled, pooled_bar, indices, indices_bar, nodes):
        size = len(nodes[0])
        level = _level_of_size(mixed.tree, size)
        level_bar = _level_of_size(mixed.tree_bar, size)
        leaves = [mixed.tree.nodes(level)[i] for i in indices]
        leaves_bar = [mixed.tree_bar.nodes(level_bar)[i] for i in indices_bar]

        def align(ours, theirs):
            shape = (ours.shape[1], *(mode_size,) * size)
            to_bar, to_ours = [], []
            for k, (a, b) in enumerate(zip(leaves, leaves_bar, strict=True)):
                axes_bar = (0, *(1 + np.array(permutation(a, b))))
                axes_ours = (0, *(1 + np.array(permutation(b, a))))
                to_bar.append(ours[k].reshape(shape).transpose(axes_bar))
                to_ours.append(theirs[k].reshape(shape).transpose(axes_ours))
            flat = (len(leaves), shape[0], -1)
            return jnp.stack(to_bar).reshape(flat), jnp.stack(to_ours).reshape(flat)

        return _swap_halves(pooled, pooled_bar, indices, indices_bar, align)

    return exchange


def _materialize_mixed(params, mixed, leaves, outer, apply, finish=None):
    mode_size = leaves.shape[1]
    start = dec.leaf_tensors(params[0], mixed.tree, leaves, apply)
    start_bar = dec.leaf_tensors(params[1], mixed.tree_bar, leaves, apply)

    def pool(phi, tree, level):
        return dec.pool_tensors(phi, tree.windows[level - 1], outer)

    exchange = _tensor_exchange(mixed, mode_size)
    phi, phi_bar = _run_mixed(params, mixed, start, start_bar, pool, apply, exchange)
    total = dec.root_tensor(phi, mixed.tree, mode_size) + dec.root_tensor(
        phi_bar, mixed.tree_bar, mode_size
    )
    return total if finish is None else finish(total)


def _check_mixed_entries(what, params, mode_size, mixed, max_entries) -> None:
    dec._check_entries(what, params[0], mode_size, mixed.tree, max_entries)
    dec._check_entries(what, params[1], mode_size, mixed.tree_bar, max_entries)


def mixed_coefficient_tensor(
    params: MixedParams,
    mixed: MixedTrees,
    *,
    modulus: int | None = None,
    max_entries: int = 2**24,
) -> jax.Array:
    """The coefficient tensors ``A^y`` of a mixed decomposition (``g`` = product).

    Contracting it with features gives :func:`mixed_evaluate`'s scores.

    Args:
      params: ``(params, params_bar)``.
      mixed: the trees and mixture nodes.
      modulus: a prime ``p``: integer params, result ``A mod p`` in ``int64``
        (needs ``jax_enable_x64``), as for
        :func:`~jaxconvac.coefficient_tensor`.
      max_entries: the largest array that may be formed, per tree.

    Returns:
      ``A`` of shape ``(num_outputs, M, …, M)`` with ``N`` modes.

    Raises:
      ValueError: for parameters that do not fit, a tensor above
        ``max_entries``, or a bad modulus.
      TypeError: for non-integer params with a modulus.
    """
    params = check_mixed_params(params, _check_mixed(mixed))
    num_descriptors = params[0][0].shape[2]
    _check_mixed_entries(
        "coefficient tensor", params, num_descriptors, mixed, max_entries
    )
    if modulus is not None:
        params = tuple(dec._modular_params(p, modulus, "linear") for p in params)
    outer, apply = dec.tensor_operations("linear", modulus)
    leaves = jnp.eye(num_descriptors, dtype=params[0][0].dtype)

    def finish(total):
        return total if modulus is None else total % modulus

    return _materialize_mixed(params, mixed, leaves, outer, apply, finish)


def mixed_grid_tensor(
    params: MixedParams,
    mixed: MixedTrees,
    template_features: ArrayLike,
    *,
    g: str | GFunction | GeneralizedProduct = "product",
    max_entries: int = 2**24,
) -> jax.Array:
    """The grid tensor of a mixed (generalized) decomposition.

    ``G^y[k_0 … k_{N-1}]`` is :func:`mixed_evaluate` on the template points
    ``x^(k_0) … x^(k_{N-1})`` with ``F[k, d] = f_d(x^(k))``.

    Args:
      params: ``(params, params_bar)``.
      mixed: the trees and mixture nodes.
      template_features: ``F`` of shape ``(num_templates, num_descriptors)``.
      g: the generalized product, for both decompositions.
      max_entries: the largest array that may be formed, per tree.

    Returns:
      ``G`` of shape ``(num_outputs, K, …, K)`` with ``N`` modes.

    Raises:
      ValueError: for parameters or templates that do not fit, a tensor above
        ``max_entries``, or a ``g`` that may not pool a tree's windows.
    """
    params = check_mixed_params(params, _check_mixed(mixed))
    operator = dec._check_operator(g, "linear", mixed.tree)
    dec._check_operator(operator, "linear", mixed.tree_bar)
    templates = jnp.asarray(template_features)
    num_descriptors = params[0][0].shape[2]
    if templates.ndim != 2 or templates.shape[1] != num_descriptors:
        raise ValueError(
            "template_features must have shape (num_templates, num_descriptors) "
            f"with num_descriptors={num_descriptors} for these params, got "
            f"{templates.shape}."
        )
    _check_mixed_entries("grid tensor", params, templates.shape[0], mixed, max_entries)
    return _materialize_mixed(
        params, mixed, templates.T, operator.binary, dec._apply_linear
    )


def hybrid_tree(
    mixed: MixedTrees, bar_segments: Sequence[Sequence[int]] = ()
) -> ModeTree:
    """A hybrid mode tree of ``T`` and ``T̄`` (ICLR 2018, def. 2).

    Every mixture node, and the root, heads a *segment*: its descendants down
    to the next mixture nodes. The hybrid takes each segment from ``T̄`` if
    its head is listed in ``bar_segments`` and from ``T`` otherwise. A mixed
    decomposition of width ``2r`` realises the decomposition of any hybrid
    with width ``r`` (claim 1).

    Args:
      mixed: the trees and mixture nodes; the trees must have the same
        windows.
      bar_segments: heads (mixture nodes or the root) of the segments taken
        from ``T̄``.

    Returns:
      The hybrid tree.

    Raises:
      ValueError: if a listed head is neither a mixture node nor the root, or
        the trees' windows differ.

    Examples:
      >>> tree, tree_bar = ModeTree.dilated(4, (1, 2)), ModeTree.dilated(4, (2, 1))
      >>> hybrid_tree(MixedTrees(tree, tree_bar), [(0, 1, 2, 3)]) == tree_bar
      True
    """
    mixed = _check_mixed(mixed)
    tree, tree_bar = mixed.tree, mixed.tree_bar
    if tree.windows != tree_bar.windows:
        raise ValueError(
            "a hybrid of trees with different windows has no level plan; got "
            f"windows {tree.windows} and {tree_bar.windows}."
        )
    root = tuple(range(tree.num_modes))
    heads = {frozenset(n) for n in (*mixed.mixture_nodes, root)}
    from_bar = set()
    for head in bar_segments:
        key = frozenset(int(i) for i in head)
        if key not in heads:
            raise ValueError(
                f"bar_segments entry {tuple(head)} heads no segment: it must be a "
                f"mixture node {mixed.mixture_nodes} or the root."
            )
        from_bar.add(key)

    def leaves(node: frozenset, source: ModeTree) -> list[int]:
        if len(node) == 1:
            return list(node)
        level, index = source.locate(tuple(node))
        window = source.windows[level - 1]
        children = source.nodes(level - 1)[index * window : (index + 1) * window]
        order = []
        for child in map(frozenset, children):
            child_source = source
            if child in heads:
                child_source = tree_bar if child in from_bar else tree
            order.extend(leaves(child, child_source))
        return order

    key = frozenset(root)
    order = leaves(key, tree_bar if key in from_bar else tree)
    return ModeTree(tree.num_modes, tuple(order), tree.windows)


def tree_rank_bounds(
    tree: ModeTree, index_set: Sequence[int], width: int
) -> tuple[int, int]:
    """Theorem 1 of ICLR 2018: the ranks of ``[[A]]_I`` a tree decomposition allows.

    For a binary tree, every width ``r``, ``g`` the product and leaf weights
    of rank ``r`` (``M ≥ r``): the rank is at most
    ``r^min(|Θ(I)|, |Θ(I^c)|)`` for every weight setting and at least
    ``r^(number of sibling pairs in Θ(I) × Θ(I^c))`` for almost every one,
    with ``Θ`` the tilings (:meth:`ModeTree.tiling`). In the paper the root's
    channels are the outputs, so siblings under the root count only once
    (pairs at depth 1 are excluded there); this library's root applies a
    linear output layer ``W_L`` over ``r`` channels, so they count like the
    others here.

    Args:
      tree: a tree with windows of 2.
      index_set: ``I``, a proper non-empty subset of the positions.
      width: ``r``.

    Returns:
      ``(lower, upper)``, exact integers.

    Raises:
      ValueError: for a tree with a window other than 2, or a bad index set.

    Examples:
      >>> tree = ModeTree.balanced(16)
      >>> tree_rank_bounds(tree, [0, 2, 4, 6, 8, 9, 12, 13], 2)
      (64, 64)
    """
    if not isinstance(tree, ModeTree):
        raise TypeError(f"tree must be a ModeTree, got {type(tree).__name__}.")
    if set(tree.windows) != {2}:
        raise ValueError(f"theorem 1 is for binary trees; windows are {tree.windows}.")
    chosen = {int(i) for i in index_set}
    complement = [i for i in range(tree.num_modes) if i not in chosen]
    if not complement:
        raise ValueError("index_set must be a proper subset of the positions.")
    tiles, tiles_c = tree.tiling(sorted(chosen)), tree.tiling(complement)
    siblings = set()
    for level in range(1, tree.depth + 1):
        for node in tree.nodes(level):
            half = len(node) // 2
            siblings.add(
                frozenset((tuple(sorted(node[:half])), tuple(sorted(node[half:]))))
            )
    pairs = sum(frozenset((a, b)) in siblings for a in tiles for b in tiles_c)
    return width**pairs, width ** min(len(tiles), len(tiles_c))
