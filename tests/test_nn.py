import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import special, stats

import jaxconvac as jc
from jaxconvac import nn

TREES = {
    "shallow": jc.ModeTree.shallow(4),
    "binary": jc.ModeTree.balanced(4),
    "square": jc.ModeTree.image(4, 4, "square"),
    "mirror": jc.ModeTree.image(4, 4, "mirror"),
}
SHARING = ("none", "per_tap", "full")


@pytest.fixture(autouse=True)
def float64():
    # Float64 throughout, and the same small sizes for every tree, so that the
    # eager kernels compiled for one test serve the next ones.
    with jax.enable_x64(True):
        yield


def numpy_initializer(seed):
    """Standard normal weights from NumPy: no JAX random kernels to compile."""
    generator = np.random.default_rng(seed)

    def initializer(key, shape, dtype):
        del key
        return jnp.asarray(generator.normal(size=shape), dtype)

    return initializer


def small_convac(tree, *, space, sharing="full", normalize=True, seed=0, **kwargs):
    kwargs = {"dtype": jnp.float64, "initializer": numpy_initializer(seed), **kwargs}
    return nn.ConvAC(
        tree,
        num_descriptors=2,
        widths=(3,) * tree.depth,
        num_outputs=2,
        sharing=sharing,
        space=space,
        normalize=normalize,
        rngs=nnx.Rngs(seed),
        **kwargs,
    )


def contract_linear(tensor, features):
    """``h_y = Σ_d A[y, d_0 … d_{N-1}] Π_i F[i, d_i]``, one example."""
    result = tensor
    for row in features:
        result = np.tensordot(result, row, axes=([1], [0]))
    return result


def contract_log(log_tensor, log_features):
    """The same in log space: ``log Σ_d exp(log A[y, d] + Σ_i log F[i, d_i])``."""
    result = log_tensor
    for row in log_features:
        result = special.logsumexp(
            result + row.reshape(1, -1, *[1] * (result.ndim - 2)), axis=1
        )
    return result


def gaussian_features(tree, *, log, seed=1):
    layer = nn.Gaussian(2, 1, log=log, dtype=jnp.float64, rngs=nnx.Rngs(seed))
    inputs = np.random.default_rng(seed).normal(size=(3, tree.num_modes, 1))
    return np.asarray(layer(inputs))


@pytest.mark.parametrize("sharing", SHARING)
@pytest.mark.parametrize("tree_name", TREES)
def test_log_outputs_match_coefficient_tensor(tree_name, sharing):
    tree = TREES[tree_name]
    model = small_convac(tree, space="log", sharing=sharing)
    log_features = gaussian_features(tree, log=True)

    params = model.decomposition_params()
    for weights in params:  # every convolution is a mixture of its inputs
        np.testing.assert_allclose(np.exp(weights).sum(axis=-1), 1.0, rtol=1e-12)
    log_tensor = np.asarray(jc.coefficient_tensor(params, tree, space="log"))
    expected = [contract_log(log_tensor, f) for f in log_features]
    np.testing.assert_allclose(model(log_features), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("sharing", SHARING)
@pytest.mark.parametrize("tree_name", TREES)
def test_linear_outputs_match_coefficient_tensor(tree_name, sharing, normalize):
    tree = TREES[tree_name]
    model = small_convac(tree, space="linear", sharing=sharing, normalize=normalize)
    features = gaussian_features(tree, log=False)

    tensor = np.asarray(jc.coefficient_tensor(model.decomposition_params(), tree))
    expected = [contract_linear(tensor, f) for f in features]
    np.testing.assert_allclose(model(features), expected, rtol=1e-10, atol=1e-14)
    if normalize:  # a mixture: non-negative entries that sum to one per class
        assert np.all(tensor >= 0)
        np.testing.assert_allclose(tensor.sum(axis=tuple(range(1, tensor.ndim))), 1.0)


@pytest.mark.parametrize("sharing", SHARING)
@pytest.mark.parametrize("tree_name", TREES)
def test_indicator_inputs_read_tensor_entries(tree_name, sharing):
    # Log one-hot features are 0 / -inf; the score is then log A[y, x_0 … x_{N-1}].
    tree = TREES[tree_name]
    model = small_convac(tree, space="log", sharing=sharing)
    classifier = nn.Classifier(nn.Indicator(2, dtype=jnp.float64), model)
    values = np.random.default_rng(3).integers(0, 2, (5, tree.num_modes))

    log_tensor = np.asarray(
        jc.coefficient_tensor(model.decomposition_params(), tree, space="log")
    )
    expected = np.stack([log_tensor[(slice(None), *v)] for v in values])
    scores = classifier(values)
    assert np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores, expected, rtol=1e-10)


@pytest.mark.parametrize("tree_name", ["binary", "mirror"])
def test_normalized_log_and_linear_modules_agree(tree_name):
    tree = TREES[tree_name]
    log_model = small_convac(tree, space="log", sharing="per_tap", seed=4)
    linear_model = small_convac(tree, space="linear", sharing="per_tap", seed=4)
    features = gaussian_features(tree, log=False)

    np.testing.assert_allclose(
        log_model(np.log(features)), np.log(linear_model(features)), rtol=1e-10
    )


def test_layout_matches_init_decomposition():
    tree = TREES["square"]
    model = small_convac(tree, space="linear", sharing="per_tap", normalize=False)
    reference = jc.init_decomposition(
        nnx.Rngs(0).params(),
        tree,
        num_descriptors=2,
        widths=(3, 3),
        num_outputs=2,
        sharing="per_tap",
        dtype=jnp.float64,
        initializer=numpy_initializer(0),
    )
    params = model.decomposition_params()
    assert [w.shape for w in params] == [(4, 3, 2), (4, 3, 3), (1, 2, 3)]
    for weights, expected in zip(params, reference, strict=True):
        np.testing.assert_array_equal(weights, expected)
    assert model.widths == (3, 3)
    assert (model.num_descriptors, model.num_outputs) == (2, 2)
    assert nn.count_params(model) == 4 * 3 * 2 + 4 * 3 * 3 + 2 * 3


def test_jit_and_finite_gradients_with_minus_inf_features():
    tree = TREES["binary"]
    classifier = nn.Classifier(
        nn.Indicator(2, dtype=jnp.float64), small_convac(tree, space="log")
    )
    values = np.random.default_rng(1).integers(0, 2, (6, 4))
    graphdef, params = nnx.split(classifier)

    @jax.jit
    def loss_and_grad(params):
        def loss(p):
            scores = nnx.merge(graphdef, p)(values)
            return -jnp.mean(jax.nn.log_softmax(scores)[:, 0]), scores

        return jax.value_and_grad(loss, has_aux=True)(params)

    (_, scores), grads = loss_and_grad(params)
    np.testing.assert_allclose(scores, classifier(values), rtol=1e-12)
    leaves = jax.tree.leaves(grads)
    assert len(leaves) == 3
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert all(float(jnp.abs(g).max()) > 0 for g in leaves)


# -- representations ---------------------------------------------------------


@pytest.mark.parametrize("num_features", [1, 3])
def test_gaussian_matches_scipy(num_features):
    layer = nn.Gaussian(
        5,
        num_features,
        min_scale=0.1,
        log_scales_init=nnx.initializers.normal(0.5),
        dtype=jnp.float64,
        rngs=nnx.Rngs(0),
    )
    inputs = np.random.default_rng(1).normal(size=(2, 7, num_features))
    means = np.asarray(layer.means[...])
    scales = 0.1 + np.exp(np.asarray(layer.log_scales[...]))
    np.testing.assert_allclose(layer.scales(), scales, rtol=1e-12)

    expected = np.zeros((2, 7, 5))
    for d in range(5):
        expected[:, :, d] = stats.norm.logpdf(inputs, means[d], scales[d]).sum(-1)
    np.testing.assert_allclose(layer(inputs), expected, rtol=1e-10)

    linear = nn.Gaussian(
        5, num_features, log=False, min_scale=0.1, dtype=jnp.float64, rngs=nnx.Rngs(0)
    )
    nnx.update(linear, nnx.state(layer))
    np.testing.assert_allclose(linear(inputs), np.exp(expected), rtol=1e-10)

    graphdef, params = nnx.split(layer)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(nnx.merge(graphdef, p)(inputs))))(params)
    assert float(jnp.abs(grads["means"][...]).min()) > 0
    assert float(jnp.abs(grads["log_scales"][...]).min()) > 0


def test_gaussian_is_a_normalised_density():
    layer = nn.Gaussian(3, log=False, dtype=jnp.float64, rngs=nnx.Rngs(0))
    grid = np.linspace(-12.0, 12.0, 4001)
    densities = np.asarray(layer(grid.reshape(1, -1, 1)))
    integral = densities[0].sum(axis=0) * (grid[1] - grid[0])
    np.testing.assert_allclose(integral, 1.0, rtol=1e-8)
    assert layer.num_descriptors == 3 and layer.num_features == 1


def test_gaussian_marginalizes_nan_elements():
    layer = nn.Gaussian(3, 2, marginalize_nan=True, dtype=jnp.float64, rngs=nnx.Rngs(0))
    plain = nn.Gaussian(3, 2, dtype=jnp.float64, rngs=nnx.Rngs(0))
    inputs = np.random.default_rng(2).normal(size=(2, 4, 2))
    inputs[0, 1, 0] = np.nan
    inputs[1, 3, :] = np.nan

    out = np.asarray(layer(inputs))
    np.testing.assert_array_equal(out[0, 1], 0.0)
    np.testing.assert_array_equal(out[1, 3], 0.0)
    keep = ~np.isnan(inputs).any(-1)
    np.testing.assert_allclose(out[keep], np.asarray(plain(inputs))[keep], rtol=1e-12)
    assert np.isnan(np.asarray(plain(inputs))[0, 1]).all()

    graphdef, params = nnx.split(layer)
    grads = jax.grad(lambda p: jnp.sum(nnx.merge(graphdef, p)(inputs)))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_all_missing_elements_give_log_one():
    # Normalised mixtures over normalised densities: marginalising every
    # element integrates the model to 1, for every class.
    tree = TREES["square"]
    classifier = nn.Classifier(
        nn.Gaussian(2, marginalize_nan=True, dtype=jnp.float64, rngs=nnx.Rngs(0)),
        small_convac(tree, space="log", sharing="none"),
    )
    inputs = np.full((2, 16, 1), np.nan)
    inputs[1, :5] = 0.3
    scores = np.asarray(classifier(inputs))
    np.testing.assert_allclose(scores[0], 0.0, atol=1e-12)
    assert np.all(scores[1] < 0)


@pytest.mark.parametrize("log", [False, True])
def test_indicator_is_one_hot(log):
    values = np.array([[0, 2, 1, 2], [1, 1, 0, 0]])
    out = np.asarray(nn.Indicator(3, log=log)(values))
    expected = np.eye(3)[values]
    if log:
        with np.errstate(divide="ignore"):
            expected = np.log(expected)
    assert out.shape == (2, 4, 3)
    np.testing.assert_array_equal(out, expected)


# -- bad inputs ------------------------------------------------------------------


def test_wrong_feature_shape_raises():
    model = small_convac(TREES["binary"], space="log")
    with pytest.raises(ValueError, match=r"\(batch, 4, 2\).*got \(2, 8, 2\)"):
        model(jnp.zeros((2, 8, 2)))
    with pytest.raises(ValueError, match=r"\(batch, 4, 2\).*got \(2, 4, 3\)"):
        model(jnp.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match=r"num_descriptors.*got \(4, 2\)"):
        model(jnp.zeros((4, 2)))


@pytest.mark.parametrize(
    ("widths", "error", "match"),
    [
        ((3,), ValueError, r"widths must have one entry per level.*got 1"),
        ((3, 0), ValueError, r"widths\[1\] must be positive, got 0"),
        ((3, 2.5), TypeError, r"widths\[1\] must be an int"),
    ],
)
def test_bad_widths_raise(widths, error, match):
    with pytest.raises(error, match=match):
        nn.ConvAC(
            jc.ModeTree.balanced(4),
            num_descriptors=2,
            widths=widths,
            num_outputs=2,
            rngs=nnx.Rngs(0),
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sharing": "conv"}, ValueError, r"sharing must be one of.*'conv'"),
        ({"space": "exp"}, ValueError, r"space must be one of.*'exp'"),
        ({"num_outputs": 0}, ValueError, r"num_outputs must be a positive int"),
        ({"tree": (0, 1)}, TypeError, r"tree must be a ModeTree, got tuple"),
    ],
)
def test_bad_settings_raise(kwargs, error, match):
    settings = {
        "tree": jc.ModeTree.balanced(4),
        "num_descriptors": 2,
        "widths": (2, 2),
        "num_outputs": 2,
        **kwargs,
    }
    tree = settings.pop("tree")
    with pytest.raises(error, match=match):
        nn.ConvAC(tree, rngs=nnx.Rngs(0), **settings)


def test_representation_errors():
    with pytest.raises(TypeError, match=r"integers in \[0, 3\).*float32"):
        nn.Indicator(3)(jnp.zeros((2, 4), jnp.float32))
    with pytest.raises(ValueError, match=r"\(batch, num_modes\), got \(2, 4, 1\)"):
        nn.Indicator(3)(jnp.zeros((2, 4, 1), jnp.int32))
    with pytest.raises(ValueError, match=r"num_values must be a positive int"):
        nn.Indicator(0)
    gaussian = nn.Gaussian(3, 2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"num_features=2, got \(2, 4, 1\)"):
        gaussian(jnp.zeros((2, 4, 1)))
    with pytest.raises(ValueError, match=r"x\[\.\.\., None\]"):
        nn.Gaussian(3, rngs=nnx.Rngs(0))(jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"min_scale must be non-negative"):
        nn.Gaussian(3, min_scale=-1.0, rngs=nnx.Rngs(0))


def test_classifier_checks_compatibility():
    convac = small_convac(TREES["binary"], space="log")
    with pytest.raises(ValueError, match=r"log=False.*space='log'"):
        nn.Classifier(nn.Indicator(2, log=False), convac)
    with pytest.raises(ValueError, match=r"gives 4 descriptors.*num_descriptors=2"):
        nn.Classifier(nn.Indicator(4), convac)
    with pytest.raises(ValueError, match=r"gives 3 descriptors"):
        nn.Classifier(nn.Gaussian(3, rngs=nnx.Rngs(0)), convac)
    classifier = nn.Classifier(nn.Indicator(2), convac)
    assert classifier.convac is convac


@pytest.mark.parametrize("space", ["log", "linear"])
def test_convac_integer_inputs_equal_indicator_features(space):
    tree = jc.ModeTree.image(4, 4)
    model = nn.ConvAC(
        tree,
        num_descriptors=3,
        widths=(4, 5),
        num_outputs=2,
        sharing="per_tap",
        space=space,
        rngs=nnx.Rngs(0),
    )
    values = jax.random.randint(jax.random.key(1), (6, 16), 0, 3)
    one_hot = jax.nn.one_hot(values, 3)
    features = jnp.log(one_hot) if space == "log" else one_hot
    np.testing.assert_allclose(model(values), model(features), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="features must have shape"):
        model(values[:, :8])


# -- categorical descriptors (generative ConvACs) ----------------------------------


@pytest.mark.parametrize("log", [False, True])
def test_categorical_is_a_normalised_softmax_table(log):
    from jaxconvac.nn.representations import Categorical

    layer = Categorical(3, 4, log=log, dtype=jnp.float64, rngs=nnx.Rngs(0))
    values = np.array([[0, 3, 1], [2, 2, 0]])
    table = special.softmax(np.asarray(layer.logits[...]), axis=1)  # (M, K)
    expected = table.T[values]  # F[b, i, d] = π_d[x_{b,i}]
    out = np.asarray(layer(values))
    np.testing.assert_allclose(np.exp(out) if log else out, expected, rtol=1e-12)
    np.testing.assert_allclose(table.sum(axis=1), 1.0, rtol=1e-12)
    assert (layer.num_descriptors, layer.num_values) == (3, 4)

    with pytest.raises(
        ValueError, match=r"inputs must lie in \[0, 4\); entry \(1, 0\)"
    ):
        layer(np.array([[0, 1, 2], [4, 0, 0]]))
    with pytest.raises(TypeError, match=r"integers in \[0, 4\).*float"):
        layer(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"num_values must be a positive int"):
        Categorical(3, 0, rngs=nnx.Rngs(0))
