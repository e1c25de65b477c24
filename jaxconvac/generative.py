"""Tensorial mixture models: a ConvAC as a tractable generative model.

A log-space tree decomposition whose every weight matrix is normalised over its
inputs (each row of ``exp W`` sums to 1: every convolution is a mixture of its
input channels) and whose descriptors are normalised densities
(``∫ f_d(x) dx = 1``, or ``Σ_x f_d(x) = 1`` for discrete values) computes, for
every class ``y``, a normalised density ``p(x | y)``: a leaf's channel is a
mixture of densities of one element, a product pooling of children over
disjoint elements is a density of their union, and a mixture of densities is
one. With a class prior ``P(y)`` the network gives ``log p(x, y)`` (Sharir,
Tamari, Cohen and Shashua, "Tensorial Mixture Models", 2017).

Two consequences, both exact and both one forward pass:

* *Marginalisation.* Integrating an element out of a product of densities
  replaces its density by 1, so ``log p(x_observed, y)`` is the same network
  with the log-descriptors of every missing element set to ``0`` (``log 1``).
  With every element missing the result is ``log P(y)``.
* *Ancestral sampling.* Reading the mixtures top-down, each node picks one
  input channel of the matrix of the channel chosen above it, every child of a
  pooling node inherits its parent's choice, and each leaf ends with one
  descriptor index: a draw of the latent assignment; an element is then drawn
  from that descriptor's density.

These functions take one example (batch with ``jax.vmap``); the Flax module
:class:`~jaxconvac.nn.generative.GenerativeClassifier` wraps them with a
representation layer and a learned prior. Masks are boolean with ``True``
meaning *observed*.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxconvac.decompositions import (
    Params,
    check_params,
    evaluate,
    init_decomposition,  # noqa: F401 (used by the doctests)
)
from jaxconvac.mode_trees import ModeTree


def normalize_log_weights(log_weights: Sequence[ArrayLike]) -> Params:
    """Normalises unnormalised log-weights into mixtures over input channels.

    Args:
      log_weights: ``(W_0, …, W_L)`` of shapes ``(groups, r_l, r_{l-1})``, any
        real values (logits).

    Returns:
      ``log_softmax`` of each over its last (input) axis: every row of
      ``exp W_l`` sums to 1.
    """
    return tuple(jax.nn.log_softmax(jnp.asarray(w), axis=-1) for w in log_weights)


def check_normalized(
    log_weights: Sequence[ArrayLike], tree: ModeTree, *, atol: float | None = None
) -> Params:
    """Validates log-weights as mixtures: ``logsumexp`` of every row is 0.

    The check runs on concrete arrays only; under ``jit`` the weights are
    returned unchecked.

    Args:
      log_weights: ``(W_0, …, W_L)`` for ``tree``.
      tree: the mode tree.
      atol: the largest ``|logsumexp(row)|`` accepted; ``1000 · eps`` of the
        weights' dtype by default (``1.2e-4`` in float32, ``2.2e-13`` in
        float64).

    Returns:
      The weights as arrays.

    Raises:
      ValueError: naming the first level whose rows are not normalised (and
        saying how to normalise them), or for shapes that do not fit ``tree``.
    """
    params = check_params(log_weights, tree)
    for level, weights in enumerate(params):
        if isinstance(weights, jax.core.Tracer):
            continue
        tolerance = atol
        if tolerance is None:
            dtype = (
                weights.dtype if jnp.issubdtype(weights.dtype, jnp.floating) else float
            )
            tolerance = 1000 * float(jnp.finfo(dtype).eps)
        # NumPy, not jnp: inside a jit trace jnp would stage even constants.
        rows = np.asarray(weights, np.float64)
        peak = rows.max(axis=-1, keepdims=True)
        peak = np.where(np.isfinite(peak), peak, 0.0)
        total = np.log(np.exp(rows - peak).sum(axis=-1)) + peak[..., 0]
        error = np.abs(total)
        if not np.all(error <= tolerance):
            raise ValueError(
                f"log_weights[{level}] is not normalised over its input axis: "
                f"max |logsumexp(row)| = {np.nanmax(error):.3g} > {tolerance:.3g}; "
                "pass normalize_log_weights(weights) (a mixture per row)."
            )
    return params


def check_mask(mask: ArrayLike, shape: tuple[int, ...], *, name: str = "mask"):
    """Validates a boolean mask of observed elements.

    Args:
      mask: ``True`` where an element is observed, ``False`` where missing.
      shape: the shape it must have.
      name: the argument's name in error messages.

    Returns:
      The mask as a boolean ``jax.Array``.

    Raises:
      TypeError: if ``mask`` is not boolean (integers are refused, so that
        ``0``/``1`` cannot be read the wrong way round).
      ValueError: if it does not have ``shape``.
    """
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise TypeError(
            f"{name} must be boolean (True = observed, False = missing), got "
            f"dtype {mask.dtype}."
        )
    if mask.shape != tuple(shape):
        raise ValueError(
            f"{name} must have shape {tuple(shape)} (one entry per element), got "
            f"{mask.shape}."
        )
    return mask


def marginalize(log_features: ArrayLike, mask: ArrayLike) -> jax.Array:
    """Sets the log-descriptors of missing elements to ``0`` (``F[i, :] = 1``).

    With normalised descriptors this integrates each missing element out of
    every term of the network. Works on one example or a batch.

    .. warning::
       The log-descriptors of missing elements are discarded, but gradients
       flow through how they were computed: compute them from finite stand-in
       values (not NaN), or the gradients become NaN.

    Args:
      log_features: ``log F`` of shape ``(..., num_modes, num_descriptors)``.
      mask: boolean of shape ``(..., num_modes)``, ``True`` = observed.

    Returns:
      ``log F`` with the rows of missing elements set to 0.

    Raises:
      TypeError, ValueError: for a mask that is not boolean of that shape.
    """
    log_features = jnp.asarray(log_features)
    mask = check_mask(mask, log_features.shape[:-1])
    return jnp.where(mask[..., None], log_features, 0.0)


def _check_log_prior(log_prior, num_outputs: int, dtype) -> jax.Array:
    if log_prior is None:
        return jnp.full((num_outputs,), -np.log(num_outputs), dtype)
    log_prior = jnp.asarray(log_prior)
    if log_prior.shape != (num_outputs,):
        raise ValueError(
            f"log_prior must have shape (num_outputs,) = ({num_outputs},), got "
            f"{log_prior.shape}."
        )
    return log_prior


def log_joint(
    log_weights: Sequence[ArrayLike],
    tree: ModeTree,
    log_features: ArrayLike,
    *,
    log_prior: ArrayLike | None = None,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """``log p(x_observed, y)`` of one example for every class ``y``.

    The network is :func:`~jaxconvac.evaluate` in log space; this adds the
    missing-element rows and the class prior.

    Args:
      log_weights: normalised log-weights ``(W_0, …, W_L)``, e.g. from
        :func:`normalize_log_weights` or
        :meth:`~jaxconvac.nn.ConvAC.decomposition_params`.
      tree: the mode tree, ``N`` leaves.
      log_features: normalised log-densities ``log F`` of shape
        ``(num_modes, num_descriptors)``.
      log_prior: ``log P(y)`` of shape ``(num_outputs,)``; uniform by default.
      mask: boolean ``(num_modes,)``, ``True`` = observed; all observed by
        default.

    Returns:
      ``log p(x_observed, y)`` of shape ``(num_outputs,)``; ``log P(y)`` when
      nothing is observed.

    Raises:
      ValueError: if the weights are not normalised (checked outside ``jit``),
        for shapes that do not fit, or a bad mask or prior.
      TypeError: for a mask that is not boolean.

    Examples:
      >>> tree = ModeTree.balanced(4)
      >>> weights = normalize_log_weights(init_decomposition(
      ...     jax.random.key(0), tree, num_descriptors=2, widths=(3, 3),
      ...     num_outputs=2))
      >>> log_features = jnp.log(jnp.full((4, 2), 0.5))
      >>> nothing = jnp.zeros(4, bool)
      >>> log_joint(weights, tree, log_features, mask=nothing).round(4)  # log P(y)
      Array([-0.6931, -0.6931], dtype=float32)
    """
    params = check_normalized(log_weights, tree)
    log_features = jnp.asarray(log_features)
    if mask is not None:
        mask = check_mask(mask, (tree.num_modes,))
        if not jnp.issubdtype(log_features.dtype, jnp.floating):
            raise TypeError(
                "with a mask, log_features must be floating log-descriptors of "
                f"shape (num_modes, num_descriptors), got dtype {log_features.dtype}."
            )
        if log_features.shape[:-1] == mask.shape:
            log_features = marginalize(log_features, mask)
    scores = evaluate(params, tree, log_features, space="log")
    return scores + _check_log_prior(log_prior, params[-1].shape[1], scores.dtype)


def sample_components(
    key: jax.Array,
    log_weights: Sequence[ArrayLike],
    tree: ModeTree,
    label: ArrayLike,
) -> jax.Array:
    """Ancestral sampling of the descriptor index of every element, given a class.

    From the root down: the root's row ``label`` picks a channel of the level
    below; every node of a level has an output channel (its parent's pick,
    shared by all children of one pooling node), and picks an input channel
    from the row of its own matrix (by its sharing mode) for that channel. The
    leaves' picks are descriptor indices. Their joint law is the tensorial
    mixture's: ``P(d | y) = A^y[d_0 … d_{N-1}]``, the normalised coefficient
    tensor.

    Args:
      key: a ``jax.random.key``.
      log_weights: normalised log-weights ``(W_0, …, W_L)``.
      tree: the mode tree.
      label: the class, a scalar integer (may be traced).

    Returns:
      Descriptor indices of shape ``(num_modes,)`` (``int32``), position order.

    Raises:
      ValueError: if the weights do not fit ``tree`` or are not normalised
        (checked outside ``jit``).
    """
    params = check_normalized(log_weights, tree)
    keys = jax.random.split(key, tree.depth + 1)
    root = params[-1][0, label]  # (r_{L-1},)
    choice = jax.random.categorical(keys[-1], root)[None]  # the root's pick
    for level in range(tree.depth - 1, -1, -1):
        # Every child of a pooling node takes its parent's pick as its output.
        outputs = jnp.repeat(choice, tree.windows[level])
        nodes = tree.num_nodes(level)
        groups = np.arange(nodes) % params[level].shape[0]
        rows = params[level][groups, outputs]  # (nodes, in)
        choice = jax.random.categorical(keys[level], rows, axis=-1).astype(jnp.int32)
    return jnp.zeros(tree.num_modes, jnp.int32).at[np.asarray(tree.order)].set(choice)


def random_mask(key: jax.Array, shape: Sequence[int], missing_rate: float):
    """Elements missing independently with probability ``missing_rate``.

    Args:
      key: a ``jax.random.key``.
      shape: the mask's shape, e.g. ``(num_examples, num_modes)``.
      missing_rate: in ``[0, 1]``.

    Returns:
      A boolean mask, ``True`` = observed.

    Raises:
      ValueError: for a rate outside ``[0, 1]``.
    """
    if not 0.0 <= missing_rate <= 1.0:
        raise ValueError(f"missing_rate must lie in [0, 1], got {missing_rate!r}.")
    return ~jax.random.bernoulli(key, missing_rate, tuple(shape))


def rectangle_mask(
    key: jax.Array,
    num_examples: int,
    height: int,
    width: int,
    *,
    rect_height: int,
    rect_width: int,
) -> jax.Array:
    """One missing rectangle per image, placed uniformly inside it.

    Args:
      key: a ``jax.random.key``.
      num_examples: the number of masks.
      height: image height.
      width: image width.
      rect_height: the rectangle's height, in ``[0, height]``.
      rect_width: the rectangle's width, in ``[0, width]``.

    Returns:
      Boolean ``(num_examples, height * width)``, ``True`` = observed; pixel
      ``(row, col)`` is entry ``row * width + col``.

    Raises:
      ValueError: for a rectangle that does not fit the image.
    """
    if not (0 <= rect_height <= height and 0 <= rect_width <= width):
        raise ValueError(
            f"the rectangle ({rect_height}, {rect_width}) must fit the image "
            f"({height}, {width})."
        )
    row_key, col_key = jax.random.split(key)
    top = jax.random.randint(row_key, (num_examples, 1, 1), 0, height - rect_height + 1)
    left = jax.random.randint(col_key, (num_examples, 1, 1), 0, width - rect_width + 1)
    rows = jnp.arange(height)[None, :, None]
    cols = jnp.arange(width)[None, None, :]
    inside = (
        (rows >= top)
        & (rows < top + rect_height)
        & (cols >= left)
        & (cols < left + rect_width)
    )
    return ~inside.reshape(num_examples, height * width)
