import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from references import REFERENCE_G, node_weight

import jaxconvac as jc
from jaxconvac.mixed import (
    MixedTrees,
    hybrid_tree,
    init_mixed_decomposition,
    mixed_coefficient_tensor,
    mixed_evaluate,
    mixed_grid_tensor,
    tree_rank_bounds,
)
from jaxconvac.mode_trees import swapped_dilations

PAPER_SET = (0, 2, 4, 6, 8, 9, 12, 13)  # ICLR 2018 app. F, L = 4, 0-based.

# One compilation per shape instead of one per eager operation.
coefficient = jax.jit(mixed_coefficient_tensor, static_argnames=("mixed", "modulus"))
grid = jax.jit(mixed_grid_tensor, static_argnames=("mixed", "g"))
evaluate = jax.jit(mixed_evaluate, static_argnames=("mixed", "g"))
tree_coefficient = jax.jit(jc.coefficient_tensor, static_argnames=("tree",))
tree_evaluate = jax.jit(jc.evaluate, static_argnames=("tree", "g"))


def reference_mixed(params, mixed, leaves, g):
    """ICLR 2018 eq. 4 node by node over explicit labels (NumPy).

    ``leaves[i]`` is ``(M, K_i)``: leaf ``i`` of channel ``α`` is
    ``W^i[α] @ leaves[i]``. Every node's value is an array
    ``(channels, K, …, K)`` with one axis per position, in increasing position
    order, so exchanged tensors need no re-ordering. Nodes are visited in
    inclusion order inside each mixture node (and the root), first ``T``,
    then ``T̄``, then the swap at the mixture node, as the paper's listing.
    """
    trees = (mixed.tree, mixed.tree_bar)
    params = [[np.asarray(w, np.float64) for w in p] for p in params]
    pooled, out = [{}, {}], [{}, {}]  # φ (pooled) and c = W · φ per node.
    for k, tree in enumerate(trees):
        for j, position in enumerate(tree.order):
            weight = node_weight(params[k], tree, 0, j)
            out[k][(position,)] = weight @ leaves[position]
    num_modes = mixed.tree.num_modes
    heads = sorted([*mixed.mixture_nodes, tuple(range(num_modes))], key=len)
    done = [set(), set()]
    for head in heads:
        for k, tree in enumerate(trees):
            for level in range(1, tree.depth + 1):
                for j, node in enumerate(tree.nodes(level)):
                    label = tuple(sorted(node))
                    if not set(label) <= set(head) or label in done[k]:
                        continue
                    done[k].add(label)
                    window = tree.windows[level - 1]
                    children = tree.nodes(level - 1)[j * window : (j + 1) * window]
                    value = None
                    for child in children:
                        child = tuple(sorted(child))
                        # Broadcast the child to all of the node's positions.
                        shape = [out[k][child].shape[0]] + [
                            out[k][child].shape[1 + child.index(p)] if p in child else 1
                            for p in label
                        ]
                        expanded = out[k][child].reshape(shape)
                        value = expanded if value is None else g(value, expanded)
                    pooled[k][label] = value
                    if level < tree.depth:
                        out[k][label] = np.tensordot(
                            node_weight(params[k], tree, level, j), value, (1, 0)
                        )
        if len(head) < num_modes:
            half = pooled[0][head].shape[0] // 2
            a, b = pooled[0][head][:half].copy(), pooled[1][head][:half].copy()
            pooled[0][head][:half], pooled[1][head][:half] = b, a
            for k, tree in enumerate(trees):
                level, j = tree.locate(head)
                out[k][head] = np.tensordot(
                    node_weight(params[k], tree, level, j), pooled[k][head], (1, 0)
                )
    root = tuple(range(num_modes))
    return sum(
        np.tensordot(params[k][-1][0], pooled[k][root], (1, 0)) for k in range(2)
    )


def numpy_normal(seed):
    """A standard-normal initializer that draws with NumPy."""
    # jax.random compiles once per shape, which costs more than these tests.
    generator = np.random.default_rng(seed)

    def initializer(key, shape, dtype):
        del key
        return jnp.asarray(generator.standard_normal(shape), dtype)

    return initializer


def _normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def _params(mixed, key, *, widths, sharing="none", num_descriptors=2, outputs=2):
    return init_mixed_decomposition(
        jax.random.key(key),
        mixed,
        num_descriptors=num_descriptors,
        widths=widths,
        num_outputs=outputs,
        sharing=sharing,
        dtype=jnp.float64,
        initializer=numpy_normal(key),
    )


def _subsets(nodes):
    return [c for n in range(len(nodes) + 1) for c in itertools.combinations(nodes, n)]


STANDARD8 = jc.ModeTree.dilated(8, (1, 2, 4))
SWAPPED8 = jc.ModeTree.dilated(8, (2, 1, 4))


@pytest.mark.parametrize(
    ("sharing", "nodes"),
    [("none", nodes) for nodes in _subsets(STANDARD8.shared_nodes(SWAPPED8))]
    + [("per_tap", STANDARD8.shared_nodes(SWAPPED8)[1:]), ("full", ())],
)
def test_coefficient_tensor_matches_the_reference(sharing, nodes):
    with jax.enable_x64(True):
        mixed = MixedTrees(STANDARD8, SWAPPED8, nodes)
        params = _params(mixed, 0, widths=(2, 4, 2), sharing=sharing)
        ours = coefficient(params, mixed=mixed)
        eye = [np.eye(2)] * 8
        reference = reference_mixed(params, mixed, eye, REFERENCE_G["product"])
        np.testing.assert_allclose(ours, reference, rtol=1e-10, atol=1e-12)


def test_different_windows_are_scheduled_by_node_size():
    # A quaternary tree and a dilated binary one share the blocks of 4.
    tree = jc.ModeTree.balanced(16, 4)
    tree_bar = jc.ModeTree.dilated(16, (2, 1, 4, 8))
    assert tree.shared_nodes(tree_bar) == tree.nodes(1)
    with jax.enable_x64(True):
        mixed = MixedTrees(tree, tree_bar, tree.nodes(1)[1:3])
        params = init_mixed_decomposition(
            jax.random.key(3),
            mixed,
            num_descriptors=2,
            widths=(2, 2),
            widths_bar=(3, 2, 2, 2),
            num_outputs=1,
            dtype=jnp.float64,
            initializer=numpy_normal(3),
        )
        ours = coefficient(params, mixed=mixed)
        reference = reference_mixed(params, mixed, [np.eye(2)] * 16, np.multiply)
        np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("g", ["relu_of_sum", "relu_max", "product"])
def test_grid_tensor_and_evaluate_match_the_reference(g):
    with jax.enable_x64(True):
        mixed = MixedTrees(STANDARD8, SWAPPED8, STANDARD8.shared_nodes(SWAPPED8)[:1])
        params = _params(mixed, 1, widths=(2, 2, 2), sharing="per_tap")
        templates = _normal(2, (3, 2))
        grid_values = grid(params, mixed=mixed, template_features=templates, g=g)
        leaves = [np.asarray(templates).T] * 8
        reference = reference_mixed(params, mixed, leaves, REFERENCE_G[g])
        np.testing.assert_allclose(grid_values, reference, rtol=1e-10, atol=1e-12)

        # evaluate on a batch (vmap, jit) equals the grid tensor's entries.
        picks = np.random.default_rng(4).integers(0, 3, (5, 8))
        batch = jnp.asarray(np.asarray(templates)[picks])
        scores = jax.jit(jax.vmap(lambda f: mixed_evaluate(params, mixed, f, g=g)))(
            batch
        )
        for row, pick in zip(scores, np.asarray(picks), strict=True):
            np.testing.assert_allclose(
                row, grid_values[(slice(None), *pick)], rtol=1e-10
            )


def test_evaluate_contracts_the_coefficient_tensor_and_takes_integers():
    with jax.enable_x64(True):
        mixed = MixedTrees(STANDARD8, SWAPPED8, STANDARD8.shared_nodes(SWAPPED8))
        params = _params(mixed, 5, widths=(4, 2, 2), num_descriptors=3)
        tensor = coefficient(params, mixed=mixed)
        features = _normal(6, (8, 3))
        contracted = np.asarray(tensor)
        for row in np.asarray(features):
            contracted = np.tensordot(contracted, row, axes=(1, 0))
        np.testing.assert_allclose(
            evaluate(params, mixed, features), contracted, rtol=1e-10
        )
        values = jnp.array([0, 2, 1, 1, 0, 2, 2, 1])
        np.testing.assert_allclose(
            evaluate(params, mixed, values),
            evaluate(params, mixed, jax.nn.one_hot(values, 3, dtype=jnp.float64)),
            rtol=1e-12,
        )


def test_no_mixture_nodes_is_the_sum_of_the_two_decompositions():
    with jax.enable_x64(True):
        tree, tree_bar = jc.ModeTree.balanced(16), jc.ModeTree.dilated(16, (8, 4, 2, 1))
        mixed = MixedTrees(tree, tree_bar)
        params = _params(mixed, 7, widths=(2, 3, 2, 2), sharing="per_tap")
        np.testing.assert_allclose(
            coefficient(params, mixed=mixed),
            tree_coefficient(params[0], tree) + tree_coefficient(params[1], tree_bar),
            rtol=1e-12,
        )
        features = _normal(8, (16, 2))
        np.testing.assert_allclose(
            evaluate(params, mixed, features, g="relu_of_sum"),
            tree_evaluate(params[0], tree, features, g="relu_of_sum")
            + tree_evaluate(params[1], tree_bar, features, g="relu_of_sum"),
            rtol=1e-12,
        )


def test_exact_tensor_modulo_a_prime_matches_integer_arithmetic():
    with jax.enable_x64(True):
        mixed = MixedTrees(STANDARD8, SWAPPED8, STANDARD8.shared_nodes(SWAPPED8))
        generator = np.random.default_rng(9)
        shapes = [(8, 2, 2), (4, 2, 2), (2, 2, 2), (1, 1, 2)]
        params = tuple(
            tuple(jnp.asarray(generator.integers(-3, 4, s), jnp.int64) for s in shapes)
            for _ in range(2)
        )
        exact = coefficient(params, mixed=mixed, modulus=101)
        floats = tuple(tuple(w.astype(jnp.float64) for w in p) for p in params)
        real = np.rint(np.asarray(coefficient(floats, mixed=mixed)))
        np.testing.assert_array_equal(exact, np.mod(real.astype(np.int64), 101))


def test_papers_example_ranks_theorem_and_hybrid():
    # ICLR 2018 app. F: T (standard) and T̄ (odd/even dilations swapped), L = 4,
    # mixture nodes at level 2, hybrid H: first two segments from T, rest from T̄.
    tree = jc.ModeTree.dilated(16, (1, 2, 4, 8))
    tree_bar = jc.ModeTree.dilated(16, swapped_dilations(16, 2))
    mixed = MixedTrees(tree, tree_bar, tree.shared_nodes(tree_bar))
    bar_heads = [(8, 9, 10, 11), (12, 13, 14, 15), tuple(range(16))]
    hybrid = hybrid_tree(mixed, bar_heads)
    assert set(hybrid.nodes(1)) == {(0, 1), (2, 3), (4, 5), (6, 7)} | set(
        tree_bar.nodes(1)[2:4] + tree_bar.nodes(1)[6:]
    )
    assert hybrid.tiling(PAPER_SET) == tuple((i,) for i in PAPER_SET)
    # Theorem 1: 6 tiles, 6 sibling pairs for T and T̄ (rank r^6 = r^(N/4+N/8));
    # 8 and 8 for H (r^(N/2)).
    assert tree_rank_bounds(tree, PAPER_SET, 3) == (3**6, 3**6)
    assert tree_rank_bounds(tree_bar, PAPER_SET, 3) == (3**6, 3**6)
    assert tree_rank_bounds(hybrid, PAPER_SET, 3) == (3**8, 3**8)
    assert hybrid_tree(mixed) == tree
    assert hybrid_tree(mixed, [*mixed.mixture_nodes, tuple(range(16))]) == tree_bar


def test_ranks_on_the_papers_set():
    # Width 2, M = 2: T gives exactly 2^6 (theorem 1: upper = lower bound), the
    # unmixed sum at most 2 * 2^6, the mixed decomposition of the same width
    # the full 2^8 = 256 (certified by exact ranks in experiments/mixed_ranks.py).
    with jax.enable_x64(True):
        tree = jc.ModeTree.dilated(16, (1, 2, 4, 8))
        tree_bar = jc.ModeTree.dilated(16, (2, 1, 8, 4))
        mixed = MixedTrees(tree, tree_bar, tree.shared_nodes(tree_bar))
        params = _params(mixed, 10, widths=(2, 2, 2, 2), outputs=1)
        both = coefficient(params, mixed=mixed)
        unmixed = coefficient(params, mixed=MixedTrees(tree, tree_bar))
        single = tree_coefficient(params[0], tree)
        # One compilation for the three (same-shaped) tensors.
        rank_single, rank_unmixed, rank_both = (
            int(r)
            for r in jax.jit(
                jax.vmap(lambda t: jc.numerical_rank(jc.matricize(t, PAPER_SET)))
            )(jnp.stack([single[0], unmixed[0], both[0]]))
        )
        assert rank_single == 64
        assert 64 < rank_unmixed <= 128
        assert rank_both == 256


def test_rank_bounds_count_root_siblings_in_this_layout():
    # I = the left half: one tile each side, siblings under the root. The
    # library's root has a linear output over r channels, so the rank is r.
    tree = jc.ModeTree.balanced(4)
    assert tree_rank_bounds(tree, (0, 1), 2) == (2, 2)
    with jax.enable_x64(True):
        params = jc.init_decomposition(
            jax.random.key(0),
            tree,
            num_descriptors=2,
            widths=(2, 2),
            num_outputs=1,
            dtype=jnp.float64,
            initializer=numpy_normal(0),
        )
        tensor = tree_coefficient(params, tree)
        assert int(jc.numerical_rank(jc.matricize(tensor[0], (0, 1)))) == 2


@pytest.mark.parametrize(
    ("nodes", "match"),
    [
        ([(0, 1)], "only in tree"),
        ([(0, 2)], "only in tree_bar"),
        ([(0, 3)], "in neither tree"),
        ([tuple(range(8))], "is the root"),
        ([(0, 1, 2, 3), (3, 2, 1, 0)], "listed twice"),
    ],
)
def test_bad_mixture_nodes(nodes, match):
    with pytest.raises(ValueError, match=match):
        MixedTrees(STANDARD8, SWAPPED8, nodes)


def test_bad_params():
    with jax.enable_x64(True):
        mixed = MixedTrees(STANDARD8, SWAPPED8, STANDARD8.shared_nodes(SWAPPED8))
        with pytest.raises(ValueError, match="same even number"):
            _params(mixed, 0, widths=(2, 3, 2))
        params = _params(MixedTrees(STANDARD8, SWAPPED8), 0, widths=(2, 3, 2))
        with pytest.raises(TypeError, match="pair"):
            mixed_evaluate(params[0], mixed, jnp.ones((8, 2)))
        other = jc.init_decomposition(
            jax.random.key(0),
            SWAPPED8,
            num_descriptors=3,
            widths=(2, 2, 2),
            num_outputs=2,
            initializer=numpy_normal(0),
        )
        with pytest.raises(ValueError, match="same num_descriptors"):
            mixed_evaluate(
                (params[0], other), MixedTrees(STANDARD8, SWAPPED8), jnp.ones((8, 2))
            )
        with pytest.raises(ValueError, match="features must have shape"):
            mixed_evaluate(params, MixedTrees(STANDARD8, SWAPPED8), jnp.ones((7, 2)))
        with pytest.raises(TypeError, match="MixedTrees"):
            mixed_evaluate(params, (STANDARD8, SWAPPED8), jnp.ones((8, 2)))
        with pytest.raises(ValueError, match="bar_segments"):
            hybrid_tree(mixed, [(0, 1)])
        with pytest.raises(ValueError, match="max_entries"):
            mixed_coefficient_tensor(
                params, MixedTrees(STANDARD8, SWAPPED8), max_entries=100
            )
