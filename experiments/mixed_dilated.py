"""Mixed dilated networks on digits read as pixel sequences (ICLR 2018, sec. 7).

The paper trains WaveNet-style dilated networks (``g(a, b) = max(a + b, 0)``,
size-2 kernels, one-hot inputs) on TIMIT phoneme classification: a standard
network ``N`` (dilation ``2^(l-1)`` in layer ``l``), a companion ``N̄`` with the
dilations of odd and even layers swapped, and mixed networks that add their
outputs and exchange half their channels after hidden layers 2, 4, … (the
levels whose nodes both mode trees share), at equal width. Accuracy rose with
the number of interconnections.

TIMIT is licensed and not available here; the substitute is scikit-learn's
8×8 digits (1 797 images, 10 classes), each read row by row as a sequence of
64 intensities in ``0 … 16``, one-hot encoded (``M = 17``). Six layers see all
64 steps; the class scores are the network's output at the last step. Models
(every stack of width ``r`` in every layer):

* ``standard``: dilations ``1, 2, 4, 8, 16, 32``;
* ``swapped``: ``2, 1, 8, 4, 32, 16`` (the paper's ``N̄``);
* ``reversed``: ``32, 16, 8, 4, 2, 1``;
* ``mixed k``: ``standard`` and ``swapped`` summed, exchanging half their
  channels after the first ``k`` of the shared hidden layers ``2, 4``
  (``k = 0``: the plain sum of the two).

Command (from the repository root)::

    python experiments/mixed_dilated.py [--workdir runs/mixed_dilated]
        [--seed 0] [--preset full|quick] [--set KEY=VALUE ...] [--no-progress]
        [--resume] [--print-config]

(:mod:`jaxconvac.cli`'s flags; the keys are :func:`get_config`'s.) The full
preset checkpoints every 500 steps (``train.checkpoint_every``), so
``--resume`` continues a killed run where it was, and a finished run's work
directory is refused without it.

Data split: ``train_test_split(test_size=0.25, random_state=0,
stratify=labels)``: 1 347 training and 450 test sequences; the settings are
fixed in :func:`get_config`, not tuned on the test set. Writes per model and
seed ``<model>/seed<s>/metrics.jsonl`` (and ``checkpoints/``), then
``results.json``, ``table.md`` and ``accuracy.png`` into the work directory
(``config.json`` and ``summary.json`` by the CLI).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from jaxconvac import cli, training
from jaxconvac.mode_trees import swapped_dilations
from jaxconvac.nn.convac import count_params
from jaxconvac.nn.dilated import (
    DilatedConvNet,
    LastStepClassifier,
    MixedDilatedConvNet,
)
from jaxconvac.nn.representations import Indicator

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

SEQUENCE_LENGTH = 64
NUM_VALUES = 17
NUM_CLASSES = 10
SPLIT = {"test_size": 0.25, "random_state": 0}
STANDARD = (1, 2, 4, 8, 16, 32)
SWAPPED = swapped_dilations(SEQUENCE_LENGTH, 2)
REVERSED = swapped_dilations(SEQUENCE_LENGTH, 6)
# name -> (dilations, dilations_bar or None, mixed layers)
MODELS = {
    "standard": (STANDARD, None, ()),
    "swapped": (SWAPPED, None, ()),
    "reversed": (REVERSED, None, ()),
    "mixed 0": (STANDARD, SWAPPED, ()),
    "mixed 1": (STANDARD, SWAPPED, (2,)),
    "mixed 2": (STANDARD, SWAPPED, (2, 4)),
}


def get_config(preset: str = "full") -> dict:
    """The settings: width, seeds, training, data limits."""
    if preset not in ("full", "quick"):
        raise ValueError(f"preset must be 'full' or 'quick', got {preset!r}.")
    quick = preset == "quick"
    train = training.TrainConfig(
        steps=10 if quick else 2000,
        batch_size=64,
        learning_rate=3e-3,
        schedule="cosine",
        log_every=5 if quick else 100,
        eval_every=0,
        eval_batch_size=512,
        checkpoint_every=0 if quick else 500,
    )
    settings = dataclasses.asdict(train)
    del settings["seed"]
    return {
        "seed": 0,
        "seeds": 1 if quick else 3,
        "width": 8,
        "g": "relu_of_sum",
        "models": ["standard", "mixed 1"] if quick else list(MODELS),
        "data": {
            "max_train": 128 if quick else None,
            "max_test": 64 if quick else None,
        },
        "train": settings,
        "progress": not quick,
    }


def load_data(max_train=None, max_test=None) -> dict:
    """Digits as integer sequences ``(num_examples, 64)`` and labels."""
    images, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, stratify=labels, **SPLIT
    )

    def prepare(x, y, limit):
        return (
            jnp.asarray(x[:limit], jnp.int32),
            jnp.asarray(y[:limit], jnp.int32),
        )

    return {
        "train": prepare(x_train, y_train, max_train),
        "test": prepare(x_test, y_test, max_test),
    }


def build_model(name: str, width: int, g: str, seed: int) -> LastStepClassifier:
    """One-hot intensities, then the named (mixed) dilated network."""
    dilations, dilations_bar, mix_layers = MODELS[name]
    # He-style scaling for a size-2 kernel: variance 1 / fan_in per tap.
    initializer = jax.nn.initializers.variance_scaling(
        1.0, "fan_in", "normal", in_axis=-1, out_axis=-2, batch_axis=0
    )
    sizes = dict(
        num_descriptors=NUM_VALUES,
        widths=(width,) * len(dilations),
        num_outputs=NUM_CLASSES,
        g=g,
        initializer=initializer,
        rngs=nnx.Rngs(seed),
    )
    if dilations_bar is None:
        network = DilatedConvNet(dilations, **sizes)
    else:
        network = MixedDilatedConvNet(
            dilations, dilations_bar, mix_layers=mix_layers, **sizes
        )
    return LastStepClassifier(Indicator(NUM_VALUES, log=False), network)


def train_one(name, seed, config, data, workdir, resume=False) -> dict:
    """Trains one model with one seed; its final accuracies."""
    start = time.perf_counter()
    model = build_model(name, config["width"], config["g"], seed)
    train = training.TrainConfig(**config["train"], seed=seed)
    result = training.train(
        model,
        data["train"],
        train,
        eval_sets=data,
        workdir=None
        if workdir is None
        else workdir / name.replace(" ", "_") / f"seed{seed}",
        run_config={"model": name, "width": config["width"], "g": config["g"]},
        progress=config["progress"],
        description=f"{name} seed {seed}",
        resume=resume,
    )
    return {
        "model": name,
        "seed": seed,
        "params": count_params(model),
        "interconnections": len(MODELS[name][2]) if MODELS[name][1] else None,
        "train_accuracy": result.final["train_accuracy"],
        "test_accuracy": result.final["test_accuracy"],
        "seconds": time.perf_counter() - start,
    }


def run(
    config: dict, workdir: str | pathlib.Path | None = None, *, resume: bool = False
) -> dict:
    """Every model and seed; the table and (with a workdir) the figure.

    Prints the table.

    Args:
      config: from :func:`get_config`, possibly overridden.
      workdir: where each run trains (``<model>/seed<s>/``) and the results
        go (nothing is written if ``None``).
      resume: continue each run from its checkpoints (every
        ``train.checkpoint_every`` steps) in ``workdir/<model>/seed<s>``.

    Returns:
      ``{"runs": [...], "summary": [...], "table": markdown}``.
    """
    workdir = None if workdir is None else pathlib.Path(workdir)
    data = load_data(**config["data"])
    seeds = range(config["seed"], config["seed"] + config["seeds"])
    runs = [
        train_one(name, seed, config, data, workdir, resume)
        for name in config["models"]
        for seed in seeds
    ]
    summary = summarize(runs)
    table = format_table(summary, config)
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "results.json").write_text(
            json.dumps({"config": config, "runs": runs, "summary": summary}, indent=1)
        )
        (workdir / "table.md").write_text(table + "\n")
        plot(summary, workdir / "accuracy.png")
        plot_curves(workdir, config["models"], seeds, workdir / "curves.png")
    print(table)
    return {"runs": runs, "summary": summary, "table": table}


def summarize(runs: Sequence[dict]) -> list[dict]:
    """Mean and standard deviation over seeds, per model."""
    rows = []
    for name in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == name]
        train = np.array([r["train_accuracy"] for r in mine])
        test = np.array([r["test_accuracy"] for r in mine])
        rows.append(
            {
                "model": name,
                "interconnections": mine[0]["interconnections"],
                "params": mine[0]["params"],
                "seeds": len(mine),
                "train_mean": float(train.mean()),
                "train_std": float(train.std()),
                "test_mean": float(test.mean()),
                "test_std": float(test.std()),
                "test_all": test.tolist(),
                "seconds": float(np.mean([r["seconds"] for r in mine])),
            }
        )
    return rows


def format_table(summary: Sequence[dict], config: dict) -> str:
    """A Markdown table of accuracies (mean ± std over seeds)."""
    lines = [
        f"width {config['width']} per stack and layer, g = {config['g']}, "
        f"{config['train']['steps']} steps, seeds {config['seed']}…"
        f"{config['seed'] + config['seeds'] - 1}",
        "",
        "| model | interconnections | params | train acc | test acc | test acc per "
        "seed | s / run |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for row in summary:
        links = "" if row["interconnections"] is None else row["interconnections"]
        per_seed = ", ".join(f"{100 * a:.1f}" for a in row["test_all"])
        lines.append(
            f"| {row['model']} | {links} | {row['params']:,} | "
            f"{100 * row['train_mean']:.2f} ± {100 * row['train_std']:.2f} % | "
            f"{100 * row['test_mean']:.2f} ± {100 * row['test_std']:.2f} % | "
            f"{per_seed} | {row['seconds']:.1f} |"
        )
    return "\n".join(lines)


def plot_curves(
    workdir: pathlib.Path,
    models: Sequence[str],
    seeds: Sequence[int],
    path: pathlib.Path,
) -> None:
    """Training loss against step per model (mean over seeds), from metrics.jsonl."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in models:
        curves = []
        for seed in seeds:
            lines = workdir / name.replace(" ", "_") / f"seed{seed}" / "metrics.jsonl"
            records = [json.loads(line) for line in lines.read_text().splitlines()]
            curves.append([(r["step"], r["loss"]) for r in records if "loss" in r])
        steps = [step for step, _ in curves[0]]
        mean = np.mean([[loss for _, loss in curve] for curve in curves], axis=0)
        ax.plot(steps, mean, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss (mean over {len(seeds)} seeds)")
    ax.set_title("Mixed dilated networks: training curves")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot(summary: Sequence[dict], path: pathlib.Path) -> None:
    """Accuracy against the number of interconnections; single networks as lines."""
    fig, ax = plt.subplots(figsize=(6, 4))
    mixed = [r for r in summary if r["interconnections"] is not None]
    for key, label, marker in (("test", "test", "o"), ("train", "train", "s")):
        ax.errorbar(
            [r["interconnections"] for r in mixed],
            [100 * r[f"{key}_mean"] for r in mixed],
            yerr=[100 * r[f"{key}_std"] for r in mixed],
            marker=marker,
            capsize=3,
            label=f"mixed, {label}",
        )
    for row, style in zip(
        [r for r in summary if r["interconnections"] is None],
        ("--", ":", "-."),
        strict=False,
    ):
        ax.axhline(
            100 * row["test_mean"],
            color="gray",
            linestyle=style,
            label=f"{row['model']} alone, test",
        )
    ax.set_xlabel("interconnected hidden layers (2, then 2 and 4)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Mixed dilated networks, digits as 64-step sequences")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the experiment from the command line (see :mod:`jaxconvac.cli`)."""
    return cli.main(argv, sys.modules[__name__])


if __name__ == "__main__":
    main(sys.argv[1:])
