"""ConvAC modules: a tree decomposition that owns its weights (SPEC §4).

:class:`ConvAC` stores the weights of a tree decomposition in exactly the layout
of :func:`~jaxconvac.init_decomposition` and its forward pass is
:func:`~jaxconvac.evaluate`, batched with ``jax.vmap``. So the tensor a trained
module realises is :func:`~jaxconvac.coefficient_tensor` of
:meth:`ConvAC.decomposition_params`: one source of truth for the network and its
tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike

from jaxconvac.decompositions import (
    SPACES,
    Initializer,
    evaluate,
    init_decomposition,
)
from jaxconvac.mode_trees import ModeTree
from jaxconvac.nn.representations import check_descriptor_count


class DecompositionModule(nnx.Module):
    """Weights of a tree decomposition over a :class:`~jaxconvac.ModeTree`.

    The shared part of :class:`ConvAC` and
    :class:`~jaxconvac.nn.GeneralizedConvNet`: ``weights`` holds ``L + 1``
    parameters in exactly the layout of :func:`~jaxconvac.init_decomposition`,
    ``weights[l]`` of shape ``(groups, r_l, r_{l-1})`` with ``r_{-1} = M`` and
    ``r_L = Y``.
    """

    def __init__(
        self,
        tree: ModeTree,
        *,
        num_descriptors: int,
        widths: Sequence[int],
        num_outputs: int,
        sharing: str,
        initializer: Initializer | None,
        dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        """Draws the weights with :func:`~jaxconvac.init_decomposition`.

        Raises:
          ValueError: for widths that do not fit the tree, an unknown
            ``sharing`` or non-positive sizes.
          TypeError: if ``tree`` is not a ``ModeTree``.
        """
        params = init_decomposition(
            rngs.params(),
            tree,
            num_descriptors=num_descriptors,
            widths=widths,
            num_outputs=num_outputs,
            sharing=sharing,
            dtype=dtype,
            initializer=initializer,
        )
        self.tree = tree
        self.sharing = sharing
        self.weights = nnx.List([nnx.Param(w) for w in params])

    @property
    def num_descriptors(self) -> int:
        """``M``, the descriptors per position."""
        return self.weights[0].shape[2]

    @property
    def widths(self) -> tuple[int, ...]:
        """``(r_0, …, r_{L-1})``."""
        return tuple(w.shape[1] for w in self.weights[:-1])

    @property
    def num_outputs(self) -> int:
        """``Y``, the number of scores."""
        return self.weights[-1].shape[1]


class ConvAC(DecompositionModule):
    """A convolutional arithmetic circuit over any :class:`~jaxconvac.ModeTree`.

    Every level applies a weight matrix per node (shared as ``sharing`` says) and
    pools the children of each node with products; the root gives one score per
    output. The shallow tree (:meth:`~jaxconvac.ModeTree.shallow`) is a CP
    decomposition, the balanced and image trees are deep networks.

    In log space with ``normalize=True`` (the default, and the setting that
    trains well) the stored weights are unnormalised logits and the network uses
    their ``log_softmax`` over input channels, so every convolution is a mixture
    of its inputs: with normalised log-densities as features the score of output
    ``y`` is the log-likelihood of a tensorial mixture model. In linear space
    ``normalize=True`` uses the ``softmax`` (the same mixture), and
    ``normalize=False`` uses the raw (signed) weights of the theory.

    .. warning::
       Product pooling is commutative, so with ``sharing="full"`` the scores do
       not change when values swap places inside a pooling window (at any
       level): the network cannot tell where in a window a value sits. Use
       ``"per_tap"`` or ``"none"`` when positions matter (on the 8×8 digits of
       ``experiments/train_digits.py``, ``"full"`` reached 41–52 % validation
       accuracy, ``"per_tap"`` 96–98 %).

    Attributes:
      tree: the mode tree, ``N`` leaves, depth ``L``.
      weights: ``L + 1`` parameters, ``weights[l]`` of shape
        ``(groups, r_l, r_{l-1})`` with ``r_{-1} = M`` and ``r_L = Y``.
      space: ``"log"`` or ``"linear"``.
      normalize: whether the weights are normalised over input channels.

    Examples:
      >>> tree = ModeTree.image(4, 4)
      >>> model = ConvAC(tree, num_descriptors=3, widths=(5, 6), num_outputs=2,
      ...                sharing="per_tap", rngs=nnx.Rngs(0))
      >>> [w.shape for w in model.decomposition_params()]
      [(4, 5, 3), (4, 6, 5), (1, 2, 6)]
      >>> model(jnp.zeros((7, 16, 3))).shape
      (7, 2)
    """

    def __init__(
        self,
        tree: ModeTree,
        *,
        num_descriptors: int,
        widths: Sequence[int],
        num_outputs: int,
        sharing: str = "full",
        space: str = "log",
        normalize: bool = True,
        initializer: Initializer | None = None,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        """Makes the module with random weights.

        Args:
          tree: the mode tree.
          num_descriptors: ``M``, the descriptors per position.
          widths: ``(r_0, …, r_{L-1})``, one width per level below the root.
          num_outputs: ``Y``, the number of scores (classes).
          sharing: ``"full"`` (a 1×1 convolution), ``"per_tap"`` (a strided
            convolution) or ``"none"`` (locally connected).
          space: ``"log"`` (inputs are log-descriptors, outputs ``log h``) or
            ``"linear"``.
          normalize: normalise every weight matrix over its input channels.
          initializer: ``init(key, shape, dtype)`` for the stored weights;
            standard normal by default.
          dtype: the weights' dtype.
          rngs: the random streams; ``rngs.params`` draws the weights.

        Raises:
          ValueError: for widths that do not fit the tree, an unknown
            ``sharing`` or ``space``, or non-positive sizes.
          TypeError: if ``tree`` is not a ``ModeTree``.
        """
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}.")
        super().__init__(
            tree,
            num_descriptors=num_descriptors,
            widths=widths,
            num_outputs=num_outputs,
            sharing=sharing,
            initializer=initializer,
            dtype=dtype,
            rngs=rngs,
        )
        self.space = space
        self.normalize = bool(normalize)

    def decomposition_params(self) -> tuple[jax.Array, ...]:
        """The weights :func:`~jaxconvac.evaluate` uses, in its layout.

        Returns:
          ``(W_0, …, W_L)``, ``W_l`` of shape ``(groups, r_l, r_{l-1})``: the
          stored weights, normalised over the last (input) axis when
          ``normalize`` is set (``log_softmax`` in log space, ``softmax`` in
          linear space). Pass them with ``space=self.space``.
        """
        raw = tuple(w[...] for w in self.weights)
        if not self.normalize:
            return raw
        normalise = jax.nn.log_softmax if self.space == "log" else jax.nn.softmax
        return tuple(normalise(w, axis=-1) for w in raw)

    def __call__(self, features: ArrayLike) -> jax.Array:
        """Scores of a batch of representation matrices.

        Args:
          features: ``F`` of shape ``(batch, num_modes, num_descriptors)``;
            log-descriptors in log space (``-inf`` entries are allowed). Or
            integer values of shape ``(batch, num_modes)`` standing for
            indicator descriptors: the leaf level is then a lookup (see
            :func:`~jaxconvac.evaluate`), the same scores for less work.

        Returns:
          The scores ``h`` (``log h`` in log space) of shape
          ``(batch, num_outputs)``.

        Raises:
          ValueError: if ``features`` does not have that shape.
        """
        features = jnp.asarray(features)
        expected = (self.tree.num_modes, self.num_descriptors)
        if jnp.issubdtype(features.dtype, jnp.integer):
            expected = (self.tree.num_modes,)  # Indicator values: a leaf lookup.
        if features.shape[1:] != expected or features.ndim != len(expected) + 1:
            raise ValueError(
                "features must have shape (batch, num_modes, num_descriptors) = "
                f"(batch, {self.tree.num_modes}, {self.num_descriptors}), or "
                f"integer values of shape (batch, {self.tree.num_modes}), for "
                f"this ConvAC; got {features.shape} ({features.dtype})."
            )
        params = self.decomposition_params()

        def score(one: jax.Array) -> jax.Array:
            return evaluate(params, self.tree, one, space=self.space)

        return jax.vmap(score)(features)


class Classifier(nnx.Module):
    """A representation layer followed by a :class:`ConvAC`.

    Attributes:
      representation: maps inputs to ``F`` (or ``log F``) of shape
        ``(batch, num_modes, num_descriptors)``.
      convac: the network on top.
    """

    def __init__(self, representation: nnx.Module, convac: ConvAC):
        """Combines the two.

        Args:
          representation: a representation layer, e.g.
            :class:`~jaxconvac.nn.Indicator` or :class:`~jaxconvac.nn.Gaussian`.
          convac: a :class:`ConvAC`.

        Raises:
          ValueError: if the representation's ``log`` setting (where it has
            one) does not match ``convac.space``, or its ``num_descriptors``
            (or ``num_values``) does not match the ConvAC's.
        """
        log = getattr(representation, "log", None)
        if log is not None and log != (convac.space == "log"):
            raise ValueError(
                f"the representation has log={log} but the ConvAC works in "
                f"space={convac.space!r}; log-descriptors go with space='log'."
            )
        check_descriptor_count(representation, convac.num_descriptors, "ConvAC")
        self.representation = representation
        self.convac = convac

    def __call__(self, inputs: ArrayLike) -> jax.Array:
        """Scores of a batch of inputs, shape ``(batch, num_outputs)``."""
        return self.convac(self.representation(inputs))


def count_params(module: nnx.Module) -> int:
    """The number of scalar parameters (``nnx.Param`` entries) of ``module``."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))
