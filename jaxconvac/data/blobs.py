"""Binary "blob" images and their closedness and symmetry tasks (ICLR 2017).

The data of the pooling-geometry experiment (Cohen & Shashua, *Inductive Bias
of Deep Convolutional Networks through Pooling Geometry*, ICLR 2017). Each image
is ``32 × 32`` binary pixels, drawn as follows (NumPy generator seeded by the
caller, image operations by :mod:`scipy.ndimage`):

1. an ellipse spanning the full width of a ``32 × 32`` canvas, of height
   ``2^U(3.5, 5) / 2`` pixels;
2. each column shifted vertically by ``a · sin(ω x + φ)`` with amplitude
   ``a ~ U(0, 4)`` pixels, frequency ``ω ~ U(0, 3 · 2π / 32)`` and phase
   ``φ ~ U(0, 2π)``;
3. rotated by ``U(0°, 180°)`` about the centre (bilinear, clipped to the
   canvas);
4. scaled to a tile of ``2^k`` pixels, ``k`` uniform in ``{4, 5}``, placed at a
   uniformly drawn cell of the matching ``2^k`` grid of the image;
5. a fraction ``U(0.1, 0.33)`` of the tile's pixels dropped (each with that
   probability), the drop mask left-right symmetric within the tile with
   probability 0.5;
6. binarised at 0.1; an empty image is drawn again.

Two scores per image:

* *closedness*: pixels of the image / pixels of its morphological closing with a
  ``closing_size × closing_size`` square, computed on a copy padded by
  ``closing_size`` zeros so the image border does not count as closed;
* *symmetry*: pixels of the tile that stay set under the tile's left-right
  mirror / pixels of the tile.

Per task, the images with the lowest 40 % of the score get label 0, the highest
40 % label 1 and the middle 20 % is dropped (ties broken by drawing order), in
the training and the test pool separately: 25 000 + 5 000 rendered images give
20 000 training and 4 000 test examples per task.

Generated data are cached as ``.npz`` files under :func:`cache_dir`, never in
the repository; a cache file that cannot be read or does not hold what its
settings promise is regenerated, with a warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import tempfile
import warnings
import zipfile

import numpy as np
from scipy import ndimage

IMAGE_SIDE = 32
TASKS = ("closedness", "symmetry")
SPLITS = ("train", "test")
CACHE_ENV = "JAXCONVAC_CACHE"
_FORMAT_VERSION = 1


def cache_dir() -> pathlib.Path:
    """The directory where generated data are cached (created if missing).

    Returns:
      ``$JAXCONVAC_CACHE`` if that environment variable is set and not empty,
      else ``~/.cache/jaxconvac``.
    """
    root = os.environ.get(CACHE_ENV) or os.path.join("~", ".cache", "jaxconvac")
    path = pathlib.Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclasses.dataclass(frozen=True)
class BlobConfig:
    """Settings of the blob data.

    Attributes:
      seed: seeds everything; the same config always gives the same arrays.
      num_train_rendered: images rendered for the training pool.
      num_test_rendered: images rendered for the test pool.
      keep_fraction: the fraction of each pool kept per label (bottom and top
        of the score); ``0.4`` keeps 80 % of the pool.
      closing_size: side of the square structuring element of the closing.
    """

    seed: int = 0
    num_train_rendered: int = 25_000
    num_test_rendered: int = 5_000
    keep_fraction: float = 0.4
    closing_size: int = 3

    def __post_init__(self):
        for name in ("seed", "num_train_rendered", "num_test_rendered"):
            value = getattr(self, name)
            minimum = 0 if name == "seed" else 5
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise TypeError(f"{name} must be an int, got {value!r}.")
            if value < minimum:
                raise ValueError(f"{name} must be at least {minimum}, got {value}.")
        if not 0 < self.keep_fraction <= 0.5:
            raise ValueError(
                f"keep_fraction must be in (0, 0.5], got {self.keep_fraction!r}."
            )
        if (
            isinstance(self.closing_size, bool)
            or not isinstance(self.closing_size, int)
            or self.closing_size < 2
        ):
            raise ValueError(
                f"closing_size must be an int of at least 2, got {self.closing_size!r}."
            )

    def num_kept(self, split: str) -> int:
        """Examples per label kept from the ``split`` pool."""
        rendered = (
            self.num_train_rendered if split == "train" else self.num_test_rendered
        )
        return int(math.floor(self.keep_fraction * rendered + 1e-9))

    def cache_path(self) -> pathlib.Path:
        """The cache file of this config under :func:`cache_dir`."""
        settings = json.dumps(
            {**dataclasses.asdict(self), "version": _FORMAT_VERSION}, sort_keys=True
        )
        digest = hashlib.sha256(settings.encode()).hexdigest()[:16]
        return cache_dir() / f"blobs-{digest}.npz"


def render_blob(rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Draws one blob image (steps 1–6 of the module docstring).

    Args:
      rng: the NumPy generator to draw from (advanced in place).

    Returns:
      ``(image, tile)``: a ``uint8`` image of shape ``(32, 32)`` with values
      in ``{0, 1}`` and at least one pixel set, and the tile
      ``(row, col, size)`` it was drawn in.
    """
    side = IMAGE_SIDE
    coords = np.arange(side) + 0.5 - side / 2
    rows, cols = coords[:, None], coords[None, :]
    while True:
        height = 2 ** rng.uniform(3.5, 5.0) / 2
        amplitude = rng.uniform(0.0, 4.0)
        frequency = rng.uniform(0.0, 3 * 2 * np.pi / side)
        phase = rng.uniform(0.0, 2 * np.pi)
        angle = rng.uniform(0.0, 180.0)
        exponent = int(rng.integers(4, 6))
        drop_rate = rng.uniform(0.1, 0.33)
        symmetric_drop = bool(rng.random() < 0.5)

        shift = amplitude * np.sin(frequency * (cols + side / 2) + phase)
        inside = (cols / (side / 2)) ** 2 + ((rows - shift) / (height / 2)) ** 2
        shape = (inside <= 1.0).astype(np.float64)
        shape = ndimage.rotate(shape, angle, reshape=False, order=1, mode="constant")
        size = 2**exponent
        if size != side:
            shape = ndimage.zoom(
                shape, size / side, order=1, mode="grid-constant", grid_mode=True
            )
        cells = side // size
        row, col = (int(v) * size for v in rng.integers(0, cells, size=2))

        if symmetric_drop:
            half = rng.random((size, size // 2)) < drop_rate
            dropped = np.concatenate([half, half[:, ::-1]], axis=1)
        else:
            dropped = rng.random((size, size)) < drop_rate
        tile = (np.where(dropped, 0.0, shape) > 0.1).astype(np.uint8)
        if tile.any():
            image = np.zeros((side, side), np.uint8)
            image[row : row + size, col : col + size] = tile
            return image, (row, col, size)


def closedness(images: np.ndarray, *, closing_size: int = 3) -> np.ndarray:
    """Pixels of each image over pixels of its morphological closing.

    Args:
      images: binary images of shape ``(num_examples, height, width)``, each
        with at least one pixel set.
      closing_size: side of the square structuring element.

    Returns:
      Scores in ``(0, 1]`` of shape ``(num_examples,)``; 1 for an image its
      closing does not change.

    Raises:
      ValueError: for images that are not 3-D or an empty image.
    """
    images = _check_images(images)
    structure = np.ones((closing_size, closing_size), bool)
    scores = np.empty(len(images))
    for index, image in enumerate(images):
        padded = np.pad(image.astype(bool), closing_size)
        closed = ndimage.binary_closing(padded, structure=structure)
        scores[index] = image.sum() / closed.sum()
    return scores


def symmetry(images: np.ndarray, tiles: np.ndarray) -> np.ndarray:
    """Left-right overlap of each image's tile with itself.

    Args:
      images: binary images of shape ``(num_examples, height, width)``.
      tiles: ``(row, col, size)`` per image, shape ``(num_examples, 3)``.

    Returns:
      ``|T ∧ mirror(T)| / |T|`` per image, shape ``(num_examples,)``, in
      ``[0, 1]``.

    Raises:
      ValueError: for mismatched shapes or an empty tile.
    """
    images = _check_images(images)
    tiles = np.asarray(tiles)
    if tiles.shape != (len(images), 3):
        raise ValueError(
            f"tiles must have shape (num_examples, 3) = ({len(images)}, 3), got "
            f"{tiles.shape}."
        )
    scores = np.empty(len(images))
    for index, (image, (row, col, size)) in enumerate(zip(images, tiles, strict=True)):
        tile = image[row : row + size, col : col + size].astype(bool)
        if not tile.any():
            raise ValueError(f"image {index} has an empty tile {(row, col, size)}.")
        scores[index] = (tile & tile[:, ::-1]).sum() / tile.sum()
    return scores


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(
            f"images must have shape (num_examples, height, width), got {images.shape}."
        )
    empty = np.flatnonzero(~images.reshape(len(images), -1).any(axis=1))
    if empty.size:
        raise ValueError(f"image {int(empty[0])} is empty (no pixel set).")
    return images


def render_pool(num_images: int, seed: int, split: str) -> dict[str, np.ndarray]:
    """Renders one pool of images with its two scores.

    Args:
      num_images: how many images.
      seed: the data seed.
      split: ``"train"`` or ``"test"``; the pools draw from independent
        streams of ``seed``.

    Returns:
      ``{"images": uint8 (num_images, 32, 32), "tiles": int (num_images, 3)}``.
    """
    stream = SPLITS.index(split)
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream]))
    images = np.empty((num_images, IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    tiles = np.empty((num_images, 3), np.int64)
    for index in range(num_images):
        images[index], tiles[index] = render_blob(rng)
    return {"images": images, "tiles": tiles}


def select_by_score(scores: np.ndarray, num_kept: int) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and highest ``num_kept`` scores as labels 0 and 1.

    Args:
      scores: shape ``(num_examples,)``.
      num_kept: examples per label, at most half of ``num_examples``.

    Returns:
      ``(indices, labels)`` of shape ``(2 * num_kept,)``: indices into
      ``scores`` (in increasing order) and their labels. Ties are broken by
      index (a stable sort).
    """
    ranking = np.argsort(scores, kind="stable")
    low, high = ranking[:num_kept], ranking[len(scores) - num_kept :]
    indices = np.concatenate([low, high])
    labels = np.concatenate([np.zeros(num_kept, np.int32), np.ones(num_kept, np.int32)])
    order = np.argsort(indices)
    return indices[order], labels[order]


def generate(config: BlobConfig) -> dict[str, np.ndarray]:
    """Renders both pools and labels both tasks (no cache).

    Args:
      config: the settings.

    Returns:
      Arrays named ``<split>_images`` (uint8 ``(rendered, 32, 32)``),
      ``<split>_tiles``, ``<split>_<task>_score`` (float64), and
      ``<split>_<task>_index`` / ``<split>_<task>_label`` (the kept examples).
    """
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        rendered = (
            config.num_train_rendered if split == "train" else config.num_test_rendered
        )
        pool = render_pool(rendered, config.seed, split)
        scores = {
            "closedness": closedness(pool["images"], closing_size=config.closing_size),
            "symmetry": symmetry(pool["images"], pool["tiles"]),
        }
        arrays[f"{split}_images"] = pool["images"]
        arrays[f"{split}_tiles"] = pool["tiles"]
        for task in TASKS:
            index, label = select_by_score(scores[task], config.num_kept(split))
            arrays[f"{split}_{task}_score"] = scores[task]
            arrays[f"{split}_{task}_index"] = index
            arrays[f"{split}_{task}_label"] = label
    return arrays


def _expected_shapes(config: BlobConfig) -> dict[str, tuple[tuple[int, ...], str]]:
    shapes = {}
    for split in SPLITS:
        rendered = (
            config.num_train_rendered if split == "train" else config.num_test_rendered
        )
        kept = 2 * config.num_kept(split)
        shapes[f"{split}_images"] = ((rendered, IMAGE_SIDE, IMAGE_SIDE), "u")
        shapes[f"{split}_tiles"] = ((rendered, 3), "i")
        for task in TASKS:
            shapes[f"{split}_{task}_score"] = ((rendered,), "f")
            shapes[f"{split}_{task}_index"] = ((kept,), "i")
            shapes[f"{split}_{task}_label"] = ((kept,), "i")
    return shapes


def read_cache(path: pathlib.Path, config: BlobConfig) -> dict[str, np.ndarray]:
    """Reads and checks a cache file written for ``config``.

    Args:
      path: the ``.npz`` file.
      config: the settings it must hold.

    Returns:
      The arrays of :func:`generate`.

    Raises:
      ValueError: if the file cannot be read, lacks an array, holds one of the
        wrong shape, dtype or values, or was written for other settings. The
        message says which.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"cache file {path} cannot be read: {error}") from error
    stored = arrays.pop("config", None)
    expected = json.dumps(dataclasses.asdict(config), sort_keys=True)
    if stored is None or str(stored) != expected:
        raise ValueError(
            f"cache file {path} was written for other settings: {stored!s}."
        )
    for name, (shape, kind) in _expected_shapes(config).items():
        if name not in arrays:
            raise ValueError(f"cache file {path} lacks the array {name!r}.")
        array = arrays[name]
        if array.shape != shape or array.dtype.kind != kind:
            raise ValueError(
                f"cache file {path}: array {name!r} should be {kind}{shape}, got "
                f"{array.dtype}{array.shape}."
            )
    for split in SPLITS:
        images = arrays[f"{split}_images"]
        if (
            images.max(initial=0) > 1
            or not images.reshape(len(images), -1).any(1).all()
        ):
            raise ValueError(
                f"cache file {path}: {split}_images are not non-empty binary images."
            )
        for task in TASKS:
            index = arrays[f"{split}_{task}_index"]
            label = arrays[f"{split}_{task}_label"]
            if (
                index.min() < 0
                or index.max() >= len(images)
                or not np.array_equal(
                    np.bincount(label, minlength=2), [len(label) // 2] * 2
                )
            ):
                raise ValueError(
                    f"cache file {path}: {split}_{task} indices or labels are invalid."
                )
    return arrays


def _write_cache(path: pathlib.Path, config: BlobConfig, arrays) -> None:
    """Writes atomically: a temporary file in the same directory, then a rename."""
    settings = json.dumps(dataclasses.asdict(config), sort_keys=True)
    handle, temporary = tempfile.mkstemp(suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, config=np.asarray(settings), **arrays)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def load_arrays(config: BlobConfig, *, cache: bool = True) -> dict[str, np.ndarray]:
    """The arrays of :func:`generate`, from the cache when it is valid.

    Args:
      config: the settings.
      cache: read and write the cache file :meth:`BlobConfig.cache_path`; a
        missing or invalid file is (re)generated and written. ``False``
        generates without touching the disk.

    Returns:
      The arrays of :func:`generate`.
    """
    if not cache:
        return generate(config)
    path = config.cache_path()
    if path.exists():
        try:
            return read_cache(path, config)
        except ValueError as error:
            warnings.warn(f"{error} Regenerating it.", stacklevel=2)
    arrays = generate(config)
    _write_cache(path, config, arrays)
    return arrays


def load_blobs(
    task: str, config: BlobConfig | None = None, *, cache: bool = True
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The training and test sets of one task.

    Args:
      task: ``"closedness"`` or ``"symmetry"``.
      config: the settings (the paper's, seed 0, by default).
      cache: use the on-disk cache (see :func:`load_arrays`).

    Returns:
      ``{"train": (images, labels), "test": (images, labels)}``: ``uint8``
      images in ``{0, 1}`` of shape ``(num_examples, 32, 32)`` (pixel
      ``(row, col)``) and ``int32`` labels of shape ``(num_examples,)``, half of
      each label, in drawing order.

    Raises:
      ValueError: for an unknown task.

    Examples:
      >>> data = load_blobs("symmetry", BlobConfig(num_train_rendered=20,
      ...     num_test_rendered=10), cache=False)
      >>> data["train"][0].shape, data["test"][1].shape
      ((16, 32, 32), (8,))
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
    arrays = load_arrays(config or BlobConfig(), cache=cache)
    return {
        split: (
            arrays[f"{split}_images"][arrays[f"{split}_{task}_index"]],
            arrays[f"{split}_{task}_label"],
        )
        for split in SPLITS
    }
