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


def test_non_finite_loss_names_the_step(tmp_path):
    model = binary_classifier()
    inputs, labels = xor_data()
    before = [np.asarray(w[...]) for w in model.convac.weights]
    config = training.TrainConfig(
        steps=10, batch_size=16, learning_rate=float("inf"), log_every=1
    )

    with pytest.raises(training.NonFiniteLossError, match=r"at step 2\b") as info:
        training.train(
            model, (inputs, labels), config, workdir=tmp_path, progress=False
        )
    assert isinstance(info.value, FloatingPointError)
    assert info.value.step == 2 and not np.isfinite(info.value.loss)
    # The first (finite) step was logged; the model kept its parameters.
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
    for weights, old in zip(model.convac.weights, before, strict=True):
        np.testing.assert_array_equal(weights[...], old)


def test_nan_in_a_batch_stops_at_the_first_step():
    # The augmentation puts NaN into every training batch (the evaluation data
    # would stay clean).
    model = binary_classifier(log_values=False)
    inputs = jnp.zeros((32, 4, 1))
    labels = jnp.zeros(32, jnp.int32)
    config = training.TrainConfig(steps=3, batch_size=8, log_every=3)

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
