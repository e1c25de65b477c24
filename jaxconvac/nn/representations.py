"""Representation layers: the descriptors ``F[i, d] = f_d(x_i)`` of SPEC §1.

A representation maps a batch of inputs, one local element per position, to
the representation matrices ``F`` of shape
``(batch, num_modes, num_descriptors)`` that a :class:`~jaxconvac.nn.ConvAC`
consumes. With ``log=True`` it returns ``log F`` (log-descriptors), the input of
a log-space network.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import ArrayLike


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


def check_descriptor_count(representation: object, expected: int, taker: str) -> None:
    """Raises if a representation gives other than ``expected`` descriptors.

    The count is the representation's ``num_descriptors`` (``num_values`` for
    a one-hot :class:`Indicator`); a representation with neither is not
    checked. ``taker`` names what takes the descriptors, for the message.
    """
    size = getattr(
        representation, "num_descriptors", getattr(representation, "num_values", None)
    )
    if size is not None and size != expected:
        raise ValueError(
            f"the representation gives {size} descriptors but the {taker} "
            f"takes num_descriptors={expected}."
        )


class Indicator(nnx.Module):
    """One-hot descriptors of a discrete value: ``f_d(x) = 1[x = d]``.

    Binary pixels use ``num_values=2``, quantised audio ``256``. The layer has
    no parameters.

    Attributes:
      num_values: ``M``, the number of values (and of descriptors).
      log: whether it returns ``log F`` (``0`` for the value, ``-inf``
        elsewhere) rather than ``F``.
      dtype: the dtype of the descriptors.

    Examples:
      >>> Indicator(3, log=False)(jnp.array([[0, 2]]))
      Array([[[1., 0., 0.],
              [0., 0., 1.]]], dtype=float32)
    """

    def __init__(
        self, num_values: int, *, log: bool = True, dtype: jnp.dtype = jnp.float32
    ):
        """Makes the layer.

        Args:
          num_values: ``M``, at least 1.
          log: return log-descriptors (for a log-space network).
          dtype: the descriptors' floating dtype.

        Raises:
          ValueError: if ``num_values`` is not a positive int.
        """
        self.num_values = _check_positive_int("num_values", num_values)
        self.log = bool(log)
        self.dtype = dtype

    def __call__(self, inputs: ArrayLike) -> jax.Array:
        """One-hot (log-)descriptors of integer inputs.

        Args:
          inputs: integers in ``[0, num_values)`` of shape
            ``(batch, num_modes)``. A value outside that range gets an all-zero
            row of ``F`` (all ``-inf`` in log space); out-of-range values are not
            detected under ``jit``.

        Returns:
          ``F`` (or ``log F``) of shape ``(batch, num_modes, num_values)``.

        Raises:
          ValueError: if ``inputs`` is not 2-D.
          TypeError: if ``inputs`` is not of an integer dtype.
        """
        inputs = jnp.asarray(inputs)
        if inputs.ndim != 2:
            raise ValueError(
                f"inputs must have shape (batch, num_modes), got {inputs.shape}."
            )
        if not jnp.issubdtype(inputs.dtype, jnp.integer):
            raise TypeError(
                f"inputs must be integers in [0, {self.num_values}), got dtype "
                f"{inputs.dtype}."
            )
        one_hot = jax.nn.one_hot(inputs, self.num_values, dtype=self.dtype)
        if self.log:
            return jnp.where(one_hot > 0, 0.0, -jnp.inf).astype(self.dtype)
        return one_hot

    def sample(self, key: jax.Array, components: ArrayLike) -> jax.Array:
        """Values drawn from descriptors ``components``: the indices themselves.

        Args:
          key: unused (a one-hot descriptor is a point mass); kept so that every
            representation samples alike.
          components: descriptor indices of shape ``(batch, num_modes)``.

        Returns:
          The values, ``components`` as ``int32``.
        """
        del key
        return _check_components(components, self.num_values).astype(jnp.int32)


class Gaussian(nnx.Module):
    """Diagonal Gaussian densities with learned means and scales.

    ``f_d(x) = N(x; μ_d, diag(σ_d²))``, a normalised density in ``R^s``
    (``s = num_features``), so a missing element is marginalised by setting its
    row of ``F`` to 1 (``0`` in log space): with ``marginalize_nan=True`` an
    element with a NaN feature is treated so (a tensorial mixture model's
    inference with missing data, and its "marginalisation dropout" during
    training). The scales are ``σ = min_scale + exp(log_scales)``:
    ``min_scale > 0`` keeps a density from collapsing onto a single value of
    discrete data.

    Attributes:
      means: ``μ``, a parameter of shape ``(num_descriptors, num_features)``.
      log_scales: a parameter of shape ``(num_descriptors, num_features)``.
      min_scale: the smallest scale.
      log: whether it returns log-densities.
      marginalize_nan: whether a NaN feature marks a missing element.
    """

    def __init__(
        self,
        num_descriptors: int,
        num_features: int = 1,
        *,
        log: bool = True,
        min_scale: float = 0.0,
        marginalize_nan: bool = False,
        means_init: nnx.Initializer | None = None,
        log_scales_init: nnx.Initializer | None = None,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        """Makes the layer.

        Args:
          num_descriptors: ``M``, the number of Gaussians.
          num_features: ``s``, the dimension of each local element.
          log: return log-densities (for a log-space network).
          min_scale: a non-negative floor added to every scale.
          marginalize_nan: give an element with any NaN feature the row
            ``F[i, :] = 1`` (``0`` in log space) instead of NaN.
          means_init: ``init(key, shape, dtype)`` for ``means``; standard
            normal by default.
          log_scales_init: ``init(key, shape, dtype)`` for ``log_scales``;
            zeros (unit scales) by default.
          dtype: the parameters' dtype.
          rngs: the random streams; ``rngs.params`` draws the initial values.

        Raises:
          ValueError: for non-positive sizes or a negative ``min_scale``.
        """
        _check_positive_int("num_descriptors", num_descriptors)
        _check_positive_int("num_features", num_features)
        if not min_scale >= 0:
            raise ValueError(f"min_scale must be non-negative, got {min_scale!r}.")
        means_init = means_init or nnx.initializers.normal(1.0)
        log_scales_init = log_scales_init or nnx.initializers.zeros_init()
        shape = (num_descriptors, num_features)
        self.means = nnx.Param(means_init(rngs.params(), shape, dtype))
        self.log_scales = nnx.Param(log_scales_init(rngs.params(), shape, dtype))
        self.min_scale = float(min_scale)
        self.log = bool(log)
        self.marginalize_nan = bool(marginalize_nan)

    @property
    def num_descriptors(self) -> int:
        """``M``, the number of Gaussians."""
        return self.means.shape[0]

    @property
    def num_features(self) -> int:
        """``s``, the dimension of each local element."""
        return self.means.shape[1]

    def scales(self) -> jax.Array:
        """``σ`` of shape ``(num_descriptors, num_features)``."""
        return self.min_scale + jnp.exp(self.log_scales[...])

    def __call__(self, inputs: ArrayLike) -> jax.Array:
        """Densities (or log-densities) of every element under every Gaussian.

        Args:
          inputs: ``x`` of shape ``(batch, num_modes, num_features)``; with
            ``marginalize_nan``, NaN marks missing elements.

        Returns:
          ``F`` (or ``log F``) of shape ``(batch, num_modes, num_descriptors)``.

        Raises:
          ValueError: if ``inputs`` does not have that shape.
        """
        inputs = jnp.asarray(inputs)
        if inputs.ndim != 3 or inputs.shape[2] != self.num_features:
            hint = " (add a trailing axis: x[..., None])" if inputs.ndim == 2 else ""
            raise ValueError(
                "inputs must have shape (batch, num_modes, num_features) with "
                f"num_features={self.num_features}, got {inputs.shape}{hint}."
            )
        if self.marginalize_nan:
            missing = jnp.any(jnp.isnan(inputs), axis=-1, keepdims=True)
            # Finite stand-ins, so that no NaN reaches the gradients.
            inputs = jnp.where(missing, 0.0, inputs)
        means = self.means[...][None, None]
        scales = self.scales()[None, None]
        z = (inputs[:, :, None, :] - means) / scales
        log_density = jnp.sum(
            -0.5 * jnp.square(z) - jnp.log(scales) - 0.5 * math.log(2 * math.pi),
            axis=-1,
        )
        if self.marginalize_nan:
            log_density = jnp.where(missing, 0.0, log_density)
        return log_density if self.log else jnp.exp(log_density)

    def sample(self, key: jax.Array, components: ArrayLike) -> jax.Array:
        """Elements drawn from the Gaussians ``components``.

        Args:
          key: a ``jax.random.key``.
          components: descriptor indices of shape ``(batch, num_modes)``.

        Returns:
          ``x = μ_d + σ_d · ε`` of shape ``(batch, num_modes, num_features)``.
        """
        components = _check_components(components, self.num_descriptors)
        noise = jax.random.normal(
            key, (*components.shape, self.num_features), self.means.dtype
        )
        return self.means[...][components] + self.scales()[components] * noise


class Categorical(nnx.Module):
    """Learned categorical distributions over discrete values.

    ``f_d(x) = π_d[x]`` with ``π_d = softmax(logits[d])``: every descriptor is a
    normalised distribution over ``num_values`` values (the discrete analogue of
    :class:`Gaussian`), so a missing element is marginalised by setting its row
    of ``F`` to 1. :class:`Indicator` is the special case of ``M = K`` point
    masses.

    Attributes:
      logits: a parameter of shape ``(num_descriptors, num_values)``.
      log: whether it returns log-probabilities.

    Examples:
      >>> layer = Categorical(2, 3, rngs=nnx.Rngs(0))
      >>> jnp.exp(layer.log_probs()).sum(axis=1).round(6)
      Array([1., 1.], dtype=float32)
    """

    def __init__(
        self,
        num_descriptors: int,
        num_values: int,
        *,
        log: bool = True,
        logits_init: nnx.Initializer | None = None,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        """Makes the layer.

        Args:
          num_descriptors: ``M``, the number of distributions.
          num_values: ``K``, the number of values an element takes.
          log: return log-probabilities (for a log-space network).
          logits_init: ``init(key, shape, dtype)`` for ``logits``; standard
            normal by default.
          dtype: the parameters' dtype.
          rngs: the random streams; ``rngs.params`` draws the initial values.

        Raises:
          ValueError: for non-positive sizes.
        """
        shape = (
            _check_positive_int("num_descriptors", num_descriptors),
            _check_positive_int("num_values", num_values),
        )
        logits_init = logits_init or nnx.initializers.normal(1.0)
        self.logits = nnx.Param(logits_init(rngs.params(), shape, dtype))
        self.log = bool(log)

    @property
    def num_descriptors(self) -> int:
        """``M``, the number of distributions."""
        return self.logits.shape[0]

    @property
    def num_values(self) -> int:
        """``K``, the number of values."""
        return self.logits.shape[1]

    def log_probs(self) -> jax.Array:
        """``log π`` of shape ``(num_descriptors, num_values)``."""
        return jax.nn.log_softmax(self.logits[...], axis=-1)

    def __call__(self, inputs: ArrayLike) -> jax.Array:
        """(Log-)probabilities of every element under every distribution.

        Args:
          inputs: integers in ``[0, num_values)`` of shape
            ``(batch, num_modes)``. Values outside that range raise when they
            are known; under ``jit`` they give NaN.

        Returns:
          ``F`` (or ``log F``) of shape ``(batch, num_modes, num_descriptors)``.

        Raises:
          ValueError: if ``inputs`` is not 2-D or holds a known out-of-range
            value.
          TypeError: if ``inputs`` is not of an integer dtype.
        """
        inputs = jnp.asarray(inputs)
        if inputs.ndim != 2:
            raise ValueError(
                f"inputs must have shape (batch, num_modes), got {inputs.shape}."
            )
        if not jnp.issubdtype(inputs.dtype, jnp.integer):
            raise TypeError(
                f"inputs must be integers in [0, {self.num_values}), got dtype "
                f"{inputs.dtype}."
            )
        _check_range("inputs", inputs, self.num_values)
        table = self.log_probs().T  # (num_values, num_descriptors)
        log_probs = jnp.take(table, inputs, axis=0, mode="fill", fill_value=jnp.nan)
        return log_probs if self.log else jnp.exp(log_probs)

    def sample(self, key: jax.Array, components: ArrayLike) -> jax.Array:
        """Values drawn from the distributions ``components``.

        Args:
          key: a ``jax.random.key``.
          components: descriptor indices of shape ``(batch, num_modes)``.

        Returns:
          Integer values of shape ``(batch, num_modes)`` (``int32``).
        """
        components = _check_components(components, self.num_descriptors)
        logits = self.log_probs()[components]
        return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def _check_range(name: str, values: jax.Array, size: int) -> None:
    """Raises for known integers outside ``[0, size)`` (not under ``jit``)."""
    if isinstance(values, jax.core.Tracer):
        return
    bad = np.argwhere((np.asarray(values) < 0) | (np.asarray(values) >= size))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"{name} must lie in [0, {size}); entry {where} holds {int(values[where])}."
        )


def _check_components(components: ArrayLike, size: int) -> jax.Array:
    components = jnp.asarray(components)
    if components.ndim != 2 or not jnp.issubdtype(components.dtype, jnp.integer):
        raise ValueError(
            "components must be integer descriptor indices of shape "
            f"(batch, num_modes), got {components.dtype}{components.shape}."
        )
    _check_range("components", components, size)
    return components
