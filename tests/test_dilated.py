import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from references import REFERENCE_G

import jaxconvac as jc
from jaxconvac.mixed import MixedTrees, mixed_evaluate
from jaxconvac.mode_trees import swapped_dilations
from jaxconvac.nn.dilated import (
    DilatedConvNet,
    LastStepClassifier,
    MixedDilatedConvNet,
)
from jaxconvac.nn.representations import Indicator


def numpy_normal(seed):
    """A standard-normal initializer that draws with NumPy."""
    # jax.random compiles once per shape, which costs more than these tests.
    generator = np.random.default_rng(seed)

    def initializer(key, shape, dtype):
        del key
        return jnp.asarray(generator.standard_normal(shape), dtype)

    return initializer


def _normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def _call(model, inputs):
    return model(inputs)


call = nnx.jit(_call)


def reference_network(params, dilations, features, g):
    """The causal dilated network as a plain loop over time (NumPy, SPEC §4)."""
    values = np.asarray(features, np.float64)  # (time, channels)
    for weights, d in zip(params[:-1], dilations, strict=True):
        weights = np.asarray(weights)
        out = []
        for t in range(values.shape[0]):
            earlier = values[t - d] if t >= d else np.zeros(values.shape[1])
            out.append(g(weights[0] @ earlier, weights[1] @ values[t]))
        values = np.stack(out)
    return values @ np.asarray(params[-1][0]).T


@pytest.mark.parametrize(
    ("g", "dilations"),
    [
        ("product", (1, 2, 4)),
        ("relu_of_sum", (4, 2, 1)),
        ("relu_of_sum", (2, 1, 4)),
        ("product", (1, 4, 2)),
    ],
)
def test_every_step_matches_the_loop_and_the_last_step_the_tree(g, dilations):
    with jax.enable_x64(True):
        net = DilatedConvNet(
            dilations,
            num_descriptors=3,
            widths=(4, 3, 2),
            num_outputs=2,
            g=g,
            dtype=jnp.float64,
            initializer=numpy_normal(0),
            rngs=nnx.Rngs(0),
        )
        features = _normal(1, (2, 11, 3))
        out = call(net, features)
        params = net.decomposition_params()
        reference = reference_network(params, dilations, features[1], REFERENCE_G[g])
        np.testing.assert_allclose(out[1], reference, rtol=1e-10, atol=1e-12)
        assert net.tree == jc.ModeTree.dilated(8, dilations)
        windows = np.stack([features[0, t - 7 : t + 1] for t in range(7, 11)])
        trees = jax.jit(jax.vmap(lambda f: jc.evaluate(params, net.tree, f, g=g)))
        # Full receptive fields (t >= 7): the tree decomposition of one step.
        np.testing.assert_allclose(out[0, 7:], trees(windows), rtol=1e-10)


@pytest.mark.parametrize("g", ["product", "relu_of_sum"])
def test_mixed_network_last_step_is_the_mixed_decomposition(g):
    with jax.enable_x64(True):
        net = MixedDilatedConvNet(
            (1, 2, 4, 8),
            swapped_dilations(16, 2),
            mix_layers=(2,),
            num_descriptors=2,
            widths=(2, 4, 2, 2),
            num_outputs=3,
            g=g,
            dtype=jnp.float64,
            initializer=numpy_normal(2),
            rngs=nnx.Rngs(2),
        )
        mixed = net.mixed_trees()
        assert mixed.mixture_nodes == net.tree.shared_nodes(net.tree_bar)
        features = np.random.default_rng(3).standard_normal((2, 18, 2))
        out = call(net, features)
        params = net.decomposition_params()
        steps = [(b, t) for b in range(2) for t in (15, 17)]
        windows = np.stack([features[b, t - 15 : t + 1] for b, t in steps])
        scores = jax.jit(jax.vmap(lambda f: mixed_evaluate(params, mixed, f, g=g)))(
            windows
        )
        for (b, t), score in zip(steps, scores, strict=True):
            np.testing.assert_allclose(out[b, t], score, rtol=1e-10)


def test_unmixed_network_is_the_sum_of_two_networks():
    with jax.enable_x64(True):
        kwargs = dict(
            num_descriptors=2, widths=(2, 2, 2), num_outputs=1, dtype=jnp.float64
        )
        net = MixedDilatedConvNet(
            (1, 2, 4),
            (4, 2, 1),
            mix_layers=(),
            initializer=numpy_normal(0),
            rngs=nnx.Rngs(0),
            **kwargs,
        )
        # Zero weights, overwritten with the mixed network's.
        zeros = jax.nn.initializers.zeros
        first = DilatedConvNet((1, 2, 4), initializer=zeros, rngs=nnx.Rngs(1), **kwargs)
        second = DilatedConvNet(
            (4, 2, 1), initializer=zeros, rngs=nnx.Rngs(1), **kwargs
        )
        for mine, theirs in ((first, net.weights), (second, net.weights_bar)):
            for w, v in zip(mine.weights, theirs, strict=True):
                w.set_value(v[...])
        features = _normal(4, (3, 9, 2))
        np.testing.assert_allclose(
            call(net, features),
            call(first, features) + call(second, features),
            rtol=1e-12,
        )
        assert net.mixed_trees() == MixedTrees(net.tree, net.tree_bar)


def test_classifier_reads_the_last_step():
    net = DilatedConvNet(
        (1, 2),
        num_descriptors=3,
        widths=(4, 4),
        num_outputs=5,
        initializer=numpy_normal(0),
        rngs=nnx.Rngs(0),
    )
    model = LastStepClassifier(Indicator(3, log=False), net)
    values = np.array([[0, 1, 2, 1, 0], [2, 2, 1, 0, 1]])
    one_hot = np.eye(3, dtype=np.float32)[values]
    np.testing.assert_allclose(
        call(model, values), call(net, one_hot)[:, -1], rtol=1e-6
    )
    zeros = jax.nn.initializers.zeros
    with pytest.raises(TypeError, match="DilatedConvNet"):
        LastStepClassifier(
            Indicator(3, log=False),
            nnx.Linear(2, 2, kernel_init=zeros, rngs=nnx.Rngs(0)),
        )


SIZES = dict(num_descriptors=2, widths=(2, 2, 2), num_outputs=1)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (((1, 3),), {}, "powers of two"),
        (((1, 2, 2),), {}, "powers of two"),
        (((),), {}, "at least one layer"),
        (((1, 2, 4), (4, 2, 1)), {"mix_layers": (1,)}, "receptive fields differ"),
        (((1, 2, 4), (2, 1, 4)), {"mix_layers": (3,)}, r"hidden layers in \[1, 2\]"),
        (((1, 2, 4), (2, 1, 4)), {"mix_layers": (2, 2)}, "twice"),
        (((1, 2, 4), (2, 1)), {"mix_layers": ()}, "same number of layers"),
        (
            ((1, 2, 4), (2, 1, 4)),
            {"mix_layers": (2,), "widths": (4, 3, 4)},
            "must be even",
        ),
    ],
)
def test_bad_input(args, kwargs, match):
    cls = MixedDilatedConvNet if len(args) == 2 else DilatedConvNet
    with pytest.raises(ValueError, match=match):
        cls(*args, **{**SIZES, "rngs": nnx.Rngs(0), **kwargs})


def test_bad_features():
    net = DilatedConvNet(
        (1, 2),
        num_descriptors=3,
        widths=(2, 2),
        num_outputs=1,
        initializer=numpy_normal(0),
        rngs=nnx.Rngs(0),
    )
    with pytest.raises(ValueError, match="batch, time, num_descriptors"):
        net(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="num_descriptors=3"):
        net(jnp.ones((1, 4, 2)))
