"""Datasets: generated benchmark data and loaders for user data.

Nothing is stored in the repository: generated data is cached on disk outside
it, and user data is read and validated by the loaders.
"""

from jaxconvac.data.blobs import BlobConfig, cache_dir, load_arrays, load_blobs
from jaxconvac.data.loaders import load_idx, load_idx_dataset, load_npz

__all__ = [
    "BlobConfig",
    "cache_dir",
    "load_arrays",
    "load_blobs",
    "load_idx",
    "load_idx_dataset",
    "load_npz",
]
