"""Pooling geometry controls inductive bias: the blob experiment of ICLR 2017.

Cohen & Shashua (ICLR 2017) train deep networks with 2×2 pooling on 32×32
binary "blob" images (:mod:`jaxconvac.data.blobs`) for two tasks: *closedness*
(a local-shape property) and *symmetry* (a left-right property). A deep network
models strong interactions between the pixels it pools early, so *square*
pooling (contiguous 2×2 blocks) should win on closedness and *mirror* pooling
(each pixel with its left-right, up-down and diagonal reflections) on symmetry.

Networks, all over ``jc.ModeTree.image(32, 32, geometry)`` (the geometry is
only the gather order of the pixels: the same network code for both):

* ``convac``: the deep ConvAC in log space, 2-valued indicator descriptors
  (``M = 2``, the image's integer pixel values go straight into the leaf
  lookup), five levels of 1×1 convolution (``sharing="full"``) and 2×2 product
  pooling (32 → 1), log-softmax normalised weights;
* ``relu_max`` / ``relu_average``: the same geometry with 1×1 convolution,
  ReLU and 2×2 max / average pooling (``nn.GeneralizedConvNet`` on one-hot
  descriptors), then a linear output; He-normal initial weights;
* ``shallow``: the shallow ConvAC baseline, ``ModeTree.shallow(1024)`` (global
  product pooling; the geometry does not apply), locally connected
  (``sharing="none"``): with shared weights and one commutative global pool the
  score would only see the number of set pixels.

Commands (from the repository root)::

    python experiments/pooling_geometry.py --preset quick \
        --workdir runs/pooling_geometry
    python experiments/pooling_geometry.py --preset paper --workdir runs/pooling_paper \
        [--set networks=convac] [--set tasks=symmetry] [--resume]

The flags are :mod:`jaxconvac.cli`'s (``--workdir``, ``--seed``, ``--preset``
or ``--quick``, ``--set KEY=VALUE``, ``--no-progress``, ``--resume``,
``--print-config``); the keys are :func:`get_config`'s, e.g. ``--set
networks=convac,shallow``, ``--set geometries=mirror``, ``--set
train.steps=200`` or ``--set widths.convac=64,64,64,64,64``.

``quick``: widths 32, 1 500 steps; ``paper``: batch 64, 15 000 steps, Adam,
widths 128 (ConvAC and ReLU) and 2 048 (shallow). ``smoke`` is a seconds-long
run on 40 rendered images for the tests. Every preset uses Adam at ``1e-2``
with a cosine decay. ``quick`` and ``paper`` checkpoint every 500 and 1 000
steps (``train.checkpoint_every``; checkpoints change no result), so
``--resume`` continues a killed run: finished cells are restored from their
last checkpoint (and evaluated, not retrained), the others continue where they
stopped. Without ``--resume`` a work directory holding checkpoints is refused.
``experiments/README.md`` has the measured tables and run times.

Writes into the work directory: ``<task>-<geometry>-<network>/`` with
``config.json`` and ``metrics.jsonl`` per trained network, ``params-<task>-
<geometry>.npz`` (the trained ConvAC's decomposition parameters, for
``experiments/pooling_entanglement.py``), ``results.json``, ``table.md``,
``pooling_geometry_accuracy.png`` and ``pooling_blobs_examples.png``; the CLI
adds ``config.json`` and ``summary.json``.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from flax import nnx

import jaxconvac as jc
from jaxconvac import cli, nn, training
from jaxconvac.data import blobs

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

GEOMETRIES = ("square", "mirror")
NETWORKS = ("convac", "relu_max", "relu_average", "shallow")
PRESETS = ("smoke", "quick", "paper")
PAPER_SHALLOW = {"closedness": 0.62, "symmetry": 0.77}
"""The shallow ConvAC's test accuracies the paper reports (about)."""


def get_config(preset: str = "quick") -> dict[str, Any]:
    """The experiment's settings.

    Args:
      preset: ``"smoke"`` (seconds, for tests), ``"quick"`` or ``"paper"``.

    Returns:
      A nested dict: ``seed``, ``progress``, ``data`` (the
      :class:`~jaxconvac.data.blobs.BlobConfig` fields but the seed),
      ``tasks``, ``geometries``, ``networks`` (names), ``widths`` (network →
      widths) and ``train`` (:class:`~jaxconvac.training.TrainConfig` fields
      but the seed).

    Raises:
      ValueError: for an unknown preset.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}.")
    deep = {"smoke": 4, "quick": 32, "paper": 128}[preset]
    shallow = {"smoke": 8, "quick": 256, "paper": 2048}[preset]
    steps = {"smoke": 6, "quick": 1500, "paper": 15_000}[preset]
    rendered = (40, 20) if preset == "smoke" else (25_000, 5_000)
    return {
        "seed": 0,
        "progress": preset != "smoke",
        "data": {"num_train_rendered": rendered[0], "num_test_rendered": rendered[1]},
        "tasks": list(blobs.TASKS),
        "geometries": list(GEOMETRIES),
        "networks": list(NETWORKS),
        "widths": {
            "convac": [deep] * 5,
            "relu_max": [deep] * 5,
            "relu_average": [deep] * 5,
            "shallow": [shallow],
        },
        "train": {
            "steps": steps,
            "batch_size": 8 if preset == "smoke" else 64,
            "learning_rate": 1e-2,
            "optimizer": "adam",
            "schedule": "cosine",
            "log_every": 3 if preset == "smoke" else 100,
            "eval_every": 0 if preset == "smoke" else 500,
            "eval_batch_size": 1024,
            "checkpoint_every": {"smoke": 0, "quick": 500, "paper": 1000}[preset],
        },
    }


def _he_normal(key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    """Normal weights of variance ``2 / fan_in`` (``shape = (groups, out, in)``)."""
    return jax.random.normal(key, shape, dtype) * np.sqrt(2.0 / shape[-1])


def build_network(name: str, geometry: str, widths, seed: int) -> nnx.Module:
    """One network of the grid, mapping ``(batch, 1024)`` pixel values to scores.

    Args:
      name: one of :data:`NETWORKS`.
      geometry: ``"square"`` or ``"mirror"`` (ignored by ``"shallow"``).
      widths: ``(r_0, …, r_{L-1})``.
      seed: seeds the weights.

    Returns:
      The module; ``convac`` and ``shallow`` are :class:`~jaxconvac.nn.ConvAC`
      (integer inputs go to the leaf lookup), the ReLU nets
      :class:`~jaxconvac.nn.GeneralizedClassifier`.

    Raises:
      ValueError: for an unknown network or geometry.
    """
    if name not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS}, got {name!r}.")
    rngs = nnx.Rngs(seed)
    side = blobs.IMAGE_SIDE
    if name == "shallow":
        return nn.ConvAC(
            jc.ModeTree.shallow(side * side),
            num_descriptors=2,
            widths=tuple(widths),
            num_outputs=2,
            sharing="none",
            rngs=rngs,
        )
    tree = jc.ModeTree.image(side, side, geometry)
    if name == "convac":
        return nn.ConvAC(
            tree,
            num_descriptors=2,
            widths=tuple(widths),
            num_outputs=2,
            sharing="full",
            rngs=rngs,
        )
    network = nn.GeneralizedConvNet(
        tree,
        num_descriptors=2,
        widths=tuple(widths),
        num_outputs=2,
        activation="relu",
        pooling=name.removeprefix("relu_"),
        sharing="full",
        initializer=_he_normal,
        rngs=rngs,
    )
    return nn.GeneralizedClassifier(nn.Indicator(2, log=False), network)


def as_inputs(images: np.ndarray, labels: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """``(batch, 32, 32)`` binary images as ``(batch, 1024)`` int32 row-major."""
    return (
        jnp.asarray(images.reshape(len(images), -1), jnp.int32),
        jnp.asarray(labels, jnp.int32),
    )


def train_cell(
    config, task, geometry, network, data, workdir, resume=False
) -> dict[str, Any]:
    """Trains (or with ``resume`` continues) one network on one task; its row."""
    seed = config["seed"]
    widths = config["widths"][network]
    model = build_network(network, geometry, widths, seed)
    train_config = training.TrainConfig(**config["train"], seed=seed)
    name = f"{task}-{geometry}-{network}"
    wall, cpu = time.perf_counter(), time.process_time()
    result = training.train(
        model,
        data["train"],
        train_config,
        eval_sets=data,
        workdir=workdir / name,
        run_config={
            "task": task,
            "geometry": geometry,
            "network": network,
            "widths": widths,
            "data": config["data"],
        },
        progress=config["progress"],
        description=name,
        resume=resume,
    )
    if network == "convac":
        params = model.decomposition_params()
        np.savez(
            workdir / f"params-{task}-{geometry}.npz",
            **{f"w{level}": np.asarray(w) for level, w in enumerate(params)},
        )
    return {
        "task": task,
        "geometry": "-" if network == "shallow" else geometry,
        "network": network,
        "widths": list(widths),
        "params": nn.count_params(model),
        "steps": result.steps,
        "train_accuracy": result.final["train_accuracy"],
        "test_accuracy": result.final["test_accuracy"],
        "wall_seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
    }


def cells(config) -> list[tuple[str, str, str]]:
    """``(task, geometry, network)`` to train: ConvACs first, shallow once per task."""
    out = []
    for network in config["networks"]:
        for task in config["tasks"]:
            geometries = ["square"] if network == "shallow" else config["geometries"]
            out += [(task, geometry, network) for geometry in geometries]
    return out


def margins(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per network: closedness (square − mirror), symmetry (mirror − square), points."""
    accuracy = {
        (r["task"], r["geometry"], r["network"]): r["test_accuracy"] for r in rows
    }
    out: dict[str, dict[str, float]] = {}
    for (task, geometry, network), value in accuracy.items():
        other = "mirror" if geometry == "square" else "square"
        if geometry != ("square" if task == "closedness" else "mirror"):
            continue
        if (task, other, network) in accuracy:
            out.setdefault(network, {})[task] = 100 * (
                value - accuracy[(task, other, network)]
            )
    return out


def format_table(rows: list[dict]) -> str:
    """Markdown: test accuracy per network × task × geometry, and the margins."""
    accuracy = {(r["task"], r["geometry"], r["network"]): r for r in rows}
    margin = margins(rows)
    lines = [
        "| network | widths | closedness square | closedness mirror | margin "
        "(sq − mi) | symmetry square | symmetry mirror | margin (mi − sq) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for network in dict.fromkeys(r["network"] for r in rows):
        widths = next(r["widths"] for r in rows if r["network"] == network)
        cells_ = []
        for task in blobs.TASKS:
            for geometry in GEOMETRIES:
                row = accuracy.get((task, geometry, network))
                if geometry == "square" and row is None:
                    row = accuracy.get((task, "-", network))  # shallow: no geometry
                cells_.append(f"{100 * row['test_accuracy']:.2f} %" if row else "")
            value = margin.get(network, {}).get(task)
            cells_.append(f"{value:+.2f}" if value is not None else "")
        width_text = f"{widths[0]}×{len(widths)}" if len(widths) > 1 else str(widths[0])
        lines.append(f"| {network} | {width_text} | " + " | ".join(cells_) + " |")
    return "\n".join(lines)


def plot_examples(arrays: dict[str, np.ndarray], path: pathlib.Path, per_row=8):
    """Test images of both labels of both tasks, with their scores."""
    fig, axes = plt.subplots(4, per_row, figsize=(per_row, 4.6))
    for row, (task, label) in enumerate((t, y) for t in blobs.TASKS for y in (0, 1)):
        chosen = arrays[f"test_{task}_index"][arrays[f"test_{task}_label"] == label]
        for col in range(per_row):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(chosen):
                continue
            ax.imshow(arrays["test_images"][chosen[col]], cmap="gray_r", vmin=0, vmax=1)
            score = arrays[f"test_{task}_score"][chosen[col]]
            ax.set_title(f"{score:.2f}", fontsize=7, pad=2)
        axes[row, 0].set_ylabel(f"{task}\nlabel {label}", fontsize=8)
    fig.suptitle("blob images (test pool) with their score", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def plot_accuracy(rows: list[dict], path: pathlib.Path) -> None:
    """Grouped bars: test accuracy per task, network and geometry."""
    networks = list(dict.fromkeys(r["network"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, task in zip(axes, blobs.TASKS, strict=True):
        for offset, geometry in ((-0.2, "square"), (0.2, "mirror"), (0.0, "-")):
            values = [
                next(
                    (
                        100 * r["test_accuracy"]
                        for r in rows
                        if (r["task"], r["network"], r["geometry"])
                        == (task, network, geometry)
                    ),
                    np.nan,
                )
                for network in networks
            ]
            label = "no geometry" if geometry == "-" else geometry
            color = "0.6" if geometry == "-" else None
            ax.bar(
                np.arange(len(networks)) + offset, values, 0.4, label=label, color=color
            )
        ax.axhline(
            100 * PAPER_SHALLOW[task], color="k", ls=":", lw=1, label="paper, shallow"
        )
        ax.set_xticks(range(len(networks)), networks, fontsize=8)
        ax.set_title(task)
        ax.set_ylim(50, 100)
    axes[0].set_ylabel("test accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def check_config(config: dict[str, Any]) -> None:
    """Refuses unknown or missing tasks, geometries and networks.

    Raises:
      ValueError: naming the key, the allowed names and what came.
    """
    for key, allowed in (
        ("tasks", blobs.TASKS),
        ("geometries", GEOMETRIES),
        ("networks", NETWORKS),
    ):
        names = config[key]
        unknown = [name for name in names if name not in allowed]
        if not names or unknown or len(set(names)) != len(names):
            raise ValueError(
                f"config {key!r} must be distinct names out of {list(allowed)}, "
                f"got {names!r}."
            )


def run(
    config: dict[str, Any], workdir: pathlib.Path, *, resume: bool = False
) -> dict[str, Any]:
    """Trains the grid of ``config``; writes results, table and figures.

    Args:
      config: from :func:`get_config`, possibly changed.
      workdir: the output directory (created if missing); each network trains
        in ``workdir/<task>-<geometry>-<network>``.
      resume: continue each network from its newest checkpoint there (every
        ``train.checkpoint_every`` steps), or start it if it has none.

    Returns:
      ``{"rows": [...], "margins": {...}, "data_seconds": …}``, as written to
      ``results.json``.

    Raises:
      ValueError: for unknown tasks, geometries or networks.
    """
    check_config(config)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data_config = blobs.BlobConfig(seed=config["seed"], **config["data"])
    arrays = blobs.load_arrays(data_config)
    data_seconds = time.perf_counter() - start
    plot_examples(arrays, workdir / "pooling_blobs_examples.png")
    datasets = {
        task: {split: as_inputs(*pair) for split, pair in sets.items()}
        for task in config["tasks"]
        for sets in [blobs.load_blobs(task, data_config)]
    }

    rows: list[dict] = []
    for task, geometry, network in cells(config):
        rows.append(
            train_cell(config, task, geometry, network, datasets[task], workdir, resume)
        )
        summary = {"rows": rows, "margins": margins(rows), "data_seconds": data_seconds}
        (workdir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(rows[-1]), flush=True)
    table = format_table(rows)
    (workdir / "table.md").write_text(table + "\n")
    plot_accuracy(rows, workdir / "pooling_geometry_accuracy.png")
    print(table)
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the experiment from the command line (see :mod:`jaxconvac.cli`)."""
    return cli.main(argv, sys.modules[__name__])


if __name__ == "__main__":
    main(sys.argv[1:])
