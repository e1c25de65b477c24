"""Generalized convolutional networks: ReLU, max, average and product pooling.

Cohen and Shashua (ICML 2016) read a convolutional network with activation
``σ`` and pooling ``P`` as a tree decomposition whose products are replaced by
``g(a, b) = P(σ(a), σ(b))`` (SPEC §2, §4). The network, one example of ``N``
local elements ``x_0 … x_{N-1}``:

1. representation: ``F[i, d] = f_d(x_i)``, ``M`` descriptors, e.g.
   ``relu(x_i · kernel[:, d] + bias[d])`` (:class:`AffineReLU`) or one-hot
   (:class:`~jaxconvac.nn.Indicator` with ``log=False``);
2. per level ``l = 0 … L-1``: a 1×1 convolution ``c = W_l · (input)``, the
   activation ``σ`` and the pooling ``P`` over the tree's windows, channel by
   channel;
3. a linear output ``h = W_L · (pooled root)``, no activation.

Its tree decomposition (SPEC §4) has leaves ``c^i = W^i · F[i, :]`` and
interior nodes ``c^ν = W^ν · g-pool(children)``. The two coincide with this
bookkeeping, which :class:`GeneralizedConvNet` follows:

* the representation's non-linearity is inside ``F``: the leaf weights ``W_0``
  act on descriptors, after the representation's ReLU, and ``g`` never sees it;
* the activation after convolution ``l`` is *not* applied at level ``l``: it
  is the ``σ`` inside ``g`` when level ``l + 1`` pools the outputs of level
  ``l``. Folding ``g`` over a window gives ``P`` of ``σ`` of every entry,
  because ``σ`` leaves ``P``'s output unchanged (ReLU of a max, sum or product
  of non-negative numbers is itself);
* the root pools with ``g`` and then applies ``W_L``: the output layer is
  linear, as the decomposition's root is;
* average pooling is sum pooling times ``1 / window``, a linear factor moved
  into the next level's weights (:func:`scale_for_average_pooling`), so its
  ``g`` is ``relu_sum``;
* convolutions have no bias (the decomposition has none); the representation
  may.

So the network's scores are :func:`~jaxconvac.evaluate` of
:meth:`GeneralizedConvNet.decomposition_params` with ``g``, and its grid tensor
over template points ``x^(0) … x^(K-1)`` is :func:`~jaxconvac.grid_tensor` with
``F[k, d] = f_d(x^(k))``: one code path for the network and its tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike

from jaxconvac.decompositions import (
    Initializer,
    check_params,
    evaluate,
    grid_tensor,
)
from jaxconvac.mode_trees import ModeTree
from jaxconvac.nn.convac import DecompositionModule
from jaxconvac.nn.representations import check_descriptor_count
from jaxconvac.tensor_products import ACTIVATIONS, GeneralizedProduct, operator_for

NETWORK_POOLINGS = ("product", "max", "average", "sum")


def network_operator(activation: str, pooling: str) -> GeneralizedProduct:
    """The ``g`` of a network's (activation, pooling), average pooling included.

    Args:
      activation: ``"linear"`` or ``"relu"``.
      pooling: ``"product"``, ``"max"``, ``"average"`` or ``"sum"``;
        ``"average"`` gets the ``g`` of ``"sum"`` (its ``1 / window`` belongs to
        the weights, see :func:`scale_for_average_pooling`).

    Returns:
      The operator, e.g. ``relu_max`` for ``("relu", "max")``.

    Raises:
      ValueError: for an unknown ``activation`` or ``pooling``.
    """
    if pooling not in NETWORK_POOLINGS:
        raise ValueError(f"pooling must be one of {NETWORK_POOLINGS}, got {pooling!r}.")
    return operator_for(activation, "sum" if pooling == "average" else pooling)


def scale_for_average_pooling(
    params: Sequence[ArrayLike], tree: ModeTree
) -> tuple[jax.Array, ...]:
    """Weights under which sum pooling computes average pooling.

    Average pooling of a window of ``k`` is ``1 / k`` times sum pooling, and
    the next convolution is linear, so ``W_l · mean = (W_l / k) · sum``:
    level ``l ≥ 1`` is divided by the window of the level it pools,
    ``tree.windows[l - 1]``; ``W_0`` is unchanged.

    Args:
      params: ``(W_0, …, W_L)`` in the layout of
        :func:`~jaxconvac.init_decomposition`.
      tree: the mode tree.

    Returns:
      The scaled ``(W_0, …, W_L)``, same shapes.

    Raises:
      ValueError: if ``params`` does not fit ``tree``.
    """
    params = check_params(params, tree)
    return (params[0],) + tuple(
        weights / window
        for weights, window in zip(params[1:], tree.windows, strict=True)
    )


class GeneralizedConvNet(DecompositionModule):
    """A convolutional network with any activation and pooling over a mode tree.

    Per level a 1×1 convolution (weights shared as ``sharing`` says), the
    activation and the pooling; then a linear output. ``("relu", "max")`` and
    ``("relu", "average")`` are the convolutional rectifier networks of ICML
    2016, ``("linear", "product")`` the ConvAC. It takes the representation
    matrices ``F``; :class:`GeneralizedClassifier` puts a representation layer
    in front. The module docstring derives why its forward pass is
    :func:`~jaxconvac.evaluate` with ``g = P(σ(a), σ(b))``.

    Attributes:
      tree: the mode tree, ``N`` leaves, depth ``L``.
      weights: ``L + 1`` parameters, ``weights[l]`` of shape
        ``(groups, r_l, r_{l-1})`` with ``r_{-1} = M`` and ``r_L = Y``: the
        layout of :func:`~jaxconvac.init_decomposition`.
      activation: ``"linear"`` or ``"relu"``.
      pooling: ``"product"``, ``"max"``, ``"average"`` or ``"sum"``.
      sharing: ``"full"`` (1×1 convolutions), ``"per_tap"`` or ``"none"``.
      space: always ``"linear"`` (features are descriptors, not their logs).
    """

    space = "linear"

    def __init__(
        self,
        tree: ModeTree,
        *,
        num_descriptors: int,
        widths: Sequence[int],
        num_outputs: int,
        activation: str = "relu",
        pooling: str = "max",
        sharing: str = "full",
        initializer: Initializer | None = None,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        """Makes the module with random weights.

        Args:
          tree: the mode tree.
          num_descriptors: ``M``, the descriptors per position.
          widths: ``(r_0, …, r_{L-1})``, one width per level below the root.
          num_outputs: ``Y``, the number of scores.
          activation: ``σ``, ``"relu"`` or ``"linear"``.
          pooling: ``P``, ``"max"``, ``"average"``, ``"sum"`` or ``"product"``.
          sharing: ``"full"`` (a 1×1 convolution per level), ``"per_tap"`` or
            ``"none"`` (locally connected).
          initializer: ``init(key, shape, dtype)`` for every weight array;
            standard normal by default.
          dtype: the weights' dtype.
          rngs: the random streams; ``rngs.params`` draws the weights.

        Raises:
          ValueError: for an unknown ``activation``, ``pooling`` or
            ``sharing``, widths that do not fit the tree, non-positive sizes.
          TypeError: if ``tree`` is not a ``ModeTree``.
        """
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {ACTIVATIONS}, got {activation!r}."
            )
        network_operator(activation, pooling)
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
        self.activation = activation
        self.pooling = pooling

    @property
    def g(self) -> GeneralizedProduct:
        """The generalized product ``g(a, b) = P(σ(a), σ(b))`` of the network."""
        return network_operator(self.activation, self.pooling)

    def decomposition_params(self) -> tuple[jax.Array, ...]:
        """The weights :func:`~jaxconvac.evaluate` uses with :attr:`g`.

        Returns:
          ``(W_0, …, W_L)``, ``W_l`` of shape ``(groups, r_l, r_{l-1})``: the
          stored weights, divided by the pooled window above level 0 when
          ``pooling="average"`` (:func:`scale_for_average_pooling`).
        """
        params = tuple(w[...] for w in self.weights)
        if self.pooling == "average":
            return scale_for_average_pooling(params, self.tree)
        return params

    def __call__(self, features: ArrayLike) -> jax.Array:
        """Scores of a batch of representation matrices.

        Args:
          features: ``F`` of shape ``(batch, num_modes, num_descriptors)``.

        Returns:
          The scores ``h`` of shape ``(batch, num_outputs)``.

        Raises:
          ValueError: if ``features`` does not have that shape.
        """
        features = jnp.asarray(features)
        expected = (self.tree.num_modes, self.num_descriptors)
        if features.ndim != 3 or features.shape[1:] != expected:
            raise ValueError(
                "features must have shape (batch, num_modes, num_descriptors) = "
                f"(batch, {expected[0]}, {expected[1]}) for this network, got "
                f"{features.shape}."
            )
        params, g = self.decomposition_params(), self.g

        def score(one: jax.Array) -> jax.Array:
            return evaluate(params, self.tree, one, g=g)

        return jax.vmap(score)(features)

    def grid_tensor(
        self, template_features: ArrayLike, *, max_entries: int = 2**24
    ) -> jax.Array:
        """The network's scores on every combination of template points.

        Args:
          template_features: ``F[k, d] = f_d(x^(k))`` of shape
            ``(num_templates, num_descriptors)``.
          max_entries: the largest ``Y · K^N`` that may be formed.

        Returns:
          ``G`` of shape ``(num_outputs, K, …, K)``, ``N`` modes:
          :func:`~jaxconvac.grid_tensor` of :meth:`decomposition_params`.

        Raises:
          ValueError: for templates of the wrong shape or a tensor above
            ``max_entries``.
        """
        return grid_tensor(
            self.decomposition_params(),
            self.tree,
            template_features,
            g=self.g,
            max_entries=max_entries,
        )


class AffineReLU(nnx.Module):
    """Descriptors ``f_d(x) = relu(x · kernel[:, d] + bias[d])``.

    The representation layer of the convolutional rectifier networks of ICML
    2016: an affine map of each local element followed by a ReLU, ``M``
    output channels.

    Attributes:
      kernel: a parameter of shape ``(num_features, num_descriptors)``.
      bias: a parameter of shape ``(num_descriptors,)``.
    """

    def __init__(
        self,
        num_features: int,
        num_descriptors: int,
        *,
        kernel_init: nnx.Initializer | None = None,
        bias_init: nnx.Initializer | None = None,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        """Makes the layer.

        Args:
          num_features: ``s``, the dimension of each local element.
          num_descriptors: ``M``, the number of descriptors.
          kernel_init: ``init(key, shape, dtype)`` for ``kernel``; LeCun
            normal by default.
          bias_init: ``init(key, shape, dtype)`` for ``bias``; standard normal
            by default, so that the descriptors are not all positively
            homogeneous.
          dtype: the parameters' dtype.
          rngs: the random streams; ``rngs.params`` draws the initial values.

        Raises:
          ValueError: for non-positive sizes.
        """
        for name, value in (
            ("num_features", num_features),
            ("num_descriptors", num_descriptors),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        kernel_init = kernel_init or nnx.initializers.lecun_normal()
        bias_init = bias_init or nnx.initializers.normal(1.0)
        self.kernel = nnx.Param(
            kernel_init(rngs.params(), (num_features, num_descriptors), dtype)
        )
        self.bias = nnx.Param(bias_init(rngs.params(), (num_descriptors,), dtype))

    @property
    def num_features(self) -> int:
        """``s``, the dimension of each local element."""
        return self.kernel.shape[0]

    @property
    def num_descriptors(self) -> int:
        """``M``, the number of descriptors."""
        return self.kernel.shape[1]

    def __call__(self, inputs: ArrayLike) -> jax.Array:
        """Descriptors of every element.

        Args:
          inputs: ``x`` of shape ``(batch, num_modes, num_features)``.

        Returns:
          ``F`` of shape ``(batch, num_modes, num_descriptors)``, non-negative.

        Raises:
          ValueError: if ``inputs`` does not have that shape.
        """
        inputs = jnp.asarray(inputs)
        if inputs.ndim != 3 or inputs.shape[2] != self.num_features:
            raise ValueError(
                "inputs must have shape (batch, num_modes, num_features) with "
                f"num_features={self.num_features}, got {inputs.shape}."
            )
        return jax.nn.relu(inputs @ self.kernel[...] + self.bias[...][None, None])


class GeneralizedClassifier(nnx.Module):
    """A representation layer followed by a :class:`GeneralizedConvNet`.

    Attributes:
      representation: maps inputs to ``F`` of shape
        ``(batch, num_modes, num_descriptors)`` (linear descriptors, not logs).
      network: the network on top.
    """

    def __init__(self, representation: nnx.Module, network: GeneralizedConvNet):
        """Combines the two.

        Args:
          representation: e.g. :class:`AffineReLU`, or
            :class:`~jaxconvac.nn.Indicator` with ``log=False``.
          network: a :class:`GeneralizedConvNet`.

        Raises:
          TypeError: if ``network`` is not a :class:`GeneralizedConvNet`.
          ValueError: if the representation returns log-descriptors or a
            number of descriptors the network does not take.
        """
        if not isinstance(network, GeneralizedConvNet):
            raise TypeError(
                f"network must be a GeneralizedConvNet, got {type(network).__name__}."
            )
        if getattr(representation, "log", False):
            raise ValueError(
                "the representation returns log-descriptors (log=True) but a "
                "GeneralizedConvNet takes descriptors; make it with log=False."
            )
        check_descriptor_count(representation, network.num_descriptors, "network")
        self.representation = representation
        self.network = network

    def __call__(self, inputs: ArrayLike) -> jax.Array:
        """Scores of a batch of inputs, shape ``(batch, num_outputs)``."""
        return self.network(self.representation(inputs))

    def template_features(self, templates: ArrayLike) -> jax.Array:
        """``F[k, d] = f_d(x^(k))``: the representation of template points.

        Args:
          templates: ``K`` template points ``x^(k)``, one local element each:
            shape ``(num_templates, num_features)`` for a representation with
            ``num_features`` (:class:`AffineReLU`,
            :class:`~jaxconvac.nn.Gaussian`), ``(num_templates,)`` integers for
            an :class:`~jaxconvac.nn.Indicator`.

        Returns:
          ``F`` of shape ``(num_templates, num_descriptors)``.

        Raises:
          ValueError: if ``templates`` does not have that shape.
        """
        templates = jnp.asarray(templates)
        num_features = getattr(self.representation, "num_features", None)
        if num_features is None:
            expected, ok = "(num_templates,)", templates.ndim == 1
        else:
            expected = f"(num_templates, num_features={num_features})"
            ok = templates.ndim == 2 and templates.shape[1] == num_features
        if not ok or templates.shape[0] < 1:
            raise ValueError(
                f"templates must have shape {expected}, one local element per "
                f"template point, got {templates.shape}."
            )
        return self.representation(templates[None])[0]

    def grid_tensor(
        self, templates: ArrayLike, *, max_entries: int = 2**24
    ) -> jax.Array:
        """The classifier's scores on every combination of template points.

        ``G^y[k_0 … k_{N-1}] = h_y(x^(k_0), …, x^(k_{N-1}))`` (ICML 2016 eq. 3),
        computed from the decomposition, never by running the network
        ``K^N`` times.

        Args:
          templates: as for :meth:`template_features`.
          max_entries: the largest ``Y · K^N`` that may be formed.

        Returns:
          ``G`` of shape ``(num_outputs, K, …, K)``, ``N`` modes.

        Raises:
          ValueError: for templates of the wrong shape or a tensor above
            ``max_entries``.
        """
        return self.network.grid_tensor(
            self.template_features(templates), max_entries=max_entries
        )
