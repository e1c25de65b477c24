import math

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

import jaxconvac as jc
from jaxconvac.tensor_networks import min_cut_bound, network_min_cut, tensor_network

_TREES = [
    (jc.ModeTree.balanced(8), (2, 3, 4), 3),
    (jc.ModeTree.shallow(5), (4,), 3),
    (jc.ModeTree.image(4, 4), (3, 5), 2),
    (jc.ModeTree.image(4, 4, "mirror"), (2, 4), 2),
    (jc.ModeTree.balanced(9, 3), (2, 3), 2),
]


def test_network_structure():
    tree = jc.ModeTree.balanced(4)
    graph = tensor_network(tree, (3, 5), 2)
    assert nx.is_tree(graph)
    kinds = nx.get_node_attributes(graph, "kind")
    assert sum(k == "input" for k in kinds.values()) == 4
    assert sum(k == "copy" for k in kinds.values()) == 3
    assert sum(k == "weights" for k in kinds.values()) == 7
    assert graph.edges[("input", 2), ("weights", 0, 2)]["dim"] == 2
    assert graph.edges[("weights", 0, 2), ("copy", 1, 1)]["dim"] == 3
    assert graph.edges[("copy", 1, 1), ("weights", 1, 1)]["dim"] == 3
    assert graph.edges[("weights", 1, 1), ("copy", 2, 0)]["dim"] == 5
    assert graph.edges[("copy", 2, 0), ("weights", 2, 0)]["dim"] == 5


def test_closed_forms():
    tree = jc.ModeTree.balanced(8)
    odd_even = jc.odd_even_modes(8)
    assert min_cut_bound(tree, (2, 2, 2), 2, odd_even).bound == 16
    assert min_cut_bound(tree, (1, 2, 2), 2, odd_even).bound == 1
    assert min_cut_bound(tree, (4, 4, 4), 2, odd_even).bound == 16  # M^(N/2).
    # Halves: the root's children carry r_2 = 7 channels, but each is made
    # from r_1 = 6 pooled channels: the bound is 6.
    halves = min_cut_bound(tree, (5, 6, 7), 3, (0, 1, 2, 3))
    assert halves.bound == 6
    assert min_cut_bound(tree, (5, 8, 7), 3, (0, 1, 2, 3)).bound == 7
    image = jc.ModeTree.image(4, 4)
    # Top half: through the root's copy tensor, r_1 = 5 (not 3 * 3 through
    # the two top blocks' legs).
    top = min_cut_bound(image, (3, 5), 2, (0, 1, 2, 3, 4, 5, 6, 7))
    assert top.bound == 5 and top.cut_vertices == ((("copy", 2, 0), 5),)
    # Top row of a 4×4 image: each top block is split inside its window, which
    # costs r_0 = 3 through the copy tensor, not 3 * 3 through its legs.
    top_row = min_cut_bound(image, (3, 5), 2, (0, 1, 2, 3))
    assert top_row.bound == 9
    assert top_row.cut_vertices == ((("copy", 1, 0), 3), (("copy", 1, 1), 3))
    # Exact integers far beyond float precision: 64 open legs of dimension 3.
    big = jc.ModeTree.balanced(128)
    rows = jc.odd_even_modes(128)
    assert min_cut_bound(big, (9,) * 7, 3, rows).bound == 3**64


@pytest.mark.parametrize("case", range(len(_TREES)))
def test_tree_and_flow_agree(case):
    tree, widths, num_descriptors = _TREES[case]
    rng = np.random.default_rng(case)
    for _ in range(6):
        size = int(rng.integers(1, tree.num_modes))
        rows = tuple(rng.choice(tree.num_modes, size, replace=False).tolist())
        exact = min_cut_bound(tree, widths, num_descriptors, rows)
        flow = min_cut_bound(tree, widths, num_descriptors, rows, method="flow")
        assert exact.bound == flow.bound
        for cut in (exact, flow):
            cut_dims = [d for *_, d in cut.cut_edges + cut.cut_vertices]
            assert math.prod(cut_dims) == cut.bound
            graph = tensor_network(tree, widths, num_descriptors)
            graph.remove_edges_from([(u, v) for u, v, _ in cut.cut_edges])
            graph.remove_nodes_from([v for v, _ in cut.cut_vertices])
            for i in rows:
                for j in set(range(tree.num_modes)) - set(rows):
                    assert not nx.has_path(graph, ("input", i), ("input", j))


# One compilation per tree and shapes; eager evaluation compiles every op.
_coefficient = jax.jit(jc.coefficient_tensor, static_argnames="tree")


def _rank(tensor, rows):
    """NumPy's rank (tolerance max(rows, cols) · eps · σ_max, as SPEC §3)."""
    cols = [i for i in range(tensor.ndim) if i not in rows]
    size = math.prod(tensor.shape[i] for i in rows)
    matrix = np.transpose(tensor, [*rows, *cols]).reshape(size, -1)
    return int(np.linalg.matrix_rank(matrix))


@pytest.mark.parametrize("case", range(len(_TREES)))
def test_bound_holds_for_random_weights(case):
    tree, widths, num_descriptors = _TREES[case]
    rng = np.random.default_rng(10 + case)
    with jax.enable_x64(True):
        params = jc.init_decomposition(
            jax.random.key(case),
            tree,
            num_descriptors=num_descriptors,
            widths=widths,
            num_outputs=1,
            dtype=jnp.float64,
        )
        tensor = np.asarray(_coefficient(params, tree))[0]
        for _ in range(4):
            size = int(rng.integers(1, tree.num_modes))
            rows = tuple(rng.choice(tree.num_modes, size, replace=False).tolist())
            bound = min_cut_bound(tree, widths, num_descriptors, rows).bound
            assert _rank(tensor, rows) <= bound


@pytest.mark.parametrize(
    "tree, widths",
    [(jc.ModeTree.balanced(8), (2, 4, 2)), (jc.ModeTree.image(4, 4), (2, 4))],
)
def test_bound_is_attained_for_powers_of_two(tree, widths):
    rows_list = [(0, 1, 2, 3), (0, 2, 4, 6), (1,), (0, 5), (2, 3, 4)]
    with jax.enable_x64(True):
        params = jc.init_decomposition(
            jax.random.key(7),
            tree,
            num_descriptors=2,
            widths=widths,
            num_outputs=1,
            dtype=jnp.float64,
        )
        tensor = np.asarray(_coefficient(params, tree))[0]
        for rows in rows_list:
            bound = min_cut_bound(tree, widths, 2, rows).bound
            assert _rank(tensor, rows) == bound


@pytest.mark.parametrize(
    "args, error, message",
    [
        (((),), ValueError, "empty"),
        (((0, 0),), ValueError, "repeats"),
        (((9,),), ValueError, "0 … 7"),
        ((tuple(range(8)),), ValueError, "proper subset"),
        (((0,), "dp"), ValueError, "method"),
    ],
)
def test_bad_partitions(args, error, message):
    tree = jc.ModeTree.balanced(8)
    rows, *method = args
    kwargs = {"method": method[0]} if method else {}
    with pytest.raises(error, match=message):
        min_cut_bound(tree, (2, 2, 2), 2, rows, **kwargs)


def test_bad_widths_and_descriptors():
    tree = jc.ModeTree.balanced(8)
    with pytest.raises(ValueError, match="one entry per level"):
        min_cut_bound(tree, (2, 2), 2, (0,))
    with pytest.raises(ValueError, match="positive"):
        min_cut_bound(tree, (2, 0, 2), 2, (0,))
    with pytest.raises(ValueError, match="num_descriptors"):
        min_cut_bound(tree, (2, 2, 2), 0, (0,))
    with pytest.raises(TypeError, match="ModeTree"):
        min_cut_bound("tree", (2, 2, 2), 2, (0,))


def test_general_graph_min_cut():
    # A cycle: two routes between the legs, both must be cut.
    graph = nx.Graph()
    graph.add_edge("a", "x", dim=2)
    graph.add_edge("x", "y", dim=3)
    graph.add_edge("y", "b", dim=7)
    graph.add_edge("x", "z", dim=5)
    graph.add_edge("z", "y", dim=4)
    cut = network_min_cut(graph, ["a"], ["b"])
    assert cut.bound == 2
    cut = network_min_cut(graph, ["a", "x"], ["b"])
    assert cut.bound == 7  # min(3 * 4, 3 * 5, 7)
    # A star: cutting through the centre (a copy tensor of cost 3) beats
    # cutting two legs of dimension 5.
    star = nx.Graph([("x", leg, {"dim": 5}) for leg in "pqrs"])
    assert network_min_cut(star, ["p", "q"], ["r", "s"]).bound == 25
    star.nodes["x"]["dim"] = 3
    cut = network_min_cut(star, ["p", "q"], ["r", "s"])
    assert cut.bound == 3 and cut.cut_vertices == (("x", 3),)
    with pytest.raises(ValueError, match="overlap"):
        network_min_cut(graph, ["a"], ["a"])
    with pytest.raises(ValueError, match="not in the graph"):
        network_min_cut(graph, ["a"], ["q"])


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: min_cut_bound(jc.ModeTree.balanced(8), (2, 2.0, 2), 2, (0,)),
            TypeError,
            r"widths\[1\] must be an int",
        ),
        (
            lambda: min_cut_bound(jc.ModeTree.balanced(8), (2, 2, 2, 2), 2, (0,)),
            ValueError,
            r"3 for this tree .* got 4",
        ),
        (
            lambda: min_cut_bound(jc.ModeTree.balanced(8), (2, 2, 2), True, (0,)),
            ValueError,
            "num_descriptors",
        ),
        (
            lambda: min_cut_bound(jc.ModeTree.balanced(8), (2, 2, 2), 2, (-1,)),
            ValueError,
            r"valid modes are 0 … 7",
        ),
        (
            lambda: min_cut_bound(jc.ModeTree.balanced(8), (2, 2, 2), 2, "01"),
            TypeError,
            "row_modes",
        ),
        (
            lambda: tensor_network(jc.ModeTree.balanced(4), (3,), 2),
            ValueError,
            "one entry per level",
        ),
        (
            lambda: network_min_cut(nx.Graph([("a", "b", {"dim": 0})]), ["a"], ["b"]),
            ValueError,
            "positive int dim",
        ),
        (
            lambda: network_min_cut(nx.Graph([("a", "b", {"dim": 2})]), [], ["b"]),
            ValueError,
            "non-empty",
        ),
    ],
)
def test_bad_input_messages(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_flow_refuses_cut_products_that_tie_in_float():
    # ln(10^18 − 1) == ln(10^9 · 10^9) in float64: the flow cannot tell the
    # cheaper cut (the one edge of 10^18 − 1) from the two input legs.
    tree = jc.ModeTree.balanced(4)
    widths, num_descriptors = (10**19, 10**18 - 1), 10**9
    exact = min_cut_bound(tree, widths, num_descriptors, (0, 1))
    assert exact.bound == 10**18 - 1
    with pytest.raises(RuntimeError, match="least product is 999999999999999999"):
        min_cut_bound(tree, widths, num_descriptors, (0, 1), method="flow")


def test_network_min_cut_bad_graphs_and_sides():
    graph = nx.Graph([("a", "b", {"dim": 2})])
    with pytest.raises(TypeError, match="graph must be an undirected networkx.Graph"):
        network_min_cut(None, ["a"], ["b"])
    multi = nx.MultiGraph([("a", "b", {"dim": 3}), ("a", "b", {"dim": 5})])
    with pytest.raises(TypeError, match="without parallel edges, got MultiGraph"):
        network_min_cut(multi, ["a"], ["b"])
    with pytest.raises(TypeError, match="got DiGraph"):
        network_min_cut(nx.DiGraph(graph), ["a"], ["b"])
    with pytest.raises(TypeError, match="row_legs must be an iterable of hashable"):
        network_min_cut(graph, [["a"]], ["b"])
    with pytest.raises(TypeError, match="col_legs must be an iterable"):
        network_min_cut(graph, ["a"], 3)
    with pytest.raises(
        ValueError, match="col_legs holds 'q', which is not in the graph"
    ):
        network_min_cut(graph, ["a"], ["q"])
    # One vertex passed bare: its items are not vertices, and the message says
    # how to pass it.
    tree_graph = tensor_network(jc.ModeTree.balanced(4), (2, 2), 2)
    with pytest.raises(ValueError, match=r"pass a list of vertices"):
        network_min_cut(tree_graph, ("input", 0), [("input", 1)])


def test_widths_that_are_not_a_sequence():
    for widths in (2, None):
        with pytest.raises(TypeError, match="widths must be a sequence of ints"):
            min_cut_bound(jc.ModeTree.balanced(4), widths, 2, (0,))


def test_repeated_modes_name_both_positions_and_abridge_long_subsets():
    with pytest.raises(ValueError, match=r"repeats mode 3 \(at positions 1 and 4\)"):
        jc.matricize(np.zeros((2,) * 6), (0, 3, 1, 2, 3))
    modes = list(range(999)) + [5]
    with pytest.raises(
        ValueError, match=r"\(0, 1, 2, 3, 4, 5, 6, 7, … 1000 modes in all\)"
    ):
        min_cut_bound(jc.ModeTree.balanced(1024), (2,) * 10, 2, modes)
