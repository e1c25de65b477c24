"""Layer widths and the range of interactions (Levine et al. 2018).

Claim: the widths of a deep ConvAC's early levels bound the entanglement (the
interactions it can model) across short-range partitions of its input, the
widths of its late levels across long-range ones; so at a fixed parameter
budget, a network wide at the base suits a task decided by local structure
and one wide at the tip a task decided by structure spread over the image.

Two tasks built from scikit-learn's 8×8 digits on a 32×32 canvas, binarised:

* *local*: the 8×8 digit pasted at a random position, **any** of the 625
  (top-left corner in ``[0, 24]²``; ``data.stride = 8`` restricts it to the
  16 corners of the 8-pixel grid, where the digit fills exactly one 8×8 node
  of the pooling tree). Training draws a fresh position for every digit at
  every step (:func:`make_shift`); every test digit is placed once;
* *global*: the digit upscaled (bilinear) to fill the canvas.

Two deep log-space ConvACs over ``ModeTree.image(32, 32)`` (five levels of
2×2 square pooling, ``per_tap`` sharing, log-softmax normalised weights)
behind one shared kind of representation layer, :class:`PatchCodes`: each
pixel's descriptors are a learned soft code (``M = 8``) of the 3×3 patch
around it (``representation.kind = "indicator"``: the binary pixel itself,
``M = 2``, which reached only 24–37 % validation accuracy on the
any-position task in every setting tried; see the README). *wide-base*
``(16, 32, 64, 16, 12)`` and *wide-tip* ``(4, 8, 16, 46, 62)``: 15 736 and
15 740 ConvAC weights (plus 80 in the representation, the same for both).
Both keep every width at least ``Y = 10`` from level 3 up: a normalised
ConvAC's class scores are mixtures over the channels below the root, and
with fewer channels than classes neither network can separate all ten
classes whatever its base. Each is trained on each task (same steps, batch,
Adam, cosine schedule). The script reports test accuracy per task ×
architecture (or, with ``data.validation``, accuracy on a validation split
carved from the training digits: the split the settings were chosen on), and
for every trained network, across short-range partitions (2×2, 4×4 and 8×8
blocks, each one tree node) and long-range ones (left/right and top/bottom
halves): the min-cut bound (:func:`~jaxconvac.min_cut_bound`, the same for
every weight setting) and the exact entanglement entropy of the trained
coefficient tensors (:func:`~jaxconvac.exact_spectrum` →
:func:`~jaxconvac.entanglement_entropy`), averaged over the 10 class
tensors.

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
import jax.numpy as jnp
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
      A dict: ``seed``, ``data`` (``stride``: local positions are the
      multiples of it (``1``: anywhere, ``8``: the 8-pixel grid);
      ``threshold``: the binarisation cut, a fraction of the maximal
      intensity; ``max_train``/``max_test``: keep that many digits, ``None``
      for all; ``validation``: evaluate on a validation split of the training
      digits instead of the test digits), ``representation`` (``kind``:
      ``"patch"`` for :class:`PatchCodes` of ``size × size`` patches with
      ``num_descriptors`` codes, or ``"indicator"`` for the binary pixel),
      ``sharing``, ``architectures`` (name → widths), ``train``
      (:class:`~jaxconvac.training.TrainConfig` fields but the seed) and
      ``progress`` (progress bars while training).
    """
    if preset not in ("full", "quick"):
        raise ValueError(f"preset must be 'full' or 'quick', got {preset!r}.")
    quick = preset == "quick"
    return {
        "seed": 0,
        "data": {
            "stride": 1,
            "threshold": 0.4,
            "max_train": 64 if quick else None,
            "max_test": 32 if quick else None,
            "validation": False,
        },
        "representation": {"kind": "patch", "size": 3, "num_descriptors": 8},
        "sharing": "per_tap",
        "architectures": {
            # Widths r_0 … r_4: r_l is the number of channels of a node of
            # 2^l × 2^l pixels after its weights (r_0: one pixel, r_0 channels
            # product-pooled over a 2×2 block, so a 2×2 block can use up to 16).
            # r_3, r_4 >= Y = 10 in both (see the module docstring).
            "wide-base": [16, 32, 64, 16, 12] if not quick else [4, 4, 4, 2, 2],
            "wide-tip": [4, 8, 16, 46, 62] if not quick else [2, 2, 2, 4, 4],
        },
        "train": {
            "steps": 8 if quick else 3000,
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
    corners = corner_positions(stride)
    if not isinstance(placements, int) or placements < 1:
        raise ValueError(f"placements must be a positive int, got {placements!r}.")
    count = len(digits) * placements
    canvas = np.zeros((count, CANVAS, CANVAS))
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


def corner_positions(stride: int) -> np.ndarray:
    """The rows (and columns) a local digit's top-left corner may take."""
    if not isinstance(stride, int) or stride < 1 or DIGIT % stride:
        raise ValueError(f"stride must be 1, 2, 4 or 8, got {stride!r}.")
    return np.arange(0, CANVAS - DIGIT + 1, stride)


def make_shift(stride: int):
    """The local task's training augmentation: a fresh position per example.

    The training images hold their digit at the top-left corner; every step
    moves each one by its own draw of ``(rows, cols)`` from
    :func:`corner_positions` (a roll of the canvas, exact as the digit stays
    inside it). So training sees every digit at ever new positions instead of
    a few fixed ones.

    Args:
      stride: as :func:`make_local`'s.

    Returns:
      ``augment(key, inputs) -> inputs`` for :func:`jaxconvac.training.train`,
      on ``(batch, 32 * 32)`` images.

    Raises:
      ValueError: if ``stride`` is not a divisor of 8.
    """
    corners = jnp.asarray(corner_positions(stride))

    def shift_one(key: jax.Array, image: jax.Array) -> jax.Array:
        row, col = jax.random.choice(key, corners, (2,))
        square = image.reshape(CANVAS, CANVAS)
        return jnp.roll(square, (row, col), axis=(0, 1)).reshape(image.shape)

    def augment(key: jax.Array, inputs: jax.Array) -> jax.Array:
        keys = jax.random.split(key, inputs.shape[0])
        return jax.vmap(shift_one)(keys, inputs)

    return augment


def load_tasks(config: dict[str, Any], seed: int) -> dict[str, dict[str, tuple]]:
    """``{task: {"train": …, "train_eval": …, "test": …}}``, ``(x, y)`` pairs.

    The local task's ``"train"`` images hold the digit at the top-left corner
    (:func:`make_shift` places it anew at every step), ``"train_eval"`` puts
    each training digit at one random position (the train accuracy is
    measured there) and ``"test"`` each test digit. The global task's
    ``"train_eval"`` is its ``"train"``. With ``config["data"]["validation"]``
    the "test" pair is a stratified validation split (20 %) of the training
    digits, and training uses the rest: the test digits are not touched.
    Images are binary, int32 for the ``"indicator"`` representation and
    float32 for ``"patch"``.
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
    dtype = np.int32 if config["representation"]["kind"] == "indicator" else np.float32
    rng = np.random.default_rng(seed)
    threshold = data["threshold"]
    stride = data["stride"]
    corner = np.zeros((len(train_x), CANVAS, CANVAS))
    corner[:, :DIGIT, :DIGIT] = train_x
    train_eval, index = make_local(train_x, 1, threshold, rng, stride)
    local_test, test_index = make_local(test_x, 1, threshold, rng, stride)
    global_train = make_global(train_x, threshold).astype(dtype)
    train_y, test_y = train_y.astype(np.int32), test_y.astype(np.int32)
    return {
        "local": {
            "train": (_binarise(corner, threshold).astype(dtype), train_y),
            "train_eval": (train_eval.astype(dtype), train_y[index]),
            "test": (local_test.astype(dtype), test_y[test_index]),
        },
        "global": {
            "train": (global_train, train_y),
            "train_eval": (global_train, train_y),
            "test": (make_global(test_x, threshold).astype(dtype), test_y),
        },
    }


# -- the networks -------------------------------------------------------------------


class PatchCodes(nnx.Module):
    """Learned descriptors of each pixel's neighbourhood: a soft code of its patch.

    The local element at pixel ``i`` is the ``size × size`` patch around it
    (zero outside the canvas), ``x_i``; its descriptors are
    ``F[i, :] = softmax(x_i A + b)``, ``M`` non-negative values summing to 1,
    with ``A``, ``b`` shared by all pixels (one representation layer, as in
    SPEC §1). Returned as ``log F``, for a log-space ConvAC.

    Attributes:
      size: the patch side (odd: centred on the pixel).
      kernel: ``A``, a parameter of shape ``(size * size, M)``.
      bias: ``b``, a parameter of shape ``(M,)``.
    """

    log = True

    def __init__(self, size: int, num_descriptors: int, *, rngs: nnx.Rngs):
        """Draws ``A`` (normal, standard deviation 0.5); ``b = 0``.

        Raises:
          ValueError: for an even or non-positive ``size`` or a
            ``num_descriptors`` below 2.
        """
        if not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise ValueError(f"size must be a positive odd int, got {size!r}.")
        if not isinstance(num_descriptors, int) or num_descriptors < 2:
            raise ValueError(
                f"num_descriptors must be an int >= 2, got {num_descriptors!r}."
            )
        self.size = size
        shape = (size * size, num_descriptors)
        self.kernel = nnx.Param(0.5 * jax.random.normal(rngs.params(), shape))
        self.bias = nnx.Param(jnp.zeros((num_descriptors,)))

    @property
    def num_descriptors(self) -> int:
        """``M``, the descriptors per pixel."""
        return self.kernel.shape[1]

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """``log F`` of shape ``(batch, 32 * 32, M)`` for ``(batch, 32 * 32)``."""
        images = jnp.asarray(inputs, jnp.float32).reshape(-1, CANVAS, CANVAS)
        half = self.size // 2
        padded = jnp.pad(images, ((0, 0), (half, half), (half, half)))
        patches = jnp.stack(
            [
                padded[:, i : i + CANVAS, j : j + CANVAS]
                for i in range(self.size)
                for j in range(self.size)
            ],
            axis=-1,
        ).reshape(images.shape[0], CANVAS * CANVAS, self.size * self.size)
        return jax.nn.log_softmax(
            patches @ self.kernel[...] + self.bias[...][None, None], axis=-1
        )


def num_descriptors(config: dict[str, Any]) -> int:
    """``M`` of the configured representation (2 for binary indicators)."""
    representation = config["representation"]
    kind = representation["kind"]
    if kind == "indicator":
        return 2
    if kind == "patch":
        return representation["num_descriptors"]
    raise ValueError(
        f"representation.kind must be 'patch' or 'indicator', got {kind!r}."
    )


def make_model(
    config: dict[str, Any], tree: jc.ModeTree, widths: list[int], seed: int
) -> nnx.Module:
    """The classifier: a normalised log-space ConvAC behind the representation.

    ``"indicator"``: the bare :class:`~jaxconvac.nn.ConvAC` on integer pixels
    (``M = 2``, a leaf lookup); ``"patch"``: a
    :class:`~jaxconvac.nn.Classifier` of :class:`PatchCodes` and the ConvAC.
    """
    rngs = nnx.Rngs(seed)
    convac = nn.ConvAC(
        tree,
        num_descriptors=num_descriptors(config),
        widths=tuple(widths),
        num_outputs=NUM_CLASSES,
        sharing=config["sharing"],
        rngs=rngs,
    )
    representation = config["representation"]
    if representation["kind"] == "indicator":
        return convac
    codes = PatchCodes(
        representation["size"], representation["num_descriptors"], rngs=rngs
    )
    return nn.Classifier(codes, convac)


def convac_of(model: nnx.Module) -> nn.ConvAC:
    """The ConvAC inside :func:`make_model`'s classifier."""
    return model if isinstance(model, nn.ConvAC) else model.convac


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
    """Min-cut bound and exact entropy (mean over classes) per partition.

    Args:
      model: the trained ConvAC (its ``num_descriptors`` enter the bound).
      widths: its widths ``(r_0, …, r_4)``.

    Returns:
      ``{partition: {"range", "bound", "ln_bound", "entropy_mean",
      "entropy_min", "entropy_max", "spectrum_seconds"}}``.
    """
    params = tuple(np.asarray(p, np.float64) for p in model.decomposition_params())
    analysis = {}
    for name, (reach, rows) in partitions().items():
        bound = min_cut_bound(model.tree, widths, model.num_descriptors, rows).bound
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


def count_params(
    tree: jc.ModeTree,
    widths: list[int],
    sharing: str,
    num_descriptors: int = NUM_DESCRIPTORS,
) -> int:
    """Parameters of a ConvAC of these widths (weights only).

    Read off the shapes :func:`~jaxconvac.init_decomposition` would draw
    (``jax.eval_shape``: nothing is computed), the layout
    :class:`~jaxconvac.nn.ConvAC` stores. The representation's parameters
    (:class:`PatchCodes`: ``(size² + 1) M``, the same for every
    architecture) are not counted.
    """
    shapes = jax.eval_shape(
        lambda key: jc.init_decomposition(
            key,
            tree,
            num_descriptors=num_descriptors,
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
    size = num_descriptors(config)
    params = {
        name: count_params(tree, widths, config["sharing"], size)
        for name, widths in config["architectures"].items()
    }
    augment = make_shift(config["data"]["stride"])
    records = []
    split = "validation" if config["data"]["validation"] else "test"
    for task in TASKS:
        train_set, test_set = tasks[task]["train"], tasks[task]["test"]
        train_eval = tasks[task]["train_eval"]
        for arch, widths in config["architectures"].items():
            model = make_model(config, tree, widths, seed)
            train_config = training.TrainConfig(**config["train"], seed=seed)
            wall, cpu = time.perf_counter(), time.process_time()
            result = training.train(
                model,
                train_set,
                train_config,
                eval_sets={"train": train_eval, "test": test_set},
                workdir=workdir / f"{task}-{arch}",
                run_config={
                    "task": task,
                    "architecture": arch,
                    "widths": widths,
                    "representation": config["representation"],
                    "stride": config["data"]["stride"],
                },
                augment=augment if task == "local" else None,
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
                    "representation_params": nn.count_params(model) - params[arch],
                    "train_accuracy": result.final["train_accuracy"],
                    "test_accuracy": result.final["test_accuracy"],
                    "train_examples": int(len(train_set[1])),
                    "test_examples": int(len(test_set[1])),
                    "train_wall_seconds": train_wall,
                    "train_cpu_seconds": train_cpu,
                    "analysis": analyse(convac_of(model), list(widths)),
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
