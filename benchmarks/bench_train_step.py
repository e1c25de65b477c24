"""Times a log-space ConvAC training step against a ReLU CNN's over the same tree.

Both networks see the same input, ``H × H`` binary images given as one-hot
descriptors (``M = 2``), and pool with 2×2 windows over the same quad-tree
(:meth:`jaxconvac.ModeTree.image`, square geometry), with the same width at
every level:

* ours: :class:`jaxconvac.nn.ConvAC` in log space with full sharing (a 1×1
  convolution per level), weights normalised by ``log_softmax`` over input
  channels, behind :class:`jaxconvac.nn.Indicator`; product pooling, so a level
  is a log-sum-exp contraction and a sum over each window;
* reference: a Flax NNX CNN, per level a 1×1 convolution without bias (the
  ConvAC's parameter shapes) and a ReLU, then 2×2 average pooling, and a final
  bias-free linear layer to the classes. Two spellings of the 1×1 convolution
  are timed, ``nnx.Conv`` with a ``(1, 1)`` kernel and ``nnx.Linear`` on the
  channel axis; the ratio is taken against the faster.

Each step is :func:`jaxconvac.training.make_train_step` (``nnx.split`` once,
then one ``jax.jit`` of forward pass, softmax cross-entropy, gradient and Adam
update on the parameter pytree), the same function for both networks, float32,
on a training set of exactly one batch. The target: the ConvAC step no slower
than the CNN step (ratio ConvAC / CNN <= 1). Forward-only and forward + grad
times of every network are printed beside the steps, to show where the time
goes. ``--sketches`` adds two variants that compute level 0 as a table lookup
(one-hot input times a matrix is a row of the matrix): the library's ConvAC
given the integer pixel values (``evaluate``'s indicator path), and, as its
fair counterpart, the CNN with ``nnx.Embed`` at level 0.

Command::

    python benchmarks/bench_train_step.py [--sizes 8 32] [--width 32] \
        [--batch 64] [--sketches]
"""

from __future__ import annotations

import argparse
import itertools

import _timing
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxconvac as jc
from jaxconvac.nn import Classifier, ConvAC, Indicator, count_params
from jaxconvac.training import classification_loss, make_train_step


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[8, 32], help="image sides H"
    )
    parser.add_argument("--width", type=int, default=32, help="channels per level")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--num-outputs", type=int, default=2, help="classes Y")
    parser.add_argument("--steps", type=int, default=10, help="steps per call")
    parser.add_argument("--repeats", type=int, default=11, help="timed samples")
    parser.add_argument(
        "--min-sample", type=float, default=0.1, help="shortest timed sample (s)"
    )
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument(
        "--sketches",
        dest="lookup_sketch",
        action="store_true",
        help="also time level 0 as a lookup, in a ConvAC (not the library) and a "
        "CNN (nnx.Embed)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


class ReluCNN(nnx.Module):
    """A ReLU CNN with 2×2 average pooling: the ConvAC's tree and widths.

    Level ``l`` maps ``r_{l-1}`` channels to ``r_l`` at every pixel (a 1×1
    convolution, no bias) and applies a ReLU; the levels are separated by 2×2
    average pooling with stride 2, and after the last pooling (down to one
    pixel) a bias-free linear layer gives the class scores. ``layer`` spells
    the 1×1 convolution: ``"conv"`` (``nnx.Conv``), ``"linear"``
    (``nnx.Linear`` on channels), or ``"embed"``: ``nnx.Conv`` above level 0
    and, at level 0, ``nnx.Embed`` (the one-hot input times a matrix is a row
    lookup; the CNN counterpart of :class:`LookupConvAC`).
    """

    def __init__(
        self,
        side: int,
        *,
        num_descriptors: int,
        widths: tuple[int, ...],
        num_outputs: int,
        layer: str,
        rngs: nnx.Rngs,
    ):
        def make(n_in: int, n_out: int) -> nnx.Module:
            if layer == "linear":
                return nnx.Linear(n_in, n_out, use_bias=False, rngs=rngs)
            return nnx.Conv(n_in, n_out, (1, 1), use_bias=False, rngs=rngs)

        sizes = (num_descriptors, *widths)
        levels = [make(a, b) for a, b in itertools.pairwise(sizes)]
        if layer == "embed":
            levels[0] = nnx.Embed(num_descriptors, widths[0], rngs=rngs)
        self.side = side
        self.num_descriptors = num_descriptors
        self.lookup = layer == "embed"
        self.levels = nnx.List(levels)
        self.output = nnx.Linear(widths[-1], num_outputs, use_bias=False, rngs=rngs)

    def __call__(self, pixels: jax.Array) -> jax.Array:
        """Scores ``(batch, num_outputs)`` of integer pixels ``(batch, H·H)``."""
        images = pixels.reshape(-1, self.side, self.side)
        if self.lookup:
            x = images
        else:
            x = jax.nn.one_hot(images, self.num_descriptors, dtype=jnp.float32)
        for level, layer in enumerate(self.levels):
            if level:
                x = nnx.avg_pool(x, (2, 2), strides=(2, 2))
            x = jax.nn.relu(layer(x))
        x = nnx.avg_pool(x, (2, 2), strides=(2, 2))
        return self.output(x.reshape(x.shape[0], -1))


def make_models(side: int, args: argparse.Namespace) -> dict[str, nnx.Module]:
    tree = jc.ModeTree.image(side, side)
    settings = dict(
        num_descriptors=2,
        widths=(args.width,) * tree.depth,
        num_outputs=args.num_outputs,
    )
    convac = ConvAC(
        tree, sharing="full", space="log", rngs=nnx.Rngs(args.seed), **settings
    )
    models = {
        "ConvAC (log space)": Classifier(Indicator(2, log=True), convac),
        "CNN (nnx.Conv 1x1)": ReluCNN(
            side, layer="conv", rngs=nnx.Rngs(args.seed), **settings
        ),
        "CNN (nnx.Linear)": ReluCNN(
            side, layer="linear", rngs=nnx.Rngs(args.seed), **settings
        ),
    }
    if args.lookup_sketch:
        models["ConvAC, integer inputs"] = nnx.clone(convac)  # Leaf lookup.
        models["sketch: CNN, nnx.Embed"] = ReluCNN(
            side, layer="embed", rngs=nnx.Rngs(args.seed), **settings
        )
    return models


class Trainer:
    """One model's compiled steps and its state, advanced ``steps`` per call."""

    def __init__(self, model: nnx.Module, pixels, labels, args):
        self.graphdef, self.params, self.rest = nnx.split(model, nnx.Param, ...)
        optimizer = optax.adam(args.learning_rate)
        self.opt_state = optimizer.init(self.params)
        self.key = jax.random.key(args.seed)
        self.data = (pixels, labels)
        self.steps = args.steps
        self.step_number = 0
        step = make_train_step(self.graphdef, optimizer, batch_size=args.batch)
        state = (self.params, self.rest, self.opt_state, self.key, 0, *self.data)
        self.step, self.compile_seconds = _timing.compile_jitted(step, *state)
        self.num_params = count_params(model)

    def run(self):
        """Runs ``steps`` training steps; returns the last state and metrics."""
        for _ in range(self.steps):
            self.params, self.opt_state, metrics = self.step(
                self.params,
                self.rest,
                self.opt_state,
                self.key,
                self.step_number,
                *self.data,
            )
            self.step_number += 1
        return self.params, self.opt_state, metrics

    def loss_parts(self):
        """Compiled forward (loss) and forward + backward (value_and_grad)."""

        def loss(params, rest, pixels, labels):
            model = nnx.merge(self.graphdef, params, rest)
            return classification_loss(model, pixels, labels)[0]

        state = (self.params, self.rest, *self.data)
        forward, _ = _timing.compile_jitted(loss, *state)
        backward, _ = _timing.compile_jitted(jax.value_and_grad(loss), *state)
        return lambda: forward(*state), lambda: backward(*state)


def run_size(side: int, args: argparse.Namespace) -> float:
    """Times one image size; returns the ratio ConvAC / fastest CNN per step."""
    tree = jc.ModeTree.image(side, side)
    print(
        f"\n== {side}x{side} binary images, {tree.depth} levels of 2x2 pooling, "
        f"width {args.width}, batch {args.batch}, Y={args.num_outputs}, float32"
    )
    rng = np.random.default_rng(args.seed)
    pixels = jnp.asarray(rng.integers(0, 2, (args.batch, side * side)), jnp.int32)
    labels = jnp.asarray(rng.integers(0, args.num_outputs, args.batch), jnp.int32)
    trainers = {
        name: Trainer(model, pixels, labels, args)
        for name, model in make_models(side, args).items()
    }
    for name, trainer in trainers.items():
        print(
            f"{name:<24} {trainer.num_params:>6} parameters, train step compiled "
            f"in {trainer.compile_seconds:.2f} s (not in the times below)"
        )

    if args.lookup_sketch:
        initial = {
            n: nnx.merge(t.graphdef, t.params, t.rest) for n, t in trainers.items()
        }
        difference = jnp.abs(
            initial["ConvAC, integer inputs"](pixels)
            - initial["ConvAC (log space)"](pixels)
        ).max()
        print(f"integer vs one-hot ConvAC scores: max |difference| {difference:.1e}")
    calls = {f"train step, {n}": t.run for n, t in trainers.items()}
    for name, trainer in trainers.items():
        forward, backward = trainer.loss_parts()
        calls[f"  forward only, {name}"] = forward
        calls[f"  forward + grad, {name}"] = backward
    times, results = _timing.time_round_robin(
        calls, repeats=args.repeats, min_sample=args.min_sample
    )
    print(
        f"time per step, median of {args.repeats} samples (a train-step call "
        f"runs {args.steps} steps; samples last >= {args.min_sample} s):"
    )
    medians, minima = {}, {}
    for name, values in times.items():
        scale = args.steps if name.startswith("train step") else 1
        per_step = [v / scale for v in values]
        medians[name], minima[name] = _timing.median(per_step), min(per_step)
        print(f"  {name:<40} {_timing.spread(per_step)}")
    for name, trainer in trainers.items():
        first = float(results[f"train step, {name}"][2]["loss"])
        last = float(trainer.run()[2]["loss"])
        print(
            f"{name:<24} loss (random labels) at step {args.steps}: {first:.4f}, "
            f"at step {trainer.step_number}: {last:.4f}"
        )

    ours = medians["train step, ConvAC (log space)"]
    cnn_names = [n for n in trainers if n.startswith("CNN")]
    if args.lookup_sketch:
        sketch = medians["train step, ConvAC, integer inputs"] / ours
        print(f"ratio ConvAC integer inputs / one-hot log features, step: {sketch:.2f}")
        both = sketch * ours / medians["train step, sketch: CNN, nnx.Embed"]
        print(f"ratio of the two lookups, ConvAC / CNN (nnx.Embed), step: {both:.2f}")
    for name in cnn_names:
        ratio = ours / medians[f"train step, {name}"]
        print(f"ratio ConvAC / {name}, train step: {ratio:.2f}")
    fastest = min(medians[f"train step, {n}"] for n in cnn_names)
    ratio = ours / fastest
    best = minima["train step, ConvAC (log space)"] / min(
        minima[f"train step, {n}"] for n in cnn_names
    )
    verdict = "met" if ratio <= 1 else f"missed, {100 * (ratio - 1):.0f}% slower"
    print(f"target ConvAC step <= fastest CNN step: {verdict} (ratio {ratio:.2f})")
    print(
        f"  the same ratio of the fastest samples (less sensitive to load): {best:.2f}"
    )
    return ratio


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print("bench_train_step: log-space ConvAC train step vs a ReLU CNN's")
    for line in _timing.environment_lines():
        print(line)
    summary = {side: run_size(side, args) for side in args.sizes}
    print("\nsummary, ConvAC step / fastest CNN step (target <= 1):")
    for side, ratio in summary.items():
        print(f"  {side}x{side}: {ratio:.2f}")


if __name__ == "__main__":
    main()
