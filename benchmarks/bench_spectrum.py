"""Times ``exact_spectrum`` on 32×32-pixel ConvACs, partition by partition.

The networks are deep ConvACs over ``ModeTree.image(32, 32)`` (five levels of
2×2 square pooling, ``M = 2`` descriptors per pixel, as the pooling-geometry
experiment's), with random weights: the time of ``exact_spectrum`` does not
depend on the weights' values, only on the widths and the partition. The
partitions are the halves, a quadrant, single blocks (tree nodes), and unions
of tree nodes: siblings, far apart, at different levels. The target is under
one second per partition (all outputs) on the CPU.

For every (network, partition) the script prints the cut dimension (the size
of the final eigenproblem), the median wall time over ``--repeats`` calls,
the CPU time of the same calls (both BLAS threads count), the entanglement
entropy of output 0 and whether the median meets the target. Partitions
whose cut dimension is above the default limit are reported as refused, with
the library's message.

Command::

    python benchmarks/bench_spectrum.py [--repeats 5] [--blas-threads 1]
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> None:
    """Runs the benchmark and prints one table per network."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls")
    parser.add_argument("--blas-threads", type=int, default=1, help="0: no limit")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.blas_threads:
        _timing.limit_blas_threads(args.blas_threads)
    for line in _timing.environment_lines():
        print(line)
    tree = jc.ModeTree.image(SIDE, SIDE)
    named = partitions(tree)
    for network, (widths, num_outputs) in NETWORKS.items():
        params = jc.init_decomposition(
            jax.random.key(args.seed),
            tree,
            num_descriptors=2,
            widths=widths,
            num_outputs=num_outputs,
        )
        params = tuple(np.asarray(p) for p in params)
        print(f"\n{network}: widths {widths}")
        header = (
            f"{'partition':<22} {'cut dim':>7} {'median wall':>12} "
            f"{'cpu/call':>9} {'entropy y=0':>11}  < 1 s"
        )
        print(header)
        print("-" * len(header))
        for name, rows in named.items():
            try:
                spectrum = exact_spectrum(params, tree, rows)  # Warm-up.
            except ValueError as error:
                print(f"{name:<22} refused: {error}")
                continue
            walls, cpu = [], time.process_time()
            for _ in range(args.repeats):
                start = time.perf_counter()
                exact_spectrum(params, tree, rows)
                walls.append(time.perf_counter() - start)
            cpu = (time.process_time() - cpu) / args.repeats
            wall = _timing.median(walls)
            entropy = float(entanglement_entropy(spectrum.singular_values[0]))
            print(
                f"{name:<22} {spectrum.cut_dimension:>7} "
                f"{_timing.seconds(wall):>12} {_timing.seconds(cpu):>9} "
                f"{entropy:>11.4f}  {'yes' if wall < 1 else 'NO'}"
            )


if __name__ == "__main__":
    main()
