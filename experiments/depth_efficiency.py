"""Depth efficiency of ConvACs: COLT 2016 Theorem 1 checked on random networks.

Cohen, Sharir and Shashua (COLT 2016, Theorem 1): the coefficient tensor ``A``
of a deep ConvAC (the hierarchical Tucker decomposition over the balanced
binary mode tree, ``N`` leaves, ``M`` descriptors, leaf width ``r_0``) has an
odd/even matricization of rank ``min(r_0, M)^{N/2}`` for almost every weight
setting, while a shallow ConvAC (the CP decomposition) with ``Z`` terms has
rank at most ``Z``: a shallow network needs ``Z ≥ min(r_0, M)^{N/2}`` terms to
realise what the deep one does.

The value ``min(r_0, M)^{N/2}`` does not depend on the widths ``r_1 …`` above
the leaves: it is an upper bound for every weight setting (each column of the
matricization lies in a tensor product of ``N/2`` spaces of dimension
``min(r_0, M)``, spanned by the leaf vectors of one pair of siblings), and the
paper's lower-bound construction uses one channel per upper node only. The
experiment checks this on two extra configurations, with upper widths 1 and
with upper widths doubling per level.

For every configuration the experiment draws ``draws`` (deep, default 32) or
``shallow_draws`` (shallow, default 16: a shallow draw forms a ``Z · M^N``
intermediate) random networks as one jitted function vmapped over
``jax.random`` keys; the 45 functions compile in worker threads while earlier
ones run. Each network's weights are integers drawn uniformly from ``[-K, K]``,
``K = 2**weight_bits``, and that one draw is analysed twice:

* *exact*: the coefficient tensor modulo the prime ``p = 2**26 - 5`` (exact
  integer arithmetic), matricized, ranked by Gaussian elimination over
  ``GF(p)``. The result is a certified lower bound on the rank over the reals;
  since the theorem's value is also an upper bound (above), an exact rank equal
  to it certifies the rank.
* *float*: the same weights times ``2**-weight_bits`` (an exact rescaling, so
  the same network up to a global factor) in float64, ranked by the count of
  singular values above ``max(rows, cols) · eps · σ_max`` (the library's
  default tolerance). The gap ``σ_{r-1} / σ_r`` at that rank and the spread
  ``σ_0 / σ_{R-1}`` at the predicted rank ``R`` say how far to trust it: deep
  networks at ``N = 16`` have spreads of ``1e10`` and more, so the float rank
  can fall short of the true one.

Why integer draws reach the generic value: for a rank below ``R`` every
``R × R`` minor must vanish. One such minor is a polynomial in the weights that
is not zero modulo ``p`` (the theorem's construction with 0/1 weights gives a
minor ``±1``); each tensor entry has degree ``D`` (one weight per node of the
tree), so the minor has degree ``R · D``, and by the Schwartz–Zippel lemma it
vanishes at a uniform draw from ``[-K, K]`` with probability at most
``R · D / (2K + 1)`` (over ``GF(p)``, as ``2K + 1 < p``). The experiment prints
that bound per configuration (at most 0.4 % at ``K = 2**20``); the real miss
rate is far lower, and any miss is reported, never hidden. Small ranges miss
often: at ``K = 3`` only 13 of 32 draws with ``M = 2, N = 4, r_0 = 2`` reached
rank 4 in a trial (37 % of 2 000 in an independent NumPy check).

Command (about 180 s of CPU time, ~105 s of it compiling; 5.4 min of wall time
on a shared 2-core machine at load average 7–8)::

    python experiments/depth_efficiency.py --workdir runs/depth_efficiency

The flags are :mod:`jaxconvac.cli`'s: ``--preset full|quick`` (``--quick``:
three tiny configurations), ``--seed``, ``--set KEY=VALUE`` for the keys of
:func:`get_config` (``draws``, ``shallow_draws``, ``weight_bits``,
``compile_workers``), ``--print-config``. An analysis, not a training run:
``--resume`` is refused.

Expected result: the exact rank equals ``min(r_0, M)^{N/2}`` on every deep
draw and ``min(Z, M^{N/2})`` on every shallow draw, e.g. ``SUMMARY: exact rank
matched the theorem on 640/640 deep draws; ...``; the float64 SVD rank falls
short on a few ``N = 16``, ``M = 2`` draws. The work directory gets
``config.json`` and ``summary.json`` (by the CLI), ``metrics.jsonl`` (one line
per configuration, per-draw values included), ``results.json`` and
``ranks.png``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import jaxconvac as jc
from jaxconvac import cli

DEEP_GRID = ((2, (4, 8, 16)), (3, (4, 8)))
LEAF_WIDTHS = (1, 2, 3, 4)
ENTRIES_PER_CHUNK = 2**25
"""The most tensor entries (draws × entries of the widest intermediate) one
vmapped chunk may hold; larger batches are mapped chunk by chunk."""


@dataclasses.dataclass(frozen=True)
class Case:
    """One configuration: a network family, its sizes and its predicted rank.

    Attributes:
      kind: ``"deep"`` (all widths ``r_0``), ``"deep-upper"`` (other upper
        widths) or ``"shallow"``.
      num_descriptors: ``M``.
      num_modes: ``N``.
      widths: ``(r_0, …, r_{L-1})``; ``(Z,)`` for a shallow network.
      predicted: the generic rank of the odd/even matricization,
        ``min(r_0, M)^{N/2}`` (deep) or ``min(Z, M^{N/2})`` (shallow).
      bound: the rank's upper bound for every weight setting:
        ``min(r_0, M)^{N/2}`` (deep) or ``Z`` (shallow).
    """

    kind: str
    num_descriptors: int
    num_modes: int
    widths: tuple[int, ...]
    predicted: int
    bound: int

    @property
    def tree(self) -> jc.ModeTree:
        """The balanced binary tree (deep) or the one-level tree (shallow)."""
        if self.kind == "shallow":
            return jc.ModeTree.shallow(self.num_modes)
        return jc.ModeTree.balanced(self.num_modes, 2)

    @property
    def num_nodes(self) -> int:
        """Nodes of the tree, root included: the degree of every tensor entry."""
        tree = self.tree
        return sum(tree.num_nodes(level) for level in range(tree.depth + 1))

    @property
    def widest_entries(self) -> int:
        """Entries of the largest intermediate of ``coefficient_tensor``."""
        return max(self.widths) * self.num_descriptors**self.num_modes

    @property
    def label(self) -> str:
        """``r_0`` (deep, upper widths shown if they differ) or ``Z``."""
        if self.kind == "shallow":
            return f"Z={self.widths[0]}"
        if self.kind == "deep-upper":
            return "r=" + ",".join(str(w) for w in self.widths)
        return f"r0={self.widths[0]}"


def deep_case(num_descriptors: int, num_modes: int, widths: Sequence[int]) -> Case:
    """A deep ConvAC over ``ModeTree.balanced(num_modes, 2)``."""
    widths = tuple(widths)
    rank = min(widths[0], num_descriptors) ** (num_modes // 2)
    kind = "deep" if len(set(widths)) == 1 else "deep-upper"
    return Case(kind, num_descriptors, num_modes, widths, rank, rank)


def shallow_case(num_descriptors: int, num_modes: int, num_terms: int) -> Case:
    """A shallow ConvAC (CP decomposition) with ``num_terms`` (``Z``) terms."""
    full = num_descriptors ** (num_modes // 2)
    return Case(
        "shallow",
        num_descriptors,
        num_modes,
        (num_terms,),
        min(num_terms, full),
        num_terms,
    )


def shallow_terms(num_descriptors: int, num_modes: int) -> tuple[int, ...]:
    """``Z`` values for a shallow net: powers of 4 below ``M^{N/2}``, it, twice it."""
    full = num_descriptors ** (num_modes // 2)
    below = [4**k for k in range(full.bit_length()) if 4**k < full]
    return (*below, full, 2 * full)


def build_cases(*, quick: bool = False) -> list[Case]:
    """The configurations of the experiment (three tiny ones when ``quick``)."""
    if quick:
        return [
            deep_case(2, 4, (3, 3)),
            deep_case(2, 8, (2, 1, 1)),
            shallow_case(2, 4, 8),
        ]
    cases = []
    for num_descriptors, sizes in DEEP_GRID:
        for num_modes in sizes:
            depth = jc.ModeTree.balanced(num_modes, 2).depth
            cases += [
                deep_case(num_descriptors, num_modes, (r_0,) * depth)
                for r_0 in LEAF_WIDTHS
            ]
    cases += [deep_case(3, 8, (3, 1, 1)), deep_case(3, 8, (3, 6, 12))]
    for num_descriptors, sizes in DEEP_GRID:
        for num_modes in sizes:
            terms = shallow_terms(num_descriptors, num_modes)
            cases += [shallow_case(num_descriptors, num_modes, z) for z in terms]
    return cases


def parameter_shapes(case: Case) -> tuple[tuple[int, ...], ...]:
    """The shapes ``(groups, out, in)`` of ``init_decomposition``'s weights."""
    abstract = jax.eval_shape(
        lambda key: jc.init_decomposition(
            key,
            case.tree,
            num_descriptors=case.num_descriptors,
            widths=case.widths,
            num_outputs=1,
            sharing="none",
            dtype=jnp.int64,
            initializer=jax.nn.initializers.zeros,
        ),
        jax.random.key(0),
    )
    return tuple(weights.shape for weights in abstract)


def draw_integer_params(
    key: jax.Array, shapes: Sequence[tuple[int, ...]], weight_range: int
) -> tuple[jax.Array, ...]:
    """Weights of the given shapes, i.i.d. uniform integers in ``[-K, K]``.

    One ``jax.random.randint`` call fills every level: the same distribution as
    ``init_decomposition`` with an integer initializer, but one random-bit
    generator per draw instead of one per level and a key split, which keeps
    the compile time of the jitted experiment low (each threefry call site
    costs about half a second of XLA compilation on CPU).
    """
    sizes = [math.prod(shape) for shape in shapes]
    flat = jax.random.randint(
        key, (sum(sizes),), -weight_range, weight_range + 1, dtype=jnp.int64
    )
    pieces = jnp.split(flat, np.cumsum(sizes)[:-1].tolist())
    return tuple(
        piece.reshape(shape) for piece, shape in zip(pieces, shapes, strict=True)
    )


def draw_ranks(
    key: jax.Array, case: Case, *, weight_bits: int, modulus: int
) -> dict[str, jax.Array]:
    """Draws one integer network and ranks its odd/even matricization two ways.

    Args:
      key: a ``jax.random.key``.
      case: the configuration.
      weight_bits: weights are uniform integers in ``[-2**weight_bits,
        2**weight_bits]``.
      modulus: the prime of the exact rank.

    Returns:
      Scalars: ``exact_rank`` (elimination modulo ``modulus``),
      ``float_rank`` (float64 SVD, default tolerance), ``log10_gap`` (of
      ``σ_{r-1} / σ_r`` at the float rank ``r``; ``inf`` when nothing is
      left out), ``log10_spread`` (of ``σ_0 / σ_{R-1}`` at the predicted rank
      ``R``) and ``log10_tolerance`` (of the cut relative to ``σ_0``).
    """
    tree = case.tree
    rows = jc.odd_even_modes(case.num_modes)
    params = draw_integer_params(key, parameter_shapes(case), 2**weight_bits)

    residues = jc.coefficient_tensor(params, tree, modulus=modulus)
    exact = jc.exact_rank(jc.matricize(residues[0], rows), modulus=modulus)

    scale = 2.0**-weight_bits
    scaled = tuple(w.astype(jnp.float64) * scale for w in params)
    matrix = jc.matricize(jc.coefficient_tensor(scaled, tree)[0], rows)
    values = jc.singular_values(matrix)
    rank = jc.numerical_rank(matrix)
    tolerance = max(matrix.shape) * jnp.finfo(jnp.float64).eps
    return {
        "exact_rank": exact,
        "float_rank": rank,
        "log10_gap": jnp.log10(jc.singular_value_gap(values, rank)),
        "log10_spread": jnp.log10(values[0] / values[case.predicted - 1]),
        "log10_tolerance": jnp.log10(jnp.asarray(tolerance)),
    }


def chunk_size(case: Case, draws: int) -> int:
    """The largest divisor of ``draws`` whose chunk fits ``ENTRIES_PER_CHUNK``."""
    limit = max(1, ENTRIES_PER_CHUNK // case.widest_entries)
    return max(d for d in range(1, draws + 1) if draws % d == 0 and d <= limit)


def batched_ranks(
    case: Case, *, draws: int, weight_bits: int, modulus: int
) -> Callable[[jax.Array], dict[str, jax.Array]]:
    """One jitted function of ``(draws,)`` keys: :func:`draw_ranks` vmapped.

    Large shallow networks are vmapped in chunks (``jax.lax.map`` with a
    ``batch_size``) so that the ``Z · M^N`` intermediate fits in memory.
    """

    def one(key: jax.Array) -> dict[str, jax.Array]:
        return draw_ranks(key, case, weight_bits=weight_bits, modulus=modulus)

    size = chunk_size(case, draws)
    if size == draws:
        return jax.jit(jax.vmap(one))
    return jax.jit(lambda keys: jax.lax.map(one, keys, batch_size=size))


def compile_case(
    case: Case, keys: jax.Array, *, weight_bits: int, modulus: int
) -> tuple[Callable, float]:
    """Traces and compiles one configuration for ``keys`` of shape ``(draws,)``.

    Returns:
      The compiled function and the seconds spent. Safe to call from worker
      threads: XLA compiles without holding the GIL, so several
      configurations compile at once on several cores.
    """
    start = time.perf_counter()
    function = batched_ranks(
        case, draws=keys.shape[0], weight_bits=weight_bits, modulus=modulus
    )
    compiled = function.lower(keys).compile()
    return compiled, time.perf_counter() - start


def run_case(
    case: Case,
    compiled: Callable,
    keys: jax.Array,
    *,
    weight_bits: int,
    modulus: int,
) -> dict:
    """Runs one compiled configuration; returns its record (plain Python)."""
    start = time.perf_counter()
    out = jax.device_get(jax.block_until_ready(compiled(keys)))
    run_s = time.perf_counter() - start

    draws = keys.shape[0]
    exact = np.asarray(out["exact_rank"]).astype(int)
    floats = np.asarray(out["float_rank"]).astype(int)
    return {
        **dataclasses.asdict(case),
        "label": case.label,
        "draws": draws,
        "weight_range": 2**weight_bits,
        "modulus": modulus,
        "miss_probability_bound": case.predicted
        * case.num_nodes
        / (2 * 2**weight_bits + 1),
        "exact_ranks": exact.tolist(),
        "float_ranks": floats.tolist(),
        "log10_gaps": _json_floats(out["log10_gap"]),
        "log10_spreads": _json_floats(out["log10_spread"]),
        "log10_tolerance": float(np.asarray(out["log10_tolerance"])[0]),
        "exact_matched": int(np.sum(exact == case.predicted)),
        "float_matched": int(np.sum(floats == case.predicted)),
        "exact_above_bound": int(np.sum(exact > case.bound)),
        "chunk": chunk_size(case, draws),
        "run_s": run_s,
    }


def run_all(
    cases: Sequence[Case],
    *,
    seed: int,
    draws: int,
    shallow_draws: int,
    weight_bits: int,
    modulus: int,
    workers: int,
    metrics_path: pathlib.Path,
) -> list[dict]:
    """Compiles every configuration in a thread pool and runs them in order.

    Deep configurations get ``draws`` networks, shallow ones ``shallow_draws``.
    Each record goes to ``metrics_path`` (one JSON line) as soon as it is done.
    """
    case_keys = jax.random.split(jax.random.key(seed), len(cases))
    keys = [
        jax.random.split(key, shallow_draws if case.kind == "shallow" else draws)
        for case, key in zip(cases, case_keys, strict=True)
    ]
    records = []
    settings = {"weight_bits": weight_bits, "modulus": modulus}
    with (
        concurrent.futures.ThreadPoolExecutor(workers) as pool,
        open(metrics_path, "w") as metrics,
    ):
        futures = [
            pool.submit(compile_case, case, draw_keys, **settings)
            for case, draw_keys in zip(cases, keys, strict=True)
        ]
        for index, (case, future) in enumerate(zip(cases, futures, strict=True)):
            compiled, compile_s = future.result()
            record = run_case(case, compiled, keys[index], **settings)
            record["compile_s"] = compile_s
            records.append(record)
            metrics.write(json.dumps(record) + "\n")
            metrics.flush()
            print(
                f"[{index + 1}/{len(cases)}] {case.kind} M={case.num_descriptors} "
                f"N={case.num_modes} {case.label}: exact "
                f"{record['exact_matched']}/{record['draws']}, float "
                f"{record['float_matched']}/{record['draws']} "
                f"(compile {compile_s:.1f} s, run {record['run_s']:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
    return records


def _json_floats(values: jax.Array) -> list[float | str]:
    """Floats for JSON, with infinities and NaN spelled as strings."""
    return [v if math.isfinite(v) else str(v) for v in np.asarray(values).tolist()]


def _min_float(values: Sequence[float | str]) -> float:
    numbers = [float(v) for v in values]
    return min(numbers) if numbers else math.nan


def format_table(records: Sequence[dict]) -> str:
    """The results as a fixed-width text table, with a legend of the methods."""
    header = (
        f"{'net':<10} {'M':>2} {'N':>3} {'r0 / Z':<10} {'draws':>5} {'pred':>5} "
        f"{'bound':>5} | {'GF(p) rank':>10} {'ok':>5} | {'f64 SVD rank':>12} "
        f"{'ok':>5} {'gap@f':>6} {'spread':>6} {'cut':>5} | {'P(miss)<=':>9} "
        f"{'time s':>6}  certified"
    )
    lines = [header, "-" * len(header)]
    for rec in records:
        misses = rec["draws"] - rec["exact_matched"]
        lines.append(
            f"{rec['kind']:<10} {rec['num_descriptors']:>2} {rec['num_modes']:>3} "
            f"{rec['label']:<10} {rec['draws']:>5} {rec['predicted']:>5} "
            f"{rec['bound']:>5} | {_span(rec['exact_ranks']):>10} "
            f"{rec['exact_matched']:>2}/{rec['draws']:<2} | "
            f"{_span(rec['float_ranks']):>12} "
            f"{rec['float_matched']:>2}/{rec['draws']:<2} "
            f"{_min_float(rec['log10_gaps']):>6.1f} "
            f"{max(float(v) for v in rec['log10_spreads']):>6.1f} "
            f"{-rec['log10_tolerance']:>5.1f} | "
            f"{rec['miss_probability_bound']:>9.1e} "
            f"{rec['compile_s'] + rec['run_s']:>6.1f}  "
            f"{'yes' if misses == 0 else f'NO ({misses} short)'}"
        )
    lines += [
        "",
        "pred = generic rank: min(r0, M)^(N/2) (deep), min(Z, M^(N/2)) (shallow); "
        "bound = the theorem's bound, Z for shallow nets;",
        "GF(p) rank = exact rank by Gaussian elimination modulo p = "
        f"{records[0]['modulus']} of the integer coefficient tensor (a certified "
        "lower bound on the real rank);",
        "f64 SVD rank = numerical_rank of the same draw in float64: singular "
        "values above max(rows, cols)*eps*sigma_max;",
        "gap@f = min over draws of log10(sigma_{r-1}/sigma_r) at the f64 rank r "
        "(inf: full rank, nothing left out);",
        "spread = max over draws of log10(sigma_0/sigma_{R-1}) at pred = R; "
        "cut = -log10(max(rows, cols)*eps): a spread above it loses values;",
        "P(miss)<= = Schwartz-Zippel bound R*D/(2K+1) on a draw's GF(p) rank "
        f"missing R (K = {records[0]['weight_range']}, D = nodes of the tree);",
        "certified = every GF(p) rank equals pred, which also bounds the rank "
        "from above for every weight setting (tree structure; Z and M^(N/2) "
        "rows), so the rank is exact;",
        "time s = compile (in a worker thread, overlapping other work) + run.",
    ]
    return "\n".join(lines)


def _span(values: Sequence[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def summary_line(records: Sequence[dict]) -> str:
    """One line: how many draws matched the theorem, by method and family."""

    def count(kinds: tuple[str, ...], field: str) -> tuple[int, int]:
        chosen = [r for r in records if r["kind"] in kinds]
        return sum(r[field] for r in chosen), sum(r["draws"] for r in chosen)

    deep_exact, deep_total = count(("deep",), "exact_matched")
    deep_float, _ = count(("deep",), "float_matched")
    upper_exact, upper_total = count(("deep-upper",), "exact_matched")
    shallow_exact, shallow_total = count(("shallow",), "exact_matched")
    shallow_float, _ = count(("shallow",), "float_matched")
    above = sum(r["exact_above_bound"] for r in records)
    every = (
        deep_exact == deep_total
        and upper_exact == upper_total
        and shallow_exact == shallow_total
        and above == 0
    )
    return (
        f"SUMMARY: exact rank matched the theorem on {deep_exact}/{deep_total} deep "
        f"draws (float64 SVD rank on {deep_float}/{deep_total}), on "
        f"{upper_exact}/{upper_total} deep draws with other upper widths, and "
        f"matched min(Z, M^(N/2)) on {shallow_exact}/{shallow_total} shallow draws "
        f"(float64 SVD on {shallow_float}/{shallow_total}); "
        f"{above} exact ranks above the bound; every draw matched (exact): "
        f"{'yes' if every else 'no'}"
    )


def plot_ranks(records: Sequence[dict], path: pathlib.Path) -> None:
    """Saves the figure: deep and shallow exact ranks against the theorem.

    Left: deep exact ranks against ``N`` (dots, one per draw) with the lines
    ``min(r_0, M)^{N/2}``. Middle: shallow exact ranks against ``Z`` with the
    bound ``Z`` and the caps ``M^{N/2}``. Right: for deep draws, the float64
    rank's shortfall against the spread ``σ_0 / σ_{R-1}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (deep_ax, shallow_ax, float_ax) = plt.subplots(1, 3, figsize=(16, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    deep = [r for r in records if r["kind"] == "deep"]
    leaf_widths = sorted({r["widths"][0] for r in deep})
    for rec in deep:
        color = colors[leaf_widths.index(rec["widths"][0]) % len(colors)]
        shift = 1.04 if rec["num_descriptors"] == 3 else 1.0
        deep_ax.scatter(
            [rec["num_modes"] * shift] * rec["draws"],
            rec["exact_ranks"],
            marker="o" if rec["num_descriptors"] == 2 else "s",
            color=color,
            s=20,
            alpha=0.6,
        )
    for num_descriptors in sorted({r["num_descriptors"] for r in deep}):
        sizes = sorted(
            {r["num_modes"] for r in deep if r["num_descriptors"] == num_descriptors}
        )
        for r_0 in leaf_widths:
            deep_ax.plot(
                sizes,
                [min(r_0, num_descriptors) ** (n // 2) for n in sizes],
                color=colors[leaf_widths.index(r_0) % len(colors)],
                ls="-" if num_descriptors == 2 else "--",
                lw=0.9,
                label=f"M={num_descriptors}, r0={r_0}",
            )
    deep_ax.set_xscale("log", base=2)
    deep_ax.set_yscale("log", base=2)
    deep_ax.legend(fontsize=7, ncol=2)
    deep_ax.set(
        xlabel="N",
        ylabel="exact rank (GF(p) elimination)",
        title="deep: draws (o M=2, s M=3) and min(r0, M)^(N/2)",
    )

    shallow = [r for r in records if r["kind"] == "shallow"]
    families = sorted({(r["num_descriptors"], r["num_modes"]) for r in shallow})
    for index, (num_descriptors, num_modes) in enumerate(families):
        color = colors[index % len(colors)]
        chosen = [
            r
            for r in shallow
            if (r["num_descriptors"], r["num_modes"]) == (num_descriptors, num_modes)
        ]
        for rec in chosen:
            shallow_ax.scatter(
                [rec["widths"][0]] * rec["draws"],
                rec["exact_ranks"],
                color=color,
                s=20,
                alpha=0.6,
            )
        shallow_ax.axhline(
            num_descriptors ** (num_modes // 2),
            color=color,
            lw=0.7,
            ls=":",
            label=f"M={num_descriptors}, N={num_modes}: cap M^(N/2)",
        )
    if shallow:
        terms = [1, max(r["bound"] for r in shallow)]
        shallow_ax.plot(terms, terms, color="gray", lw=0.9, label="bound Z")
        shallow_ax.legend(fontsize=7)
    shallow_ax.set_xscale("log", base=2)
    shallow_ax.set_yscale("log", base=2)
    shallow_ax.set(
        xlabel="Z (terms)",
        ylabel="exact rank (GF(p) elimination)",
        title="shallow: rank = min(Z, M^(N/2)) <= Z",
    )

    deep_like = [r for r in records if r["kind"] != "shallow"]
    sizes = sorted({r["num_modes"] for r in deep_like})
    for rec in deep_like:
        color = colors[sizes.index(rec["num_modes"]) % len(colors)]
        float_ax.scatter(
            [float(v) for v in rec["log10_spreads"]],
            np.array(rec["float_ranks"]) - rec["predicted"],
            color=color,
            s=14,
            alpha=0.5,
        )
    cuts = sorted({(r["num_modes"], r["num_descriptors"]) for r in deep_like})
    for num_modes, num_descriptors in cuts:
        cut = next(
            -r["log10_tolerance"]
            for r in deep_like
            if (r["num_modes"], r["num_descriptors"]) == (num_modes, num_descriptors)
        )
        float_ax.axvline(
            cut,
            color=colors[sizes.index(num_modes) % len(colors)],
            lw=0.8,
            ls="--" if num_descriptors == 2 else ":",
            label=f"N={num_modes}, M={num_descriptors}: default cut",
        )
    float_ax.legend(fontsize=7)
    float_ax.set(
        xlabel="log10 sigma_0 / sigma_(R-1) at the predicted rank R",
        ylabel="float64 SVD rank - predicted",
        title="deep: float64 rank vs spread (same integer draws)",
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def get_config(preset: str = "full") -> dict:
    """The run's settings: ``"full"`` (the reported grid) or ``"quick"``.

    Args:
      preset: ``"full"`` (45 configurations) or ``"quick"`` (three tiny ones,
        the smoke test).

    Returns:
      A dict: ``seed``; ``cases`` (``"full"`` or ``"quick"``, the grid of
      :func:`build_cases`); ``draws`` (networks per deep configuration);
      ``shallow_draws`` (per shallow one: each costs ``Z · M^N`` entries);
      ``weight_bits`` (integer weights uniform in ``[-2**bits, 2**bits]``);
      ``compile_workers`` (threads compiling configurations in parallel, 0 for
      ``os.cpu_count()``).

    Raises:
      ValueError: for an unknown preset.
    """
    if preset not in ("full", "quick"):
        raise ValueError(f"preset must be 'full' or 'quick', got {preset!r}.")
    return {
        "seed": 0,
        "cases": preset,
        "draws": 32,
        "shallow_draws": 16,
        "weight_bits": 20,
        "compile_workers": 0,
    }


def check_config(config: dict) -> None:
    """Raises ``ValueError`` naming the key of a setting out of range."""
    if config["cases"] not in ("full", "quick"):
        raise ValueError(
            f"config key 'cases' must be 'full' or 'quick', got {config['cases']!r}."
        )
    for key in ("draws", "shallow_draws"):
        if config[key] < 1:
            raise ValueError(f"config key {key!r} must be positive, got {config[key]}.")
    if not 0 <= config["weight_bits"] <= 24:
        raise ValueError(
            f"config key 'weight_bits' must be in [0, 24], got {config['weight_bits']}."
        )
    if config["compile_workers"] < 0:
        raise ValueError(
            "config key 'compile_workers' must be >= 0 (0: one per CPU), got "
            f"{config['compile_workers']}."
        )


def write_report(
    records: Sequence[dict],
    workdir: pathlib.Path,
    *,
    elapsed: float,
    cpu: float,
    workers: int,
) -> str:
    """Prints the table, the timing and the summary; saves them and the figure.

    Returns:
      The summary line.
    """
    table = format_table(records)
    summary = summary_line(records)
    plot_ranks(records, workdir / "ranks.png")
    timing = (
        f"timing: {len(records)} jitted functions; compile "
        f"{sum(r['compile_s'] for r in records):.1f} s (summed over {workers} "
        f"compile threads), run {sum(r['run_s'] for r in records):.1f} s; "
        f"wall {elapsed:.1f} s, process CPU {cpu:.1f} s"
    )
    results = {"summary": summary, "timing": timing, "table": table}
    (workdir / "results.json").write_text(json.dumps(results, indent=2))
    print(table)
    print(timing)
    print(summary)
    return summary


def run(config: dict, workdir: pathlib.Path) -> dict:
    """Runs the experiment; prints the table and the summary line.

    Turns ``jax_enable_x64`` on for the run (exact ranks need ``int64``, the
    float ranks ``float64``; the compile threads see the global setting) and
    restores the previous setting afterwards. Analysis only: nothing to resume.

    Args:
      config: from :func:`get_config`, possibly overridden.
      workdir: where ``metrics.jsonl``, ``results.json`` and ``ranks.png`` go.

    Returns:
      ``{"summary": line, "records": [...]}``: the summary line and the
      per-configuration records, as written to ``metrics.jsonl``.
    """
    check_config(config)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    modulus = jc.ranks.DEFAULT_MODULUS
    cases = build_cases(quick=config["cases"] == "quick")
    workers = config["compile_workers"] or os.cpu_count() or 1

    previous_x64 = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        start, cpu_start = time.perf_counter(), time.process_time()
        records = run_all(
            cases,
            seed=config["seed"],
            draws=config["draws"],
            shallow_draws=config["shallow_draws"],
            weight_bits=config["weight_bits"],
            modulus=modulus,
            workers=workers,
            metrics_path=workdir / "metrics.jsonl",
        )
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
    finally:
        jax.config.update("jax_enable_x64", previous_x64)

    summary = write_report(records, workdir, elapsed=elapsed, cpu=cpu, workers=workers)
    return {"summary": summary, "records": records}


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the experiment from the command line (see :mod:`jaxconvac.cli`)."""
    return cli.main(argv, sys.modules[__name__])


if __name__ == "__main__":
    main(sys.argv[1:])
