import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxconvac as jc
from jaxconvac import nn, training

TREE = jc.ModeTree.balanced(4)


def binary_classifier(*, log_values=True, seed=0):
    representation = (
        nn.Indicator(2) if log_values else nn.Gaussian(2, rngs=nnx.Rngs(seed))
    )
    return nn.Classifier(
        representation,
        nn.ConvAC(
            TREE,
            num_descriptors=2,
            widths=(4, 4),
            num_outputs=2,
            sharing="none",
            rngs=nnx.Rngs(seed),
        ),
    )


def xor_data(repeats=4):
    """All 16 patterns of 4 bits; the label is bit 0 XOR bit 3."""
    patterns = np.array(list(itertools.product([0, 1], repeat=4)), np.int32)
    inputs = np.tile(patterns, (repeats, 1))
    return jnp.asarray(inputs), jnp.asarray(inputs[:, 0] ^ inputs[:, 3])


class TraceCounter:
    """A loss function that counts how often JAX traces it."""

    def __init__(self):
        self.traces = 0

    def __call__(self, model, inputs, labels):
        self.traces += 1
        return training.classification_loss(model, inputs, labels)


def test_train_step_does_not_retrace():
    model = binary_classifier()
    inputs, labels = xor_data()
    optimizer = optax.adam(0.05)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = optimizer.init(params)
    counter = TraceCounter()
    step_fn = training.make_train_step(
        graphdef, optimizer, batch_size=16, loss_fn=counter
    )
    key = jax.random.key(0)

    losses = []
    for step in range(8):
        params, opt_state, metrics = step_fn(
            params, rest, opt_state, key, step, inputs, labels
        )
        losses.append(float(metrics["loss"]))
    assert counter.traces == 1
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


def test_train_learns_and_writes_metrics(tmp_path):
    model = binary_classifier()
    inputs, labels = xor_data()
    counter = TraceCounter()
    config = training.TrainConfig(
        steps=120, batch_size=16, learning_rate=0.05, log_every=40, eval_every=80
    )
    before = training.evaluate_model(model, inputs, labels)

    result = training.train(
        model,
        (inputs, labels),
        config,
        eval_sets={"train": (inputs, labels), "test": (inputs[:10], labels[:10])},
        workdir=tmp_path / "run",
        run_config={"model": "xor"},
        loss_fn=counter,
        progress=False,
    )

    # One trace of the train step and one of the evaluation chunk (both sets
    # share the chunk size).
    assert counter.traces == 2
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records == result.history
    assert [r["step"] for r in records] == [40, 80, 120]
    assert "test_accuracy" not in records[0]
    assert {"train_loss", "train_accuracy", "test_loss", "test_accuracy"} <= set(
        records[1]
    )
    assert records[-1]["loss"] < records[0]["loss"]
    assert result.final == {k: records[-1][k] for k in result.final}
    assert result.steps == 120 and result.seconds > 0

    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["batch_size"] == 16 and saved["model"] == "xor"
    assert saved["num_steps"] == 120

    # The model is updated in place and learnt the XOR.
    evaluate = training.evaluate_model(model, inputs, labels)
    assert evaluate["accuracy"] == 1.0 > before["accuracy"]
    assert evaluate["loss"] == pytest.approx(result.final["train_loss"], rel=1e-5)


@pytest.mark.parametrize("limit", [3])
def test_non_finite_loss_names_the_step(tmp_path, limit):
    # An infinite learning rate: step 1 is finite and makes the weights
    # infinite, so from step 2 on every loss is NaN and every step is skipped;
    # the limit is reached at step 1 + limit.
    model = binary_classifier()
    inputs, labels = xor_data()
    before = [np.asarray(w[...]) for w in model.convac.weights]
    config = training.TrainConfig(
        steps=10,
        batch_size=16,
        learning_rate=float("inf"),
        log_every=1,
        max_consecutive_skips=limit,
    )

    step = 1 + limit
    with pytest.raises(training.NonFiniteLossError, match=rf"at step {step}\b") as info:
        training.train(
            model, (inputs, labels), config, workdir=tmp_path, progress=False
        )
    assert isinstance(info.value, FloatingPointError)
    assert info.value.step == step and not np.isfinite(info.value.loss)
    assert info.value.consecutive == limit
    if limit > 1:
        assert f"for {limit} consecutive steps" in str(info.value)
    # The steps before were logged (the skipped ones with skipped=1 and a NaN
    # loss); the model kept its parameters.
    records = [
        json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in records] == list(range(1, step))
    assert [r["skipped"] for r in records] == [0] + [1] * (limit - 1)
    assert np.isfinite(records[0]["loss"])
    assert all(np.isnan(r["loss"]) for r in records[1:])
    for weights, old in zip(model.convac.weights, before, strict=True):
        np.testing.assert_array_equal(weights[...], old)


def test_non_finite_steps_are_skipped_and_counted():
    # Examples 0 and 5 hold a NaN: a Gaussian representation gives them a NaN
    # loss, so every step whose batch holds one of them is skipped.
    model = binary_classifier(log_values=False, seed=1)
    inputs = jax.random.normal(jax.random.key(0), (20, 4, 1))
    inputs = inputs.at[jnp.array([0, 5]), 2, 0].set(jnp.nan)
    labels = jnp.arange(20) % 2
    config = training.TrainConfig(
        steps=12, batch_size=4, learning_rate=0.05, log_every=4, seed=3
    )
    shuffle_key = jax.random.split(jax.random.key(config.seed))[0]
    poisoned = [
        bool(
            {0, 5}
            & set(
                np.asarray(
                    training.epoch_batch(shuffle_key, s, num_examples=20, batch_size=4)
                ).tolist()
            )
        )
        for s in range(12)
    ]
    assert 0 < sum(poisoned) < 12

    # Step by step: a skipped step returns its parameters and optimizer state
    # unchanged; the others move them.
    optimizer = training.make_optimizer(config, 12)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = optimizer.init(params)
    step_fn = training.make_train_step(graphdef, optimizer, batch_size=4)
    key = jax.random.key(config.seed)
    for step in range(12):
        new_params, new_state, metrics = step_fn(
            params, rest, opt_state, key, step, inputs, labels
        )
        assert bool(metrics["skipped"]) == poisoned[step]
        pairs = zip(
            jax.tree.leaves((new_params, new_state)),
            jax.tree.leaves((params, opt_state)),
            strict=True,
        )
        same = all(np.array_equal(a, b) for a, b in jax.device_get(list(pairs)))
        assert same == poisoned[step]
        params, opt_state = new_params, new_state

    result = training.train(model, (inputs, labels), config, progress=False)
    assert result.skipped == sum(poisoned)
    assert [r["skipped"] for r in result.history] == [
        sum(poisoned[i : i + 4]) for i in (0, 4, 8)
    ]
    assert all(np.isfinite(r["loss"]) for r in result.history)
    trained = nnx.split(model, nnx.Param, ...)[1]
    for a, b in zip(jax.tree.leaves(trained), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_nan_in_a_batch_stops_at_the_first_step():
    # The augmentation puts NaN into every training batch (the evaluation data
    # would stay clean).
    model = binary_classifier(log_values=False)
    inputs = jnp.zeros((32, 4, 1))
    labels = jnp.zeros(32, jnp.int32)
    config = training.TrainConfig(
        steps=3, batch_size=8, log_every=3, max_consecutive_skips=1
    )

    def poison(key, batch):
        assert key.shape == () and batch.shape == (8, 4, 1)
        return batch + jnp.nan

    with pytest.raises(FloatingPointError, match=r"non-finite \(nan\) at step 1\b"):
        training.train(model, (inputs, labels), config, augment=poison, progress=False)


def test_epoch_batches_partition_each_epoch():
    key = jax.random.key(7)
    batches = np.stack(
        [
            training.epoch_batch(key, step, num_examples=10, batch_size=3)
            for step in range(6)
        ]
    )
    first, second = batches[:3].ravel(), batches[3:].ravel()
    assert len(set(first)) == 9 and len(set(second)) == 9
    assert set(first) <= set(range(10)) and set(second) <= set(range(10))
    assert not np.array_equal(first, second)
    again = training.epoch_batch(key, 4, num_examples=10, batch_size=3)
    np.testing.assert_array_equal(again, batches[4])
    jitted = jax.jit(
        training.epoch_batch, static_argnames=("num_examples", "batch_size")
    )
    np.testing.assert_array_equal(
        jitted(key, 4, num_examples=10, batch_size=3), batches[4]
    )


def test_evaluate_model_in_padded_chunks():
    model = binary_classifier(seed=3)
    inputs, labels = xor_data(repeats=1)
    inputs, labels = inputs[:7], labels[:7]
    scores = model(inputs)
    losses = optax.softmax_cross_entropy_with_integer_labels(scores, labels)
    expected_accuracy = float(jnp.mean(jnp.argmax(scores, -1) == labels))

    result = training.evaluate_model(model, inputs, labels, batch_size=3)
    assert result["loss"] == pytest.approx(float(jnp.mean(losses)), rel=1e-5)
    assert result["accuracy"] == pytest.approx(expected_accuracy)


@pytest.mark.parametrize(
    ("settings", "schedule_at_0"),
    [
        ({"optimizer": "adam"}, 0.1),
        ({"optimizer": "adamw", "weight_decay": 0.1}, 0.1),
        ({"optimizer": "sgd", "warmup_steps": 5}, 0.0),
        ({"optimizer": "adam", "schedule": "cosine", "warmup_steps": 2}, 0.0),
    ],
)
def test_make_optimizer(settings, schedule_at_0):
    config = training.TrainConfig(learning_rate=0.1, **settings)
    optimizer = training.make_optimizer(config, num_steps=20)
    params = {"w": jnp.ones(3)}
    state = optimizer.init(params)
    updates, _ = optimizer.update({"w": jnp.ones(3)}, state, params)
    # Adam's first step moves each weight by the learning rate; SGD's by
    # learning rate times gradient; warm-up starts from zero.
    expected = schedule_at_0 * (1 + (config.optimizer == "sgd") * config.momentum)
    if config.optimizer == "adamw":
        expected = 0.1 * (1 + 0.1)
    np.testing.assert_allclose(-updates["w"], expected, rtol=1e-4)


def test_gradient_clipping():
    config = training.TrainConfig(
        optimizer="sgd", learning_rate=0.1, momentum=0.5, clip_grad_norm=1.0
    )
    optimizer = training.make_optimizer(config, num_steps=10)
    params = {"w": jnp.zeros(4)}
    state = optimizer.init(params)
    # A gradient of global norm 6 is scaled to norm 1 (entries 0.5); Nesterov
    # SGD's first update is lr * (1 + momentum) * gradient.
    updates, _ = optimizer.update({"w": jnp.full(4, 3.0)}, state, params)
    np.testing.assert_allclose(-updates["w"], 0.1 * 1.5 * 0.5, rtol=1e-6)
    # A small gradient is left alone.
    updates, _ = optimizer.update({"w": jnp.full(4, 0.1)}, state, params)
    np.testing.assert_allclose(-updates["w"], 0.1 * 1.5 * 0.1, rtol=1e-6)


def test_bfloat16_computation_keeps_float32_parameters():
    seen = []

    def loss_fn(model, inputs, labels):
        seen.append((model.convac.weights[0][...].dtype, inputs.dtype))
        return training.classification_loss(model, inputs, labels)

    inputs, labels = xor_data()
    model = binary_classifier(log_values=False)
    reference = binary_classifier(log_values=False)
    settings = {"steps": 30, "batch_size": 16, "learning_rate": 0.05, "log_every": 10}
    bf16 = training.train(
        model,
        (inputs[..., None] * 1.0, labels),
        training.TrainConfig(compute_dtype="bfloat16", **settings),
        loss_fn=loss_fn,
        progress=False,
    )
    assert seen[0] == (jnp.bfloat16, jnp.bfloat16)
    assert all(w[...].dtype == jnp.float32 for w in model.convac.weights)
    f32 = training.train(
        reference,
        (inputs[..., None] * 1.0, labels),
        training.TrainConfig(**settings),
        progress=False,
    )
    bf16_losses = np.array([r["loss"] for r in bf16.history])
    f32_losses = np.array([r["loss"] for r in f32.history])
    # bfloat16 keeps 8 significant bits: the trajectories differ, but little.
    assert not np.array_equal(bf16_losses, f32_losses)
    np.testing.assert_allclose(bf16_losses, f32_losses, rtol=0.05)


def test_train_config_validation():
    assert training.TrainConfig(epochs=2.5, batch_size=10).num_steps(105) == 25
    assert training.TrainConfig(steps=7).num_steps(105) == 7
    with pytest.raises(ValueError, match=r"optimizer must be one of.*'lamb'"):
        training.TrainConfig(optimizer="lamb")
    with pytest.raises(ValueError, match=r"steps must be a positive int, got 0"):
        training.TrainConfig(steps=0)
    with pytest.raises(ValueError, match=r"schedule must be one of"):
        training.TrainConfig(schedule="step")
    with pytest.raises(ValueError, match=r"epochs must be positive"):
        training.TrainConfig(epochs=0)
    with pytest.raises(ValueError, match=r"compute_dtype must be one of.*'float16'"):
        training.TrainConfig(compute_dtype="float16")
    with pytest.raises(ValueError, match=r"clip_grad_norm must be positive"):
        training.TrainConfig(clip_grad_norm=0.0)
    with pytest.raises(ValueError, match=r"max_consecutive_skips must be a positive"):
        training.TrainConfig(max_consecutive_skips=0)
    with pytest.raises(ValueError, match=r"num_devices must be a non-negative"):
        training.TrainConfig(num_devices=-1)


def test_train_rejects_bad_data():
    model = binary_classifier()
    inputs, labels = xor_data(repeats=1)
    config = training.TrainConfig(steps=1, batch_size=32)
    with pytest.raises(ValueError, match=r"batch_size=32 exceeds the 16 training"):
        training.train(model, (inputs, labels), config, progress=False)
    with pytest.raises(ValueError, match=r"num_examples = len\(labels\) = 15"):
        training.train(model, (inputs, labels[:15]), config, progress=False)
    with pytest.raises(ValueError, match=r"labels must be integers"):
        training.train(model, (inputs, labels * 1.0), config, progress=False)
    available = len(jax.devices())
    with pytest.raises(ValueError, match=rf"the {available} available devices, got"):
        training.train(
            model,
            (inputs, labels),
            training.TrainConfig(steps=1, batch_size=16, num_devices=available + 1),
            progress=False,
        )
    with pytest.raises(ValueError, match=r"checkpoint_every=5 needs a workdir"):
        training.train(
            model,
            (inputs, labels),
            training.TrainConfig(steps=1, batch_size=16, checkpoint_every=5),
            progress=False,
        )
