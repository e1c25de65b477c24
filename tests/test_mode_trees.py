import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconvac import ModeTree


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
