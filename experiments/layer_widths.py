"""Layer widths and the range of interactions (Levine et al. 2018).

Claim: the widths of a deep ConvAC's early levels bound the entanglement (the
interactions it can model) across short-range partitions of its input, the
widths of its late levels across long-range ones; so at a fixed parameter
budget, a network wide at the base suits a task decided by local structure
and one wide at the tip a task decided by structure spread over the image.

Two tasks built from scikit-learn's 8×8 digits on a 32×32 canvas, binarised
(``M = 2`` indicator descriptors):

* *local*: the 8×8 digit pasted at a uniformly random position (every
  training digit ``placements`` times, every test digit once);
* *global*: the digit upscaled (bilinear) to fill the canvas.

Two deep log-space ConvACs over ``ModeTree.image(32, 32)`` (five levels of
2×2 square pooling, ``per_tap`` sharing, log-softmax normalised weights):
*wide-base* and *wide-tip*, with widths chosen so that their parameter counts
differ by under 5 %. Each is trained on each task (same steps, batch, Adam,
cosine schedule). The script reports test accuracy per task × architecture,
and for every trained network, across short-range partitions (a 4×4 and an
8×8 block, each one tree node) and long-range ones (left/right and
top/bottom halves): the min-cut bound (:func:`~jaxconvac.min_cut_bound`,
the same for every weight setting) and the exact entanglement entropy of the
trained coefficient tensors (:func:`~jaxconvac.exact_spectrum` →
:func:`~jaxconvac.entanglement_entropy`), averaged over the 10 class tensors.

Command (from the repository root)::

    python experiments/layer_widths.py [--workdir runs/layer_widths] [--seed 0]
        [--preset full|quick]

Writes ``results.json`` and ``layer_widths.png`` into the work directory and
one sub-directory per (task, architecture) with the training logs.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time
from typing import Any

import matplotlib
import numpy as np
from flax import nnx
from scipy import ndimage
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import jaxconvac as jc
from jaxconvac import nn, training
from jaxconvac.entanglement import entanglement_entropy, exact_spectrum
from jaxconvac.tensor_networks import min_cut_bound

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

CANVAS = 32
DIGIT = 8
NUM_CLASSES = 10
NUM_DESCRIPTORS = 2
TASKS = ("local", "global")
SPLIT = {"test_size": 0.25, "random_state": 0}


def get_config(preset: str = "full") -> dict[str, Any]:
    """The job's settings.

    Args:
      preset: ``"full"`` (the reported run) or ``"quick"`` (a seconds-long
        smoke run on a few images).

    Returns:
      A dict: ``seed``, ``data`` (``placements``: random positions per local
      training digit; ``threshold``: the binarisation cut, a fraction of the
      maximal intensity; ``max_train``/``max_test``: keep that many digits,
      ``None`` for all), ``sharing``, ``architectures`` (name → widths) and
      ``train`` (:class:`~jaxconvac.training.TrainConfig` fields but the seed).
    """
    if preset not in ("full", "quick"):
        raise ValueError(f"preset must be 'full' or 'quick', got {preset!r}.")
    quick = preset == "quick"
    return {
        "seed": 0,
        "data": {
            "placements": 1 if quick else 3,
            "threshold": 0.4,
            "max_train": 64 if quick else None,
            "max_test": 32 if quick else None,
        },
        "sharing": "per_tap",
        "architectures": {
            # Levels 0…4 (level 0 sees one pixel; M = 2 caps its useful
            # width at 2, and a 2×2 node's span at 16).
            "wide-base": [2, 16, 64, 8, 4] if not quick else [2, 4, 4, 2, 2],
            "wide-tip": [2, 4, 8, 34, 36] if not quick else [2, 2, 2, 4, 4],
        },
        "train": {
            "steps": 8 if quick else 1500,
            "batch_size": 16 if quick else 64,
            "learning_rate": 0.02,
            "schedule": "cosine",
            "log_every": 4 if quick else 100,
            "eval_every": 0,
            "eval_batch_size": 512,
        },
    }


# -- data ---------------------------------------------------------------------


def _binarise(images: np.ndarray, threshold: float) -> np.ndarray:
    return (images > threshold).astype(np.int32).reshape(len(images), -1)


def make_local(
    digits: np.ndarray, placements: int, threshold: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Each digit pasted ``placements`` times at uniform random positions.

    Args:
      digits: ``(n, 8, 8)`` intensities in ``[0, 1]``.
      placements: copies per digit.
      threshold: pixels above it become 1.
      rng: draws the positions.

    Returns:
      ``(inputs, index)``: binary ``(n * placements, 32 * 32)`` int32 images
      (row-major, position ``row * 32 + col``) and the digit each came from.
    """
    count = len(digits) * placements
    canvas = np.zeros((count, CANVAS, CANVAS))
    offsets = rng.integers(0, CANVAS - DIGIT + 1, size=(count, 2))
    index = np.repeat(np.arange(len(digits)), placements)
    for k, (row, col) in enumerate(offsets):
        canvas[k, row : row + DIGIT, col : col + DIGIT] = digits[index[k]]
    return _binarise(canvas, threshold), index


def make_global(digits: np.ndarray, threshold: float) -> np.ndarray:
    """Each digit upscaled (bilinear) to fill the 32×32 canvas, binarised."""
    factor = CANVAS / DIGIT
    zoomed = np.stack([ndimage.zoom(d, factor, order=1) for d in digits])
    return _binarise(zoomed, threshold)


def load_tasks(config: dict[str, Any], seed: int) -> dict[str, dict[str, tuple]]:
    """``{task: {"train": (x, y), "test": (x, y)}}`` from one split of digits."""
    digits = load_digits()
    images = digits.images / 16.0
    train_x, test_x, train_y, test_y = train_test_split(
        images, digits.target, stratify=digits.target, **SPLIT
    )
    data = config["data"]
    if data["max_train"] is not None:
        train_x, train_y = train_x[: data["max_train"]], train_y[: data["max_train"]]
    if data["max_test"] is not None:
        test_x, test_y = test_x[: data["max_test"]], test_y[: data["max_test"]]
    rng = np.random.default_rng(seed)
    threshold = data["threshold"]
    local_train, index = make_local(train_x, data["placements"], threshold, rng)
    local_test, test_index = make_local(test_x, 1, threshold, rng)
    return {
        "local": {
            "train": (local_train, train_y[index].astype(np.int32)),
            "test": (local_test, test_y[test_index].astype(np.int32)),
        },
        "global": {
            "train": (make_global(train_x, threshold), train_y.astype(np.int32)),
            "test": (make_global(test_x, threshold), test_y.astype(np.int32)),
        },
    }


# -- partitions and analysis -------------------------------------------------------


def partitions() -> dict[str, tuple[str, list[int]]]:
    """Name → (range, pixel positions); every block is one tree node."""
    pixels = np.arange(CANVAS * CANVAS).reshape(CANVAS, CANVAS)
    half = CANVAS // 2
    return {
        "block 4x4": ("short", pixels[12:16, 12:16].ravel().tolist()),
        "block 8x8": ("short", pixels[8:16, 16:24].ravel().tolist()),
        "left/right": ("long", pixels[:, :half].ravel().tolist()),
        "top/bottom": ("long", pixels[:half].ravel().tolist()),
    }


def analyse(model: nn.ConvAC, widths: list[int]) -> dict[str, dict[str, float]]:
    """Min-cut bound and exact entropy (mean over classes) per partition."""
    params = tuple(np.asarray(p, np.float64) for p in model.decomposition_params())
    analysis = {}
    for name, (reach, rows) in partitions().items():
        bound = min_cut_bound(model.tree, widths, NUM_DESCRIPTORS, rows).bound
        start = time.perf_counter()
        spectrum = exact_spectrum(params, model.tree, rows, space="log")
        seconds = time.perf_counter() - start
        entropies = [
            float(entanglement_entropy(values)) for values in spectrum.singular_values
        ]
        analysis[name] = {
            "range": reach,
            "bound": bound,
            "ln_bound": math.log(bound),
            "entropy_mean": float(np.mean(entropies)),
            "entropy_min": float(np.min(entropies)),
            "entropy_max": float(np.max(entropies)),
            "spectrum_seconds": seconds,
        }
    return analysis


# -- the job ------------------------------------------------------------------------


def count_params(tree: jc.ModeTree, widths: list[int], sharing: str) -> int:
    """Parameters of a ConvAC of these widths (weights only)."""
    model = nn.ConvAC(
        tree,
        num_descriptors=NUM_DESCRIPTORS,
        widths=tuple(widths),
        num_outputs=NUM_CLASSES,
        sharing=sharing,
        rngs=nnx.Rngs(0),
    )
    return nn.count_params(model)


def run(config: dict[str, Any], workdir: str | pathlib.Path) -> dict[str, Any]:
    """Trains every (task, architecture), analyses it, writes the results.

    Args:
      config: as :func:`get_config` returns.
      workdir: the output directory (created).

    Returns:
      The summary that ``results.json`` holds: ``params`` per architecture
      and one record per (task, architecture) with accuracies, times and the
      analysis.
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    seed = config["seed"]
    tree = jc.ModeTree.image(CANVAS, CANVAS)
    tasks = load_tasks(config, seed)
    params = {
        name: count_params(tree, widths, config["sharing"])
        for name, widths in config["architectures"].items()
    }
    records = []
    for task in TASKS:
        train_set, test_set = tasks[task]["train"], tasks[task]["test"]
        for arch, widths in config["architectures"].items():
            model = nn.ConvAC(
                tree,
                num_descriptors=NUM_DESCRIPTORS,
                widths=tuple(widths),
                num_outputs=NUM_CLASSES,
                sharing=config["sharing"],
                rngs=nnx.Rngs(seed),
            )
            train_config = training.TrainConfig(**config["train"], seed=seed)
            wall, cpu = time.perf_counter(), time.process_time()
            result = training.train(
                model,
                train_set,
                train_config,
                eval_sets={"train": train_set, "test": test_set},
                workdir=workdir / f"{task}-{arch}",
                run_config={"task": task, "architecture": arch, "widths": widths},
                progress=False,
            )
            train_wall = time.perf_counter() - wall
            train_cpu = time.process_time() - cpu
            records.append(
                {
                    "task": task,
                    "architecture": arch,
                    "widths": list(widths),
                    "params": params[arch],
                    "train_accuracy": result.final["train_accuracy"],
                    "test_accuracy": result.final["test_accuracy"],
                    "train_examples": int(len(train_set[1])),
                    "test_examples": int(len(test_set[1])),
                    "train_wall_seconds": train_wall,
                    "train_cpu_seconds": train_cpu,
                    "analysis": analyse(model, list(widths)),
                }
            )
            print(
                f"{task:<7} {arch:<10} test {result.final['test_accuracy']:.4f} "
                f"({train_wall:.0f} s wall, {train_cpu:.0f} s cpu)",
                flush=True,
            )
    summary = {"config": config, "params": params, "records": records}
    (workdir / "results.json").write_text(json.dumps(summary, indent=2))
    plot(summary, workdir / "layer_widths.png")
    return summary


def format_tables(summary: dict[str, Any]) -> str:
    """The accuracy table and the entanglement table, as Markdown."""
    records = summary["records"]
    archs = list(summary["params"])
    lines = [
        "| task | " + " | ".join(f"{a} test acc" for a in archs) + " | better |",
        "|---|" + "---|" * (len(archs) + 1),
    ]
    for task in TASKS:
        accs = {
            r["architecture"]: r["test_accuracy"] for r in records if r["task"] == task
        }
        best = max(accs, key=accs.get)
        cells = " | ".join(f"{100 * accs[a]:.2f} %" for a in archs)
        lines.append(f"| {task} | {cells} | {best} |")
    lines += [
        "",
        "| task | architecture | partition | range | min-cut bound | ln bound "
        "| entropy (mean over classes) | min … max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        for name, a in r["analysis"].items():
            lines.append(
                f"| {r['task']} | {r['architecture']} | {name} | {a['range']} | "
                f"{a['bound']} | {a['ln_bound']:.3f} | {a['entropy_mean']:.4f} | "
                f"{a['entropy_min']:.4f} … {a['entropy_max']:.4f} |"
            )
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: pathlib.Path) -> None:
    """Accuracy per task × architecture and entropy per partition."""
    records = summary["records"]
    archs = list(summary["params"])
    names = list(partitions())
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    colors = {"wide-base": "tab:blue", "wide-tip": "tab:orange"}
    width = 0.38
    for k, arch in enumerate(archs):
        accs = [
            next(
                r["test_accuracy"]
                for r in records
                if r["task"] == t and r["architecture"] == arch
            )
            for t in TASKS
        ]
        axes[0].bar(
            np.arange(len(TASKS)) + (k - 0.5) * width,
            [100 * a for a in accs],
            width,
            label=f"{arch} ({summary['params'][arch]} params)",
            color=colors.get(arch),
        )
    axes[0].set_xticks(range(len(TASKS)), TASKS)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_ylim(0, 100)
    axes[0].legend(fontsize=8, loc="lower right")
    axes[0].set_title("accuracy")
    for ax, task in zip(axes[1:], TASKS, strict=True):
        for k, arch in enumerate(archs):
            record = next(
                r for r in records if r["task"] == task and r["architecture"] == arch
            )
            x = np.arange(len(names)) + (k - 0.5) * width
            ax.bar(
                x,
                [record["analysis"][n]["entropy_mean"] for n in names],
                width,
                color=colors.get(arch),
                label=f"{arch}: entropy",
            )
            ax.scatter(
                x,
                [record["analysis"][n]["ln_bound"] for n in names],
                marker="_",
                s=200,
                color="black",
                label="ln(min-cut bound)" if k == 0 else None,
            )
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_ylabel("nats")
        ax.set_title(f"trained on {task}: entropy across partitions")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line: ``--workdir``, ``--seed``, ``--preset``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="runs/layer_widths")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="full", choices=("full", "quick"))
    args = parser.parse_args(argv)
    config = get_config(args.preset)
    config["seed"] = args.seed
    wall, cpu = time.perf_counter(), time.process_time()
    summary = run(config, args.workdir)
    print(format_tables(summary))
    print(
        f"total: {time.perf_counter() - wall:.0f} s wall, "
        f"{time.process_time() - cpu:.0f} s cpu"
    )
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
