"""Times ``exact_spectrum`` on 32×32-pixel ConvACs, partition by partition.

The networks are deep ConvACs over ``ModeTree.image(32, 32)`` (five levels of
2×2 square pooling, ``M = 2`` descriptors per pixel, as the pooling-geometry
experiment's): three with random weights (no sharing), and, with
``--trained DIR``, the trained square-pooled ConvACs a ``pooling_geometry.py``
work directory holds (``params-<task>-square.npz``, log-space, full sharing).
The time depends on the widths, the partition and — through the numerical
ranks of the nodes' Gram matrices (``rank_rtol``) — on the weights: random
weights span every channel, trained ones often far fewer. The partitions are
the halves, a quadrant, single blocks (tree nodes), and unions of tree nodes:
siblings, far apart, at different levels. The target is under one second per
partition (all outputs) on the CPU.

For every (network, partition) the script prints the cut dimension (the size
of the final eigenproblem), the median wall time over ``--repeats`` calls,
the CPU time of the same calls (both BLAS threads count), the entanglement
entropy of output 0 and whether the median meets the target. The reference
is the *eigensolver floor*: the median time of ``numpy.linalg.eigvalsh`` on a
random symmetric matrix of the cut dimension, once per output — the last step
of any exact spectrum of that dimension; the ratio shows what the rest of the
computation adds. Partitions whose cut dimension is above the default limit
are reported as refused, with the library's message.

Command::

    python benchmarks/bench_spectrum.py [--repeats 5] [--blas-threads 1]
        [--trained runs/pooling_geometry] [--skip-random]
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import time

import _timing
import jax
import numpy as np

import jaxconvac as jc
from jaxconvac.entanglement import entanglement_entropy, exact_spectrum

SIDE = 32
NETWORKS = {
    # name: (widths, num_outputs)
    "geometry 128x5, Y=2": ((128,) * 5, 2),
    "ramp 8..128, Y=10": ((8, 16, 32, 64, 128), 10),
    "flat 64x5, Y=10": ((64,) * 5, 10),
}


def partitions(tree: jc.ModeTree) -> dict[str, list[int]]:
    """Named pixel sets of a 32×32 image (positions ``row * 32 + col``)."""
    pixels = np.arange(SIDE * SIDE).reshape(SIDE, SIDE)

    def node(level: int, row: int, col: int) -> list[int]:
        side = 2**level
        return pixels[row : row + side, col : col + side].ravel().tolist()

    # Every block below is one node of the square-pooling tree.
    assert set(node(2, 4, 8)) in [set(n) for n in tree.nodes(2)]
    return {
        "left half": pixels[:, : SIDE // 2].ravel().tolist(),
        "top half": pixels[: SIDE // 2].ravel().tolist(),
        "quadrant": node(4, 0, 0),
        "block 2x2": node(1, 6, 10),
        "block 4x4": node(2, 4, 8),
        "block 8x8": node(3, 8, 8),
        "2 sibling 4x4 blocks": node(2, 0, 0) + node(2, 0, 4),
        "2x2 + 2x2, far": node(1, 2, 2) + node(1, 20, 26),
        "2x2 + 8x8, far": node(1, 2, 2) + node(3, 16, 24),
        "quadrant + 2x2": node(4, 0, 0) + node(1, 30, 30),
        "3 nodes, 3 levels": node(1, 18, 2) + node(2, 4, 28) + node(3, 24, 16),
        "4x4 + 4x4, far": node(2, 0, 0) + node(2, 28, 28),
        "centre 16x16": pixels[8:24, 8:24].ravel().tolist(),
    }


@functools.cache
def eigensolver_floor(dimension: int, repeats: int) -> float:
    """Median seconds of ``eigvalsh`` on a random symmetric matrix of ``dimension``."""
    matrix = np.random.default_rng(0).normal(size=(dimension, dimension))
    matrix = matrix + matrix.T
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.linalg.eigvalsh(matrix)
        walls.append(time.perf_counter() - start)
    return _timing.median(walls)


def trained_networks(directory: pathlib.Path) -> dict[str, tuple]:
    """``{name: (log-params, space)}`` of the square-pooled nets of a work dir."""
    found = {}
    for path in sorted(directory.glob("params-*-square.npz")):
        with np.load(path) as archive:
            names = sorted(archive.files, key=lambda name: int(name[1:]))
            params = tuple(archive[name] for name in names)
        task = path.stem.removeprefix("params-").removesuffix("-square")
        widths = tuple(w.shape[1] for w in params[:-1])
        found[f"trained {task}, widths {widths}, Y={params[-1].shape[1]}"] = (
            params,
            "log",
        )
    if not found:
        raise SystemExit(f"--trained {directory}: no params-*-square.npz there.")
    return found


def time_network(tree, named, params, space: str, repeats: int) -> None:
    """Prints one table: every partition of ``named`` on one network."""
    num_outputs = params[-1].shape[1]
    header = (
        f"{'partition':<22} {'cut dim':>7} {'median wall':>12} "
        f"{'cpu/call':>9} {'eig floor':>10} {'ratio':>6} {'entropy y=0':>11}  < 1 s"
    )
    print(header)
    print("-" * len(header))
    for name, rows in named.items():
        try:
            spectrum = exact_spectrum(params, tree, rows, space=space)  # Warm-up.
        except ValueError as error:
            print(f"{name:<22} refused: {error}")
            continue
        walls, cpu = [], time.process_time()
        for _ in range(repeats):
            start = time.perf_counter()
            exact_spectrum(params, tree, rows, space=space)
            walls.append(time.perf_counter() - start)
        cpu = (time.process_time() - cpu) / repeats
        wall = _timing.median(walls)
        floor = num_outputs * eigensolver_floor(spectrum.cut_dimension, repeats)
        entropy = float(entanglement_entropy(spectrum.singular_values[0]))
        print(
            f"{name:<22} {spectrum.cut_dimension:>7} "
            f"{_timing.seconds(wall):>12} {_timing.seconds(cpu):>9} "
            f"{_timing.seconds(floor):>10} {wall / floor:>6.1f} "
            f"{entropy:>11.4g}  {'yes' if wall < 1 else 'NO'}"
        )


def main(argv: list[str] | None = None) -> None:
    """Runs the benchmark and prints one table per network."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls")
    parser.add_argument("--blas-threads", type=int, default=1, help="0: no limit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--trained",
        type=pathlib.Path,
        default=None,
        help="a pooling_geometry.py work directory: also time its square nets",
    )
    parser.add_argument(
        "--skip-random", action="store_true", help="time the trained nets only"
    )
    args = parser.parse_args(argv)
    if args.blas_threads:
        _timing.limit_blas_threads(args.blas_threads)
    for line in _timing.environment_lines():
        print(line)
    tree = jc.ModeTree.image(SIDE, SIDE)
    named = partitions(tree)
    networks = {}
    if not args.skip_random:
        for network, (widths, num_outputs) in NETWORKS.items():
            params = jc.init_decomposition(
                jax.random.key(args.seed),
                tree,
                num_descriptors=2,
                widths=widths,
                num_outputs=num_outputs,
            )
            name = f"{network}: random, widths {widths}"
            networks[name] = (tuple(np.asarray(p) for p in params), "linear")
    if args.trained is not None:
        networks.update(trained_networks(args.trained))
    for network, (params, space) in networks.items():
        print(f"\n{network}")
        time_network(tree, named, params, space, args.repeats)


if __name__ == "__main__":
    main()
