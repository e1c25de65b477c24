"""Flax NNX networks: representation layers, ConvACs and generalized networks.

Modules take a leading ``batch`` dimension and call the pure functions of
:mod:`jaxconvac` (:func:`~jaxconvac.evaluate`, batched with ``jax.vmap``), so a
module's scores and its coefficient (or grid) tensor come from the same code.
"""

from jaxconvac.nn.convac import (
    Classifier,
    ConvAC,
    DecompositionModule,
    count_params,
)
from jaxconvac.nn.generalized import (
    AffineReLU,
    GeneralizedClassifier,
    GeneralizedConvNet,
    network_operator,
    scale_for_average_pooling,
)
from jaxconvac.nn.representations import Gaussian, Indicator

__all__ = [
    "AffineReLU",
    "Classifier",
    "ConvAC",
    "DecompositionModule",
    "Gaussian",
    "GeneralizedClassifier",
    "GeneralizedConvNet",
    "Indicator",
    "count_params",
    "network_operator",
    "scale_for_average_pooling",
]
