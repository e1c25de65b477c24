"""Flax NNX networks: representations, ConvACs, generalized, dilated and generative.

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
from jaxconvac.nn.dilated import (
    DilatedConvNet,
    LastStepClassifier,
    MixedDilatedConvNet,
)
from jaxconvac.nn.generalized import (
    AffineReLU,
    GeneralizedClassifier,
    GeneralizedConvNet,
    network_operator,
    scale_for_average_pooling,
)
from jaxconvac.nn.generative import (
    GenerativeClassifier,
    drop_elements,
    joint_loss,
)
from jaxconvac.nn.representations import Categorical, Gaussian, Indicator

__all__ = [
    "AffineReLU",
    "Categorical",
    "Classifier",
    "ConvAC",
    "DecompositionModule",
    "DilatedConvNet",
    "Gaussian",
    "GeneralizedClassifier",
    "GeneralizedConvNet",
    "GenerativeClassifier",
    "Indicator",
    "LastStepClassifier",
    "MixedDilatedConvNet",
    "count_params",
    "drop_elements",
    "joint_loss",
    "network_operator",
    "scale_for_average_pooling",
]
