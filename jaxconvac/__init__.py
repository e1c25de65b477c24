"""jaxconvac: convolutional arithmetic circuits and their tensor theory in JAX.

Glossary of the dimension names used in shapes throughout the docs:

- ``num_modes`` (``N``): input positions (pixels, time steps), the order of
  the coefficient tensor.
- ``num_descriptors`` (``M``): descriptor functions per position, the
  dimension of every mode.
- ``r_l``: channels (width) of level ``l`` of a tree decomposition;
  ``widths = (r_0, …, r_{L-1})``.
- ``num_outputs`` (``Y``): classes, one coefficient tensor each.
- ``groups``: weight matrices of one level (see ``sharing``).
- ``nodes``: nodes of one level of a mode tree.
- ``window``: the pooling window of a level.
- ``batch``: examples; pure functions take one example and are batched with
  ``jax.vmap``, modules take a leading ``batch`` dimension.
- ``rows``, ``cols``: the sides of a matricization.
"""

from jaxconvac.decompositions import (
    coefficient_tensor,
    evaluate,
    grid_tensor,
    init_decomposition,
)
from jaxconvac.matricization import matricize, odd_even_modes
from jaxconvac.mode_trees import ModeTree
from jaxconvac.ranks import (
    exact_rank,
    numerical_rank,
    singular_value_gap,
    singular_values,
)
from jaxconvac.tensor_products import GeneralizedProduct, generalized_tensor_product

__all__ = [
    "GeneralizedProduct",
    "ModeTree",
    "coefficient_tensor",
    "evaluate",
    "exact_rank",
    "generalized_tensor_product",
    "grid_tensor",
    "init_decomposition",
    "matricize",
    "numerical_rank",
    "odd_even_modes",
    "singular_value_gap",
    "singular_values",
]

__version__ = "0.1.0"
