"""Times the batched rank experiment against a plain NumPy loop.

The experiment (COLT 2016, SPEC §8): draw a random deep ConvAC over the
balanced binary tree on ``N`` modes, form its coefficient tensor, matricize it
by the odd/even split and count its rank, which the theorem puts at
``min(r_0, M)^(N/2)`` for almost every draw. Contenders, over the same number
of draws:

* ours, float64: one ``jax.jit`` of ``jax.vmap`` over keys of
  ``init_decomposition`` → ``coefficient_tensor`` → ``matricize`` →
  ``numerical_rank`` (the SVD rank at ``max(rows, cols) · eps``);
* reference: a NumPy loop drawing the weights with ``np.random.default_rng``,
  building the tensor level by level (outer products and ``@``), matricizing
  (``transpose`` + ``reshape``) and calling ``numpy.linalg.matrix_rank``, whose
  default tolerance is the same ``max(rows, cols) · eps · σ_max``;
* ours, exact: the same pipeline on integer weights, modulo a prime, with
  ``exact_rank`` (a certified lower bound on the real rank).

The target ratio (NumPy loop / ours, float64) is 10×. Both float sides count
ranks of the same trustworthiness (float64 SVD, same tolerance): the script
checks this by putting the NumPy loop's own draws through our code and
comparing every rank (and the first tensors entry by entry), and prints how
many draws reach the theorem's rank on each side. It also times the rank step
alone on both sides (the same matrices), to show how much of each side is
LAPACK's SVD. BLAS/LAPACK runs on ``--blas-threads`` threads on both sides
(JAX's CPU SVD calls SciPy's OpenBLAS LAPACK, NumPy its own OpenBLAS); the
default, 1, was the faster setting for the NumPy loop on the loaded 2-core
machine it was written on.

Command::

    python benchmarks/bench_ranks.py [--modes 8 16] [--draws 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math

import _timing
import jax
import jax.numpy as jnp
import numpy as np

import jaxconvac as jc
from jaxconvac.ranks import DEFAULT_MODULUS

INTEGER_RANGE = 2**20
"""Integer weights are drawn uniformly from ``[-INTEGER_RANGE, INTEGER_RANGE]``."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--modes", type=int, nargs="+", default=[8, 16], help="N, powers of 2"
    )
    parser.add_argument("--draws", type=int, default=256, help="random networks")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds")
    parser.add_argument("--num-descriptors", type=int, default=2, help="M")
    parser.add_argument("--r0", type=int, default=2, help="width of level 0")
    parser.add_argument(
        "--width", type=int, default=None, help="width of levels 1…L-1 (r_0)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help="ours runs jax.lax.map over chunks of this many vmapped draws "
        "(0: one vmap over all draws)",
    )
    parser.add_argument("--blas-threads", type=int, default=1)
    parser.add_argument(
        "--exact-batch-size",
        type=int,
        default=16,
        help="chunk size of the exact-rank run (0: one vmap; -1: skip it)",
    )
    parser.add_argument(
        "--min-sample", type=float, default=0.2, help="shortest timed sample (s)"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


# -- the NumPy reference ------------------------------------------------------


def numpy_network(
    rng: np.random.Generator,
    num_modes: int,
    widths: tuple[int, ...],
    num_descriptors: int,
) -> list[np.ndarray]:
    """Standard normal weights of a locally connected deep ConvAC, leaves first.

    Level ``l`` holds one ``(r_l, r_{l-1})`` matrix per node, ``N / 2**l``
    nodes; the root maps to one output.
    """
    sizes = (num_descriptors, *widths, 1)
    return [
        rng.standard_normal((num_modes >> level, sizes[level + 1], sizes[level]))
        for level in range(len(widths) + 1)
    ]


def numpy_coefficient_tensor(weights: list[np.ndarray]) -> np.ndarray:
    """The coefficient tensor of a balanced binary tree decomposition.

    ``phi[n, α]`` is node ``n``'s tensor for channel ``α``, flattened with the
    leftmost mode most significant; siblings pool by an outer product and the
    parent's weights mix the channels.
    """
    phi = weights[0]  # (N, r_0, M): leaf i, channel α is W^i[α, :].
    for level_weights in weights[1:]:
        left, right = phi[0::2], phi[1::2]
        pooled = left[..., :, None] * right[..., None, :]
        phi = level_weights @ pooled.reshape(*left.shape[:2], -1)
    num_modes, num_descriptors = weights[0].shape[0], weights[0].shape[2]
    return phi[0, 0].reshape((num_descriptors,) * num_modes)


def numpy_odd_even_rank(tensor: np.ndarray) -> int:
    """``numpy.linalg.matrix_rank`` of the odd/even matricization."""
    order = tensor.ndim
    axes = [*range(0, order, 2), *range(1, order, 2)]
    rows = math.prod(tensor.shape[: order // 2])
    return int(np.linalg.matrix_rank(tensor.transpose(axes).reshape(rows, -1)))


def numpy_loop(
    seed: int, draws: int, num_modes: int, widths: tuple[int, ...], num_descriptors: int
) -> list[int]:
    rng = np.random.default_rng(seed)
    return [
        numpy_odd_even_rank(
            numpy_coefficient_tensor(
                numpy_network(rng, num_modes, widths, num_descriptors)
            )
        )
        for _ in range(draws)
    ]


# -- ours ---------------------------------------------------------------------


def integer_weights(key: jax.Array, shape, dtype) -> jax.Array:
    return jax.random.randint(key, shape, -INTEGER_RANGE, INTEGER_RANGE + 1, dtype)


def make_experiments(tree: jc.ModeTree, widths: tuple[int, ...], args):
    """Per-draw functions of a key: float weights, float rank, exact rank."""
    rows = jc.odd_even_modes(tree.num_modes)
    settings = dict(num_descriptors=args.num_descriptors, widths=widths, num_outputs=1)

    def float_weights(key):
        return jc.init_decomposition(key, tree, dtype=jnp.float64, **settings)

    def float_rank(key):
        tensor = jc.coefficient_tensor(float_weights(key), tree)
        return jc.numerical_rank(jc.matricize(tensor[0], rows))

    def exact_rank(key):
        params = jc.init_decomposition(
            key, tree, dtype=jnp.int64, initializer=integer_weights, **settings
        )
        tensor = jc.coefficient_tensor(params, tree, modulus=DEFAULT_MODULUS)
        return jc.exact_rank(jc.matricize(tensor[0], rows), modulus=DEFAULT_MODULUS)

    return float_weights, float_rank, exact_rank


def batched(fn, batch_size: int):
    if not batch_size:
        return jax.vmap(fn)
    return lambda keys: jax.lax.map(fn, keys, batch_size=batch_size)


# -- one configuration --------------------------------------------------------


def numpy_draws_through_ours(tree, args, widths):
    """The NumPy loop's own draws, put through our tensor, matricization, rank.

    Returns ``(ranks, matrices, error)``: our rank of every NumPy draw, our
    odd/even matrices (to time the rank step alone) and the largest relative
    difference between our coefficient tensors and NumPy's (first 8 draws).
    """
    rng = np.random.default_rng(args.seed)
    draws = [
        numpy_network(rng, tree.num_modes, widths, args.num_descriptors)
        for _ in range(args.draws)
    ]
    stacked = tuple(np.stack(level) for level in zip(*draws, strict=True))
    rows = jc.odd_even_modes(tree.num_modes)

    def tensor_and_matrix(params):
        tensor = jc.coefficient_tensor(params, tree)[0]
        return tensor, jc.matricize(tensor, rows)

    tensors, matrices = jax.jit(jax.vmap(tensor_and_matrix))(stacked)
    ranks = jax.jit(jax.vmap(jc.numerical_rank))(matrices)
    error = max(
        np.abs(tensors[i] - numpy_coefficient_tensor(draws[i])).max()
        / np.abs(tensors[i]).max()
        for i in range(min(8, args.draws))
    )
    return np.asarray(ranks), matrices, error


def report_times(times, draws, repeats, min_sample):
    print(
        f"time for {draws} draws, median of {repeats} samples (each sample "
        f"repeats the call to last >= {min_sample} s):"
    )
    for name, values in times.items():
        print(f"  {name:<44} {_timing.spread(values)}")


def run_configuration(num_modes: int, args: argparse.Namespace) -> float:
    """Times one ``N``; returns the ratio NumPy loop / ours (float64)."""
    tree = jc.ModeTree.balanced(num_modes)
    width = args.r0 if args.width is None else args.width
    widths = (args.r0, *(width,) * (tree.depth - 1))
    theorem = min(args.r0, args.num_descriptors) ** (num_modes // 2)
    side, draws = args.num_descriptors ** (num_modes // 2), args.draws
    print(
        f"\n== N={num_modes}, M={args.num_descriptors}, widths {widths}, "
        f"{draws} draws: {side}x{side} matrices, theorem rank "
        f"min(r_0, M)^(N/2) = {theorem}"
    )

    keys = jax.random.split(jax.random.key(args.seed), draws)
    _, float_rank, exact_rank = make_experiments(tree, widths, args)
    ours_float, compile_float = _timing.compile_jitted(
        batched(float_rank, args.batch_size), keys
    )
    ranks_only, compile_ranks = _timing.compile_jitted(
        jax.vmap(jc.numerical_rank), jnp.zeros((draws, side, side))
    )
    compiled = (
        f"ours float64 {compile_float:.2f} s (rank step alone {compile_ranks:.2f} s)"
    )
    if args.exact_batch_size >= 0:
        ours_exact, compile_exact = _timing.compile_jitted(
            batched(exact_rank, args.exact_batch_size), keys
        )
        compiled += f", ours exact {compile_exact:.2f} s"
    print(f"compile (not in the times below): {compiled}")

    our_ranks = np.asarray(ours_float(keys))
    ours_on_numpy_draws, matrices, error = numpy_draws_through_ours(tree, args, widths)
    numpy_matrices = list(np.asarray(matrices))
    calls = {
        "NumPy loop, float64 matrix_rank": lambda: numpy_loop(
            args.seed, draws, num_modes, widths, args.num_descriptors
        ),
        "ours, float64 numerical_rank": lambda: ours_float(keys),
        "  rank step alone, NumPy matrix_rank loop": lambda: [
            np.linalg.matrix_rank(m) for m in numpy_matrices
        ],
        "  rank step alone, ours vmap numerical_rank": lambda: ranks_only(matrices),
    }
    if args.exact_batch_size >= 0:
        calls["ours, exact_rank mod p (certified)"] = lambda: ours_exact(keys)
    times, results = _timing.time_round_robin(
        calls, repeats=args.repeats, min_sample=args.min_sample
    )

    reference_ranks = np.asarray(results["NumPy loop, float64 matrix_rank"])
    print(
        f"certainty: draws at the theorem's rank: ours float64 "
        f"{np.sum(our_ranks == theorem)}/{draws}, NumPy loop "
        f"{np.sum(reference_ranks == theorem)}/{draws} (both: float64 SVD, "
        f"rank at tol = max(rows, cols)·eps·σ_max)"
    )
    print(
        f"           our code on the NumPy loop's {draws} draws gives its rank "
        f"for {np.sum(ours_on_numpy_draws == reference_ranks)}/{draws}; "
        f"coefficient tensors agree to {error:.1e} (max relative error, first "
        f"8 draws)"
    )
    if args.exact_batch_size >= 0:
        exact_ranks = np.asarray(results["ours, exact_rank mod p (certified)"])
        print(
            f"           ours exact (integer weights in ±2^20, rank mod "
            f"{DEFAULT_MODULUS}): {np.sum(exact_ranks == theorem)}/{draws} "
            f"certified at the theorem's rank"
        )
    report_times(times, draws, args.repeats, args.min_sample)

    medians = {name: _timing.median(values) for name, values in times.items()}
    names = list(medians)
    ratio = medians[names[0]] / medians[names[1]]
    best = min(times[names[0]]) / min(times[names[1]])
    print(
        f"ratio NumPy loop / ours (float64, equal certainty): {ratio:.2f}x "
        f"(of the fastest samples: {best:.2f}x)"
    )
    print(f"ratio of the rank step alone: {medians[names[2]] / medians[names[3]]:.2f}x")
    share = medians[names[2]] / medians[names[0]]
    print(f"share of the NumPy loop spent in matrix_rank: {share:.0%}")
    if args.exact_batch_size >= 0:
        exact = medians[names[0]] / medians[names[4]]
        print(f"ratio NumPy loop (float64) / ours exact (certified): {exact:.2f}x")
    verdict = "met" if ratio >= 10 else f"missed by a factor {10 / ratio:.1f}"
    print(f"target >= 10x (float64, equal certainty): {verdict}")
    return ratio


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    limiter = _timing.limit_blas_threads(args.blas_threads)
    print("bench_ranks: batched rank experiment vs a plain NumPy loop")
    for line in _timing.environment_lines():
        print(line)

    def layout(batch_size):
        if batch_size:
            return f"jax.lax.map over chunks of {batch_size} vmapped draws"
        return "one jax.vmap over all draws"

    exact = "skipped"
    if args.exact_batch_size >= 0:
        exact = layout(args.exact_batch_size)
    print(f"ours float64: {layout(args.batch_size)}; ours exact: {exact}")
    summary = {n: run_configuration(n, args) for n in args.modes}
    print("\nsummary, NumPy loop / ours (float64, equal certainty):")
    for num_modes, ratio in summary.items():
        print(f"  N={num_modes}: {ratio:.2f}x (target >= 10x)")
    limiter.restore_original_limits()


if __name__ == "__main__":
    main()
