"""Ranks of individual vs mixed tree decompositions (ICLR 2018, theorem 1, app. F).

Cohen, Tamari and Shashua mix the decompositions of two mode trees ``T`` and
``T̄`` over ``N = 16`` positions: ``T`` is the standard dilated network
(dilations ``1, 2, 4, 8``), ``T̄`` the one with odd and even layers swapped
(``2, 1, 8, 4``); they share the four level-2 nodes (blocks of four), the
mixture nodes. On the paper's index set ``I = {0, 2, 4, 6, 8, 9, 12, 13}``
(app. F, 0-based) theorem 1 gives rank exactly ``r^6`` for ``T`` and for ``T̄``
and ``r^8`` for the hybrid tree ``H`` (first two segments from ``T``, the rest
from ``T̄``), which a mixed decomposition of width ``2r`` realises (claim 1).
The mirrored set ``{0, 1, 4, 5, 8, 10, 12, 14}`` swaps the roles of the halves.

For every row the experiment draws random networks with integer weights in
``[-K, K]`` (``g`` = product, ``sharing="none"``, ``M = 2`` descriptors, one
output) and ranks the matricization ``[[A]]_I`` twice:

* *exact*: the coefficient tensor modulo ``p = 2**26 - 5``, ranked by
  elimination over ``GF(p)`` (:func:`jaxconvac.exact_rank`): a certified lower
  bound on the real rank;
* *float64*: the same weights scaled by ``1 / K`` in float64, ranked by
  :func:`jaxconvac.numerical_rank` (default tolerance).

Next to them: the theorem's bounds for ``T``, ``T̄`` and ``H``
(:func:`jaxconvac.mixed.tree_rank_bounds`; they assume ``M ≥ r``), the bound for
the mixed decomposition that claim 1 and theorem 1 give (``rank_H(r/2)``), the
bound ``2 · r^6`` of a sum of two networks, and the cap
``Π_{tiles} min(r, M^|tile|)`` that the matrix's size puts on any tree
decomposition (the theorem's ``r^|Θ|`` with every tile's dimension limited by
what ``M`` descriptors allow).

Command (from the repository root)::

    python experiments/mixed_ranks.py [--workdir runs/mixed_ranks] [--seed 0]
        [--preset full|quick] [--set KEY=VALUE ...] [--print-config]

(:mod:`jaxconvac.cli`'s flags; the keys are :func:`get_config`'s. An analysis,
not a training run: ``--resume`` is refused.) Writes ``results.json`` and
``table.md`` into the work directory (``config.json`` and ``summary.json`` by
the CLI);
``experiments/README.md`` has the measured table.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
import time
import zlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

import jaxconvac as jc
from jaxconvac import cli
from jaxconvac.mixed import (
    MixedTrees,
    hybrid_tree,
    mixed_coefficient_tensor,
    tree_rank_bounds,
)
from jaxconvac.mode_trees import swapped_dilations
from jaxconvac.ranks import DEFAULT_MODULUS

NUM_MODES = 16
NUM_DESCRIPTORS = 2
INDEX_SETS = {
    "paper": (0, 2, 4, 6, 8, 9, 12, 13),
    "mirrored": (0, 1, 4, 5, 8, 10, 12, 14),
}
# (label, decomposition, width): decomposition is "T", "T_bar", "H", "sum"
# (the unmixed mixed decomposition) or "mixed".
ROWS = (
    ("T", "T", 2),
    ("T̄", "T_bar", 2),
    ("T", "T", 3),
    ("T", "T", 4),
    ("T + T̄ (no mixing)", "sum", 2),
    ("hybrid H", "H", 2),
    ("mixed", "mixed", 2),
    ("mixed", "mixed", 4),
)


def get_config(preset: str = "full") -> dict:
    """Settings: ``draws`` per row, ``weight_bits`` (``K = 2**bits``), sets."""
    if preset not in ("full", "quick"):
        raise ValueError(f"preset must be 'full' or 'quick', got {preset!r}.")
    quick = preset == "quick"
    return {
        "seed": 0,
        "draws": 2 if quick else 64,
        "weight_bits": 20,
        "index_sets": ["paper"] if quick else list(INDEX_SETS),
        "rows": [list(r) for r in (ROWS[:1] + ROWS[-2:-1] if quick else ROWS)],
    }


def trees() -> tuple[jc.ModeTree, jc.ModeTree, MixedTrees]:
    """``T``, ``T̄`` and the mixed trees with the level-2 mixture nodes."""
    tree = jc.ModeTree.dilated(NUM_MODES, (1, 2, 4, 8))
    tree_bar = jc.ModeTree.dilated(NUM_MODES, swapped_dilations(NUM_MODES, 2))
    return tree, tree_bar, MixedTrees(tree, tree_bar, tree.shared_nodes(tree_bar))


def hybrid_for(index_set_name: str, mixed: MixedTrees) -> jc.ModeTree:
    """The hybrid that tiles the set into singletons (paper: upper half from T̄)."""
    lower, upper = mixed.mixture_nodes[:2], mixed.mixture_nodes[2:]
    heads = upper if index_set_name == "paper" else lower
    return hybrid_tree(mixed, [*heads, tuple(range(NUM_MODES))])


def tile_cap(tree: jc.ModeTree, index_set: Sequence[int], width: int) -> int:
    """``min`` over ``I`` and its complement of ``Π_tiles min(r, M^|tile|)``."""
    complement = [i for i in range(NUM_MODES) if i not in index_set]
    return min(
        math.prod(min(width, NUM_DESCRIPTORS ** len(t)) for t in tree.tiling(side))
        for side in (index_set, complement)
    )


def bounds(kind, width, index_set, index_set_name) -> dict:
    """The theorem's numbers for one row (``None`` where it says nothing)."""
    tree, tree_bar, mixed = trees()
    full = NUM_DESCRIPTORS ** len(index_set)
    theorem_ok = NUM_DESCRIPTORS >= width
    if kind in ("T", "T_bar", "H"):
        t = {"T": tree, "T_bar": tree_bar, "H": hybrid_for(index_set_name, mixed)}[kind]
        lower, upper = tree_rank_bounds(t, index_set, width)
        return {
            "lower": lower if theorem_ok else None,
            "upper": upper if theorem_ok else None,
            "cap": min(tile_cap(t, index_set, width), full),
        }
    if kind == "sum":
        cap = tile_cap(tree, index_set, width) + tile_cap(tree_bar, index_set, width)
        return {"lower": None, "upper": None, "cap": min(cap, full)}
    hybrid = hybrid_for(index_set_name, mixed)
    lower, _ = tree_rank_bounds(hybrid, index_set, width // 2)
    return {"lower": lower, "upper": None, "cap": full}


def _integer_params(key, tree, width, bits):
    shapes = [
        w.shape
        for w in jc.init_decomposition(
            jax.random.key(0),
            tree,
            num_descriptors=NUM_DESCRIPTORS,
            widths=(width,) * tree.depth,
            num_outputs=1,
        )
    ]
    keys = jax.random.split(key, len(shapes))
    bound = 2**bits
    return tuple(
        jax.random.randint(k, s, -bound, bound + 1, dtype=jnp.int64)
        for k, s in zip(keys, shapes, strict=True)
    )


def make_draw(kind: str, width: int, index_set, index_set_name: str, bits: int):
    """A jitted ``key -> (exact rank, float64 singular values)``."""
    tree, tree_bar, mixed = trees()
    hybrid = hybrid_for(index_set_name, mixed)
    single = {"T": tree, "T_bar": tree_bar, "H": hybrid}.get(kind)

    def tensor(params, modulus):
        if single is not None:
            return jc.coefficient_tensor(params, single, modulus=modulus)
        chosen = MixedTrees(tree, tree_bar) if kind == "sum" else mixed
        return mixed_coefficient_tensor(params, chosen, modulus=modulus)

    def draw(key):
        if single is not None:
            params = _integer_params(key, single, width, bits)
        else:
            k1, k2 = jax.random.split(key)
            params = (
                _integer_params(k1, tree, width, bits),
                _integer_params(k2, tree_bar, width, bits),
            )
        exact = tensor(params, DEFAULT_MODULUS)[0]
        scaled = jax.tree.map(lambda w: w.astype(jnp.float64) / 2**bits, params)
        real = tensor(scaled, None)[0]
        return (
            jc.exact_rank(jc.matricize(exact, index_set)),
            jnp.linalg.svd(jc.matricize(real, index_set), compute_uv=False),
        )

    return jax.jit(draw)


def run_row(label, kind, width, index_set_name, config) -> dict:
    """All draws of one row; the ranks and the theorem's numbers."""
    index_set = INDEX_SETS[index_set_name]
    start = time.perf_counter()
    draw = make_draw(kind, width, index_set, index_set_name, config["weight_bits"])
    stream = zlib.crc32(f"{index_set_name}/{kind}/{width}".encode()) % 2**31
    base = jax.random.fold_in(jax.random.key(config["seed"]), stream)
    exact, floats = [], []
    for d in range(config["draws"]):
        rank, values = draw(jax.random.fold_in(base, d))
        exact.append(int(rank))
        # The library's default tolerance: max(rows, cols) · eps · σ_max.
        tol = NUM_DESCRIPTORS ** len(index_set) * np.finfo(np.float64).eps
        floats.append(int(np.sum(np.asarray(values) > tol * float(values[0]))))
    return {
        "index_set": index_set_name,
        "label": label,
        "kind": kind,
        "width": width,
        **bounds(kind, width, index_set, index_set_name),
        "exact": exact,
        "float64": floats,
        "seconds": time.perf_counter() - start,
    }


def run(config: dict, workdir: str | pathlib.Path | None = None) -> dict:
    """Every row on every index set; writes ``results.json`` and ``table.md``.

    Prints the table. Analysis only: nothing to resume.

    Args:
      config: from :func:`get_config`, possibly overridden.
      workdir: where ``results.json`` and ``table.md`` go (nothing is written
        if ``None``).

    Returns:
      ``{"rows": [...], "table": markdown}``.
    """
    with jax.enable_x64(True):
        rows = [
            run_row(label, kind, width, name, config)
            for name in config["index_sets"]
            for label, kind, width in config["rows"]
        ]
    table = format_table(rows, config)
    if workdir is not None:
        workdir = pathlib.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "results.json").write_text(
            json.dumps({"config": config, "rows": rows}, indent=1)
        )
        (workdir / "table.md").write_text(table + "\n")
    print(table)
    return {"rows": rows, "table": table}


def _span(values: Sequence[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}–{high}"


def format_table(rows: Sequence[dict], config: dict) -> str:
    """A Markdown table: bounds, exact and float64 ranks per row."""
    lines = [
        f"N = {NUM_MODES}, M = {NUM_DESCRIPTORS}, {config['draws']} draws per row, "
        f"integer weights in [-{2 ** config['weight_bits']}, "
        f"{2 ** config['weight_bits']}], matrix {NUM_DESCRIPTORS**8}×"
        f"{NUM_DESCRIPTORS**8}",
        "",
        "| I | decomposition | r | theorem lower | theorem upper | cap | exact rank "
        "mod p | float64 rank | exact within bounds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lower = "" if row["lower"] is None else row["lower"]
        upper = "" if row["upper"] is None else row["upper"]
        low = row["lower"] or 0
        high = min(x for x in (row["upper"], row["cap"]) if x is not None)
        ok = sum(low <= e <= high for e in row["exact"])
        lines.append(
            f"| {row['index_set']} | {row['label']} | {row['width']} | {lower} | "
            f"{upper} | {row['cap']} | {_span(row['exact'])} | "
            f"{_span(row['float64'])} | {ok}/{len(row['exact'])} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the experiment from the command line (see :mod:`jaxconvac.cli`)."""
    return cli.main(argv, sys.modules[__name__])


if __name__ == "__main__":
    main(sys.argv[1:])
