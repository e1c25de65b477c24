import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconvac import ModeTree
from jaxconvac.mode_trees import swapped_dilations


def test_balanced_binary_tree_nodes():
    tree = ModeTree.balanced(8)
    assert tree.windows == (2, 2, 2)
    assert tree.depth == 3
    assert tree.nodes(1) == ((0, 1), (2, 3), (4, 5), (6, 7))
    assert tree.nodes(2) == ((0, 1, 2, 3), (4, 5, 6, 7))
    assert tree.nodes(3) == (tuple(range(8)),)
    assert tree.num_nodes(0) == 8 and tree.node_size(2) == 4


def test_balanced_ternary_and_shallow():
    assert ModeTree.balanced(9, 3).windows == (3, 3)
    tree = ModeTree.shallow(5)
    assert tree.windows == (5,) and tree.nodes(1) == ((0, 1, 2, 3, 4),)


def test_square_image_tree_pools_2x2_blocks():
    tree = ModeTree.image(4, 4, "square")
    assert tree.nodes(1) == (
        (0, 1, 4, 5),
        (2, 3, 6, 7),
        (8, 9, 12, 13),
        (10, 11, 14, 15),
    )
    assert tree.depth == 2


def test_mirror_image_tree_pools_reflections():
    size = 8
    tree = ModeTree.image(size, size, "mirror")
    for node in tree.nodes(1):
        pixels = {(m // size, m % size) for m in node}
        r, c = min(pixels)
        expected = {
            (r, c),
            (r, size - 1 - c),
            (size - 1 - r, c),
            (size - 1 - r, size - 1 - c),
        }
        assert pixels == expected
    # Second level: reflections inside the top-left 4x4 quadrant of level-1 nodes.
    for node in tree.nodes(2):
        reps = {
            min((m // size, m % size) for m in node[k : k + 4]) for k in (0, 4, 8, 12)
        }
        r, c = min(reps)
        assert reps == {(r, c), (r, 3 - c), (3 - r, c), (3 - r, 3 - c)}


@pytest.mark.parametrize("geometry", ["square", "mirror"])
def test_image_tree_levels_partition_the_positions(geometry):
    tree = ModeTree.image(16, 16, geometry)
    for level in range(tree.depth + 1):
        leaves = sorted(m for node in tree.nodes(level) for m in node)
        assert leaves == list(range(256))
        assert len(tree.nodes(level)) == 4 ** (4 - level)


def test_from_permutation_follows_order():
    tree = ModeTree.from_permutation([0, 4, 1, 5, 2, 6, 3, 7])
    assert tree.nodes(1) == ((0, 4), (1, 5), (2, 6), (3, 7))


def test_hashable_and_static_under_jit():
    assert ModeTree.balanced(8) == ModeTree.balanced(8)
    assert hash(ModeTree.image(4, 4)) == hash(ModeTree.image(4, 4))
    assert ModeTree.image(4, 4) != ModeTree.image(4, 4, "mirror")
    traces = []

    def f(x, tree):
        traces.append(1)
        return x[np.asarray(tree.order)]

    jitted = jax.jit(f, static_argnums=1)
    x = jnp.arange(8.0)
    jitted(x, ModeTree.balanced(8))
    jitted(x, ModeTree.balanced(8))
    assert len(traces) == 1
    out = jitted(x, ModeTree.from_permutation([7, 6, 5, 4, 3, 2, 1, 0]))
    np.testing.assert_array_equal(out, x[::-1])


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: ModeTree.balanced(6), "num_modes must be a power of 2.*got 6"),
        (lambda: ModeTree.balanced(8, 3), "power of 3.*got 8"),
        (lambda: ModeTree.balanced(1), "got 1"),
        (lambda: ModeTree.image(30, 30), "height must be a power of 2.*got 30"),
        (lambda: ModeTree.image(8, 4), "square image"),
        (lambda: ModeTree.image(8, 8, "diagonal"), "geometry must be one of"),
        (lambda: ModeTree.from_permutation([0, 1, 1, 2]), "permutation"),
        (lambda: ModeTree.from_permutation([0, 1, 2]), "len\\(order\\).*got 3"),
        (lambda: ModeTree.shallow(1), "num_modes must be at least 2"),
        (lambda: ModeTree(4, (0, 1, 2, 3), (3,)), "product of windows"),
        (
            lambda: ModeTree(4, (0, 1, 2, 3), (4, 1)),
            "windows\\[1\\] must be at least 2",
        ),
    ],
)
def test_bad_sizes_raise_value_error(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_non_integer_sizes_raise_type_error():
    with pytest.raises(TypeError, match="num_modes must be an int"):
        ModeTree.balanced(8.0)
    with pytest.raises(TypeError, match="height must be an int"):
        ModeTree.image("8", 8)


def test_bad_level_query():
    with pytest.raises(ValueError, match="level must be in \\[0, 3\\]"):
        ModeTree.balanced(8).nodes(4)


# -- dilated trees, shared nodes, tilings (ICLR 2018) ------------------------


def _receptive_field_tree(dilations):
    """Reference: nodes of each layer, from the network's recursion.

    The output at the last step ``N - 1`` of layer ``l`` at time ``t`` reads
    layer ``l - 1`` at ``t - d_l`` (tap 0) and ``t`` (tap 1); a node is the set
    of input times it sees. Listed depth-first, tap 0 first.
    """
    num_modes = 2 ** len(dilations)

    def visit(layer, time):
        if layer == 0:
            return [[time]], {0: [(time,)]}
        levels = {}
        leaves = []
        for t in (time - dilations[layer - 1], time):
            child_leaves, child_levels = visit(layer - 1, t)
            leaves += child_leaves
            for lv, nodes in child_levels.items():
                levels.setdefault(lv, []).extend(nodes)
        levels[layer] = [tuple(sorted(x[0] for x in leaves))]
        return leaves, levels

    return visit(len(dilations), num_modes - 1)[1]


@pytest.mark.parametrize(
    "dilations",
    [(1,), (1, 2), (2, 1), (1, 2, 4), (4, 2, 1), (2, 1, 4), (1, 4, 2), (2, 1, 8, 4)],
)
def test_dilated_tree_matches_the_networks_receptive_fields(dilations):
    tree = ModeTree.dilated(2 ** len(dilations), dilations)
    reference = _receptive_field_tree(dilations)
    for level in range(tree.depth + 1):
        ours = [tuple(sorted(n)) for n in tree.nodes(level)]
        assert ours == reference[level]


@pytest.mark.parametrize("num_modes", [2, 4, 8, 16, 64])
def test_standard_dilations_give_the_contiguous_binary_tree(num_modes):
    depth = num_modes.bit_length() - 1
    standard = tuple(2**e for e in range(depth))
    assert ModeTree.dilated(num_modes, standard) == ModeTree.balanced(num_modes, 2)


def test_reversed_dilations_pool_positions_half_apart_first():
    tree = ModeTree.dilated(16, (8, 4, 2, 1))
    assert sorted(tree.nodes(1)) == [(j, j + 8) for j in range(8)]
    assert {frozenset(n) for n in tree.nodes(2)} == {
        frozenset((j, j + 4, j + 8, j + 12)) for j in range(4)
    }


def test_swapped_dilations_and_shared_nodes():
    assert swapped_dilations(16, 1) == (1, 2, 4, 8)
    assert swapped_dilations(16, 2) == (2, 1, 8, 4)
    assert swapped_dilations(64, 2) == (2, 1, 8, 4, 32, 16)
    assert swapped_dilations(64, 4) == (8, 4, 2, 1, 32, 16)
    assert swapped_dilations(16, 4) == (8, 4, 2, 1)
    standard = ModeTree.balanced(64)
    swapped = ModeTree.dilated(64, swapped_dilations(64, 2))
    shared = standard.shared_nodes(swapped)
    # Even levels 2 and 4 (16 + 4 nodes) are shared; the root only on request.
    assert shared == standard.nodes(2) + standard.nodes(4)
    assert standard.shared_nodes(swapped, include_root=True)[-1] == tuple(range(64))
    reversed_tree = ModeTree.dilated(64, swapped_dilations(64, 6))
    assert standard.shared_nodes(reversed_tree) == ()


def test_tiling_of_the_papers_example_set():
    # ICLR 2018 app. F (fig. 6), 0-based: I = {1,3,5,7,9,10,13,14} - 1.
    index_set = [0, 2, 4, 6, 8, 9, 12, 13]
    complement = [1, 3, 5, 7, 10, 11, 14, 15]
    standard = ModeTree.dilated(16, (1, 2, 4, 8))
    swapped = ModeTree.dilated(16, (2, 1, 8, 4))
    assert standard.tiling(index_set) == ((0,), (2,), (4,), (6,), (8, 9), (12, 13))
    assert standard.tiling(complement) == (
        (1,),
        (3,),
        (5,),
        (7,),
        (10, 11),
        (14, 15),
    )
    assert swapped.tiling(index_set) == ((0, 2), (4, 6), (8,), (9,), (12,), (13,))
    assert standard.tiling(range(16)) == (tuple(range(16)),)


def test_locate_finds_nodes_in_any_order():
    tree = ModeTree.dilated(8, (2, 1, 4))
    assert tree.locate((2, 0)) == (1, 0)
    assert tree.locate((3, 1, 2, 0)) == (2, 0)
    assert tree.nodes(1)[tree.locate((5, 7))[1]] == (5, 7)
    assert tree.interior_nodes()[-1] == tuple(range(8))
    with pytest.raises(ValueError, match="not a node"):
        tree.locate((0, 1))
    with pytest.raises(ValueError, match="not a node"):
        tree.locate((0, 2, 2))


@pytest.mark.parametrize(
    ("num_modes", "dilations", "match"),
    [
        (12, (1, 2, 4), "power of 2"),
        (8, (1, 2, 2), "permutation of the powers of two"),
        (8, (1, 2), "permutation of the powers of two"),
        (8, (1, 2, 4, 8), "permutation of the powers of two"),
        (8, (1, 3, 4), "permutation of the powers of two"),
    ],
)
def test_dilated_rejects_bad_sizes(num_modes, dilations, match):
    with pytest.raises(ValueError, match=match):
        ModeTree.dilated(num_modes, dilations)


def test_dilated_rejects_bad_types_and_shared_nodes_bad_partner():
    with pytest.raises(TypeError, match=r"dilations\[1\]"):
        ModeTree.dilated(4, (1, 2.0))
    with pytest.raises(TypeError, match="dilations must be a sequence"):
        ModeTree.dilated(4, 3)
    with pytest.raises(ValueError, match="same positions"):
        ModeTree.balanced(8).shared_nodes(ModeTree.balanced(16))
    with pytest.raises(TypeError, match="ModeTree"):
        ModeTree.balanced(8).shared_nodes("tree")
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        ModeTree.balanced(8).tiling([0, 9])
    with pytest.raises(ValueError, match="distinct"):
        ModeTree.balanced(8).tiling([1, 1])
