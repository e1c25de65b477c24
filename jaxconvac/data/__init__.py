"""Datasets: generated benchmark data and loaders for user data.

Nothing is stored in the repository: generated data is cached on disk outside
it, and user data is read and validated by the loaders.
"""

from jaxconvac.data.loaders import load_idx, load_idx_dataset, load_npz

__all__ = ["load_idx", "load_idx_dataset", "load_npz"]
