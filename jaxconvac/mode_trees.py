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

    def _check_level(self, level: int) -> None:
        if not 0 <= level <= self.depth:
            raise ValueError(f"level must be in [0, {self.depth}], got {level}.")


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
