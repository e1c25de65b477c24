"""Tensor networks of tree decompositions and their min-cut bounds (SPEC §7).

A ConvAC's tree decomposition is a tensor network (Levine et al. 2018): one
vertex per weight matrix ``W^u``, one copy (δ) tensor per interior node
joining its children's output legs to the pooled leg, and one open leg of
dimension ``M`` per input position. For a partition ``(I, J)`` of the
positions, the minimum over cuts separating the open legs of ``I`` from those
of ``J`` of the product of the cut edges' dimensions bounds the rank of
``[[A^y]]_I`` for every weight setting, and equals it for almost every
setting when all dimensions are powers of one integer.

Graph vertices:

* ``("input", i)`` for position ``i`` (the open leg's end);
* ``("weights", level, j)`` for the weight matrix of node ``j`` of ``level``
  (leaves at level 0, the root at level ``L``);
* ``("copy", level, j)`` for the δ tensor of interior node ``j`` of
  ``level ≥ 1``.

Every edge has an integer attribute ``dim``. The root's output leg (the class
index ``y``) is fixed when one ``A^y`` is considered, so it is not an edge.

A copy tensor ``δ`` with legs of dimension ``r`` has rank ``r`` across *every*
split of its legs, so a cut may pass through it at cost ``r`` and send its
legs to either side: copy vertices carry that cost as their own ``dim``
attribute, and the min cut counts it (vertex capacities). Without this, a
window whose positions fall on both sides would cost a product over the
children's legs (``r^2`` or more) where the network's rank is ``r``, and the
bound would not be attained. The bound is ``Π dim(cut edges) · Π dim(cut
copy tensors)``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import NamedTuple

import networkx as nx
import numpy as np

from jaxconvac.decompositions import check_widths
from jaxconvac.matricization import check_row_modes
from jaxconvac.mode_trees import ModeTree

Edge = tuple[Hashable, Hashable, int]


class MinCut(NamedTuple):
    """A minimum cut of a tensor network.

    Attributes:
      bound: the product of the dimensions of the cut edges and cut copy
        tensors, an exact Python int.
      cut_edges: the cut edges as ``(vertex, vertex, dim)``, sorted.
      cut_vertices: the copy tensors cut through, as ``(vertex, dim)``, sorted.
    """

    bound: int
    cut_edges: tuple[Edge, ...]
    cut_vertices: tuple[tuple[Hashable, int], ...] = ()


def _check_inputs(tree, widths, num_descriptors) -> tuple[int, ...]:
    if not isinstance(tree, ModeTree):
        raise TypeError(f"tree must be a ModeTree, got {type(tree).__name__}.")
    widths = check_widths(tree, widths)
    if (
        isinstance(num_descriptors, bool)
        or not isinstance(num_descriptors, int | np.integer)
        or num_descriptors < 1
    ):
        raise ValueError(
            f"num_descriptors must be a positive int, got {num_descriptors!r}."
        )
    return (int(num_descriptors), *widths)


def tensor_network(
    tree: ModeTree, widths: Sequence[int], num_descriptors: int
) -> nx.Graph:
    """The tensor network of a tree decomposition, with bond dimensions.

    Args:
      tree: the mode tree, ``N`` leaves, depth ``L``.
      widths: ``(r_0, …, r_{L-1})``.
      num_descriptors: ``M``, the dimension of every open leg.

    Returns:
      An undirected ``networkx.Graph`` (a tree) with the vertices of the module
      docstring, each with a ``kind`` attribute (``"input"``, ``"weights"``
      or ``"copy"``), and edges with an integer ``dim``.

    Raises:
      TypeError: if ``tree`` is no :class:`~jaxconvac.ModeTree` or ``widths``
        is not a sequence of ints.
      ValueError: if ``widths`` does not have one positive entry per level
        below the root, or ``num_descriptors`` is not positive.

    Examples:
      >>> graph = tensor_network(ModeTree.balanced(4), (3, 5), 2)
      >>> graph.number_of_nodes(), graph.number_of_edges()
      (14, 13)
    """
    dims = _check_inputs(tree, widths, num_descriptors)
    graph = nx.Graph()
    for leaf, position in enumerate(tree.order):
        graph.add_node(("input", position), kind="input")
        graph.add_node(("weights", 0, leaf), kind="weights")
        graph.add_edge(("input", position), ("weights", 0, leaf), dim=dims[0])
    for level, window in enumerate(tree.windows, start=1):
        for node in range(tree.num_nodes(level)):
            copy = ("copy", level, node)
            graph.add_node(copy, kind="copy", dim=dims[level])
            graph.add_node(("weights", level, node), kind="weights")
            graph.add_edge(copy, ("weights", level, node), dim=dims[level])
            for child in range(node * window, (node + 1) * window):
                graph.add_edge(("weights", level - 1, child), copy, dim=dims[level])
    return graph


def network_min_cut(
    graph: nx.Graph, row_legs: Iterable[Hashable], col_legs: Iterable[Hashable]
) -> MinCut:
    """A minimum-product cut of any tensor network, by maximum flow.

    The flow runs on capacities ``ln(dim)``; floating-point flow values are
    not exact and the partition a float flow returns can be wrong even when
    its value is right. So the bound is recomputed as the integer product of
    the cut edges' dimensions, and checked against the flow value.

    .. warning::
       Two cuts whose products differ by less than float64 resolves in their
       logarithms (possible only for products beyond about ``10^12``, e.g.
       ``10^18 − 1`` against ``10^9 · 10^9``) look equally cheap to the flow,
       which may return the dearer one. On the tensor networks of tree
       decompositions, :func:`min_cut_bound` is exact.

    Args:
      graph: an undirected graph whose edges carry an integer ``dim``; a
        vertex with an integer ``dim`` attribute (a copy tensor) may be cut
        through at that cost, its edges then going to either side.
      row_legs: the vertices on one side (open legs of ``I``).
      col_legs: the vertices on the other side (open legs of ``J``).

    Returns:
      A :class:`MinCut`.

    Raises:
      TypeError: if ``graph`` is not an undirected simple ``networkx.Graph``
        (a multigraph's parallel edges would merge) or a side is not an
        iterable of hashable vertices.
      ValueError: if either side is empty, they overlap, a vertex is not in
        the graph, or a ``dim`` is not a positive integer.
      RuntimeError: if the cut found does not reproduce the flow value (a
        floating-point failure; use :func:`min_cut_bound` on trees).
    """
    if not isinstance(graph, nx.Graph) or graph.is_directed() or graph.is_multigraph():
        raise TypeError(
            "graph must be an undirected networkx.Graph without parallel edges, "
            f"got {type(graph).__name__}."
        )
    rows, cols = _vertices(row_legs, "row_legs"), _vertices(col_legs, "col_legs")
    if not rows or not cols:
        raise ValueError("row_legs and col_legs must both be non-empty.")
    if set(rows) & set(cols):
        raise ValueError(f"row_legs and col_legs overlap: {set(rows) & set(cols)}.")
    for name, side in (("row_legs", rows), ("col_legs", cols)):
        for vertex in side:
            if vertex not in graph:
                raise ValueError(
                    f"{name} holds {vertex!r}, which is not in the graph "
                    "(pass a list of vertices, e.g. [('input', 0)], even for one)."
                )
    for u, v, dim in graph.edges(data="dim"):
        _check_dim(dim, f"edge {(u, v)}")
    costly = {v: d for v, d in graph.nodes(data="dim") if d is not None}
    for vertex, dim in costly.items():
        _check_dim(dim, f"vertex {vertex!r}")

    def tail(vertex):  # Arcs leave a cuttable vertex from its "out" copy.
        return (vertex, "out") if vertex in costly else vertex

    def head(vertex):
        return (vertex, "in") if vertex in costly else vertex

    flow_graph = nx.DiGraph()
    for vertex, dim in costly.items():
        flow_graph.add_edge(head(vertex), tail(vertex), capacity=math.log(dim))
    for u, v, dim in graph.edges(data="dim"):
        flow_graph.add_edge(tail(u), head(v), capacity=math.log(dim))
        flow_graph.add_edge(tail(v), head(u), capacity=math.log(dim))
    source, sink = ("__source__",), ("__sink__",)
    for vertex in rows:
        flow_graph.add_edge(source, head(vertex))  # No capacity: infinite.
        flow_graph.add_edge(source, tail(vertex))
    for vertex in cols:
        flow_graph.add_edge(head(vertex), sink)
        flow_graph.add_edge(tail(vertex), sink)

    value, (reachable, _) = nx.minimum_cut(flow_graph, source, sink)
    cut_vertices = sorted(
        (
            (v, int(d))
            for v, d in costly.items()
            if head(v) in reachable and tail(v) not in reachable
        ),
        key=repr,
    )
    cut_edges = sorted(
        (
            (u, v, int(dim))
            for u, v, dim in graph.edges(data="dim")
            if (tail(u) in reachable and head(v) not in reachable)
            or (tail(v) in reachable and head(u) not in reachable)
        ),
        key=repr,
    )
    bound = math.prod(d for *_, d in cut_edges + cut_vertices)
    if not math.isclose(math.log(bound), value, rel_tol=1e-9, abs_tol=1e-9):
        raise RuntimeError(
            f"the cut found has ln(product) = {math.log(bound)}, but the flow value "
            f"is {value}: floating-point flow failed on this graph."
        )
    return MinCut(bound, tuple(cut_edges), tuple(cut_vertices))


def _vertices(legs, name: str) -> list:
    try:
        vertices = list(legs)
        for vertex in vertices:
            hash(vertex)
    except TypeError:
        raise TypeError(
            f"{name} must be an iterable of hashable graph vertices, got "
            f"{type(legs).__name__}: {legs!r:.80}."
        ) from None
    return vertices


def _check_dim(dim, where: str) -> None:
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
        raise ValueError(f"{where} must have a positive int dim, got {dim!r}.")


def min_cut_bound(
    tree: ModeTree,
    widths: Sequence[int],
    num_descriptors: int,
    row_modes: Iterable[int],
    *,
    method: str = "tree",
) -> MinCut:
    """The min-cut bound on the rank of ``[[A^y]]_I`` for a tree decomposition.

    ``method="tree"`` is an exact dynamic program over the network (a tree):
    each vertex takes a side, inputs are fixed to theirs, and the cost of a
    subtree is the least product of the dimensions of its edges whose ends
    lie on different sides, in Python integers. ``method="flow"`` runs
    :func:`network_min_cut` on :func:`tensor_network` (networkx maximum flow)
    instead, as a cross-check: both give the same bound (the cut edges may
    differ between minimal cuts), and ``"flow"`` raises where float
    capacities could not tell its cut from a cheaper one.

    Args:
      tree: the mode tree, ``N`` leaves, depth ``L``.
      widths: ``(r_0, …, r_{L-1})``.
      num_descriptors: ``M``.
      row_modes: the positions ``I``: a non-empty proper subset of
        ``0 … N-1``.
      method: ``"tree"`` or ``"flow"``.

    Returns:
      A :class:`MinCut`: the exact integer bound and the cut edges.

    Raises:
      TypeError: if ``tree`` is no :class:`~jaxconvac.ModeTree`, ``widths``
        is not a sequence of ints, or ``row_modes`` not one of integers.
      ValueError: for widths that do not fit the tree, a non-positive
        ``num_descriptors``, a partition that is out of range, empty,
        repeated or covers every position, or an unknown method.
      RuntimeError: with ``method="flow"``, if the float flow's cut is not
        a least one (cut products beyond about ``10^12`` can tie in
        float64).

    Examples:
      >>> tree = ModeTree.balanced(8)
      >>> min_cut_bound(tree, (2, 2, 2), 2, (0, 2, 4, 6)).bound
      16
      >>> min_cut_bound(tree, (2, 2, 2), 2, (0, 1, 2, 3)).bound
      2
    """
    if method not in ("tree", "flow"):
        raise ValueError(f"method must be 'tree' or 'flow', got {method!r}.")
    graph = tensor_network(tree, widths, num_descriptors)
    rows = check_row_modes(row_modes, tree.num_modes)
    row_set = set(rows)
    row_legs = [("input", i) for i in rows]
    col_legs = [("input", i) for i in range(tree.num_modes) if i not in row_set]
    exact = _tree_min_cut(graph, ("weights", tree.depth, 0), set(row_legs))
    if method == "tree":
        return exact
    flow = network_min_cut(graph, row_legs, col_legs)
    if flow.bound != exact.bound:
        raise RuntimeError(
            f"the float flow found a cut of product {flow.bound}, but the least "
            f"product is {exact.bound}: their logarithms are equal to float "
            "precision (cut products this large can tie in float64). Use "
            "method='tree', which is exact."
        )
    return flow


def _tree_min_cut(graph: nx.Graph, root: Hashable, row_legs: set) -> MinCut:
    """Exact min-product cut of a tree whose ``input`` leaves have fixed sides."""
    parent = {root: None}
    order = [root]
    for vertex in order:  # Breadth-first; ``order`` grows as it is read.
        for neighbour in graph[vertex]:
            if neighbour not in parent:
                parent[neighbour] = vertex
                order.append(neighbour)
    # cost[v][s]: least product over v's subtree with v on side s (0 rows,
    # 1 columns, 2 cut through, for copy tensors); None is infinite.
    # choice[v][s]: the state chosen for each child.
    cost, choice = {}, {}
    for vertex in reversed(order):
        data = graph.nodes[vertex]
        if data["kind"] == "input":
            cost[vertex] = [1, None, None] if vertex in row_legs else [None, 1, None]
            choice[vertex] = [(), (), ()]
            continue
        cuttable = data.get("dim") is not None
        cost[vertex] = [1, 1, data["dim"] if cuttable else None]
        choice[vertex] = [[], [], []]
        for child in graph[vertex]:
            if child == parent[vertex]:
                continue
            dim = graph.edges[vertex, child]["dim"]
            for side in (0, 1, 2):
                if cost[vertex][side] is None:
                    continue
                options = [(cost[child][2], 2)]
                for child_side in (0, 1):
                    price = cost[child][child_side]
                    if price is not None and side != 2 and child_side != side:
                        price *= dim
                    options.append((price, child_side))
                options = [(p, s) for p, s in options if p is not None]
                if not options:
                    cost[vertex][side] = None
                    continue
                price, child_side = min(options, key=lambda option: option[0])
                cost[vertex][side] *= price
                choice[vertex][side].append((child, child_side))

    root_side = min(
        (side for side in (0, 1, 2) if cost[root][side] is not None),
        key=lambda side: cost[root][side],
    )
    cut_edges, cut_vertices, stack = [], [], [(root, root_side)]
    while stack:
        vertex, side = stack.pop()
        if side == 2:
            cut_vertices.append((vertex, graph.nodes[vertex]["dim"]))
        for child, child_side in choice[vertex][side]:
            if side != 2 and child_side != 2 and child_side != side:
                cut_edges.append((child, vertex, graph.edges[vertex, child]["dim"]))
            stack.append((child, child_side))
    bound = cost[root][root_side]
    if math.prod(d for *_, d in cut_edges + cut_vertices) != bound:
        raise AssertionError(f"the cut does not multiply to {bound}")
    return MinCut(
        bound, tuple(sorted(cut_edges, key=repr)), tuple(sorted(cut_vertices, key=repr))
    )
