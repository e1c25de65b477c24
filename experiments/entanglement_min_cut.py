"""Min-cut bound versus rank of random ConvACs (Levine et al. 2018, SPEC §7).

For random tree decompositions (standard normal weights, float64) and many
partitions of the inputs (contiguous, interleaved, left/right, random), the
numerical rank of ``[[A]]_I`` is printed next to the min-cut bound of the
network. Claim: equal on every draw when all dimensions (``M`` and the widths)
are powers of one integer; otherwise the rank may fall short of the bound.

    python experiments/entanglement_min_cut.py --workdir runs/entanglement_min_cut

The flags are :mod:`jaxconvac.cli`'s: ``--preset full|quick``, ``--seed``,
``--set KEY=VALUE`` for the keys of :func:`get_config` (``draws``, default 8;
``random_partitions``; ``configs``, comma-separated names), ``--print-config``.
An analysis, not a training run: ``--resume`` is refused.

Writes ``config.json`` and ``summary.json`` (by the CLI), ``metrics.jsonl`` (one
line per configuration and partition) and ``bound_vs_rank.png`` into the work
directory.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

import jaxconvac as jc
from jaxconvac import cli
from jaxconvac.tensor_networks import min_cut_bound

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# (name, tree, M, widths, powers of one integer?)
CONFIGS = {
    "bin16-M2-w2424": (jc.ModeTree.balanced(16), 2, (2, 4, 2, 4), True),
    "img4x4-M2-w24": (jc.ModeTree.image(4, 4), 2, (2, 4), True),
    "mirror4x4-M2-w42": (jc.ModeTree.image(4, 4, "mirror"), 2, (4, 2), True),
    "bin8-M3-w235": (jc.ModeTree.balanced(8), 3, (2, 3, 5), False),
    "bin8-M2-w333": (jc.ModeTree.balanced(8), 2, (3, 3, 3), False),
    "img4x4-M2-w35": (jc.ModeTree.image(4, 4), 2, (3, 5), False),
    "tern9-M2-w32": (jc.ModeTree.balanced(9, 3), 2, (3, 2), False),
}


def partitions(tree: jc.ModeTree, rng: np.random.Generator, num_random: int):
    """Named partitions of the tree's positions."""
    n = tree.num_modes
    side = int(round(n**0.5))
    named = {
        "contiguous-half": tuple(range(n // 2)),
        "contiguous-quarter": tuple(range(n // 4)),
        "interleaved": tuple(range(0, n, 2)),
    }
    if side * side == n and len(set(tree.windows)) == 1 and tree.windows[0] == 4:
        grid = np.arange(n).reshape(side, side)
        named["left-right"] = tuple(grid[:, : side // 2].ravel().tolist())
    else:
        named["left-right"] = tuple(range(n // 2))
    for k in range(num_random):
        size = int(rng.integers(1, n))
        named[f"random-{k}"] = tuple(
            sorted(rng.choice(n, size, replace=False).tolist())
        )
    return named


def run_config(name, tree, num_descriptors, widths, draws, rng, num_random, key):
    """Ranks of ``draws`` random networks over the config's partitions."""
    keys = jax.random.split(key, draws)
    tensors = [
        np.asarray(
            jc.coefficient_tensor(
                jc.init_decomposition(
                    key,
                    tree,
                    num_descriptors=num_descriptors,
                    widths=widths,
                    num_outputs=1,
                    dtype=jnp.float64,
                ),
                tree,
            )[0]
        )
        for key in keys
    ]
    rows = []
    for part_name, modes in partitions(tree, rng, num_random).items():
        bound = min_cut_bound(tree, widths, num_descriptors, modes).bound
        ranks = [int(jc.numerical_rank(jc.matricize(t, modes))) for t in tensors]
        rows.append(
            {
                "config": name,
                "partition": part_name,
                "row_modes": list(modes),
                "bound": bound,
                "ranks": ranks,
            }
        )
    return rows


def summarise(rows, powers):
    """The table: one line per configuration and partition."""
    lines = [
        f"{'config':17s} {'pow':>3s} {'partition':18s} {'|I|':>3s} {'bound':>6s} "
        f"{'rank min-max':>12s} {'equal':>6s}"
    ]
    for row in rows:
        ranks = row["ranks"]
        equal = sum(r == row["bound"] for r in ranks)
        lines.append(
            f"{row['config']:17s} {'yes' if powers[row['config']] else 'no':>3s} "
            f"{row['partition']:18s} {len(row['row_modes']):3d} {row['bound']:6d} "
            f"{f'{min(ranks)}-{max(ranks)}':>12s} {equal:>3d}/{len(ranks):<2d}"
        )
    return "\n".join(lines)


def shortfall_report(rows, powers):
    """How often and by how much ranks fall short, split by the power case."""
    lines = []
    for case in (True, False):
        draws = [
            (r, row["bound"])
            for row in rows
            if powers[row["config"]] == case
            for r in row["ranks"]
        ]
        short = [(b - r, (b - r) / b) for r, b in draws if r < b]
        above = sum(r > b for r, b in draws)
        label = "powers of one integer" if case else "mixed dimensions"
        detail = (
            f", shortfall mean {np.mean([s for s, _ in short]):.2f} "
            f"(max {max(s for s, _ in short)}), relative mean "
            f"{np.mean([f for _, f in short]):.1%}"
            if short
            else ""
        )
        lines.append(
            f"{label}: {len(short)}/{len(draws)} draws below the bound{detail}; "
            f"{above} above it"
        )
    return "\n".join(lines)


def plot(rows, powers, path):
    """Rank against bound, one marker per draw."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for case, color in ((True, "tab:blue"), (False, "tab:orange")):
        points = np.array(
            [
                (row["bound"], r)
                for row in rows
                if powers[row["config"]] == case
                for r in row["ranks"]
            ]
        )
        if not len(points):
            continue
        label = "powers of one integer" if case else "mixed dimensions"
        ax.scatter(points[:, 0], points[:, 1], s=12, alpha=0.5, c=color, label=label)
    top = max(row["bound"] for row in rows)
    ax.plot([1, top], [1, top], "k--", lw=1, label="rank = bound")
    ax.set(xscale="log", yscale="log", xlabel="min-cut bound", ylabel="numerical rank")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def get_config(preset: str = "full") -> dict:
    """The run's settings: ``"full"`` (the reported run) or ``"quick"``.

    Args:
      preset: ``"full"`` (every configuration, 8 draws, 4 random partitions)
        or ``"quick"`` (one small configuration, 2 draws, 1 random partition).

    Returns:
      A dict: ``seed``, ``draws`` (networks per configuration),
      ``random_partitions`` (random subsets besides the named partitions) and
      ``configs`` (names from :data:`CONFIGS`).

    Raises:
      ValueError: for an unknown preset.
    """
    if preset not in ("full", "quick"):
        raise ValueError(f"preset must be 'full' or 'quick', got {preset!r}.")
    quick = preset == "quick"
    return {
        "seed": 0,
        "draws": 2 if quick else 8,
        "random_partitions": 1 if quick else 4,
        "configs": ["bin8-M2-w333"] if quick else list(CONFIGS),
    }


def check_config(config: dict) -> None:
    """Raises ``ValueError`` naming the key of a bad setting."""
    if config["draws"] < 1:
        raise ValueError(f"config key 'draws' must be positive, got {config['draws']}.")
    if config["random_partitions"] < 0:
        raise ValueError(
            "config key 'random_partitions' must be >= 0, got "
            f"{config['random_partitions']}."
        )
    unknown = [name for name in config["configs"] if name not in CONFIGS]
    if unknown or not config["configs"]:
        raise ValueError(
            f"config key 'configs' must be a non-empty list of {list(CONFIGS)}, "
            f"got {config['configs']!r}."
        )


def run(config: dict, workdir: pathlib.Path) -> dict:
    """Runs the experiment under float64 and prints the table.

    Analysis only: nothing to resume.

    Args:
      config: from :func:`get_config`, possibly overridden.
      workdir: where ``metrics.jsonl`` and ``bound_vs_rank.png`` go.

    Returns:
      ``{"rows": [...], "shortfall": text}``: one row per configuration and
      partition (as in ``metrics.jsonl``) and the shortfall report.
    """
    check_config(config)
    with jax.enable_x64(True):  # Ranks are counted in float64 (SPEC §3).
        return _run(config, pathlib.Path(workdir))


def _run(config, workdir):
    """The experiment proper, under float64."""
    workdir.mkdir(parents=True, exist_ok=True)
    seed = config["seed"]
    rng = np.random.default_rng(seed)
    powers = {name: CONFIGS[name][3] for name in config["configs"]}
    rows, start = [], time.perf_counter()
    for name in config["configs"]:
        tree, num_descriptors, widths, _ = CONFIGS[name]
        key = jax.random.fold_in(jax.random.key(seed), list(CONFIGS).index(name))
        rows += run_config(
            name,
            tree,
            num_descriptors,
            widths,
            config["draws"],
            rng,
            config["random_partitions"],
            key,
        )
    with open(workdir / "metrics.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    plot(rows, powers, workdir / "bound_vs_rank.png")
    shortfall = shortfall_report(rows, powers)
    print(summarise(rows, powers))
    print(shortfall)
    print(f"total {time.perf_counter() - start:.1f} s")
    return {"rows": rows, "shortfall": shortfall}


def main(argv=None):
    """Runs the experiment from the command line (see :mod:`jaxconvac.cli`)."""
    return cli.main(argv, sys.modules[__name__])


if __name__ == "__main__":
    main(sys.argv[1:])
