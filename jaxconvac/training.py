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

**Devices.** :func:`train` runs data-parallel over ``TrainConfig.num_devices``
devices (``0``: every device JAX sees, on every host) with JAX's SPMD
partitioner: a one-axis ``jax.sharding.Mesh`` named ``"data"``, the parameters,
optimizer state and training set replicated (``NamedSharding(mesh, P())``) and
each step's batch split along its first axis (``NamedSharding(mesh,
P("data"))``); XLA inserts the gradient all-reduce. The batch size must be a
multiple of the device count. On one device this is the plain single-device
step. For several hosts, call ``jax.distributed.initialize()`` first (the CLI's
``--distributed``) and start the same command on every host; each host loads
the whole (small) data set, only process 0 writes ``config.json`` and
``metrics.jsonl``, and Orbax coordinates the checkpoint writes.

**Checkpoints.** With a work directory and ``checkpoint_every > 0`` the loop
saves ``<workdir>/checkpoints/<step>`` (see :mod:`jaxconvac.checkpoint`) every
``checkpoint_every`` steps and after the last, and ``train(..., resume=True)``
continues from the newest one: parameters, optimizer state, key, step (which
fixes the data order) and the guards' counters are restored, so a killed run
restarted with the same arguments ends with the same parameters, bit for bit,
as one that was never interrupted (on the same devices).

**Guards.** A step whose loss or gradient has a non-finite entry leaves
parameters and optimizer state unchanged and is counted (``skipped`` in every
record of ``metrics.jsonl``); ``max_consecutive_skips`` skips in a row stop the
run with a :class:`NonFiniteLossError` naming the step. Optional: gradient
clipping by global norm, and ``compute_dtype="bfloat16"``, which casts the
parameters and inputs to bfloat16 inside the step (the stored parameters, the
gradients and the optimizer stay float32).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
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
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from jaxconvac import checkpoint as ckpt

LossFn = Callable[[nnx.Module, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
Augment = Callable[[jax.Array, jax.Array], jax.Array]
Dataset = tuple[ArrayLike, ArrayLike]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
COMPUTE_DTYPES = ("float32", "bfloat16")
DATA_AXIS = "data"

# TrainConfig fields that do not change the parameters a run ends with; a
# checkpoint may be resumed with other values of these.
_RESUMABLE_CHANGES = (
    "log_every",
    "eval_every",
    "eval_batch_size",
    "num_devices",
    "checkpoint_every",
    "checkpoints_to_keep",
    "max_consecutive_skips",
)


class NonFiniteLossError(FloatingPointError):
    """Training stopped: the loss or gradients stayed NaN or infinite.

    Raised when ``max_consecutive_skips`` steps in a row had a non-finite loss
    or gradient (each was skipped).

    Attributes:
      step: the 1-based number of the step that reached the limit.
      loss: that step's loss.
      consecutive: how many steps in a row were skipped, ending at ``step``.
    """

    def __init__(self, step: int, loss: float, consecutive: int = 1):
        self.step = step
        self.loss = loss
        self.consecutive = consecutive
        if consecutive == 1:
            what = f"the training loss or gradient became non-finite ({loss})"
        else:
            what = (
                f"the training loss or gradient was non-finite for {consecutive} "
                f"consecutive steps (loss {loss})"
            )
        super().__init__(
            f"{what} at step {step}; lower the learning rate, clip the "
            "gradients or check the inputs for NaN/inf."
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
      num_devices: data-parallel devices: ``0`` uses every device
        (``jax.devices()``, all hosts), ``n`` the first ``n``. The batch size
        must be a multiple of it.
      checkpoint_every: save a checkpoint under ``<workdir>/checkpoints``
        every this many steps and after the last (``0``: no checkpoints).
        Steps with a checkpoint also get a record in ``metrics.jsonl``.
      checkpoints_to_keep: how many of the newest checkpoints to keep.
      max_consecutive_skips: a step with a non-finite loss or gradient is
        skipped (no update); this many skipped in a row stop the run.
      clip_grad_norm: if set, clip the gradient to this global norm before
        the optimizer.
      compute_dtype: ``"float32"`` or ``"bfloat16"``: the dtype of the
        forward and backward pass (parameters and floating inputs are cast to
        it inside the step; stored parameters, gradients and the optimizer
        stay in the parameters' dtype).
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
    num_devices: int = 0
    checkpoint_every: int = 0
    checkpoints_to_keep: int = 2
    max_consecutive_skips: int = 10
    clip_grad_norm: float | None = None
    compute_dtype: str = "float32"

    def __post_init__(self):
        for name in (
            "steps",
            "batch_size",
            "log_every",
            "eval_batch_size",
            "checkpoints_to_keep",
            "max_consecutive_skips",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        for name in (
            "warmup_steps",
            "eval_every",
            "seed",
            "num_devices",
            "checkpoint_every",
        ):
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
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(
                f"clip_grad_norm must be positive or None, got {self.clip_grad_norm!r}."
            )
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(
                f"compute_dtype must be one of {COMPUTE_DTYPES}, got "
                f"{self.compute_dtype!r}."
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
      steps: the number of steps of the run (including those before a resume).
      seconds: wall time of the whole loop, compilation included (of this
        call only).
      skipped: the steps skipped for a non-finite loss or gradient.
      devices: the number of devices the steps ran on.
      resumed_from: the step of the checkpoint this call started from, or
        ``None``.
    """

    history: list[dict[str, Any]]
    final: dict[str, float]
    steps: int
    seconds: float
    skipped: int = 0
    devices: int = 1
    resumed_from: int | None = None


def make_optimizer(config: TrainConfig, num_steps: int) -> optax.GradientTransformation:
    """The Optax optimizer and learning-rate schedule ``config`` names.

    Args:
      config: the settings.
      num_steps: the length of the run, for the cosine schedule.

    Returns:
      An ``optax.GradientTransformation``; with ``config.clip_grad_norm`` the
      gradient is first clipped to that global norm.
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
        optimizer = optax.adam(rate)
    elif config.optimizer == "adamw":
        optimizer = optax.adamw(rate, weight_decay=config.weight_decay)
    else:
        optimizer = optax.sgd(rate, momentum=config.momentum, nesterov=True)
    if config.clip_grad_norm is not None:
        optimizer = optax.chain(
            optax.clip_by_global_norm(config.clip_grad_norm), optimizer
        )
    return optimizer


def classification_loss(
    model: nnx.Module, inputs: jax.Array, labels: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Mean softmax cross-entropy of a model's log-space scores.

    Args:
      model: maps ``inputs`` to scores of shape ``(batch, num_outputs)``.
      inputs: a batch, ``(batch, …)``.
      labels: integer classes of shape ``(batch,)``.

    Returns:
      ``(loss, scores)``: the mean loss (a scalar) and the scores. Scores of
      a floating type narrower than float32 (bfloat16 under
      ``compute_dtype``) are cast to float32 first, so the loss and its
      gradient are computed in float32.
    """
    scores = model(inputs)
    scores = scores.astype(jnp.promote_types(scores.dtype, jnp.float32))
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
    compute_dtype: jnp.dtype | str | None = None,
    batch_sharding: jax.sharding.Sharding | None = None,
    skip_nonfinite: bool = True,
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
      compute_dtype: if given (e.g. ``jnp.bfloat16``), the floating
        parameters, model state and batch inputs are cast to it for the
        forward and backward pass; the loss is cast back to float32 and the
        gradients arrive in the parameters' dtype.
      batch_sharding: if given (e.g. ``NamedSharding(mesh, P("data"))``), the
        step's batch is constrained to it, which makes XLA's SPMD partitioner
        run the step data-parallel.
      skip_nonfinite: if true, a step whose loss or gradient has a NaN or
        infinite entry returns ``params`` and ``opt_state`` unchanged.

    Returns:
      ``step_fn(params, rest, opt_state, key, step, inputs, labels)`` returning
      ``(params, opt_state, metrics)`` with ``metrics = {"loss", "accuracy",
      "skipped"}`` of the step's batch (before the update; ``skipped`` is true
      if the update was skipped). ``inputs`` and ``labels`` are the whole
      training set, ``(num_examples, …)`` and ``(num_examples,)``; the step
      draws its batch with :func:`epoch_batch`.
    """
    dtype = None if compute_dtype is None else jnp.dtype(compute_dtype)

    def cast(tree):
        if dtype is None:
            return tree
        return jax.tree.map(
            lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
            tree,
        )

    def step_fn(params, rest, opt_state, key, step, inputs, labels):
        shuffle_key, augment_key = jax.random.split(key)
        index = epoch_batch(
            shuffle_key, step, num_examples=labels.shape[0], batch_size=batch_size
        )
        batch_inputs, batch_labels = inputs[index], labels[index]
        if batch_sharding is not None:
            batch_inputs, batch_labels = jax.lax.with_sharding_constraint(
                (batch_inputs, batch_labels), batch_sharding
            )
        if augment is not None:
            batch_inputs = augment(jax.random.fold_in(augment_key, step), batch_inputs)

        def loss_of(p):
            model = nnx.merge(graphdef, cast(p), cast(rest))
            loss, scores = loss_fn(model, cast(batch_inputs), batch_labels)
            if dtype is not None:
                loss = loss.astype(jnp.float32)
            return loss, scores

        (loss, scores), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        finite = jnp.isfinite(loss)
        for leaf in jax.tree.leaves(grads):
            finite &= jnp.all(jnp.isfinite(leaf))
        if skip_nonfinite:
            new_params, new_opt_state = jax.tree.map(
                lambda new, old: jnp.where(finite, new, old),
                (new_params, new_opt_state),
                (params, opt_state),
            )
        accuracy = jnp.mean(jnp.argmax(scores, axis=-1) == batch_labels)
        skipped = ~finite if skip_nonfinite else jnp.zeros((), bool)
        metrics = {"loss": loss, "accuracy": accuracy, "skipped": skipped}
        return new_params, new_opt_state, metrics

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


def make_mesh(num_devices: int = 0) -> Mesh:
    """A one-axis device mesh for data parallelism, its axis named ``"data"``.

    Args:
      num_devices: ``0`` for every device of every process (``jax.devices()``),
        else the first ``num_devices`` of them.

    Returns:
      A ``jax.sharding.Mesh`` of shape ``(devices,)``.

    Raises:
      ValueError: if more devices are asked for than there are.
    """
    devices = jax.devices()
    if isinstance(num_devices, bool) or not isinstance(num_devices, int):
        raise TypeError(f"num_devices must be an int, got {num_devices!r}.")
    if num_devices < 0 or num_devices > len(devices):
        raise ValueError(
            f"num_devices must be 0 (all) or between 1 and the {len(devices)} "
            f"available devices, got {num_devices}."
        )
    chosen = devices if num_devices == 0 else devices[:num_devices]
    return Mesh(np.array(chosen), (DATA_AXIS,))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every array of ``tree`` on every device of ``mesh`` (one copy each).

    Uses ``jax.make_array_from_process_local_data`` with a replicated
    ``NamedSharding``, so under ``jax.distributed`` each process passes its own
    (identical) copy. PRNG key arrays keep their implementation.

    Args:
      tree: a pytree of arrays (host or device).
      mesh: the mesh to replicate over.

    Returns:
      The same pytree of ``jax.Array`` s, fully replicated over ``mesh``.
    """
    sharding = NamedSharding(mesh, P())

    def put(x):
        if jnp.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key):
            data = put(jax.random.key_data(x))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        value = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, value, value.shape)

    return jax.tree.map(put, tree)


def _is_primary() -> bool:
    return jax.process_index() == 0


def _write_text_atomic(path: pathlib.Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _read_records(path: pathlib.Path, until: int) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` up to step ``until``.

    A last line cut short by a killed process is dropped; an unreadable line
    before it is an error naming the file and line.
    """
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                break
            raise ValueError(
                f"{path}, line {number}: not a JSON record ({err}); cannot resume "
                "its log."
            ) from err
        if record.get("step", until + 1) <= until:
            records.append(record)
    return records


class _MetricsLog:
    """Writes ``config.json`` and appends records to ``metrics.jsonl``."""

    def __init__(
        self,
        workdir: str | pathlib.Path | None,
        config: dict[str, Any],
        *,
        keep_until: int | None = None,
    ):
        self.history: list[dict[str, Any]] = []
        self.file = None
        if workdir is not None and _is_primary():
            workdir = pathlib.Path(workdir)
            workdir.mkdir(parents=True, exist_ok=True)
            _write_text_atomic(
                workdir / "config.json", json.dumps(config, indent=2) + "\n"
            )
            path = workdir / "metrics.jsonl"
            if keep_until is None:
                self.file = open(path, "w")
            else:
                self.history = _read_records(path, keep_until)
                _write_text_atomic(
                    path, "".join(json.dumps(r) + "\n" for r in self.history)
                )
                self.file = open(path, "a")

    def write(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _interval_record(
    pending: list[dict[str, jax.Array]],
    done: int,
    consecutive: int = 0,
    limit: int = 1,
) -> tuple[dict, int]:
    """Means of the metrics of the last ``len(pending)`` steps, skips counted.

    Args:
      pending: the steps' metrics, oldest first.
      done: the number of steps done (the last of ``pending`` is step ``done``).
      consecutive: the steps skipped in a row just before ``pending``.
      limit: how many skips in a row stop the run.

    Returns:
      ``(record, consecutive)``: the record (``loss`` and ``accuracy`` are
      means over the steps not skipped, NaN if all were) and the skips in a
      row at its end.

    Raises:
      NonFiniteLossError: naming the step at which ``limit`` skips in a row
        were reached.
    """
    values = jax.device_get(pending)
    losses = np.array([m["loss"] for m in values], np.float64)
    accuracies = np.array([m["accuracy"] for m in values], np.float64)
    skipped = np.array([bool(m.get("skipped", False)) for m in values])
    first = done - len(values) + 1
    for offset, skip in enumerate(skipped):
        consecutive = consecutive + 1 if skip else 0
        if consecutive >= limit:
            raise NonFiniteLossError(first + offset, float(losses[offset]), consecutive)
    kept = ~skipped
    return {
        "step": done,
        "loss": float(losses[kept].mean()) if kept.any() else math.nan,
        "accuracy": float(accuracies[kept].mean()) if kept.any() else math.nan,
        "skipped": int(skipped.sum()),
    }, consecutive


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


def _trajectory_settings(config: TrainConfig) -> dict[str, Any]:
    """The settings a resumed run must share with its checkpoint."""
    settings = dataclasses.asdict(config)
    for name in _RESUMABLE_CHANGES:
        settings.pop(name)
    return settings


@dataclasses.dataclass
class _Resumed:
    step: int
    params: Any
    opt_state: Any
    key: jax.Array
    consecutive: int
    skipped: int
    seconds: float


def _restore(
    checkpoints: ckpt.Checkpoints,
    step: int,
    expected: dict[str, Any],
    template: dict[str, Any],
    mesh: Mesh,
) -> _Resumed:
    """Reads and checks the checkpoint of ``step``; nothing is written."""
    meta = checkpoints.read_meta(step)
    where = checkpoints.step_dir(step)
    model_diff = ckpt.differences(meta.get("params"), expected["params"], "params")
    if model_diff:
        raise ckpt.CheckpointError(
            where,
            "was written for a different model configuration (parameter "
            "shapes or dtypes differ); refusing to load it:\n  "
            + "\n  ".join(model_diff)
            + "\nUse another work directory for this model.",
        )
    settings_diff = []
    for name in ("train", "num_examples", "run_config"):
        settings_diff += ckpt.differences(meta.get(name), expected[name], name)
    if settings_diff:
        raise ckpt.CheckpointError(
            where,
            "was written by a run with other settings; refusing to resume it:\n  "
            + "\n  ".join(settings_diff)
            + "\nRun with the checkpoint's settings or use another work directory.",
        )
    sharding = NamedSharding(mesh, P())
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), template
    )
    state = checkpoints.restore_state(step, abstract)
    key = jax.random.wrap_key_data(state["key"], impl=meta["key_impl"])
    guards = meta["guards"]
    return _Resumed(
        step=step,
        params=state["params"],
        opt_state=state["opt_state"],
        key=key,
        consecutive=int(guards["consecutive_skips"]),
        skipped=int(guards["skipped"]),
        seconds=float(meta.get("seconds", 0.0)),
    )


def _resume_point(
    checkpoints: ckpt.Checkpoints | None,
    resume: bool,
    expected: dict[str, Any],
    template: dict[str, Any],
    mesh: Mesh,
    num_steps: int,
) -> _Resumed | None:
    """The checked state to resume from, ``None`` to start afresh."""
    latest = checkpoints.latest_step() if checkpoints is not None else None
    if latest is None:
        return None
    if not resume:
        raise ValueError(
            f"{checkpoints.directory} already holds checkpoints (newest: step "
            f"{latest}); pass resume=True (CLI: --resume) to continue that "
            "run, or use another work directory. Nothing was written."
        )
    resumed = _restore(checkpoints, latest, expected, template, mesh)
    if resumed.step > num_steps:
        raise ckpt.CheckpointError(
            checkpoints.step_dir(latest),
            f"is at step {resumed.step}, beyond this run's {num_steps} steps.",
        )
    return resumed


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
    resume: bool = False,
) -> TrainResult:
    """Trains ``model`` in place with Optax, logging metrics.

    Every ``log_every`` steps (and at every checkpoint) a record ``{"step",
    "seconds", "loss", "accuracy", "skipped"}`` (the means over the steps
    since the last record that were not skipped, and how many were; ``step``
    counts the steps done) is appended to ``workdir/metrics.jsonl``, and every
    ``eval_every`` steps (and after the last) the record also holds
    ``<set>_loss`` and ``<set>_accuracy`` for every evaluation set.
    ``workdir/config.json`` holds ``config`` and ``run_config``.

    Only the model's ``nnx.Param`` variables are trained; any other state it
    holds is passed to every step unchanged. The steps run data-parallel over
    ``config.num_devices`` devices (see the module docstring); with
    ``config.checkpoint_every`` they are checkpointed under
    ``workdir/checkpoints``.

    Args:
      model: an NNX module mapping inputs to log-space scores
        ``(batch, num_outputs)``; its parameters are replaced by the trained
        ones when the loop ends.
      train_data: ``(inputs, labels)``, ``(num_examples, …)`` and integer
        ``(num_examples,)``.
      config: the settings.
      eval_sets: named ``(inputs, labels)`` sets to evaluate, e.g.
        ``{"train": …, "test": …}``.
      workdir: where to write ``config.json``, ``metrics.jsonl`` and
        ``checkpoints/``; nothing is written if ``None``.
      run_config: more JSON-serialisable settings for ``config.json`` (the
        model's description, the data split, …); a resumed run must pass the
        same.
      loss_fn: ``loss_fn(model, inputs, labels) -> (loss, scores)``.
      augment: ``augment(key, inputs) -> inputs`` for each training batch
        (see :func:`make_train_step`); evaluation sees the inputs as given.
      progress: show a tqdm progress bar.
      description: the progress bar's label.
      resume: continue from the newest checkpoint in ``workdir/checkpoints``
        if there is one (else start afresh). Its parameter shapes, trajectory
        settings (all of ``config`` but logging, evaluation, checkpointing,
        device count and the skip limit), data size and ``run_config`` must
        match this call's. ``metrics.jsonl`` keeps its records up to that
        step.

    Returns:
      A :class:`TrainResult`.

    Raises:
      NonFiniteLossError: when ``max_consecutive_skips`` steps in a row had a
        NaN or infinite loss or gradient (checked at every record; the error
        names the step). The model then keeps the parameters it had before
        ``train`` was called, and ``metrics.jsonl`` holds the records logged
        until then.
      ValueError: for a malformed dataset, a batch larger than it or not
        divisible by the device count, checkpoints in ``workdir`` without
        ``resume``, or no ``workdir`` with ``checkpoint_every``.
      jaxconvac.checkpoint.CheckpointError: (a ``ValueError``) for a foreign,
        unreadable or mismatching checkpoint; nothing is written then.
    """
    inputs, labels = _check_dataset("train_data", *train_data)
    num_examples = labels.shape[0]
    if config.batch_size > num_examples:
        raise ValueError(
            f"batch_size={config.batch_size} exceeds the {num_examples} training "
            "examples."
        )
    mesh = make_mesh(config.num_devices)
    if config.batch_size % mesh.size:
        raise ValueError(
            f"batch_size={config.batch_size} is not a multiple of the {mesh.size} "
            f"devices the batch is split over (num_devices={config.num_devices}); "
            "choose a batch size divisible by the device count, or set "
            "num_devices."
        )
    if config.checkpoint_every and workdir is None:
        raise ValueError(
            f"checkpoint_every={config.checkpoint_every} needs a workdir to "
            "write the checkpoints to, got workdir=None."
        )
    if resume and workdir is None:
        raise ValueError("resume=True needs the workdir of the run to resume.")
    eval_sets, eval_chunk = _prepare_eval_sets(eval_sets, config.eval_batch_size)
    num_steps = config.num_steps(num_examples)
    optimizer = make_optimizer(config, num_steps)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = optimizer.init(params)
    key = jax.random.key(config.seed)
    run_config = dict(run_config or {})

    checkpoints = None
    if workdir is not None:
        directory = pathlib.Path(workdir) / "checkpoints"
        if directory.exists() or config.checkpoint_every:
            checkpoints = ckpt.Checkpoints(directory, keep=config.checkpoints_to_keep)
    expected = {
        "params": ckpt.parameter_spec(params),
        "train": _trajectory_settings(config),
        "num_examples": num_examples,
        "run_config": run_config,
    }
    try:
        resumed = _resume_point(
            checkpoints,
            resume,
            expected,
            {"params": params, "opt_state": opt_state, "key": jax.random.key_data(key)},
            mesh,
            num_steps,
        )
    except BaseException:
        if checkpoints is not None:
            checkpoints.close()
        raise

    params, rest, opt_state, key = replicate((params, rest, opt_state, key), mesh)
    inputs, labels = replicate((inputs, labels), mesh)
    eval_sets = replicate(eval_sets, mesh)
    start_step, consecutive, skipped_total, seconds_before = 0, 0, 0, 0.0
    if resumed is not None:
        params, opt_state, key = resumed.params, resumed.opt_state, resumed.key
        start_step, consecutive = resumed.step, resumed.consecutive
        skipped_total, seconds_before = resumed.skipped, resumed.seconds

    step_fn = make_train_step(
        graphdef,
        optimizer,
        batch_size=config.batch_size,
        loss_fn=loss_fn,
        augment=augment,
        compute_dtype=None
        if config.compute_dtype == "float32"
        else config.compute_dtype,
        batch_sharding=NamedSharding(mesh, P(DATA_AXIS)),
    )
    log = _MetricsLog(
        workdir,
        {
            "train": dataclasses.asdict(config),
            "num_steps": num_steps,
            **run_config,
        },
        keep_until=None if resumed is None else resumed.step,
    )

    # XLA's CPU collectives have deadlocked here when several sharded steps
    # were queued at once (2 host devices on 2 busy cores: the all-reduce
    # rendezvous timed out); on a CPU mesh of several devices, wait for each
    # step. Accelerators keep the asynchronous dispatch.
    sync_each_step = mesh.size > 1 and mesh.devices.flat[0].platform == "cpu"
    start = time.perf_counter()
    pending: list[dict[str, jax.Array]] = []
    final: dict[str, float] = {}
    bar = tqdm.tqdm(
        total=num_steps,
        initial=start_step,
        disable=not progress or not _is_primary(),
        desc=description,
    )
    try:
        for step in range(start_step, num_steps):
            params, opt_state, metrics = step_fn(
                params, rest, opt_state, key, step, inputs, labels
            )
            if sync_each_step:
                jax.block_until_ready(metrics)
            pending.append(metrics)
            done = step + 1
            save = (
                checkpoints is not None
                and config.checkpoint_every > 0
                and (done % config.checkpoint_every == 0 or done == num_steps)
            )
            if done % config.log_every and done != num_steps and not save:
                continue
            record, consecutive = _interval_record(
                pending, done, consecutive, config.max_consecutive_skips
            )
            skipped_total += record["skipped"]
            pending = []
            if eval_sets and (
                done == num_steps
                or (config.eval_every and done % config.eval_every == 0)
            ):
                current = (graphdef, nnx.merge_state(params, rest))
                final = _evaluate_sets(current, eval_sets, eval_chunk, loss_fn)
                record |= final
            record["seconds"] = seconds_before + time.perf_counter() - start
            log.write(record)
            if save:
                checkpoints.save(
                    done,
                    {
                        "params": params,
                        "opt_state": opt_state,
                        "key": jax.random.key_data(key),
                    },
                    {
                        **expected,
                        "step": done,
                        "num_steps": num_steps,
                        "data_order": {
                            "seed": config.seed,
                            "next_step": done,
                            "batch_size": config.batch_size,
                            "num_examples": num_examples,
                        },
                        "guards": {
                            "consecutive_skips": consecutive,
                            "skipped": skipped_total,
                        },
                        "key_impl": str(jax.random.key_impl(key)),
                        "seconds": record["seconds"],
                    },
                )
            bar.update(done - bar.n)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
        if eval_sets and start_step == num_steps:
            current = (graphdef, nnx.merge_state(params, rest))
            final = _evaluate_sets(current, eval_sets, eval_chunk, loss_fn)
    finally:
        bar.close()
        log.close()
        if checkpoints is not None:
            checkpoints.close()
    nnx.update(model, params, rest)
    return TrainResult(
        history=log.history,
        final=final,
        steps=num_steps,
        seconds=time.perf_counter() - start,
        skipped=skipped_total,
        devices=mesh.size,
        resumed_from=None if resumed is None else resumed.step,
    )
