"""Entanglement of the trained square- and mirror-pooled ConvACs (issue 5, item 6).

The measured counterpart of the pooling-geometry rank argument: for each deep
ConvAC that ``experiments/pooling_geometry.py`` trained (task × geometry), the
entanglement of its class coefficient tensors ``A^y`` across pixel partitions
of the 32×32 image, computed exactly over the tree (never the ``2^1024``-entry
tensor):

* the Rényi-2 entropy ``S_2 = −ln Σ_k p_k²`` (nats) from ``jc.exact_purity``,
  a four-copy contraction of the network that costs the same whatever the
  partition, so it is exact for both geometries. It is a lower bound on the
  von Neumann entropy, and ``exp(S_2)`` a lower bound on the Schmidt number
  (the rank); the script works with ``S_2 / ln 10`` (the bound's power of
  ten), never with ``exp(S_2)`` itself, which overflows beyond ~709 nats;
* where ``jc.exact_spectrum`` can do it (cut dimension at most
  ``max_cut_dimension``), the Schmidt spectrum itself: the von Neumann
  entropy (``jc.entanglement_entropy``, nats), ``S_2`` from the spectrum
  (``jc.renyi_entropy``, a check on the purity) and the Schmidt number at
  ``rtol = 1e-7`` (the Gram method resolves singular values down to about
  ``1.5e-8 · σ_max``);
* the min-cut bound on the rank from the widths (``jc.min_cut_bound``; ``ln``
  of it is the largest entropy of any order that the widths allow).

Partitions: ``left/right`` (columns 0–15), ``top/bottom`` (rows 0–15) and
``quadrant`` (the top-left 16×16 block against the rest). Square pooling keeps
each of them a union of tree nodes (cheap, and a small bound); mirror pooling
splits every one of its first-level windows across all three, so the cut
dimension explodes and ``exact_spectrum`` refuses (a ``ValueError`` giving the
cut dimension); the table then says so and gives ``S_2`` and the bound.

As a direct check that needs neither method, the script also measures
*slices*: with indicator descriptors the score of a binary image is an entry
of ``A^y``, so fixing every pixel but ``k`` on each side of the partition to a
background image and enumerating the ``2^k`` values of each side gives a
``2^k × 2^k`` submatrix of ``[[A^y]]_I``. Its rank
is a lower bound on the Schmidt number across the partition, for both
geometries alike. The free pixels straddle the boundary: ``(r, 15) | (r, 16)``
for rows ``r = 10 … 15`` (inside the top-left quadrant against outside, so the
slice serves both ``left/right`` and ``quadrant``) and ``(15, c) | (16, c)`` for
``c = 10 … 15`` (``top/bottom``); the backgrounds are the blank image and the
first test images of the task. The slice is evaluated in float64 from the
trained log-weights; its rank counts singular values above ``1e-7 · σ_max``, the
tolerance of the exact Schmidt numbers.

Command (after ``pooling_geometry.py`` wrote its ``params-*.npz``)::

    python experiments/pooling_entanglement.py \
        --set params_dir=runs/pooling_geometry --workdir runs/pooling_entanglement

The flags are :mod:`jaxconvac.cli`'s; the keys are :func:`get_config`'s:
``params_dir`` (the ``pooling_geometry`` work directory, default
``runs/pooling_geometry``), ``max_cut_dimension``, ``test_backgrounds`` and
``seed`` (the ``pooling_geometry`` run's seed: the blob data of that seed give
the test-image backgrounds). The ``quick`` preset uses the blank background
only (no blob data to render). Writes ``results.json`` and ``table.md`` into
the work directory (``config.json`` and ``summary.json`` by the CLI).
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxconvac as jc
from jaxconvac import cli
from jaxconvac.data import blobs

SIDE = 32
SCHMIDT_RTOL = 1e-7
SLICE_RTOL = SCHMIDT_RTOL
SLICE_PIXELS = {
    "left/right and quadrant": (
        tuple(r * SIDE + 15 for r in range(10, 16)),
        tuple(r * SIDE + 16 for r in range(10, 16)),
    ),
    "top/bottom": (
        tuple(15 * SIDE + c for c in range(10, 16)),
        tuple(16 * SIDE + c for c in range(10, 16)),
    ),
}
"""Free pixels of each slice: (row side, column side), row-major indices."""


def partitions(side: int = SIDE) -> dict[str, tuple[int, ...]]:
    """Row modes ``I`` (row-major pixel indices) of each partition."""
    half = side // 2
    pixels = [(r, c) for r in range(side) for c in range(side)]
    return {
        "left/right": tuple(r * side + c for r, c in pixels if c < half),
        "top/bottom": tuple(r * side + c for r, c in pixels if r < half),
        "quadrant": tuple(r * side + c for r, c in pixels if r < half and c < half),
    }


def load_params(path: pathlib.Path) -> tuple[np.ndarray, ...]:
    """The ``(W_0, …, W_L)`` log-weights a ``params-*.npz`` file holds."""
    with np.load(path) as archive:
        names = sorted(archive.files, key=lambda name: int(name[1:]))
        return tuple(archive[name] for name in names)


def measure(params, tree, rows, max_cut_dimension: int) -> dict[str, Any]:
    """Exact entanglement per class across one partition, and the min-cut bound.

    Args:
      params: the ``(W_0, …, W_L)`` log-weights of a trained network.
      tree: its mode tree.
      rows: the row modes ``I`` of the partition.
      max_cut_dimension: passed to ``jc.exact_spectrum``.

    Returns:
      ``min_cut_bound`` and ``ln_bound``; ``renyi2`` (``S_2`` per class, nats,
      from ``jc.exact_purity``), ``log10_schmidt_lower_bound`` (``S_2 / ln 10``:
      ``exp(S_2) = 10^that`` bounds the Schmidt number from below) and
      ``purity_seconds``; then either ``refused`` (why ``exact_spectrum`` did
      not run) or ``cut_dimension``, ``entropy`` (von Neumann, nats),
      ``renyi2_from_spectrum``, ``schmidt_number`` and ``spectrum_seconds``.
    """
    widths = [w.shape[1] for w in params[:-1]]
    bound = jc.min_cut_bound(tree, widths, params[0].shape[2], rows).bound
    record: dict[str, Any] = {"min_cut_bound": bound, "ln_bound": math.log(bound)}
    start = time.perf_counter()
    purity = jc.exact_purity(params, tree, rows, space="log")
    renyi2 = [float(s) for s in np.asarray(purity.renyi2_entropy())]
    record["renyi2"] = renyi2
    record["log10_schmidt_lower_bound"] = [s / math.log(10) for s in renyi2]
    record["purity_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    try:
        spectrum = jc.exact_spectrum(
            params, tree, rows, space="log", max_cut_dimension=max_cut_dimension
        )
    except ValueError as error:
        # exact_purity has validated the same params and partition, so this
        # is the cut-dimension (or memory) limit refusing the spectrum.
        record["refused"] = f"{type(error).__name__}: {error}"
        return record
    record["cut_dimension"] = int(spectrum.cut_dimension)
    record["entropy"] = [
        float(jc.entanglement_entropy(values)) for values in spectrum.singular_values
    ]
    record["renyi2_from_spectrum"] = [
        float(jc.renyi_entropy(values, 2)) for values in spectrum.singular_values
    ]
    record["schmidt_number"] = [
        int(jc.schmidt_number(values, rtol=SCHMIDT_RTOL))
        for values in spectrum.singular_values
    ]
    record["spectrum_seconds"] = time.perf_counter() - start
    return record


def slice_images(background, row_pixels, col_pixels) -> np.ndarray:
    """Every assignment of the free pixels on ``background``.

    Returns:
      ``(2^k_row · 2^k_col, N)`` int32 images; image ``a · 2^k_col + b`` sets
      the row pixels to the bits of ``a`` and the column pixels to those of
      ``b`` (most significant first).
    """

    def bits(count):
        return (np.arange(2**count)[:, None] >> np.arange(count)[::-1]) & 1

    row_bits, col_bits = bits(len(row_pixels)), bits(len(col_pixels))
    images = np.repeat(
        background[None].astype(np.int32), len(row_bits) * len(col_bits), 0
    )
    images[:, list(row_pixels)] = np.repeat(row_bits, len(col_bits), axis=0)
    images[:, list(col_pixels)] = np.tile(col_bits, (len(row_bits), 1))
    return images


def slice_measure(params, tree, backgrounds, row_pixels, col_pixels) -> dict:
    """Rank and entropy of the submatrix of ``[[A^y]]_I`` per background."""
    ranks, entropies = [], []
    with jax.enable_x64(True):
        weights = tuple(jnp.asarray(w, jnp.float64) for w in params)

        @jax.jit
        def log_scores(images):
            return jax.vmap(lambda x: jc.evaluate(weights, tree, x, space="log"))(
                images
            )

        for background in backgrounds:
            images = slice_images(background, row_pixels, col_pixels)
            scores = np.asarray(log_scores(jnp.asarray(images)))
            for y in range(scores.shape[1]):
                matrix = scores[:, y].reshape(2 ** len(row_pixels), -1)
                values = np.linalg.svd(np.exp(matrix - matrix.max()), compute_uv=False)
                ranks.append(int(np.sum(values > SLICE_RTOL * values[0])))
                entropies.append(float(jc.entanglement_entropy(values)))
    return {
        "slice_rank_max": max(ranks),
        "slice_rank_min": min(ranks),
        "slice_entropy_mean": float(np.mean(entropies)),
        "slice_matrix": [2 ** len(row_pixels), 2 ** len(col_pixels)],
    }


def get_config(preset: str = "full") -> dict[str, Any]:
    """The settings: ``"full"`` (the reported run) or ``"quick"``.

    Args:
      preset: ``"full"`` (slices on the blank image and the first 3 test
        images) or ``"quick"`` (the blank image only: renders no blob data).

    Returns:
      ``seed`` (the blob data seed of the ``pooling_geometry`` run, for the
      test-image backgrounds), ``params_dir`` (its work directory),
      ``max_cut_dimension`` (the largest cut dimension ``exact_spectrum`` may
      use) and ``test_backgrounds`` (how many test images serve as slice
      backgrounds besides the blank one).

    Raises:
      ValueError: for an unknown preset.
    """
    if preset not in ("full", "quick"):
        raise ValueError(f"preset must be 'full' or 'quick', got {preset!r}.")
    return {
        "seed": 0,
        "params_dir": "runs/pooling_geometry",
        "max_cut_dimension": 4096,
        "test_backgrounds": 3 if preset == "full" else 0,
    }


def run(config: dict[str, Any], workdir: pathlib.Path) -> dict[str, Any]:
    """Measures every trained ConvAC found in ``config["params_dir"]``.

    Args:
      config: from :func:`get_config`: ``params_dir`` (where
        ``params-<task>-<geometry>.npz`` are), ``max_cut_dimension``,
        ``test_backgrounds`` and ``seed``.
      workdir: the output directory (created if missing).

    Returns:
      ``{"rows": [...]}`` as written to ``results.json``.

    Raises:
      ValueError: if ``test_backgrounds`` is negative or ``max_cut_dimension``
        below 1.
      FileNotFoundError: if no parameter file is found.
    """
    for key, least in (("test_backgrounds", 0), ("max_cut_dimension", 1)):
        if not isinstance(config[key], int) or config[key] < least:
            raise ValueError(
                f"config {key!r} must be an int >= {least}, got {config[key]!r}."
            )
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    files = sorted(pathlib.Path(config["params_dir"]).glob("params-*-*.npz"))
    if not files:
        raise FileNotFoundError(
            f"no params-<task>-<geometry>.npz in {config['params_dir']}; run "
            "experiments/pooling_geometry.py first."
        )
    rows, slices = [], []
    for path in files:
        task, geometry = path.stem.split("-")[1:3]
        params = load_params(path)
        tree = jc.ModeTree.image(SIDE, SIDE, geometry)
        for name, modes in partitions().items():
            record = measure(params, tree, modes, config["max_cut_dimension"])
            rows.append(
                {"task": task, "geometry": geometry, "partition": name, **record}
            )
            print(json.dumps(rows[-1])[:300], flush=True)
        backgrounds = [np.zeros(SIDE * SIDE, np.int32)]
        if config["test_backgrounds"]:
            data = blobs.load_blobs(task, blobs.BlobConfig(seed=config["seed"]))
            images = data["test"][0][: config["test_backgrounds"]]
            backgrounds += list(images.reshape(len(images), -1))
        for name, (row_pixels, col_pixels) in SLICE_PIXELS.items():
            record = slice_measure(params, tree, backgrounds, row_pixels, col_pixels)
            slices.append({"task": task, "geometry": geometry, "slice": name, **record})
            print(json.dumps(slices[-1]), flush=True)
    summary = {"rows": rows, "slices": slices, "config": config}
    (workdir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = format_table(rows) + "\n\n" + format_slices(slices)
    (workdir / "table.md").write_text(table + "\n")
    print(table)
    return summary


def format_nats(value: float) -> str:
    """An entropy in nats: two decimals, or scientific below 0.01."""
    return f"{value:.2e}" if abs(value) < 0.01 else f"{value:.2f}"


def format_power(log10_value: float) -> str:
    """``10^log10_value`` as ``m.me+XX`` (or plainly below ``10^4``), from its log.

    Never forms the number itself, so ``10^500`` prints as ``1.00e+500``.
    """
    if log10_value < 4:
        return f"{10.0**log10_value:.4g}"
    exponent = math.floor(log10_value)
    mantissa = round(10.0 ** (log10_value - exponent), 2)
    if mantissa >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:.2f}e+{exponent:02d}"


def format_table(rows: list[dict]) -> str:
    """Markdown, one line per trained network and partition."""
    lines = [
        "| task | geometry | partition | S_2 y=0 / y=1 (nats) | rank ≥ exp(S_2) "
        "y=0 / y=1 | von Neumann y=0 / y=1 (nats) | Schmidt number y=0 / y=1 | "
        "min-cut bound (ln) | cut dim. |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        bound = (
            f"{format_power(row['ln_bound'] / math.log(10))} ({row['ln_bound']:.1f})"
        )
        renyi2 = " / ".join(format_nats(s) for s in row["renyi2"])
        lower = " / ".join(format_power(p) for p in row["log10_schmidt_lower_bound"])
        if "refused" in row:
            measured, schmidt, cut = "not computed", "—", "above limit"
        else:
            measured = " / ".join(format_nats(e) for e in row["entropy"])
            schmidt = " / ".join(str(s) for s in row["schmidt_number"])
            cut = str(row["cut_dimension"])
        lines.append(
            f"| {row['task']} | {row['geometry']} | {row['partition']} | {renyi2} | "
            f"{lower} | {measured} | {schmidt} | {bound} | {cut} |"
        )
    return "\n".join(lines)


def format_slices(slices: list[dict]) -> str:
    """Markdown, one line per trained network and slice."""
    lines = [
        "| task | geometry | slice (free pixels) | matrix | rank min–max | "
        "mean entropy (nats) |",
        "|---|---|---|---|---:|---:|",
    ]
    for row in slices:
        rows_, cols = row["slice_matrix"]
        lines.append(
            f"| {row['task']} | {row['geometry']} | {row['slice']} | {rows_}×{cols} | "
            f"{row['slice_rank_min']}–{row['slice_rank_max']} | "
            f"{row['slice_entropy_mean']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the measurement from the command line (see :mod:`jaxconvac.cli`)."""
    return cli.main(argv, sys.modules[__name__])


if __name__ == "__main__":
    main(sys.argv[1:])
