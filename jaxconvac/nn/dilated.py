"""Causal 1-D dilated networks and mixed (interconnected) dilated networks.

A dilated network with size-2 kernels (WaveNet's stack, ICLR 2018 sec. 3) maps
a sequence of representation vectors ``F[t]`` (``M`` descriptors) to outputs
at every time step. With ``L`` layers and dilations ``d_1 … d_L`` (a
permutation of ``1, 2, …, 2^(L-1)``):

    h_0[t] = F[t]
    h_l[t] = g(W_{l-1}[0] · h_{l-1}[t - d_l],  W_{l-1}[1] · h_{l-1}[t])
    out[t] = W_L[0] · h_L[t]

``W_l`` has shape ``(2, r_l, r_{l-1})`` (one matrix per tap) below the root and
``(1, Y, r_{L-1})`` at the output: exactly the ``sharing="per_tap"`` layout of
:func:`~jaxconvac.init_decomposition` over :meth:`ModeTree.dilated
<jaxconvac.ModeTree.dilated>` ``(2^L, dilations)``. So the output at any step
``t ≥ N - 1`` (``N = 2^L``) is :func:`~jaxconvac.evaluate` of
:meth:`DilatedConvNet.decomposition_params` on ``F[t - N + 1 … t]``: the tree is
the receptive field of one step. ``g`` is ``"relu_of_sum"`` (``max(a + b, 0)``,
the paper's ReLU network) or ``"product"`` (the ConvAC), or any ``g``.

Steps ``t < N - 1`` see fewer than ``N`` inputs: a tap reaching before the
start reads zeros (causal zero padding, as in WaveNet), which the tree view
does not describe.

:class:`MixedDilatedConvNet` runs two such stacks side by side and, after each
chosen layer, swaps the first half of their channels; the outputs are summed.
The two stacks must have the same receptive fields at those layers (the first
``l`` dilations of both are the same set), so every node of that level is a
node of both trees and the network is the mixed decomposition of
:mod:`jaxconvac.mixed` with those nodes as mixture nodes.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike

from jaxconvac.decompositions import Initializer, init_decomposition
from jaxconvac.mixed import MixedTrees
from jaxconvac.mode_trees import ModeTree
from jaxconvac.tensor_products import GeneralizedProduct, GFunction, resolve_operator


def _dilated_tree(dilations: Sequence[int]) -> ModeTree:
    if isinstance(dilations, str | bytes) or not isinstance(dilations, Sequence):
        raise TypeError(
            f"dilations must be a sequence of ints, got {type(dilations).__name__}."
        )
    if not dilations:
        raise ValueError("dilations must name at least one layer, got ().")
    return ModeTree.dilated(2 ** len(dilations), tuple(dilations))


def _init_stack(
    tree, num_descriptors, widths, num_outputs, initializer, dtype, key
) -> nnx.List:
    params = init_decomposition(
        key,
        tree,
        num_descriptors=num_descriptors,
        widths=widths,
        num_outputs=num_outputs,
        sharing="per_tap",
        dtype=dtype,
        initializer=initializer,
    )
    return nnx.List([nnx.Param(w) for w in params])


def _check_features(features: ArrayLike, num_descriptors: int) -> jax.Array:
    features = jnp.asarray(features)
    if features.ndim != 3 or features.shape[2] != num_descriptors:
        raise ValueError(
            "features must have shape (batch, time, num_descriptors) with "
            f"num_descriptors={num_descriptors}, got {features.shape}."
        )
    return features


def _layer(weights: jax.Array, values: jax.Array, dilation: int, g) -> jax.Array:
    """One causal size-2 layer: ``g(W[0] · h[t - d], W[1] · h[t])`` at every ``t``."""
    earlier = jnp.einsum("oi,bti->bto", weights[0], values)
    now = jnp.einsum("oi,bti->bto", weights[1], values)
    time = values.shape[1]
    earlier = jnp.pad(earlier, ((0, 0), (dilation, 0), (0, 0)))[:, :time]
    return g.binary(earlier, now)


def _output(weights: jax.Array, values: jax.Array) -> jax.Array:
    return jnp.einsum("oi,bti->bto", weights[0], values)


class DilatedConvNet(nnx.Module):
    """A causal dilated network with size-2 kernels, outputs at every step.

    Attributes:
      dilations: the dilation of each layer, first layer first.
      tree: the mode tree of one step's receptive field,
        ``ModeTree.dilated(2^L, dilations)``.
      weights: ``L + 1`` parameters in the ``"per_tap"`` layout of
        :func:`~jaxconvac.init_decomposition`: ``(2, r_l, r_{l-1})`` below the
        root (``r_{-1} = M``), ``(1, Y, r_{L-1})`` for the output.
      g: the generalized product combining the two taps.

    Examples:
      >>> net = DilatedConvNet((1, 2, 4), num_descriptors=3, widths=(4, 4, 4),
      ...                      num_outputs=2, rngs=nnx.Rngs(0))
      >>> net(jnp.ones((5, 11, 3))).shape
      (5, 11, 2)
    """

    def __init__(
        self,
        dilations: Sequence[int],
        *,
        num_descriptors: int,
        widths: Sequence[int],
        num_outputs: int,
        g: str | GFunction | GeneralizedProduct = "relu_of_sum",
        initializer: Initializer | None = None,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        """Makes the network with random weights.

        Args:
          dilations: a permutation of ``1, 2, …, 2^(L-1)``, one per layer.
          num_descriptors: ``M``, the size of each input vector.
          widths: ``(r_0, …, r_{L-1})``, the channels of layers ``1 … L``.
          num_outputs: ``Y``.
          g: ``"relu_of_sum"`` (ReLU network), ``"product"`` (ConvAC), another
            built-in name or a callable ``g(a, b)``.
          initializer: ``init(key, shape, dtype)``; standard normal by default.
          dtype: the weights' dtype.
          rngs: ``rngs.params`` draws the weights.

        Raises:
          ValueError: for dilations that are not a permutation of the powers of
            two below ``2^L``, or widths that do not give one per layer.
          TypeError: for a non-integer dilation or a bad ``g``.
        """
        self.tree = _dilated_tree(dilations)
        self.dilations = tuple(int(d) for d in dilations)
        self.g = resolve_operator(g)
        self.weights = _init_stack(
            self.tree,
            num_descriptors,
            widths,
            num_outputs,
            initializer,
            dtype,
            rngs.params(),
        )

    @property
    def num_descriptors(self) -> int:
        """``M``."""
        return self.weights[0].shape[2]

    def decomposition_params(self) -> tuple[jax.Array, ...]:
        """``(W_0, …, W_L)`` for :func:`~jaxconvac.evaluate` over :attr:`tree`."""
        return tuple(w[...] for w in self.weights)

    def __call__(self, features: ArrayLike) -> jax.Array:
        """Outputs at every time step.

        Args:
          features: ``F`` of shape ``(batch, time, num_descriptors)``.

        Returns:
          ``out`` of shape ``(batch, time, num_outputs)``; steps
          ``t ≥ 2^L - 1`` see a full receptive field.

        Raises:
          ValueError: if ``features`` does not have that shape.
        """
        values = _check_features(features, self.num_descriptors)
        params = self.decomposition_params()
        for level, dilation in enumerate(self.dilations):
            values = _layer(params[level], values, dilation, self.g)
        return _output(params[-1], values)


class MixedDilatedConvNet(nnx.Module):
    """Two dilated stacks exchanging half their channels at chosen layers.

    After each layer ``l`` in ``mix_layers`` the first ``r_{l-1}/2`` channels
    of ``h_l`` and ``h̄_l`` swap places (at every time step); the outputs of
    the two stacks are added. With no mixed layers it is the sum of two
    separate :class:`DilatedConvNet`.

    Attributes:
      dilations, dilations_bar: the dilations of the two stacks.
      mix_layers: the layers (``1 … L-1``) after which channels are exchanged.
      tree, tree_bar: the trees of one step's receptive field.
      weights, weights_bar: each stack's parameters (``"per_tap"`` layout).
      g: the generalized product of both stacks.

    Examples:
      >>> net = MixedDilatedConvNet((1, 2, 4, 8), (2, 1, 8, 4), mix_layers=(2,),
      ...     num_descriptors=3, widths=(4, 4, 4, 4), num_outputs=2,
      ...     rngs=nnx.Rngs(0))
      >>> net(jnp.ones((5, 16, 3))).shape
      (5, 16, 2)
      >>> len(net.mixed_trees().mixture_nodes)
      4
    """

    def __init__(
        self,
        dilations: Sequence[int],
        dilations_bar: Sequence[int],
        *,
        mix_layers: Sequence[int],
        num_descriptors: int,
        widths: Sequence[int],
        num_outputs: int,
        g: str | GFunction | GeneralizedProduct = "relu_of_sum",
        initializer: Initializer | None = None,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        """Makes the network with random weights, both stacks of ``widths``.

        Args:
          dilations: the first stack's dilations (a permutation of
            ``1, 2, …, 2^(L-1)``).
          dilations_bar: the second stack's, ``L`` as well.
          mix_layers: layers ``l`` in ``1 … L-1`` after which half the
            channels are exchanged; the first ``l`` dilations of the two stacks
            must be the same set there.
          num_descriptors: ``M``.
          widths: ``(r_0, …, r_{L-1})`` of each stack; ``r_{l-1}`` even for
            every mixed layer ``l``.
          num_outputs: ``Y``.
          g: the generalized product of both stacks.
          initializer: ``init(key, shape, dtype)``; standard normal by default.
          dtype: the weights' dtype.
          rngs: ``rngs.params`` draws the weights.

        Raises:
          ValueError: for bad dilations, stacks of different depth, a mixed
            layer out of range, listed twice or where the receptive fields
            differ, or an odd width at a mixed layer.
        """
        self.tree = _dilated_tree(dilations)
        self.tree_bar = _dilated_tree(dilations_bar)
        self.dilations = tuple(int(d) for d in dilations)
        self.dilations_bar = tuple(int(d) for d in dilations_bar)
        if len(self.dilations) != len(self.dilations_bar):
            raise ValueError(
                "both stacks need the same number of layers; got dilations "
                f"{self.dilations} and dilations_bar {self.dilations_bar}."
            )
        self.mix_layers = self._check_mix_layers(mix_layers, widths)
        self.g = resolve_operator(g)
        key, key_bar = jax.random.split(rngs.params())
        stack = (num_descriptors, widths, num_outputs, initializer, dtype)
        self.weights = _init_stack(self.tree, *stack, key)
        self.weights_bar = _init_stack(self.tree_bar, *stack, key_bar)

    def _check_mix_layers(self, mix_layers, widths) -> tuple[int, ...]:
        depth = len(self.dilations)
        layers = []
        for layer in mix_layers:
            if isinstance(layer, bool) or not isinstance(layer, int):
                raise TypeError(f"mix_layers entries must be ints, got {layer!r}.")
            if not 1 <= layer <= depth - 1:
                raise ValueError(
                    f"mix_layers entries must be hidden layers in [1, {depth - 1}] "
                    f"(layer {depth} feeds the summed outputs); got {layer}."
                )
            if layer in layers:
                raise ValueError(f"mix_layers lists layer {layer} twice.")
            ours, theirs = self.dilations[:layer], self.dilations_bar[:layer]
            if set(ours) != set(theirs):
                raise ValueError(
                    f"layer {layer} cannot be mixed: its receptive fields differ "
                    f"between the stacks (first dilations {ours} and {theirs} are "
                    "not the same set), so its nodes are not shared by both trees."
                )
            width = tuple(widths)[layer - 1] if len(widths) >= layer else None
            if isinstance(width, int) and width % 2:
                raise ValueError(
                    f"half the channels of layer {layer} are exchanged, so its "
                    f"width widths[{layer - 1}] must be even; got {width}."
                )
            layers.append(layer)
        return tuple(sorted(layers))

    @property
    def num_descriptors(self) -> int:
        """``M``."""
        return self.weights[0].shape[2]

    def mixed_trees(self) -> MixedTrees:
        """The trees of one step and the mixture nodes the mixed layers make."""
        nodes = tuple(
            node for layer in self.mix_layers for node in self.tree.nodes(layer)
        )
        return MixedTrees(self.tree, self.tree_bar, nodes)

    def decomposition_params(
        self,
    ) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]:
        """``(params, params_bar)`` for :func:`~jaxconvac.mixed.mixed_evaluate`."""
        return (
            tuple(w[...] for w in self.weights),
            tuple(w[...] for w in self.weights_bar),
        )

    def __call__(self, features: ArrayLike) -> jax.Array:
        """Outputs at every time step, shape ``(batch, time, num_outputs)``.

        Args:
          features: ``F`` of shape ``(batch, time, num_descriptors)``.

        Raises:
          ValueError: if ``features`` does not have that shape.
        """
        values = _check_features(features, self.num_descriptors)
        values_bar = values
        params, params_bar = self.decomposition_params()
        for level, (d, d_bar) in enumerate(
            zip(self.dilations, self.dilations_bar, strict=True)
        ):
            values = _layer(params[level], values, d, self.g)
            values_bar = _layer(params_bar[level], values_bar, d_bar, self.g)
            if level + 1 in self.mix_layers:
                half = values.shape[-1] // 2
                values, values_bar = (
                    jnp.concatenate([values_bar[..., :half], values[..., half:]], -1),
                    jnp.concatenate([values[..., :half], values_bar[..., half:]], -1),
                )
        return _output(params[-1], values) + _output(params_bar[-1], values_bar)


class LastStepClassifier(nnx.Module):
    """A representation layer, a (mixed) dilated network, and its last step.

    Attributes:
      representation: maps inputs ``(batch, time, …)`` to
        ``(batch, time, num_descriptors)``, e.g.
        :class:`~jaxconvac.nn.Indicator` with ``log=False``.
      network: a :class:`DilatedConvNet` or :class:`MixedDilatedConvNet`.
    """

    def __init__(self, representation: nnx.Module, network: nnx.Module):
        """Combines the two.

        Raises:
          TypeError: if ``network`` is not a dilated network.
        """
        if not isinstance(network, DilatedConvNet | MixedDilatedConvNet):
            raise TypeError(
                "network must be a DilatedConvNet or MixedDilatedConvNet, got "
                f"{type(network).__name__}."
            )
        self.representation = representation
        self.network = network

    def __call__(self, inputs: ArrayLike) -> jax.Array:
        """Scores of the last step, shape ``(batch, num_outputs)``."""
        return self.network(self.representation(inputs))[:, -1]
