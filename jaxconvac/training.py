"""Training classifiers with Optax: a jitted step, evaluation and a logged loop.

The loop splits the model once with ``nnx.split`` and runs a plain ``jax.jit``
step on the parameter pytree (``nnx.jit`` re-walks the module graph on every
call). The step draws its own batch: the run's key is split into a shuffling
and an augmentation key; the examples are shuffled once per epoch by
``jax.random.permutation(jax.random.fold_in(shuffle_key, epoch))``, step ``s``
takes its slice of that permutation and augments it (if asked) with
``jax.random.fold_in(augment_key, s)``. So a step's batch depends only on the
seed and the step number, and nothing but the step number travels from the host
per step.

Scores are log-space class scores (``log h_y``, e.g. from a log-space
:class:`~jaxconvac.nn.ConvAC`) and the loss is the softmax cross-entropy, i.e.
the negative log-posterior under a uniform class prior.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from flax import nnx
from jax.typing import ArrayLike

LossFn = Callable[[nnx.Module, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
Augment = Callable[[jax.Array, jax.Array], jax.Array]
Dataset = tuple[ArrayLike, ArrayLike]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite.

    Attributes:
      step: the 1-based number of the step whose loss was not finite.
      loss: that loss.
    """

    def __init__(self, step: int, loss: float):
        self.step = step
        self.loss = loss
        super().__init__(
            f"the training loss became non-finite ({loss}) at step {step}; "
            "lower the learning rate or check the inputs for NaN/inf."
        )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`train`.

    Attributes:
      steps: the number of optimizer steps (ignored when ``epochs`` is set).
      epochs: if set, train for ``ceil(epochs * (num_examples // batch_size))``
        steps instead.
      batch_size: examples per step; at most the number of training examples
        (an epoch drops the last incomplete batch).
      learning_rate: the peak learning rate.
      optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (with Nesterov momentum).
      weight_decay: decoupled weight decay for ``"adamw"``.
      momentum: momentum for ``"sgd"``.
      schedule: ``"constant"`` or ``"cosine"`` (decay to zero at the last step).
      warmup_steps: linear warm-up from zero over this many steps.
      seed: seeds the batch shuffling (model initialisation is the caller's).
      log_every: steps between lines of ``metrics.jsonl`` (and checks that the
        loss is finite).
      eval_every: steps between evaluations of the evaluation sets; ``0``
        evaluates only after the last step.
      eval_batch_size: examples per evaluation call.
    """

    steps: int = 1000
    epochs: float | None = None
    batch_size: int = 64
    learning_rate: float = 1e-2
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "constant"
    warmup_steps: int = 0
    seed: int = 0
    log_every: int = 50
    eval_every: int = 0
    eval_batch_size: int = 1024

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        for name in ("warmup_steps", "eval_every", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}.")
        if self.epochs is not None and not self.epochs > 0:
            raise ValueError(f"epochs must be positive or None, got {self.epochs!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}."
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"schedule must be one of {SCHEDULES}, got {self.schedule!r}."
            )

    def num_steps(self, num_examples: int) -> int:
        """The number of steps for a training set of ``num_examples``."""
        if self.epochs is None:
            return self.steps
        return max(1, math.ceil(self.epochs * (num_examples // self.batch_size)))


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns (the model itself is updated in place).

    Attributes:
      history: the records written to ``metrics.jsonl``, one per logged step.
      final: the evaluation metrics after the last step,
        ``{"<set>_loss": …, "<set>_accuracy": …}`` per evaluation set.
      steps: the number of steps taken.
      seconds: wall time of the whole loop, compilation included.
    """

    history: list[dict[str, Any]]
    final: dict[str, float]
    steps: int
    seconds: float


def make_optimizer(config: TrainConfig, num_steps: int) -> optax.GradientTransformation:
    """The Optax optimizer and learning-rate schedule ``config`` names.

    Args:
      config: the settings.
      num_steps: the length of the run, for the cosine schedule.

    Returns:
      An ``optax.GradientTransformation``.
    """
    warmup = min(config.warmup_steps, num_steps)
    if config.schedule == "cosine":
        rate = optax.warmup_cosine_decay_schedule(
            0.0, config.learning_rate, warmup, max(num_steps, warmup + 1)
        )
    elif warmup:
        rate = optax.join_schedules(
            [
                optax.linear_schedule(0.0, config.learning_rate, warmup),
                optax.constant_schedule(config.learning_rate),
            ],
            [warmup],
        )
    else:
        rate = config.learning_rate
    if config.optimizer == "adam":
        return optax.adam(rate)
    if config.optimizer == "adamw":
        return optax.adamw(rate, weight_decay=config.weight_decay)
    return optax.sgd(rate, momentum=config.momentum, nesterov=True)


def classification_loss(
    model: nnx.Module, inputs: jax.Array, labels: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Mean softmax cross-entropy of a model's log-space scores.

    Args:
      model: maps ``inputs`` to scores of shape ``(batch, num_outputs)``.
      inputs: a batch, ``(batch, …)``.
      labels: integer classes of shape ``(batch,)``.

    Returns:
      ``(loss, scores)``: the mean loss (a scalar) and the scores.
    """
    scores = model(inputs)
    losses = optax.softmax_cross_entropy_with_integer_labels(scores, labels)
    return jnp.mean(losses), scores


def epoch_batch(
    key: jax.Array, step: ArrayLike, *, num_examples: int, batch_size: int
) -> jax.Array:
    """The example indices of step ``step`` (0-based): its slice of its epoch.

    Args:
      key: the shuffling key; epoch ``e`` uses ``jax.random.fold_in(key, e)``.
      step: the step number, a scalar integer (may be traced).
      num_examples: the training set size.
      batch_size: at most ``num_examples``.

    Returns:
      Distinct indices of shape ``(batch_size,)``.
    """
    steps_per_epoch = num_examples // batch_size
    epoch, position = jnp.divmod(step, steps_per_epoch)
    order = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
    return jax.lax.dynamic_slice_in_dim(order, position * batch_size, batch_size)


def make_train_step(
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    *,
    batch_size: int,
    loss_fn: LossFn = classification_loss,
    augment: Augment | None = None,
) -> Callable:
    """A jitted training step on split model state.

    ``key`` is split at once into a shuffling key (see :func:`epoch_batch`) and
    an augmentation key; step ``s`` augments its batch with
    ``jax.random.fold_in(augment_key, s)``.

    Args:
      graphdef: from ``nnx.split(model, nnx.Param, ...)``.
      optimizer: the Optax optimizer.
      batch_size: examples per step.
      loss_fn: ``loss_fn(model, inputs, labels) -> (loss, scores)``.
      augment: ``augment(key, inputs) -> inputs``, applied to each training
        batch (random shifts, dropped elements, …), or ``None``.

    Returns:
      ``step_fn(params, rest, opt_state, key, step, inputs, labels)`` returning
      ``(params, opt_state, metrics)`` with ``metrics = {"loss", "accuracy"}``
      of the step's batch (before the update). ``inputs`` and ``labels`` are the
      whole training set, ``(num_examples, …)`` and ``(num_examples,)``; the
      step draws its batch with :func:`epoch_batch`.
    """

    def step_fn(params, rest, opt_state, key, step, inputs, labels):
        shuffle_key, augment_key = jax.random.split(key)
        index = epoch_batch(
            shuffle_key, step, num_examples=labels.shape[0], batch_size=batch_size
        )
        batch_inputs, batch_labels = inputs[index], labels[index]
        if augment is not None:
            batch_inputs = augment(jax.random.fold_in(augment_key, step), batch_inputs)

        def loss_of(p):
            return loss_fn(nnx.merge(graphdef, p, rest), batch_inputs, batch_labels)

        (loss, scores), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        accuracy = jnp.mean(jnp.argmax(scores, axis=-1) == batch_labels)
        return params, opt_state, {"loss": loss, "accuracy": accuracy}

    return jax.jit(step_fn)


@jax.jit(static_argnames=("graphdef", "loss_fn"))
def _eval_chunk(graphdef, state, inputs, labels, mask, loss_fn):
    _, scores = loss_fn(nnx.merge(graphdef, state), inputs, labels)
    losses = optax.softmax_cross_entropy_with_integer_labels(scores, labels)
    correct = jnp.argmax(scores, axis=-1) == labels
    return jnp.sum(jnp.where(mask, losses, 0)), jnp.sum(jnp.where(mask, correct, 0))


def evaluate_model(
    model: nnx.Module,
    inputs: ArrayLike,
    labels: ArrayLike,
    *,
    batch_size: int = 1024,
    loss_fn: LossFn = classification_loss,
) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on a dataset.

    The data go through in chunks of ``min(batch_size, 2**ceil(log2(n)))``
    examples, the last one padded and masked, so a few compilations serve
    datasets of any size.

    Args:
      model: maps inputs to log-space scores ``(batch, num_outputs)``.
      inputs: ``(num_examples, …)``.
      labels: integer classes of shape ``(num_examples,)``.
      batch_size: the largest chunk.
      loss_fn: gives the scores, as in :func:`make_train_step`.

    Returns:
      ``{"loss": …, "accuracy": …}`` as Python floats.

    Raises:
      ValueError: if inputs and labels disagree in length or there are none.
    """
    inputs, labels = _check_dataset("data", inputs, labels)
    chunk = _chunk_size(labels.shape[0], batch_size)
    return _evaluate(nnx.split(model), inputs, labels, chunk, loss_fn)


def _chunk_size(num_examples: int, batch_size: int) -> int:
    return min(batch_size, 1 << max(num_examples - 1, 0).bit_length())


def _evaluate(split_model, inputs, labels, chunk, loss_fn) -> dict[str, float]:
    graphdef, state = split_model
    num_examples = labels.shape[0]
    padded = -(-num_examples // chunk) * chunk
    pad = padded - num_examples
    inputs = jnp.concatenate([inputs, jnp.repeat(inputs[:1], pad, axis=0)])
    labels = jnp.concatenate([labels, jnp.repeat(labels[:1], pad, axis=0)])
    mask = jnp.arange(padded) < num_examples

    total_loss, total_correct = 0.0, 0
    for start in range(0, padded, chunk):
        part = slice(start, start + chunk)
        loss, correct = _eval_chunk(
            graphdef, state, inputs[part], labels[part], mask[part], loss_fn
        )
        total_loss += float(loss)
        total_correct += int(correct)
    return {
        "loss": total_loss / num_examples,
        "accuracy": total_correct / num_examples,
    }


def _check_dataset(name: str, inputs: ArrayLike, labels: ArrayLike):
    inputs, labels = jnp.asarray(inputs), jnp.asarray(labels)
    if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"{name} labels must be integers of shape (num_examples,), got "
            f"{labels.dtype}{labels.shape}."
        )
    if inputs.ndim < 1 or inputs.shape[0] != labels.shape[0] or not len(labels):
        raise ValueError(
            f"{name} inputs must have shape (num_examples, …) with num_examples = "
            f"len(labels) = {labels.shape[0]} > 0, got {inputs.shape}."
        )
    return inputs, labels


class _MetricsLog:
    """Writes ``config.json`` and appends records to ``metrics.jsonl``."""

    def __init__(self, workdir: str | pathlib.Path | None, config: dict[str, Any]):
        self.history: list[dict[str, Any]] = []
        self.file = None
        if workdir is not None:
            workdir = pathlib.Path(workdir)
            workdir.mkdir(parents=True, exist_ok=True)
            (workdir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            self.file = open(workdir / "metrics.jsonl", "w")

    def write(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _interval_record(pending: list[dict[str, jax.Array]], done: int) -> dict:
    """Means of the metrics of the last ``len(pending)`` steps.

    Raises:
      NonFiniteLossError: naming the first of those steps whose loss is not
        finite.
    """
    values = jax.device_get(pending)
    losses = np.array([m["loss"] for m in values])
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        first = done - len(values) + 1
        raise NonFiniteLossError(first + int(bad[0]), float(losses[bad[0]]))
    return {
        "step": done,
        "loss": float(losses.mean()),
        "accuracy": float(np.mean([m["accuracy"] for m in values])),
    }


def _prepare_eval_sets(
    eval_sets: Mapping[str, Dataset] | None, batch_size: int
) -> tuple[dict[str, tuple[jax.Array, jax.Array]], int]:
    """Checked evaluation sets and one chunk size that serves them all."""
    checked = {
        name: _check_dataset(f"eval_sets[{name!r}]", *data)
        for name, data in (eval_sets or {}).items()
    }
    largest = max((len(y) for _, y in checked.values()), default=1)
    return checked, _chunk_size(largest, batch_size)


def _evaluate_sets(
    split_model: tuple[nnx.GraphDef, nnx.State],
    eval_sets: Mapping[str, tuple[jax.Array, jax.Array]],
    chunk: int,
    loss_fn: LossFn,
) -> dict[str, float]:
    metrics = {}
    for name, (inputs, labels) in eval_sets.items():
        result = _evaluate(split_model, inputs, labels, chunk, loss_fn)
        metrics[f"{name}_loss"] = result["loss"]
        metrics[f"{name}_accuracy"] = result["accuracy"]
    return metrics


def train(
    model: nnx.Module,
    train_data: Dataset,
    config: TrainConfig,
    *,
    eval_sets: Mapping[str, Dataset] | None = None,
    workdir: str | pathlib.Path | None = None,
    run_config: Mapping[str, Any] | None = None,
    loss_fn: LossFn = classification_loss,
    augment: Augment | None = None,
    progress: bool = True,
    description: str | None = None,
) -> TrainResult:
    """Trains ``model`` in place with Optax, logging metrics.

    Every ``log_every`` steps a record ``{"step", "seconds", "loss",
    "accuracy"}`` (the means over the steps since the last record; ``step``
    counts the steps done) is appended to ``workdir/metrics.jsonl``, and every
    ``eval_every`` steps (and after the last) the record also holds
    ``<set>_loss`` and ``<set>_accuracy`` for every evaluation set.
    ``workdir/config.json`` holds ``config`` and ``run_config``.

    Only the model's ``nnx.Param`` variables are trained; any other state it
    holds is passed to every step unchanged.

    Args:
      model: an NNX module mapping inputs to log-space scores
        ``(batch, num_outputs)``; its parameters are replaced by the trained
        ones when the loop ends.
      train_data: ``(inputs, labels)``, ``(num_examples, …)`` and integer
        ``(num_examples,)``.
      config: the settings.
      eval_sets: named ``(inputs, labels)`` sets to evaluate, e.g.
        ``{"train": …, "test": …}``.
      workdir: where to write ``config.json`` and ``metrics.jsonl``; nothing is
        written if ``None``.
      run_config: more JSON-serialisable settings for ``config.json`` (the
        model's description, the data split, …).
      loss_fn: ``loss_fn(model, inputs, labels) -> (loss, scores)``.
      augment: ``augment(key, inputs) -> inputs`` for each training batch
        (see :func:`make_train_step`); evaluation sees the inputs as given.
      progress: show a tqdm progress bar.
      description: the progress bar's label.

    Returns:
      A :class:`TrainResult`.

    Raises:
      NonFiniteLossError: when a step's loss is NaN or infinite (checked every
        ``log_every`` steps; the error names the first such step). The model
        then keeps the parameters it had before ``train`` was called, and
        ``metrics.jsonl`` holds the records logged until then.
      ValueError: for a malformed dataset or a batch larger than it.
    """
    inputs, labels = _check_dataset("train_data", *train_data)
    num_examples = labels.shape[0]
    if config.batch_size > num_examples:
        raise ValueError(
            f"batch_size={config.batch_size} exceeds the {num_examples} training "
            "examples."
        )
    eval_sets, eval_chunk = _prepare_eval_sets(eval_sets, config.eval_batch_size)
    num_steps = config.num_steps(num_examples)
    optimizer = make_optimizer(config, num_steps)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = optimizer.init(params)
    step_fn = make_train_step(
        graphdef,
        optimizer,
        batch_size=config.batch_size,
        loss_fn=loss_fn,
        augment=augment,
    )
    key = jax.random.key(config.seed)
    log = _MetricsLog(
        workdir,
        {
            "train": dataclasses.asdict(config),
            "num_steps": num_steps,
            **(run_config or {}),
        },
    )

    start = time.perf_counter()
    pending: list[dict[str, jax.Array]] = []
    final: dict[str, float] = {}
    bar = tqdm.tqdm(total=num_steps, disable=not progress, desc=description)
    try:
        for step in range(num_steps):
            params, opt_state, metrics = step_fn(
                params, rest, opt_state, key, step, inputs, labels
            )
            pending.append(metrics)
            done = step + 1
            if done % config.log_every and done != num_steps:
                continue
            record = _interval_record(pending, done)
            pending = []
            if eval_sets and (
                done == num_steps
                or (config.eval_every and done % config.eval_every == 0)
            ):
                current = (graphdef, nnx.merge_state(params, rest))
                final = _evaluate_sets(current, eval_sets, eval_chunk, loss_fn)
                record |= final
            record["seconds"] = time.perf_counter() - start
            log.write(record)
            bar.update(done - bar.n)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
    finally:
        bar.close()
        log.close()
    nnx.update(model, params, rest)
    return TrainResult(
        history=log.history,
        final=final,
        steps=num_steps,
        seconds=time.perf_counter() - start,
    )
