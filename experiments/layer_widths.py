"""Layer widths and the range of interactions (Levine et al. 2018).

Claim: the widths of a deep ConvAC's early levels bound the entanglement (the
interactions it can model) across short-range partitions of its input, the
widths of its late levels across long-range ones; so at a fixed parameter
budget, a network wide at the base suits a task decided by local structure
and one wide at the tip a task decided by structure spread over the image.

Two tasks built from scikit-learn's 8×8 digits on a 32×32 canvas, binarised
(``M = 2`` indicator descriptors):

* *local*: the 8×8 digit pasted at a random position **on the 8-pixel grid**
  (rows and columns 0, 8, 16 or 24: 16 positions, so the digit always fills
  exactly one 8×8 node of the pooling tree; every training digit
  ``placements`` times, every test digit once). ``data.stride = 1`` gives
  any of the 625 positions instead (not learnable by these networks in this
  budget; see the README);
* *global*: the digit upscaled (bilinear) to fill the canvas.

Two deep log-space ConvACs over ``ModeTree.image(32, 32)`` (five levels of
2×2 square pooling, ``per_tap`` sharing, log-softmax normalised weights):
*wide-base* ``(16, 32, 64, 16, 12)`` and *wide-tip* ``(4, 8, 16, 46, 60)``,
parameter counts within 1 % (15 352 and 15 256). Both keep every width at
least ``Y = 10`` from the level that holds a whole local digit up: a
normalised ConvAC's class scores are mixtures over the channels below the
root, and with fewer channels than classes neither network can separate all
ten classes whatever its base. Each is trained on each task (same steps,
batch, Adam, cosine schedule). The script reports test accuracy per task ×
architecture (or, with ``data.validation``, accuracy on a validation split
carved from the training digits: the split the settings were chosen on), and
for every trained network, across short-range partitions (2×2, 4×4 and 8×8
blocks, each one tree node) and long-range ones (left/right and top/bottom
halves): the min-cut bound (:func:`~jaxconvac.min_cut_bound`, the same for
every weight setting) and the exact entanglement entropy of the trained
coefficient tensors (:func:`~jaxconvac.exact_spectrum` →
:func:`~jaxconvac.entanglement_entropy`), averaged over the 10 class tensors.

Command (from the repository root)::

    python experiments/layer_widths.py [--workdir runs/layer_widths] [--seed 0]
        [--preset full|quick] [--set KEY=VALUE ...] [--resume] [--print-config]

(:mod:`jaxconvac.cli`'s flags; the keys are :func:`get_config`'s, e.g.
``--set data.validation=true`` for the validation split.) The full preset
checkpoints every 500 steps (``train.checkpoint_every``), so ``--resume``
continues a killed run where it was, and a finished run's work directory is
refused without it.

Writes ``results.json`` and ``layer_widths.png`` into the work directory and
one sub-directory ``<task>-<architecture>`` per trained network with its
training log (``metrics.jsonl``) and checkpoints (``config.json`` and
``summary.json`` by the CLI). Prints the tables.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
import time
from typing import Any

import jax
import matplotlib
import numpy as np
from flax import nnx
from scipy import ndimage
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import jaxconvac as jc
from jaxconvac import cli, nn, training
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
VALIDATION_SPLIT = {"test_size": 0.2, "random_state": 1}


def get_config(preset: str = "full") -> dict[str, Any]:
    """The job's settings.

    Args:
      preset: ``"full"`` (the reported run) or ``"quick"`` (a seconds-long
        smoke run on a few images).

    Returns:
      A dict: ``seed``, ``data`` (``placements``: random positions per local
      training digit; ``stride``: local positions are the multiples of it
      (``8``: the 8-pixel grid, ``1``: anywhere); ``threshold``: the
      binarisation cut, a fraction of the maximal intensity;
      ``max_train``/``max_test``: keep that many digits, ``None`` for all;
      ``validation``: evaluate on a validation split of the training digits
      instead of the test digits), ``sharing``, ``architectures`` (name →
      widths), ``train`` (:class:`~jaxconvac.training.TrainConfig` fields
      but the seed) and ``progress`` (progress bars while training).
    """
    if preset not in ("full", "quick"):
        raise ValueError(f"preset must be 'full' or 'quick', got {preset!r}.")
    quick = preset == "quick"
    return {
        "seed": 0,
        "data": {
            "placements": 1 if quick else 3,
            "stride": DIGIT,
            "threshold": 0.4,
            "max_train": 64 if quick else None,
            "max_test": 32 if quick else None,
            "validation": False,
        },
        "sharing": "per_tap",
        "architectures": {
            # Widths r_0 … r_4: r_l is the number of channels of a node of
            # 2^l × 2^l pixels after its weights (r_0: one pixel, r_0 channels
            # product-pooled over a 2×2 block, so a 2×2 block can use up to 16).
            # An 8×8 local digit lives on levels 0–3; r_3, r_4 >= Y = 10 in
            # both (see the module docstring).
            "wide-base": [16, 32, 64, 16, 12] if not quick else [4, 4, 4, 2, 2],
            "wide-tip": [4, 8, 16, 46, 60] if not quick else [2, 2, 2, 4, 4],
        },
        "train": {
            "steps": 8 if quick else 1500,
            "batch_size": 16 if quick else 64,
            "learning_rate": 0.03,
            "schedule": "cosine",
            "log_every": 4 if quick else 100,
            "eval_every": 0,
            "eval_batch_size": 512,
            "checkpoint_every": 0 if quick else 500,
        },
        "progress": False,
    }


# -- data ---------------------------------------------------------------------


def _binarise(images: np.ndarray, threshold: float) -> np.ndarray:
    return (images > threshold).astype(np.int32).reshape(len(images), -1)


def make_local(
    digits: np.ndarray,
    placements: int,
    threshold: float,
    rng: np.random.Generator,
    stride: int = DIGIT,
) -> tuple[np.ndarray, np.ndarray]:
    """Each digit pasted ``placements`` times at uniform random positions.

    Args:
      digits: ``(n, 8, 8)`` intensities in ``[0, 1]``.
      placements: copies per digit.
      threshold: pixels above it become 1.
      rng: draws the positions.
      stride: the top-left corner's row and column are drawn uniformly from
        the multiples of ``stride`` in ``[0, 24]``: ``8`` puts the digit in
        one 8×8 node of the square pooling tree, ``1`` anywhere.

    Returns:
      ``(inputs, index)``: binary ``(n * placements, 32 * 32)`` int32 images
      (row-major, position ``row * 32 + col``) and the digit each came from.

    Raises:
      ValueError: if ``stride`` is not a divisor of 8 or ``placements`` is
        not positive.
    """
    if not isinstance(stride, int) or stride < 1 or DIGIT % stride:
        raise ValueError(f"stride must be 1, 2, 4 or 8, got {stride!r}.")
    if not isinstance(placements, int) or placements < 1:
        raise ValueError(f"placements must be a positive int, got {placements!r}.")
    count = len(digits) * placements
    canvas = np.zeros((count, CANVAS, CANVAS))
    corners = np.arange(0, CANVAS - DIGIT + 1, stride)
    offsets = rng.choice(corners, size=(count, 2))
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
    """``{task: {"train": (x, y), "test": (x, y)}}`` from one split of digits.

    With ``config["data"]["validation"]`` the "test" pair is a stratified
    validation split (20 %) of the training digits, and training uses the rest:
    the test digits are not touched.
    """
    digits = load_digits()
    images = digits.images / 16.0
    train_x, test_x, train_y, test_y = train_test_split(
        images, digits.target, stratify=digits.target, **SPLIT
    )
    data = config["data"]
    if data["validation"]:
        train_x, test_x, train_y, test_y = train_test_split(
            train_x, train_y, stratify=train_y, **VALIDATION_SPLIT
        )
    if data["max_train"] is not None:
        train_x, train_y = train_x[: data["max_train"]], train_y[: data["max_train"]]
    if data["max_test"] is not None:
        test_x, test_y = test_x[: data["max_test"]], test_y[: data["max_test"]]
    rng = np.random.default_rng(seed)
    threshold = data["threshold"]
    stride = data["stride"]
    local_train, index = make_local(train_x, data["placements"], threshold, rng, stride)
    local_test, test_index = make_local(test_x, 1, threshold, rng, stride)
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
        "block 2x2": ("short", pixels[12:14, 12:14].ravel().tolist()),
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
    """Parameters of a ConvAC of these widths (weights only).

    Read off the shapes :func:`~jaxconvac.init_decomposition` would draw
    (``jax.eval_shape``: nothing is computed), the layout
    :class:`~jaxconvac.nn.ConvAC` stores.
    """
    shapes = jax.eval_shape(
        lambda key: jc.init_decomposition(
            key,
            tree,
            num_descriptors=NUM_DESCRIPTORS,
            widths=tuple(widths),
            num_outputs=NUM_CLASSES,
            sharing=sharing,
        ),
        jax.random.key(0),
    )
    return sum(math.prod(w.shape) for w in shapes)


def run(
    config: dict[str, Any], workdir: str | pathlib.Path, *, resume: bool = False
) -> dict[str, Any]:
    """Trains every (task, architecture), analyses it, writes the results.

    Prints one line per trained network, then the tables
    (:func:`format_tables`).

    Args:
      config: as :func:`get_config` returns.
      workdir: the output directory (created); each network trains in
        ``workdir/<task>-<architecture>``.
      resume: continue each network from its newest checkpoint there (every
        ``train.checkpoint_every`` steps), or start it if it has none.

    Returns:
      The summary that ``results.json`` holds: ``params`` per architecture
      and one record per (task, architecture) with accuracies, times and the
      analysis.
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    total_wall, total_cpu = time.perf_counter(), time.process_time()
    seed = config["seed"]
    tree = jc.ModeTree.image(CANVAS, CANVAS)
    tasks = load_tasks(config, seed)
    params = {
        name: count_params(tree, widths, config["sharing"])
        for name, widths in config["architectures"].items()
    }
    records = []
    split = "validation" if config["data"]["validation"] else "test"
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
                progress=config["progress"],
                description=f"{task} {arch}",
                resume=resume,
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
                f"{task:<7} {arch:<10} {split} {result.final['test_accuracy']:.4f} "
                f"({train_wall:.0f} s wall, {train_cpu:.0f} s cpu)",
                flush=True,
            )
    summary = {"config": config, "params": params, "records": records}
    (workdir / "results.json").write_text(json.dumps(summary, indent=2))
    plot(summary, workdir / "layer_widths.png")
    print(format_tables(summary))
    print(
        f"total: {time.perf_counter() - total_wall:.0f} s wall, "
        f"{time.process_time() - total_cpu:.0f} s cpu"
    )
    return summary


def _split_name(summary: dict[str, Any]) -> str:
    return "validation" if summary["config"]["data"]["validation"] else "test"


def format_tables(summary: dict[str, Any]) -> str:
    """The accuracy table and the entanglement table, as Markdown."""
    records = summary["records"]
    archs = list(summary["params"])
    split = _split_name(summary)
    lines = [
        "| task | "
        + " | ".join(f"{a} {split} acc (train acc)" for a in archs)
        + " | better |",
        "|---|" + "---|" * (len(archs) + 1),
    ]
    for task in TASKS:
        runs = {r["architecture"]: r for r in records if r["task"] == task}
        accs = {a: r["test_accuracy"] for a, r in runs.items()}
        best = max(accs, key=accs.get)
        cells = " | ".join(
            f"{100 * accs[a]:.2f} % ({100 * runs[a]['train_accuracy']:.2f} %)"
            for a in archs
        )
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
    axes[0].set_ylabel(f"{_split_name(summary)} accuracy (%)")
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
    """Runs the experiment from the command line (see :mod:`jaxconvac.cli`)."""
    return cli.main(argv, sys.modules[__name__])


if __name__ == "__main__":
    main(sys.argv[1:])
