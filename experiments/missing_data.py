"""Classification with missing pixels: a generative ConvAC (TMM) against imputation.

Sharir, Tamari, Cohen and Shashua ("Tensorial Mixture Models", 2017): a ConvAC
whose convolutions are mixtures over normalised descriptors is a generative
model ``p(x, y)`` in which missing inputs are integrated out exactly in one
forward pass, so its classifier ``argmax_y p(x_observed, y)`` needs no
imputation and degrades gracefully as pixels go missing.

On scikit-learn's 8×8 digits (the split of ``experiments/train_digits.py``:
1 347 training, 450 test images), the script trains the same deep ConvAC
(``ModeTree.image(8, 8)``, 2×2 pooling, ``sharing="per_tap"``, ``M`` learned
Gaussians per pixel intensity) twice:

* *generative* (TMM): loss = cross-entropy + ``w`` · the joint negative
  log-likelihood per pixel, with each training pixel marginalised with
  probability ``train_missing`` (``jaxconvac.nn.generative.joint_loss`` and
  ``drop_elements``); classified by marginalising the missing pixels;
* *discriminative*: cross-entropy only, on complete images; classified after
  filling the missing pixels with 0 (*zero imputation*) or with the training
  mean of that pixel (*mean imputation*). As an ablation the same
  discriminative model is also asked to marginalise (its Gaussians and mixtures
  are normalised too, but were never fitted as a density);
* in the full preset, a second generative model trained on complete images
  only (``train_missing = 0``), also marginalising: does the model need to
  see missing pixels in training?

and a k-nearest-neighbours baseline on the observed pixels only (squared
distance over the observed pixels; ``k`` chosen by 5-fold cross-validation on
the complete training images). Missingness at test time: every pixel missing
independently with probability ``p`` in ``iid_rates``, and one missing square
of side ``s`` in ``rect_sides`` at a uniform position. Each setting is drawn
``mask_draws`` times over the test set (the same masks for every method); the
tables give the mean accuracy.

Command (from the repository root)::

    python experiments/missing_data.py --workdir runs/missing_data [--seed 0]
        [--preset full|quick] [--set KEY=VALUE ...] [--no-progress] [--resume]
        [--print-config]

(:mod:`jaxconvac.cli`'s flags; the keys are :func:`get_config`'s.) The full
preset checkpoints every 500 steps (``train.checkpoint_every``), so
``--resume`` continues a killed run where it was, and a finished run's work
directory is refused without it.

Writes into the work directory ``config.json`` and ``summary.json`` (by the
CLI), ``<model>/metrics.jsonl`` (and ``<model>/checkpoints/``) per trained
model, ``results.json``, ``missing_accuracy.png`` (accuracy against
missingness) and ``missing_samples.png`` (ancestral samples of the TMM, one
row per class). ``experiments/README.md`` has the measured tables.
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
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold, train_test_split

import jaxconvac as jc
from jaxconvac import cli, generative, nn, training
from jaxconvac.nn.generative import GenerativeClassifier, drop_elements, joint_loss

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

SIDE = 8
NUM_CLASSES = 10
SPLIT = {"test_size": 0.25, "random_state": 0}


def get_config(preset: str = "full") -> dict:
    """The experiment's settings.

    Args:
      preset: ``"full"`` (the README's run) or ``"quick"`` (a smoke run of a
        few seconds on a subset).

    Returns:
      A plain dict.

    Raises:
      ValueError: for an unknown preset.
    """
    config = {
        "seed": 0,
        "progress": True,
        "subset": None,  # (train, test) sizes, or None for the whole split
        "widths": [64, 128, 256],
        "sharing": "per_tap",
        "num_descriptors": 16,
        "models": {
            "generative": {"generative_weight": 1.0, "train_missing": 0.25},
            "discriminative": {"generative_weight": 0.0, "train_missing": 0.0},
            "generative_complete": {"generative_weight": 1.0, "train_missing": 0.0},
        },
        "train": {
            "steps": 3000,
            "batch_size": 64,
            "learning_rate": 0.02,
            "schedule": "cosine",
            "log_every": 100,
            "checkpoint_every": 500,
        },
        "iid_rates": [0.0, 0.25, 0.5, 0.75, 0.9],
        "rect_sides": [2, 3, 4, 5, 6],
        "mask_draws": 3,
        "knn_ks": [1, 3, 5, 7, 9],
        "samples_per_class": 8,
    }
    if preset == "quick":
        config |= {
            "models": {
                name: config["models"][name]
                for name in ("generative", "discriminative")
            },
            "subset": [256, 64],
            "widths": [4, 4, 8],
            "num_descriptors": 4,
            "train": config["train"]
            | {"steps": 20, "log_every": 10, "checkpoint_every": 0},
            "iid_rates": [0.0, 0.9],
            "rect_sides": [4],
            "mask_draws": 1,
            "knn_ks": [1, 3],
            "samples_per_class": 2,
        }
    elif preset != "full":
        raise ValueError(f"preset must be 'full' or 'quick', got {preset!r}.")
    return config


def load_data(subset=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Intensities in ``[0, 1]``, ``(n, 64, 1)``, and labels, train and test."""
    images, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, stratify=labels, **SPLIT
    )
    if subset is not None:
        x_train, y_train = x_train[: subset[0]], y_train[: subset[0]]
        x_test, y_test = x_test[: subset[1]], y_test[: subset[1]]

    def prepare(x, y):
        return (x / 16.0).astype(np.float32)[..., None], y.astype(np.int32)

    return {"train": prepare(x_train, y_train), "test": prepare(x_test, y_test)}


def build_model(config: dict, seed: int) -> GenerativeClassifier:
    """Learned Gaussians per intensity, the deep per-tap ConvAC, a class prior."""
    rngs = nnx.Rngs(seed)
    representation = nn.Gaussian(
        config["num_descriptors"],
        1,
        min_scale=0.02,
        marginalize_nan=True,
        means_init=jax.nn.initializers.uniform(1.0),
        log_scales_init=jax.nn.initializers.constant(np.log(0.1)),
        rngs=rngs,
    )
    convac = nn.ConvAC(
        jc.ModeTree.image(SIDE, SIDE),
        num_descriptors=config["num_descriptors"],
        widths=tuple(config["widths"]),
        num_outputs=NUM_CLASSES,
        sharing=config["sharing"],
        rngs=rngs,
    )
    return GenerativeClassifier(representation, convac)


@jax.jit(static_argnames="graphdef")
def _predict(graphdef, state, inputs, mask):
    scores = nnx.merge(graphdef, state)(inputs, mask)
    return jnp.argmax(scores, axis=-1), jax.nn.logsumexp(scores, axis=-1)


def make_predict(model: GenerativeClassifier):
    """A jitted ``(inputs, mask) -> (labels, log p(x_observed))``."""
    graphdef, state = nnx.split(model)
    return lambda inputs, mask: _predict(graphdef, state, inputs, mask)


def train_model(
    name: str, settings: dict, config: dict, data, workdir, progress, resume=False
):
    """Trains one model; returns it with its log-likelihoods before and after."""
    seed = config["seed"]
    model = build_model(config, seed)
    x_test = data["test"][0]
    complete = np.ones(x_test.shape[:2], bool)
    before = float(np.mean(make_predict(model)(x_test, complete)[1]))
    rate = settings["train_missing"]
    result = training.train(
        model,
        data["train"],
        training.TrainConfig(**config["train"], seed=seed),
        workdir=workdir / name,
        run_config={"model": name, "settings": settings, "split": SPLIT},
        loss_fn=joint_loss(settings["generative_weight"]),
        augment=drop_elements(rate) if rate else None,
        progress=progress,
        description=name,
        resume=resume,
    )
    after = float(np.mean(make_predict(model)(x_test, complete)[1]))
    info = {
        "test_log_likelihood_per_pixel_before": before / SIDE**2,
        "test_log_likelihood_per_pixel_after": after / SIDE**2,
        "final_train_loss": result.history[-1]["loss"],
        "seconds": result.seconds,
    }
    return model, info


def masks_for(config: dict, num_examples: int):
    """``[(kind, level, [mask per draw])]`` for every test setting, seeded."""
    key = jax.random.key(config["seed"] + 1000)
    settings = []
    for index, rate in enumerate(config["iid_rates"]):
        keys = jax.random.split(jax.random.fold_in(key, index), config["mask_draws"])
        masks = [
            np.asarray(generative.random_mask(k, (num_examples, SIDE**2), rate))
            for k in keys
        ]
        settings.append(("iid", rate, masks))
    for index, side in enumerate(config["rect_sides"]):
        keys = jax.random.split(
            jax.random.fold_in(key, 100 + index), config["mask_draws"]
        )
        masks = [
            np.asarray(
                generative.rectangle_mask(
                    k, num_examples, SIDE, SIDE, rect_height=side, rect_width=side
                )
            )
            for k in keys
        ]
        settings.append(("rect", side, masks))
    return settings


def choose_k(x_train: np.ndarray, y_train: np.ndarray, ks, seed: int) -> int:
    """The k of k-NN with the best 5-fold cross-validated accuracy."""
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    scores = np.zeros(len(ks))
    for fit, held in folds.split(x_train, y_train):
        mask = np.ones(x_train[held].shape, bool)
        for i, k in enumerate(ks):
            predicted = knn_predict(x_train[fit], y_train[fit], x_train[held], mask, k)
            scores[i] += np.mean(predicted == y_train[held])
    return int(ks[int(np.argmax(scores))])


def knn_predict(x_train, y_train, x_test, mask, k: int) -> np.ndarray:
    """Majority vote of the ``k`` nearest on the observed pixels (ties: lowest)."""
    observed = mask.astype(np.float64)
    # Σ_observed (a - b)^2 = Σ m a² - 2 Σ m a b + Σ m b², all (test, train).
    distances = (
        (observed * x_test**2).sum(1, keepdims=True)
        - 2 * (observed * x_test) @ x_train.T
        + observed @ (x_train**2).T
    )
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :k]
    votes = np.zeros((len(x_test), NUM_CLASSES))
    np.add.at(votes, (np.arange(len(x_test))[:, None], y_train[nearest]), 1)
    return np.argmax(votes, axis=1)


def evaluate_all(models: dict, data, config: dict) -> list[dict]:
    """Accuracy of every method on every missingness setting."""
    (x_train, y_train), (x_test, y_test) = data["train"], data["test"]
    mean_image = x_train.mean(axis=0)  # (64, 1)
    flat_train, flat_test = x_train[..., 0], x_test[..., 0]
    k = choose_k(flat_train, y_train, config["knn_ks"], config["seed"])
    predict = {name: make_predict(model) for name, model in models.items()}
    complete = np.ones(x_test.shape[:2], bool)

    methods = {
        "TMM, marginalised": lambda m: predict["generative"](x_test, m)[0],
        "discriminative, zero imputation": lambda m: predict["discriminative"](
            np.where(m[..., None], x_test, 0.0), complete
        )[0],
        "discriminative, mean imputation": lambda m: predict["discriminative"](
            np.where(m[..., None], x_test, mean_image[None]), complete
        )[0],
        "discriminative, marginalised": lambda m: predict["discriminative"](x_test, m)[
            0
        ],
        **(
            {
                "TMM trained on complete images, marginalised": lambda m: predict[
                    "generative_complete"
                ](x_test, m)[0]
            }
            if "generative_complete" in models
            else {}
        ),
        f"{k}-NN on observed pixels": lambda m: knn_predict(
            flat_train, y_train, flat_test, m, k
        ),
    }
    rows = []
    for kind, level, masks in masks_for(config, len(y_test)):
        row = {
            "kind": kind,
            "level": level,
            "missing_fraction": float(np.mean([1 - m.mean() for m in masks])),
        }
        for method, classify in methods.items():
            row[method] = float(
                np.mean([np.mean(np.asarray(classify(m)) == y_test) for m in masks])
            )
        rows.append(row)
    return rows


def format_tables(rows: list[dict]) -> str:
    """Two Markdown tables (i.i.d. pixels, rectangles), accuracies in %."""
    methods = [
        key for key in rows[0] if key not in ("kind", "level", "missing_fraction")
    ]
    lines = []
    for kind, title in (("iid", "missing rate p"), ("rect", "missing square side")):
        lines.append(f"| {title} | missing | " + " | ".join(methods) + " |")
        lines.append("|---:|---:|" + "---:|" * len(methods))
        for row in (r for r in rows if r["kind"] == kind):
            cells = " | ".join(f"{100 * row[m]:.1f}" for m in methods)
            lines.append(
                f"| {row['level']} | {100 * row['missing_fraction']:.0f} % | {cells} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip()


def plot_accuracy(rows: list[dict], path: pathlib.Path) -> None:
    """Accuracy against missingness, one panel per kind, one line per method."""
    methods = [
        key for key in rows[0] if key not in ("kind", "level", "missing_fraction")
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, kind, xlabel in (
        (axes[0], "iid", "probability p that a pixel is missing (i.i.d.)"),
        (axes[1], "rect", "side of the missing square (pixels of 8×8)"),
    ):
        chosen = [r for r in rows if r["kind"] == kind]
        levels = [r["level"] for r in chosen]
        styles = ("o-", "s--", "^--", "v:", "P-", "d-.")
        for method, style in zip(methods, styles, strict=False):
            ax.plot(levels, [100 * r[method] for r in chosen], style, label=method)
        ax.set(xlabel=xlabel, ylabel="test accuracy (%)", ylim=(0, 101))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small", loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_samples(model: GenerativeClassifier, config: dict, path: pathlib.Path):
    """A grid of ancestral samples ``x ~ p(x | y)``, one row per class."""
    per_class = config["samples_per_class"]
    labels = jnp.repeat(jnp.arange(NUM_CLASSES), per_class)
    samples, _ = model.sample(jax.random.key(config["seed"] + 7), labels)
    images = np.clip(np.asarray(samples)[..., 0], 0, 1).reshape(-1, SIDE, SIDE)
    fig, axes = plt.subplots(
        NUM_CLASSES, per_class, figsize=(0.6 * per_class, 0.6 * NUM_CLASSES)
    )
    for ax, image in zip(np.ravel(axes), images, strict=True):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    for row in range(NUM_CLASSES):
        np.atleast_2d(axes)[row, 0].set_ylabel(str(row), rotation=0, labelpad=8)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(
    config: dict,
    workdir: str | pathlib.Path,
    *,
    progress: bool | None = None,
    resume: bool = False,
) -> dict:
    """Trains the models, evaluates every method, writes tables and figures.

    Prints the tables, each model's test log-likelihood and the time.

    Args:
      config: from :func:`get_config`, possibly overridden.
      workdir: each model trains in ``workdir/<model>``; ``results.json`` and
        the figures go into ``workdir``.
      progress: show progress bars; ``None`` for ``config["progress"]``.
      resume: continue each model from its checkpoints (every
        ``train.checkpoint_every`` steps) in ``workdir/<model>``.

    Returns:
      ``{"rows": […], "models": {name: info}, "seconds": …}``.
    """
    start = time.perf_counter()
    progress = config["progress"] if progress is None else progress
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data = load_data(config["subset"])

    models, infos = {}, {}
    for name, settings in config["models"].items():
        models[name], infos[name] = train_model(
            name, settings, config, data, workdir, progress, resume
        )
    rows = evaluate_all(models, data, config)
    plot_accuracy(rows, workdir / "missing_accuracy.png")
    plot_samples(models["generative"], config, workdir / "missing_samples.png")

    summary = {
        "rows": rows,
        "models": infos,
        "seconds": time.perf_counter() - start,
    }
    (workdir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(format_tables(summary["rows"]))
    for name, info in summary["models"].items():
        print(
            f"{name}: test log-likelihood per pixel "
            f"{info['test_log_likelihood_per_pixel_before']:.3f} -> "
            f"{info['test_log_likelihood_per_pixel_after']:.3f} nats; "
            f"trained in {info['seconds']:.1f} s"
        )
    print(f"total {summary['seconds']:.1f} s; figures in {workdir}")
    return summary


def main(argv: list[str] | None = None) -> dict:
    """Runs the experiment from the command line (see :mod:`jaxconvac.cli`)."""
    return cli.main(argv, sys.modules[__name__])


if __name__ == "__main__":
    main(sys.argv[1:])
