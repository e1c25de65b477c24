"""Mode trees: which input positions a network pools together, level by level.

A mode tree over ``num_modes`` positions is stored as a *level plan*: a leaf
order (a permutation of the positions) followed by contiguous pooling windows,
one window size per level. Level ``0`` holds the leaves in ``order``; the nodes
of level ``l`` are consecutive windows of ``windows[l - 1]`` nodes of level
``l - 1``. Every tree whose leaves all sit at the same depth and whose nodes of
one level share one arity has exactly this form (list its leaves depth-first),
so square, mirror, dilated and user geometries are only different orders.

The plan is what evaluation uses: one gather of the input by ``order``, then per
level a reshape to ``(nodes, window, channels)`` and a reduction, so compile time
grows with depth and work is linear in ``num_modes``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np

_GEOMETRIES = ("square", "mirror")


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")
    return int(value)


def _power_depth(num_modes: int, arity: int, name: str) -> int:
    """Returns ``L`` with ``arity ** L == num_modes`` or raises ``ValueError``."""
    depth = round(math.log(num_modes, arity)) if num_modes > 1 else 0
    if depth < 1 or arity**depth != num_modes:
        raise ValueError(
            f"{name} must be a power of {arity} (at least {arity}) for pooling "
            f"windows of {arity}, got {num_modes}; nothing is cropped or padded."
        )
    return depth


@dataclasses.dataclass(frozen=True)
class ModeTree:
    """A rooted tree over input positions, stored as a level plan.

    Hashable and immutable, so it can be a static argument of ``jax.jit``.

    Attributes:
      num_modes: ``N``, the number of leaves (input positions).
      order: a permutation of ``range(N)``: the leaves listed depth-first. The
        node ``j`` of level ``l`` covers the positions
        ``order[j * S_l:(j + 1) * S_l]`` with ``S_l = prod(windows[:l])``.
      windows: the pooling window of each level ``1 … L``, each at least 2;
        their product is ``N``.
    """

    num_modes: int
    order: tuple[int, ...]
    windows: tuple[int, ...]

    def __post_init__(self):
        _check_count("num_modes", self.num_modes, 1)
        order = tuple(int(i) for i in self.order)
        windows = tuple(
            _check_count(f"windows[{level}]", w, 2)
            for level, w in enumerate(self.windows)
        )
        if sorted(order) != list(range(self.num_modes)):
            raise ValueError(
                f"order must be a permutation of range({self.num_modes}), got "
                f"{order[:16]}{' …' if len(order) > 16 else ''}."
            )
        if not windows:
            raise ValueError("windows must name at least one level, got ().")
        if math.prod(windows) != self.num_modes:
            raise ValueError(
                f"the product of windows {windows} is {math.prod(windows)}, but "
                f"num_modes is {self.num_modes}."
            )
        object.__setattr__(self, "order", order)
        object.__setattr__(self, "windows", windows)

    # -- construction ------------------------------------------------------

    @classmethod
    def balanced(cls, num_modes: int, arity: int = 2) -> ModeTree:
        """Contiguous windows of ``arity`` at every level (a 1-D deep network).

        Args:
          num_modes: ``N``, a power of ``arity``.
          arity: the pooling window, at least 2.

        Returns:
          The tree with ``log_arity(N)`` levels over ``0 … N-1`` in order.

        Raises:
          ValueError: if ``num_modes`` is not a power of ``arity``.

        Examples:
          >>> ModeTree.balanced(8).windows
          (2, 2, 2)
        """
        _check_count("num_modes", num_modes, 1)
        _check_count("arity", arity, 2)
        depth = _power_depth(num_modes, arity, "num_modes")
        return cls(num_modes, tuple(range(num_modes)), (arity,) * depth)

    @classmethod
    def shallow(cls, num_modes: int) -> ModeTree:
        """One root over all leaves: the shallow network, a CP decomposition.

        Args:
          num_modes: ``N``, at least 2.

        Returns:
          The one-level tree with window ``N``.
        """
        _check_count("num_modes", num_modes, 2)
        return cls(num_modes, tuple(range(num_modes)), (num_modes,))

    @classmethod
    def from_permutation(cls, order: Sequence[int], arity: int = 2) -> ModeTree:
        """Contiguous windows of ``arity`` over the positions listed in ``order``.

        Args:
          order: a permutation of ``range(N)`` with ``N`` a power of ``arity``.
          arity: the pooling window, at least 2.

        Returns:
          The tree whose leaves, depth-first, are ``order``.

        Raises:
          ValueError: if ``order`` is no permutation or its length no power of
            ``arity``.
        """
        _check_count("arity", arity, 2)
        order = tuple(order)
        depth = _power_depth(len(order), arity, "len(order)")
        return cls(len(order), order, (arity,) * depth)

    @classmethod
    def dilated(cls, num_modes: int, dilations: Sequence[int]) -> ModeTree:
        """The tree of the last step of a causal 1-D dilated network (SPEC §4).

        Layer ``l = 1 … L`` of the network combines, with a size-2 kernel, its
        input at time ``t - dilations[l - 1]`` (tap 0) and at time ``t`` (tap 1).
        The output at the last step ``N - 1`` sees positions ``0 … N - 1``, and
        the node of layer ``l`` covers one position plus every subset sum of the
        first ``l`` dilations. Listed depth-first with tap 0 first, leaf ``j``
        is position ``Σ_l bit_{l-1}(j) · dilations[l - 1]``. Dilations
        ``1, 2, 4, …, N/2`` give :meth:`balanced` ``(N, 2)``; reversed
        ``N/2, …, 2, 1`` pools ``{j, j + N/2}`` first; any other order is
        another binary tree.

        Args:
          num_modes: ``N``, the receptive field, a power of 2 (at least 2).
          dilations: the dilation of each layer, first layer first: a
            permutation of ``1, 2, 4, …, N/2``.

        Returns:
          A tree with ``log2(N)`` levels of window 2.

        Raises:
          ValueError: if ``num_modes`` is not a power of 2, or ``dilations`` is
            not a permutation of the powers of two below ``num_modes``.
          TypeError: for a non-integer dilation.

        Examples:
          >>> ModeTree.dilated(8, (1, 2, 4)) == ModeTree.balanced(8)
          True
          >>> ModeTree.dilated(8, (4, 2, 1)).nodes(1)
          ((0, 4), (2, 6), (1, 5), (3, 7))
        """
        _check_count("num_modes", num_modes, 2)
        depth = _power_depth(num_modes, 2, "num_modes")
        dilations = _check_dilations(dilations, num_modes, depth)
        order = tuple(
            sum(d for bit, d in enumerate(dilations) if j >> bit & 1)
            for j in range(num_modes)
        )
        return cls(num_modes, order, (2,) * depth)

    @classmethod
    def image(cls, height: int, width: int, geometry: str = "square") -> ModeTree:
        """2×2 pooling over an image, positions numbered row-major.

        ``square`` pooling is the quad-tree of 2×2 blocks: each level pools
        2×2 neighbouring blocks. ``mirror`` pooling pools each pixel with its
        left-right, up-down and diagonal reflections at the first level, and
        does the same to the resulting blocks (of one quadrant) at every level.

        Args:
          height: image height, a power of 2 (at least 2).
          width: image width, equal to ``height``.
          geometry: ``"square"`` or ``"mirror"``.

        Returns:
          A tree over ``height * width`` positions with ``log2(height)`` levels
          of window 4; position ``(row, col)`` is mode ``row * width + col``.

        Raises:
          ValueError: on sizes that 2×2 pooling cannot cover exactly, or an
            unknown geometry.
        """
        _check_count("height", height, 2)
        _check_count("width", width, 2)
        if geometry not in _GEOMETRIES:
            raise ValueError(
                f"geometry must be one of {_GEOMETRIES}, got {geometry!r}."
            )
        _power_depth(height, 2, "height")
        _power_depth(width, 2, "width")
        if height != width:
            raise ValueError(
                "2×2 pooling down to one root needs a square image; got "
                f"height={height}, width={width}."
            )
        pixel_order = (
            _quad_order(height) if geometry == "square" else _mirror_order(height)
        )
        order = tuple(int(r * width + c) for r, c in pixel_order)
        return cls(height * width, order, (4,) * _power_depth(height, 2, "height"))

    # -- queries -----------------------------------------------------------

    @property
    def depth(self) -> int:
        """``L``, the number of pooling levels (the root is at level ``L``)."""
        return len(self.windows)

    def num_nodes(self, level: int) -> int:
        """Number of nodes at ``level`` (``0`` is the leaves, ``depth`` the root)."""
        self._check_level(level)
        return math.prod(self.windows[level:])

    def node_size(self, level: int) -> int:
        """Number of leaves under each node of ``level``."""
        self._check_level(level)
        return math.prod(self.windows[:level])

    def nodes(self, level: int) -> tuple[tuple[int, ...], ...]:
        """The leaf labels of the nodes of ``level``, in tree order.

        Examples:
          >>> ModeTree.balanced(4).nodes(1)
          ((0, 1), (2, 3))
        """
        size = self.node_size(level)
        return tuple(
            self.order[j * size : (j + 1) * size] for j in range(self.num_nodes(level))
        )

    def interior_nodes(self) -> tuple[tuple[int, ...], ...]:
        """Every interior node (levels ``1 … depth``) as a sorted tuple of positions.

        Listed level by level from the leaves up, in tree order within a
        level; the root, ``(0, …, N - 1)``, is last.
        """
        return tuple(
            tuple(sorted(node))
            for level in range(1, self.depth + 1)
            for node in self.nodes(level)
        )

    def locate(self, node: Sequence[int]) -> tuple[int, int]:
        """Where a node sits: ``(level, index in tree order)``.

        Args:
          node: the node's positions, in any order.

        Returns:
          ``(level, index)`` with ``self.nodes(level)[index]`` holding exactly
          those positions.

        Raises:
          ValueError: if no node of the tree covers exactly these positions.
        """
        key = frozenset(int(i) for i in node)
        where = self._node_index.get(key)
        if where is None or len(key) != len(tuple(node)):
            raise ValueError(
                f"{tuple(node)} is not a node of this tree (windows "
                f"{self.windows}, order {self.order[:16]}"
                f"{' …' if self.num_modes > 16 else ''})."
            )
        return where

    def shared_nodes(
        self, other: ModeTree, *, include_root: bool = False
    ) -> tuple[tuple[int, ...], ...]:
        """The interior nodes present in both trees (same set of positions).

        These are where two decompositions over the trees can exchange
        channels (SPEC §5). The root is shared by any two trees over the same
        positions; it is left out unless ``include_root``.

        Args:
          other: a tree over the same ``num_modes``.
          include_root: whether to list the root too.

        Returns:
          The shared nodes as sorted tuples, in this tree's order (level by
          level from the leaves up).

        Raises:
          TypeError: if ``other`` is not a ``ModeTree``.
          ValueError: if the trees have different ``num_modes``.

        Examples:
          >>> standard = ModeTree.dilated(16, (1, 2, 4, 8))
          >>> swapped = ModeTree.dilated(16, (2, 1, 8, 4))
          >>> standard.shared_nodes(swapped)
          ((0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11), (12, 13, 14, 15))
        """
        if not isinstance(other, ModeTree):
            raise TypeError(f"other must be a ModeTree, got {type(other).__name__}.")
        if other.num_modes != self.num_modes:
            raise ValueError(
                f"both trees must cover the same positions; num_modes "
                f"{self.num_modes} and {other.num_modes}."
            )
        nodes = self.interior_nodes()
        if not include_root:
            nodes = nodes[:-1]
        return tuple(n for n in nodes if frozenset(n) in other._node_index)

    def tiling(self, index_set: Sequence[int]) -> tuple[tuple[int, ...], ...]:
        """The maximal nodes inside ``index_set`` (its tiling, ICLR 2018 def. 3).

        Every position of ``index_set`` lies in exactly one listed node, and no
        listed node's parent lies inside ``index_set``.

        Args:
          index_set: distinct positions in ``[0, N)``.

        Returns:
          The tiles as sorted tuples, ordered by their smallest position.

        Raises:
          ValueError: for positions out of range or repeated, or an empty set.
        """
        chosen = {int(i) for i in index_set}
        if not chosen or len(chosen) != len(tuple(index_set)):
            raise ValueError(
                f"index_set must hold distinct positions, at least one; got "
                f"{tuple(index_set)}."
            )
        bad = sorted(i for i in chosen if not 0 <= i < self.num_modes)
        if bad:
            raise ValueError(
                f"index_set positions must lie in [0, {self.num_modes}); got {bad[0]}."
            )
        tiles, covered = [], set()
        for level in range(self.depth, -1, -1):  # Top down: maximal nodes first.
            for node in self.nodes(level):
                if node[0] not in covered and chosen.issuperset(node):
                    tiles.append(tuple(sorted(node)))
                    covered.update(node)
        return tuple(sorted(tiles))

    @functools.cached_property
    def _node_index(self) -> dict[frozenset[int], tuple[int, int]]:
        return {
            frozenset(node): (level, index)
            for level in range(self.depth + 1)
            for index, node in enumerate(self.nodes(level))
        }

    def _check_level(self, level: int) -> None:
        if not 0 <= level <= self.depth:
            raise ValueError(f"level must be in [0, {self.depth}], got {level}.")


def swapped_dilations(num_modes: int, group: int) -> tuple[int, ...]:
    """Dilations ``1, 2, …, N/2`` reversed inside consecutive groups of layers.

    ``group=1`` is the standard order, ``group=2`` swaps the dilations of odd and
    even layers (``2, 1, 8, 4, …``: the companion network of the ICLR 2018
    experiment), ``group=log2(N)`` reverses them all. Two networks whose
    dilations are ``1, 2, …`` and this order have the same receptive fields
    after every ``group`` layers, so their trees share the nodes of levels
    ``group, 2·group, …`` (ICLR 2018, corollary 1: dilation
    ``2^(⌈l/k⌉·k − 1 − ((l − 1) mod k))`` in layer ``l``). A last group with
    fewer than ``group`` layers is reversed the same way.

    Args:
      num_modes: ``N``, a power of 2 (at least 2).
      group: layers per group, at least 1.

    Returns:
      One dilation per layer, first layer first.

    Raises:
      ValueError: if ``num_modes`` is not a power of 2 or ``group`` < 1.

    Examples:
      >>> swapped_dilations(16, 2)
      (2, 1, 8, 4)
    """
    _check_count("num_modes", num_modes, 2)
    _check_count("group", group, 1)
    depth = _power_depth(num_modes, 2, "num_modes")
    exponents = []
    for start in range(0, depth, group):
        exponents.extend(reversed(range(start, min(start + group, depth))))
    return tuple(2**e for e in exponents)


def _check_dilations(dilations: object, num_modes: int, depth: int) -> tuple[int, ...]:
    if isinstance(dilations, str | bytes) or not isinstance(dilations, Sequence):
        raise TypeError(
            f"dilations must be a sequence of ints, got {type(dilations).__name__}."
        )
    for layer, d in enumerate(dilations):
        if isinstance(d, bool) or not isinstance(d, int | np.integer):
            raise TypeError(f"dilations[{layer}] must be an int, got {d!r}.")
    dilations = tuple(int(d) for d in dilations)
    expected = tuple(2**e for e in range(depth))
    if sorted(dilations) != list(expected):
        raise ValueError(
            f"dilations must be a permutation of the powers of two below "
            f"num_modes={num_modes}, {expected}, one per layer; got {dilations}."
        )
    return dilations


def _quad_order(size: int) -> list[tuple[int, int]]:
    """Pixels of a ``size × size`` image in quad-tree (Z) depth-first order."""

    def dfs(row: int, col: int, side: int) -> list[tuple[int, int]]:
        if side == 1:
            return [(row, col)]
        half = side // 2
        return [
            pixel
            for dr, dc in _CORNERS
            for pixel in dfs(row + dr * half, col + dc * half, half)
        ]

    return dfs(0, 0, size)


def _mirror_order(size: int) -> list[tuple[int, int]]:
    """Pixels of a ``size × size`` image in mirror-pooling depth-first order.

    A node of level ``l`` stands for a pixel ``(r, c)`` of the top-left square
    of side ``size / 2**l``; its four children are that pixel's reflections
    (left-right, up-down, both) inside the square of side ``size / 2**(l-1)``.
    So the first level pools every pixel with its mirror images across the
    whole image, and later levels do the same inside ever smaller quadrants.
    """

    def dfs(level: int, row: int, col: int) -> list[tuple[int, int]]:
        if level == 0:
            return [(row, col)]
        side = size >> (level - 1)
        return [
            pixel
            for flip_r, flip_c in _CORNERS
            for pixel in dfs(
                level - 1,
                side - 1 - row if flip_r else row,
                side - 1 - col if flip_c else col,
            )
        ]

    return dfs(size.bit_length() - 1, 0, 0)


_CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))
