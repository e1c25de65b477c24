"""Slow NumPy references shared by several test modules, written from SPEC."""

import numpy as np

# Every built-in g, from SPEC §2, not from the library's code.
REFERENCE_G = {
    "product": lambda a, b: a * b,
    "relu_max": lambda a, b: np.maximum(np.maximum(a, b), 0),
    "relu_sum": lambda a, b: np.maximum(a, 0) + np.maximum(b, 0),
    "relu_of_sum": lambda a, b: np.maximum(a + b, 0),
    "relu_product": lambda a, b: np.maximum(a, 0) * np.maximum(b, 0),
    "linear_max": np.maximum,
    "linear_sum": lambda a, b: a + b,
}


def node_weight(params, tree, level, j):
    """The matrix of node ``j`` of ``level``, read by its sharing mode."""
    weights = np.asarray(params[level])
    if weights.shape[0] == tree.num_nodes(level):
        return weights[j]
    if weights.shape[0] == 1:
        return weights[0]
    return weights[j % weights.shape[0]]
