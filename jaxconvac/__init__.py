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
- ``num_features``: the size of one input element (a pixel's channels).
- ``num_examples``: examples in a data set.
- ``num_templates`` (``K``): template points of a grid tensor.
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
from jaxconvac.entanglement import (
    ExactPurity,
    ExactSpectrum,
    entanglement_entropy,
    exact_purity,
    exact_spectrum,
    geometric_measure,
    renyi_entropy,
    schmidt_number,
    schmidt_spectrum,
)
from jaxconvac.generative import (
    log_joint,
    marginalize,
    normalize_log_weights,
    random_mask,
    rectangle_mask,
    sample_components,
)
from jaxconvac.matricization import matricize, odd_even_modes
from jaxconvac.mixed import (
    MixedTrees,
    hybrid_tree,
    init_mixed_decomposition,
    mixed_coefficient_tensor,
    mixed_evaluate,
    mixed_grid_tensor,
    tree_rank_bounds,
)
from jaxconvac.mode_trees import ModeTree, swapped_dilations
from jaxconvac.ranks import (
    exact_rank,
    numerical_rank,
    singular_value_gap,
    singular_values,
)
from jaxconvac.tensor_networks import (
    MinCut,
    min_cut_bound,
    network_min_cut,
    tensor_network,
)
from jaxconvac.tensor_products import (
    GeneralizedProduct,
    generalized_tensor_product,
    operator_for,
)

__all__ = [
    "ExactPurity",
    "ExactSpectrum",
    "GeneralizedProduct",
    "MinCut",
    "MixedTrees",
    "ModeTree",
    "coefficient_tensor",
    "entanglement_entropy",
    "evaluate",
    "exact_purity",
    "exact_rank",
    "exact_spectrum",
    "generalized_tensor_product",
    "geometric_measure",
    "grid_tensor",
    "hybrid_tree",
    "init_decomposition",
    "init_mixed_decomposition",
    "log_joint",
    "marginalize",
    "matricize",
    "min_cut_bound",
    "mixed_coefficient_tensor",
    "mixed_evaluate",
    "mixed_grid_tensor",
    "network_min_cut",
    "normalize_log_weights",
    "numerical_rank",
    "odd_even_modes",
    "operator_for",
    "random_mask",
    "rectangle_mask",
    "renyi_entropy",
    "sample_components",
    "schmidt_number",
    "schmidt_spectrum",
    "singular_value_gap",
    "singular_values",
    "swapped_dilations",
    "tensor_network",
    "tree_rank_bounds",
]

__version__ = "0.1.0"
