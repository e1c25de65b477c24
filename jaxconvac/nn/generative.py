"""A ConvAC as a generative classifier: a tensorial mixture model (TMM).

:class:`GenerativeClassifier` joins a normalised representation
(:class:`~jaxconvac.nn.Gaussian`, :class:`~jaxconvac.nn.Categorical` or
:class:`~jaxconvac.nn.Indicator`, in log space), a log-space
:class:`~jaxconvac.nn.ConvAC` with normalised weights and a class prior, and
returns ``log p(x_observed, y)``. The scores come from the ConvAC's forward pass
(:func:`~jaxconvac.evaluate`); :mod:`jaxconvac.generative` holds the pure
functions (marginalisation, ancestral sampling) it uses.

Missing elements are given by a boolean ``mask`` (``True`` = observed), or, for
floating inputs and only when asked (``nan_as_missing=True``), by NaN. NaN in an
element that counts as observed is an error outside ``jit``; under ``jit`` it
gives NaN scores.
"""

from __future__ import annotations

import functools
import itertools  # noqa: F401 (used by the doctests)
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.typing import ArrayLike

import jaxconvac as jc  # noqa: F401 (used by the doctests)
from jaxconvac import generative
from jaxconvac.nn.convac import ConvAC
from jaxconvac.nn.representations import (
    Categorical,
    Gaussian,
    Indicator,
    check_descriptor_count,
)

NORMALISED_REPRESENTATIONS = (Gaussian, Categorical, Indicator)


class GenerativeClassifier(nnx.Module):
    """Normalised descriptors, a normalised log-space ConvAC and a class prior.

    For every class ``y`` the ConvAC's score is ``log p(x | y)``, a normalised
    density (a tensorial mixture model), and the module returns
    ``log p(x, y) = log P(y) + log p(x | y)``; with missing elements it returns
    ``log p(x_observed, y)``, exactly, in the same forward pass. The class
    posterior is the softmax of the scores, so the module also serves as a
    classifier (``argmax`` of the scores); with every element missing the
    posterior is the prior.

    Attributes:
      representation: the normalised descriptors (log space).
      convac: the log-space ConvAC, ``normalize=True``.
      prior_logits: the prior's logits, a parameter of shape
        ``(num_outputs,)``, or ``None`` for a fixed uniform prior.
      nan_as_missing: whether NaN in a floating input marks a missing element.

    Examples:
      >>> tree = jc.ModeTree.balanced(4)
      >>> model = GenerativeClassifier(
      ...     Categorical(3, 2, rngs=nnx.Rngs(0)),
      ...     ConvAC(tree, num_descriptors=3, widths=(4, 4), num_outputs=2,
      ...            sharing="none", rngs=nnx.Rngs(1)))
      >>> every_input = jnp.array(list(itertools.product(range(2), repeat=4)))
      >>> float(jnp.exp(model(every_input)).sum().round(5))  # Σ_x Σ_y p(x, y)
      1.0
    """

    def __init__(
        self,
        representation: nnx.Module,
        convac: ConvAC,
        *,
        learn_prior: bool = True,
        nan_as_missing: bool = False,
    ):
        """Combines the parts.

        Args:
          representation: a :class:`~jaxconvac.nn.Gaussian`,
            :class:`~jaxconvac.nn.Categorical` or
            :class:`~jaxconvac.nn.Indicator` with ``log=True``.
          convac: a :class:`~jaxconvac.nn.ConvAC` with ``space="log"`` and
            ``normalize=True``.
          learn_prior: learn ``P(y)`` (initially uniform) or keep it uniform.
          nan_as_missing: treat an element of a floating input holding any NaN
            as missing. Set as well when the representation is a
            ``Gaussian(marginalize_nan=True)``.

        Raises:
          TypeError: for a representation that is not a normalised family
            (Gaussian, Categorical, Indicator) or a convac that is not a
            ``ConvAC``.
          ValueError: for a linear-space or unnormalised part, or sizes that do
            not match.
        """
        if not isinstance(representation, NORMALISED_REPRESENTATIONS):
            raise TypeError(
                "representation must be a normalised density family (Gaussian, "
                f"Categorical or Indicator), got {type(representation).__name__}."
            )
        if not isinstance(convac, ConvAC):
            raise TypeError(f"convac must be a ConvAC, got {type(convac).__name__}.")
        if convac.space != "log" or not convac.normalize:
            raise ValueError(
                "a generative ConvAC needs space='log' and normalize=True (every "
                f"convolution a mixture), got space={convac.space!r}, "
                f"normalize={convac.normalize}."
            )
        if not representation.log:
            raise ValueError("the representation must have log=True.")
        check_descriptor_count(representation, convac.num_descriptors, "ConvAC")
        self.representation = representation
        self.convac = convac
        dtype = convac.weights[-1].dtype
        self.prior_logits = (
            nnx.Param(jnp.zeros((convac.num_outputs,), dtype)) if learn_prior else None
        )
        self.nan_as_missing = bool(nan_as_missing) or bool(
            getattr(representation, "marginalize_nan", False)
        )

    @property
    def num_modes(self) -> int:
        """``N``, the elements of one input."""
        return self.convac.tree.num_modes

    @property
    def num_outputs(self) -> int:
        """``Y``, the number of classes."""
        return self.convac.num_outputs

    def log_prior(self) -> jax.Array:
        """``log P(y)`` of shape ``(num_outputs,)``."""
        if self.prior_logits is None:
            dtype = self.convac.weights[-1].dtype
            return jnp.full((self.num_outputs,), -np.log(self.num_outputs), dtype)
        return jax.nn.log_softmax(self.prior_logits[...])

    def observed(self, inputs: ArrayLike, mask: ArrayLike | None = None):
        """The checked inputs and the mask of observed elements.

        Args:
          inputs: ``(batch, num_modes, num_features)`` floats for a Gaussian,
            ``(batch, num_modes)`` integers otherwise.
          mask: boolean ``(batch, num_modes)``, ``True`` = observed, or
            ``None`` (all observed, except NaN elements with
            ``nan_as_missing``).

        Returns:
          ``(inputs, mask)``: the inputs with every missing element replaced by
          a finite stand-in (0), and the boolean mask.

        Raises:
          TypeError: for a mask that is not boolean.
          ValueError: for a mask of the wrong shape, inputs with fewer than 2
            axes or another number of elements, or (outside ``jit``) NaN in an
            element counted as observed.
        """
        inputs = jnp.asarray(inputs)
        if inputs.ndim < 2 or inputs.shape[1] != self.num_modes:
            raise ValueError(
                f"inputs must have shape (batch, num_modes = {self.num_modes}, …), "
                f"got {inputs.shape}."
            )
        shape = inputs.shape[:2]
        mask = (
            jnp.ones(shape, bool)
            if mask is None
            else generative.check_mask(mask, shape, name="mask")
        )
        if jnp.issubdtype(inputs.dtype, jnp.floating):
            nan = jnp.isnan(inputs).reshape(*shape, -1).any(axis=-1)
            if self.nan_as_missing:
                mask = mask & ~nan
            else:
                _refuse_observed_nan(nan, mask)
        stand_in = mask.reshape(*shape, *(1,) * (inputs.ndim - 2))
        return jnp.where(stand_in, inputs, jnp.zeros((), inputs.dtype)), mask

    def __call__(self, inputs: ArrayLike, mask: ArrayLike | None = None):
        """``log p(x_observed, y)`` for a batch.

        Args:
          inputs: as :meth:`observed` takes them.
          mask: boolean ``(batch, num_modes)``, ``True`` = observed.

        Returns:
          Shape ``(batch, num_outputs)``; the row of an example with nothing
          observed is ``log P(y)``.

        Raises:
          TypeError, ValueError: as :meth:`observed` says.
        """
        raw = jnp.asarray(inputs)
        inputs, mask = self.observed(raw, mask)
        log_features = generative.marginalize(self.representation(inputs), mask)
        scores = self.convac(log_features) + self.log_prior()[None]
        if jnp.issubdtype(raw.dtype, jnp.floating):
            # Under jit, NaN in an observed element cannot raise: say NaN.
            nan = jnp.isnan(raw).reshape(*mask.shape, -1).any(axis=-1)
            scores = jnp.where(jnp.any(nan & mask, axis=1)[:, None], jnp.nan, scores)
        return scores

    def log_likelihood(self, inputs: ArrayLike, mask: ArrayLike | None = None):
        """``log p(x_observed)`` of shape ``(batch,)``: the scores' logsumexp."""
        return jax.nn.logsumexp(self(inputs, mask), axis=-1)

    def log_posterior(self, inputs: ArrayLike, mask: ArrayLike | None = None):
        """``log P(y | x_observed)`` of shape ``(batch, num_outputs)``."""
        return jax.nn.log_softmax(self(inputs, mask), axis=-1)

    def sample(
        self,
        key: jax.Array,
        labels: ArrayLike | None = None,
        *,
        num_samples: int | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Ancestral samples ``(x, y)``: a class, then latents down the tree.

        Args:
          key: a ``jax.random.key``.
          labels: classes of shape ``(batch,)`` to sample ``x | y`` for; drawn
            from the prior when ``None``.
          num_samples: the batch size when ``labels`` is ``None``.

        Returns:
          ``(inputs, labels)``: inputs as the representation takes them
          (``(batch, num_modes, num_features)`` for a Gaussian, integers
          ``(batch, num_modes)`` otherwise) and the labels ``(batch,)``.

        Raises:
          ValueError: for neither or both of ``labels`` and ``num_samples``, or
            labels that are not integer classes of shape ``(batch,)``.
        """
        label_key, latent_key, value_key = jax.random.split(key, 3)
        if (labels is None) == (num_samples is None):
            raise ValueError("pass exactly one of labels and num_samples.")
        if labels is None:
            labels = jax.random.categorical(
                label_key, self.log_prior(), shape=(num_samples,)
            )
        labels = jnp.asarray(labels)
        if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(
                f"labels must be integer classes of shape (batch,), got "
                f"{labels.dtype}{labels.shape}."
            )
        tree = self.convac.tree
        params = generative.check_normalized(self.convac.decomposition_params(), tree)
        keys = jax.random.split(latent_key, labels.shape[0])
        components = _sample_batch(keys, params, labels, tree=tree)
        return self.representation.sample(value_key, components), labels


@functools.partial(jax.jit, static_argnames="tree")
def _sample_batch(keys, params, labels, *, tree):
    def draw(key, label):
        return generative.sample_components(key, params, tree, label)

    return jax.vmap(draw)(keys, labels)


def _refuse_observed_nan(nan: jax.Array, mask: jax.Array) -> None:
    if isinstance(nan, jax.core.Tracer) or isinstance(mask, jax.core.Tracer):
        return
    bad = np.argwhere(np.asarray(nan & mask))
    if bad.size:
        example, position = (int(i) for i in bad[0])
        raise ValueError(
            f"inputs hold NaN at example {example}, position {position}, which "
            "counts as observed; mark it missing with mask=... (False there) or "
            "build the model with nan_as_missing=True."
        )


def joint_loss(
    generative_weight: float = 1.0,
) -> Callable[[nnx.Module, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """Cross-entropy plus a weighted generative negative log-likelihood.

    ``loss = mean_b [-log P(y_b | x_b)] + w · mean_b [-log p(x_b, y_b)] / N``,
    the second term per element (``N = num_modes``) so that ``w`` does not
    depend on the input size. ``w = 0`` is purely discriminative training of
    the same model. Missing elements (NaN, with ``nan_as_missing``) are
    marginalised in both terms.

    Args:
      generative_weight: ``w``, non-negative.

    Returns:
      ``loss_fn(model, inputs, labels) -> (loss, scores)`` for
      :func:`jaxconvac.training.train`, with ``model`` a
      :class:`GenerativeClassifier` and ``scores = log p(x, y)``.

    Raises:
      ValueError: for a negative or non-finite weight.
    """
    if not (np.isfinite(generative_weight) and generative_weight >= 0):
        raise ValueError(
            f"generative_weight must be finite and non-negative, got "
            f"{generative_weight!r}."
        )

    def loss_fn(model, inputs, labels):
        scores = model(inputs)
        cross_entropy = optax.softmax_cross_entropy_with_integer_labels(scores, labels)
        joint = jnp.take_along_axis(scores, labels[:, None], axis=1)[:, 0]
        nll = -jnp.mean(joint) / model.num_modes
        return jnp.mean(cross_entropy) + generative_weight * nll, scores

    return loss_fn


def drop_elements(
    missing_rate: float,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """A training augmentation that marks elements missing (NaN) at random.

    For a :class:`GenerativeClassifier` with ``nan_as_missing=True`` on floating
    inputs; pass it as ``augment`` to :func:`jaxconvac.training.train`.

    Args:
      missing_rate: the probability that an element is missing, in ``[0, 1]``.

    Returns:
      ``augment(key, inputs) -> inputs`` with inputs
      ``(batch, num_modes, …)``: all features of a dropped element become NaN.

    Raises:
      ValueError: for a rate outside ``[0, 1]``.
    """
    if not 0.0 <= missing_rate <= 1.0:
        raise ValueError(f"missing_rate must lie in [0, 1], got {missing_rate!r}.")

    def augment(key: jax.Array, inputs: jax.Array) -> jax.Array:
        if not jnp.issubdtype(inputs.dtype, jnp.floating):
            raise TypeError(
                f"drop_elements marks missing elements with NaN and needs "
                f"floating inputs, got {inputs.dtype}."
            )
        shape = inputs.shape[:2]
        observed = generative.random_mask(key, shape, missing_rate)
        observed = observed.reshape(*shape, *(1,) * (inputs.ndim - 2))
        return jnp.where(observed, inputs, jnp.nan)

    return augment
