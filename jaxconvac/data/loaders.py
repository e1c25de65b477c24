"""Loaders for user data: NumPy ``.npz`` archives and MNIST-style IDX files.

Both return NumPy arrays ``(inputs, labels)`` ready for
:func:`jaxconvac.training.train`, after checking what the file holds:

- ``.npz``: read with ``allow_pickle=False`` (an object array, i.e. a pickle,
  is refused), the two named arrays must exist, labels must be integers of
  shape ``(num_examples,)``, inputs a numeric array ``(num_examples, …)``.
- IDX (the format of the MNIST files, optionally gzip-compressed): a 4-byte
  magic number (two zero bytes, a type code, the number of dimensions), the
  dimensions as big-endian uint32, then exactly ``prod(dims)`` big-endian
  values. A wrong magic number, an unknown type code, a file shorter or longer
  than its header announces are refused.

Every error is a ``ValueError`` naming the file (and the key) at fault.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import zipfile
from collections.abc import Sequence

import numpy as np

__all__ = ["load_idx", "load_idx_dataset", "load_npz"]

# IDX type codes and the big-endian dtypes they name.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _check_pair(
    where: str,
    inputs: np.ndarray,
    labels: np.ndarray,
    example_shape: Sequence[int] | None,
    num_classes: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{where}: labels must be integers of shape (num_examples,), got "
            f"{labels.dtype}{labels.shape}."
        )
    if inputs.dtype == np.bool_ or not (
        np.issubdtype(inputs.dtype, np.integer)
        or np.issubdtype(inputs.dtype, np.floating)
    ):
        raise ValueError(
            f"{where}: inputs must be integers or floats, got dtype {inputs.dtype}."
        )
    if inputs.ndim < 1 or inputs.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{where}: inputs must have shape (num_examples, …) with num_examples "
            f"= len(labels) = {labels.shape[0]}, got {inputs.shape}."
        )
    if not labels.shape[0]:
        raise ValueError(f"{where}: the data set is empty.")
    if example_shape is not None and tuple(inputs.shape[1:]) != tuple(example_shape):
        raise ValueError(
            f"{where}: each example must have shape {tuple(example_shape)}, got "
            f"{tuple(inputs.shape[1:])}."
        )
    if num_classes is not None and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{where}: labels must lie in [0, {num_classes}), got the range "
            f"[{labels.min()}, {labels.max()}]."
        )
    return inputs, labels


def load_npz(
    path: str | os.PathLike,
    *,
    inputs_key: str = "inputs",
    labels_key: str = "labels",
    example_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and labels from a NumPy ``.npz`` archive, without unpickling.

    Args:
      path: the ``.npz`` file (e.g. written by ``np.savez``).
      inputs_key: the name of the inputs array in the archive.
      labels_key: the name of the labels array.
      example_shape: if given, the shape every example must have.
      num_classes: if given, labels must lie in ``[0, num_classes)``.

    Returns:
      ``(inputs, labels)``: ``(num_examples, …)`` integers or floats and
      ``(num_examples,)`` integers.

    Raises:
      ValueError: naming the file (and key) if it is missing, not an ``.npz``
        archive, truncated, holds a pickled (object) array, lacks a key, or
        its arrays have the wrong shapes or dtypes.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file.")
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError as err:  # a pickle, or not a NumPy file at all
        raise ValueError(f"{path}: not a readable .npz archive ({err}).") from err
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ValueError(
            f"{path}: not a readable .npz archive (truncated or damaged: {err})."
        ) from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single .npy array, not an .npz archive.")
    arrays = {}
    with archive:
        for key in (inputs_key, labels_key):
            if key not in archive.files:
                raise ValueError(
                    f"{path}: no array {key!r} in the archive (it holds "
                    f"{sorted(archive.files)})."
                )
            try:
                arrays[key] = archive[key]
            except ValueError as err:
                if "pickle" in str(err).lower():
                    raise ValueError(
                        f"{path}: array {key!r} is a pickled object array; "
                        "refused (pickles can run code). Save plain numeric arrays."
                    ) from err
                raise ValueError(
                    f"{path}: array {key!r} cannot be read ({err})."
                ) from err
            except (zipfile.BadZipFile, EOFError, OSError) as err:
                raise ValueError(
                    f"{path}: array {key!r} cannot be read (truncated or damaged: "
                    f"{err})."
                ) from err
    return _check_pair(
        str(path), arrays[inputs_key], arrays[labels_key], example_shape, num_classes
    )


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """One array from an IDX file (``.gz``-compressed if the name ends so).

    Args:
      path: e.g. ``train-images-idx3-ubyte`` or ``train-labels-idx1-ubyte.gz``.

    Returns:
      The array, with the dimensions of its header, in native byte order.

    Raises:
      ValueError: naming the file if it is missing, its magic number or type
        code is wrong, or its length differs from what the header announces.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file.")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as file:
                data = file.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: cannot be read ({err}).") from err
    if len(data) < 4:
        raise ValueError(
            f"{path}: truncated: {len(data)} bytes, shorter than the 4-byte IDX "
            "magic number."
        )
    if data[0] or data[1]:
        raise ValueError(
            f"{path}: not an IDX file (magic number {data[:4].hex()}, expected "
            "two zero bytes, a type code and a dimension count)."
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise ValueError(
            f"{path}: unknown IDX type code 0x{code:02x} (known: "
            f"{', '.join(f'0x{c:02x}' for c in IDX_DTYPES)})."
        )
    if ndim == 0:
        raise ValueError(f"{path}: the IDX header announces 0 dimensions.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{path}: truncated header: {len(data)} bytes, the {ndim} dimensions "
            f"need {header}."
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: {what}: {len(data)} bytes, but its header ({dtype.name} "
            f"{shape}) needs exactly {expected}."
        )
    values = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def load_idx_dataset(
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    *,
    example_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """An MNIST-style pair of IDX files: images and their labels.

    Args:
      images_path: the images, e.g. ``(num_examples, 28, 28)`` unsigned bytes.
      labels_path: the labels, ``(num_examples,)`` integers.
      example_shape: if given, the shape every image must have.
      num_classes: if given, labels must lie in ``[0, num_classes)``.

    Returns:
      ``(images, labels)`` as stored (cast nothing; scale the images
      yourself), labels as ``int32``.

    Raises:
      ValueError: naming the file at fault (see :func:`load_idx`), or both if
        they disagree in length.
    """
    images = load_idx(images_path)
    labels = load_idx(labels_path)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{labels_path}: labels must be integers, got dtype {labels.dtype}."
        )
    where = f"{images_path} and {labels_path}"
    if labels.ndim == 1 and images.ndim >= 1 and images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{where}: {images.shape[0]} images but {labels.shape[0]} labels."
        )
    return _check_pair(
        where, images, labels.astype(np.int32), example_shape, num_classes
    )
