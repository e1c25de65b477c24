"""Ranks behind pooling geometry: random deep ConvACs on 4×4 images (ICLR 2017).

A deep ConvAC models strong interactions (a high matricization rank of its
coefficient tensor) only across partitions that its pooling windows cut early.
For random deep ConvACs over ``jc.ModeTree.image(4, 4, geometry)`` (``N = 16``
pixels, ``M = 2`` descriptors, two levels of 2×2 pooling, widths
``(r_0, r_1)``) this script measures the rank of ``[[A]]_I`` for four pixel
partitions ``I``:

* ``left/right``: columns 0–1 against 2–3;
* ``top/bottom``: rows 0–1 against 2–3;
* ``checkerboard``: pixels with ``row + col`` even against odd (interleaved);
* ``corners+centre``: the four corners and the centre 2×2 block against the
  other eight pixels — the union of two of mirror pooling's first windows.

Next to each rank: the paper's lower bound ``min(r_0, M)^S``, with ``S`` the
number of first-level windows the partition splits (holds for almost every
weight setting), and the upper bound that holds for every setting, the
min-cut of the network's tensor network (``jc.min_cut_bound``, from the
widths). Ranks are exact: integer weights uniform in ``[-2^20, 2^20]``, the
coefficient tensor modulo the prime ``p = 2^26 - 5``
(``jc.coefficient_tensor(..., modulus=p)``) and ``jc.exact_rank``, a certified
lower bound on the real rank; when it equals the min-cut bound the rank is
certified. Both weight-sharing extremes are drawn: ``none`` (the theorem's
setting) and ``full`` (1×1 convolutions, as trained in
``pooling_geometry.py``).

Command (about 1 minute of CPU time)::

    python experiments/pooling_ranks.py --workdir runs/pooling_ranks \
        [--set draws=4] [--seed 0] [--preset quick|smoke]

The flags are :mod:`jaxconvac.cli`'s; the keys are :func:`get_config`'s
(``draws``, ``widths`` as JSON, e.g. ``--set 'widths=[[2,2],[3,16]]'``,
``sharings=none,full``, ``geometries=square,mirror``). Writes
``results.json`` and ``table.md`` into the work directory (``config.json`` and
``summary.json`` by the CLI).
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp

import jaxconvac as jc
from jaxconvac import cli

SIDE = 4
NUM_DESCRIPTORS = 2
WEIGHT_BITS = 20


def partitions(side: int = SIDE) -> dict[str, tuple[int, ...]]:
    """The row modes ``I`` of each named partition of a ``side × side`` image."""
    pixels = [(r, c) for r in range(side) for c in range(side)]
    edge = (0, side - 1)

    def modes(predicate) -> tuple[int, ...]:
        return tuple(r * side + c for r, c in pixels if predicate(r, c))

    return {
        "left/right": modes(lambda r, c: c < side // 2),
        "top/bottom": modes(lambda r, c: r < side // 2),
        "checkerboard": modes(lambda r, c: (r + c) % 2 == 0),
        "corners+centre": modes(lambda r, c: (r in edge) == (c in edge)),
    }


def windows_split(tree: jc.ModeTree, rows: tuple[int, ...]) -> int:
    """``S``: how many first-level windows hold modes of both sides."""
    inside = set(rows)
    return sum(
        0 < sum(mode in inside for mode in node) < len(node) for node in tree.nodes(1)
    )


def get_config(preset: str = "quick") -> dict[str, Any]:
    """Settings: ``quick`` (the reported run) or ``smoke`` (tests)."""
    if preset not in ("quick", "smoke"):
        raise ValueError(f"preset must be 'quick' or 'smoke', got {preset!r}.")
    widths = [[1, 1], [2, 1], [2, 2], [2, 4], [3, 16]]
    return {
        "seed": 0,
        "draws": 1 if preset == "smoke" else 4,
        "widths": widths[2:4] if preset == "smoke" else widths,
        "sharings": ["none"] if preset == "smoke" else ["none", "full"],
        "geometries": ["square", "mirror"],
    }


def draw_params(key, tree, widths, sharing) -> tuple[jax.Array, ...]:
    """Integer weights uniform in ``[-2^20, 2^20]`` in the decomposition layout."""
    shapes = [
        w.shape
        for w in jc.init_decomposition(
            key,
            tree,
            num_descriptors=NUM_DESCRIPTORS,
            widths=widths,
            num_outputs=1,
            sharing=sharing,
        )
    ]
    keys = jax.random.split(key, len(shapes))
    bound = 2**WEIGHT_BITS
    return tuple(
        jax.random.randint(k, shape, -bound, bound + 1, dtype=jnp.int64)
        for k, shape in zip(keys, shapes, strict=True)
    )


def run(config: dict[str, Any], workdir: pathlib.Path) -> dict[str, Any]:
    """Ranks every (geometry, widths, sharing, partition); writes the table.

    Args:
      config: from :func:`get_config`.
      workdir: the output directory (created if missing).

    Returns:
      ``{"rows": [...], "all_certified": bool}``; one row per (geometry,
      widths, sharing, partition) with the ranks of every draw and both
      bounds.

    Raises:
      ValueError: if ``draws`` is below 1 or ``geometries``, ``widths`` or
        ``sharings`` is empty.
    """
    if not isinstance(config["draws"], int) or config["draws"] < 1:
        raise ValueError(
            f"config 'draws' must be an int >= 1, got {config['draws']!r}."
        )
    for key in ("geometries", "widths", "sharings"):
        if not config[key]:
            raise ValueError(f"config {key!r} must not be empty, got {config[key]!r}.")
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    modulus = jc.ranks.DEFAULT_MODULUS
    key = jax.random.key(config["seed"])
    rows = []
    start = time.perf_counter()
    with jax.enable_x64(True):
        for geometry in config["geometries"]:
            tree = jc.ModeTree.image(SIDE, SIDE, geometry)
            for widths in config["widths"]:
                for sharing in config["sharings"]:
                    ranks: dict[str, list[int]] = {name: [] for name in partitions()}
                    for _ in range(config["draws"]):
                        key, draw_key = jax.random.split(key)
                        params = draw_params(draw_key, tree, widths, sharing)
                        tensor = jc.coefficient_tensor(params, tree, modulus=modulus)
                        for name, modes in partitions().items():
                            matrix = jc.matricize(tensor[0], modes)
                            ranks[name].append(
                                int(jc.exact_rank(matrix, modulus=modulus))
                            )
                    for name, modes in partitions().items():
                        split = windows_split(tree, modes)
                        rows.append(
                            {
                                "geometry": geometry,
                                "widths": list(widths),
                                "sharing": sharing,
                                "partition": name,
                                "windows_split": split,
                                "lower_bound": min(widths[0], NUM_DESCRIPTORS) ** split,
                                "min_cut_bound": jc.min_cut_bound(
                                    tree, widths, NUM_DESCRIPTORS, modes
                                ).bound,
                                "ranks": ranks[name],
                            }
                        )
    for row in rows:
        row["certified"] = all(r == row["min_cut_bound"] for r in row["ranks"])
        row["within_bounds"] = all(
            row["lower_bound"] <= r <= row["min_cut_bound"] for r in row["ranks"]
        )
    summary = {
        "rows": rows,
        "all_certified": all(row["certified"] for row in rows),
        "all_within_bounds": all(row["within_bounds"] for row in rows),
        "modulus": modulus,
        "seconds": time.perf_counter() - start,
    }
    (workdir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = format_table(rows, config["draws"])
    (workdir / "table.md").write_text(table + "\n")
    print(table)
    return summary


def format_table(rows: list[dict], draws: int) -> str:
    """Markdown: one line per geometry × widths × sharing, a cell per partition.

    Each cell reads ``rank [lower, min-cut]``; the rank is the same on every
    draw unless a range ``min–max`` is shown.
    """
    names = list(partitions())
    header = "| geometry | (r0, r1) | sharing | " + " | ".join(names) + " |"
    lines = [header, "|---|---|---|" + "---:|" * len(names)]
    groups: dict[tuple, dict[str, dict]] = {}
    for row in rows:
        group = (row["geometry"], tuple(row["widths"]), row["sharing"])
        groups.setdefault(group, {})[row["partition"]] = row
    for (geometry, widths, sharing), by_name in groups.items():
        cells = []
        for name in names:
            row = by_name[name]
            low, high = min(row["ranks"]), max(row["ranks"])
            rank = str(low) if low == high else f"{low}–{high}"
            mark = "" if row["certified"] else "*"
            cells.append(f"{rank}{mark} [{row['lower_bound']}, {row['min_cut_bound']}]")
        lines.append(
            f"| {geometry} | {widths} | {sharing} | " + " | ".join(cells) + " |"
        )
    lines.append(
        f"\nExact ranks (GF(p)) of {draws} draw(s) each; [lower bound "
        "min(r0, M)^S, min-cut upper bound]; * marks a rank below the min-cut "
        f"bound. M = {NUM_DESCRIPTORS}, N = {SIDE * SIDE}, "
        f"max possible rank {NUM_DESCRIPTORS ** (SIDE * SIDE // 2)}."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the experiment from the command line (see :mod:`jaxconvac.cli`)."""
    return cli.main(argv, sys.modules[__name__])


if __name__ == "__main__":
    main(sys.argv[1:])
