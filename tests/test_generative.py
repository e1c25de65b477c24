import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from references import node_weight
from scipy import special, stats

import jaxconvac as jc
from jaxconvac import generative, nn
from jaxconvac.nn.generative import GenerativeClassifier, joint_loss
from jaxconvac.nn.representations import Categorical

TREES = {
    "shallow": jc.ModeTree.shallow(4),
    "binary": jc.ModeTree.balanced(4),
    "ternary": jc.ModeTree.balanced(9, 3),
    "mirror": jc.ModeTree.image(4, 4, "mirror"),
}
SHARING = ("none", "per_tap", "full")
NUM_VALUES = 2  # K, the values of one element in the discrete cases


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def numpy_initializer(seed, scale=1.0):
    generator = np.random.default_rng(seed)

    def initializer(key, shape, dtype):
        del key
        return jnp.asarray(scale * generator.normal(size=shape), dtype)

    return initializer


def make_model(
    tree, *, sharing="per_tap", representation="categorical", seed=0, scale=1.5
):
    """A TMM with random weights, descriptors and a random (non-uniform) prior."""
    num_descriptors = 3
    if representation == "categorical":
        layer = Categorical(
            num_descriptors,
            NUM_VALUES,
            logits_init=numpy_initializer(seed + 100, 2.0),
            dtype=jnp.float64,
            rngs=nnx.Rngs(seed),
        )
    elif representation == "indicator":
        num_descriptors = NUM_VALUES
        layer = nn.Indicator(NUM_VALUES, dtype=jnp.float64)
    else:
        layer = nn.Gaussian(
            num_descriptors,
            1,
            means_init=numpy_initializer(seed + 100),
            log_scales_init=numpy_initializer(seed + 200, 0.3),
            dtype=jnp.float64,
            rngs=nnx.Rngs(seed),
        )
    convac = nn.ConvAC(
        tree,
        num_descriptors=num_descriptors,
        widths=(3,) * tree.depth,
        num_outputs=2,
        sharing=sharing,
        initializer=numpy_initializer(seed, scale),
        dtype=jnp.float64,
        rngs=nnx.Rngs(seed),
    )
    model = GenerativeClassifier(layer, convac)
    logits = np.random.default_rng(seed + 300).normal(size=2)
    model.prior_logits[...] = jnp.asarray(logits)
    return model


@nnx.jit
def call(model, inputs, mask=None):
    """``model(inputs, mask)`` compiled once per model structure and shape."""
    return model(inputs, mask)


def every_input(num_modes):
    return np.array(list(itertools.product(range(NUM_VALUES), repeat=num_modes)))


def reference_joint(model, values):
    """``p(x, y)`` node by node over explicit leaf labels, in float64 NumPy."""
    tree = model.convac.tree
    params = [np.exp(np.asarray(w)) for w in model.convac.decomposition_params()]
    features = np.exp(np.asarray(model.representation(values[None]))[0])
    nodes = [
        node_weight(params, tree, 0, j) @ features[label[0]]
        for j, label in enumerate(tree.nodes(0))
    ]
    for level in range(1, tree.depth + 1):
        window = tree.windows[level - 1]
        nodes = [
            node_weight(params, tree, level, j)
            @ np.prod(nodes[j * window : (j + 1) * window], axis=0)
            for j in range(tree.num_nodes(level))
        ]
    return np.exp(np.asarray(model.log_prior())) * nodes[0]


# -- normalisation -----------------------------------------------------------


CASES = [("shallow", "none"), ("binary", "per_tap"), ("ternary", "full")]


@pytest.mark.parametrize(("tree_name", "sharing"), CASES[1:])
def test_total_probability_is_one(tree_name, sharing):
    tree = TREES[tree_name]
    model = make_model(tree, sharing=sharing, seed=len(tree_name))
    values = every_input(tree.num_modes)

    scores = np.asarray(call(model, values))  # (K^N, Y): log p(x, y) on every input
    assert special.logsumexp(scores) == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(
        special.logsumexp(scores, axis=0), model.log_prior(), atol=1e-12
    )
    some = values[:: max(1, len(values) // 12)]
    expected = np.stack([reference_joint(model, v) for v in some])
    np.testing.assert_allclose(np.exp(scores[:: max(1, len(values) // 12)]), expected)


def test_total_probability_is_one_on_an_image_tree_and_indicators():
    # 2^16 inputs of a 4×4 mirror-pooling tree, one-hot descriptors.
    tree = TREES["mirror"]
    model = make_model(tree, sharing="none", representation="indicator")
    scores = np.asarray(call(model, every_input(16)))
    assert special.logsumexp(scores) == pytest.approx(0.0, abs=1e-12)


def test_gaussian_model_integrates_to_one():
    tree = jc.ModeTree.balanced(2)
    model = make_model(tree, sharing="none", representation="gaussian", seed=4)
    # Step 0.1: the rectangle rule on smooth, fast-decaying densities is exact
    # far beyond 1e-8 already (the error decays like exp(-2 π² σ² / step²)).
    grid = np.linspace(-12.0, 12.0, 241)
    step = grid[1] - grid[0]
    pairs = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2, 1)
    joint = np.exp(np.asarray(call(model, pairs)))
    np.testing.assert_allclose(joint.sum() * step**2, 1.0, rtol=1e-8)


def test_pure_log_joint_matches_module_under_jit_and_vmap():
    tree = TREES["binary"]
    model = make_model(tree, sharing="none")
    values = every_input(4)
    mask = np.random.default_rng(0).random((len(values), 4)) < 0.6
    log_features = model.representation(values)
    params = model.convac.decomposition_params()

    def one(features, observed):
        return generative.log_joint(
            params, tree, features, log_prior=model.log_prior(), mask=observed
        )

    batched = jax.jit(jax.vmap(one))(log_features, mask)
    np.testing.assert_allclose(batched, call(model, values, mask), rtol=1e-12)
    np.testing.assert_allclose(one(log_features[3], mask[3]), batched[3], rtol=1e-12)


# -- marginalisation ---------------------------------------------------------


@pytest.mark.parametrize(("tree_name", "sharing"), [*CASES, ("ternary", "none")])
def test_marginal_equals_brute_force_sum(tree_name, sharing):
    tree = TREES[tree_name]
    n = tree.num_modes
    model = make_model(tree, sharing=sharing, seed=7)
    table = np.asarray(call(model, every_input(n))).reshape(*(NUM_VALUES,) * n, 2)
    generator = np.random.default_rng(1)
    values = generator.integers(0, NUM_VALUES, (16, n))
    mask = generator.random((16, n)) < 0.5
    mask[0], mask[1] = True, False

    expected = []
    for x, observed in zip(values, mask, strict=True):
        index = tuple(x[i] if observed[i] else slice(None) for i in range(n))
        kept = table[index].reshape(-1, 2)  # every completion of the missing ones
        expected.append(special.logsumexp(kept, axis=0))
    scores = call(model, values, mask)
    np.testing.assert_allclose(scores, expected, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(scores[1], model.log_prior(), atol=1e-12)


def test_gaussian_marginal_equals_numerical_integral():
    tree = jc.ModeTree.balanced(2)
    model = make_model(tree, sharing="none", representation="gaussian", seed=5)
    grid = np.linspace(-12.0, 12.0, 241)
    x0 = 0.37
    pairs = np.stack([np.full_like(grid, x0), grid], -1)[..., None]
    # One batch: the grid (complete), then x0 with the second element missing.
    inputs = np.concatenate([pairs, [[[x0], [123.0]]]])
    mask = np.ones((len(inputs), 2), bool)
    mask[-1, 1] = False
    scores = np.asarray(call(model, inputs, mask))
    integral = np.exp(scores[:-1]).sum(axis=0) * (grid[1] - grid[0])
    np.testing.assert_allclose(np.exp(scores[-1]), integral, rtol=1e-9)


def test_everything_missing_gives_the_class_prior():
    tree = TREES["binary"]
    model = make_model(tree, sharing="per_tap", representation="gaussian")
    inputs = np.random.default_rng(0).normal(size=(3, 4, 1))
    nothing = np.zeros((3, 4), bool)
    np.testing.assert_allclose(
        model(inputs, nothing), np.tile(model.log_prior(), (3, 1)), atol=1e-12
    )
    np.testing.assert_allclose(
        np.exp(model.log_posterior(inputs, nothing)),
        np.tile(jax.nn.softmax(model.prior_logits[...]), (3, 1)),
        atol=1e-12,
    )
    np.testing.assert_allclose(model.log_likelihood(inputs, nothing), 0.0, atol=1e-12)


# -- NaN and masks: documented behaviour ----------------------------------------


def test_nan_is_an_error_unless_masked_or_asked():
    tree = TREES["binary"]
    model = make_model(tree, representation="gaussian")
    inputs = np.random.default_rng(2).normal(size=(3, 4, 1))
    inputs[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN at example 1, position 2.*mask="):
        model(inputs)

    mask = np.ones((3, 4), bool)
    mask[1, 2] = False
    filled = np.nan_to_num(inputs, nan=5.0)
    masked = model(inputs, mask)
    np.testing.assert_allclose(masked, model(filled, mask), rtol=1e-12)
    assert np.all(np.isfinite(masked))
    # Under jit nothing can raise: the example's scores are NaN, the others not.
    scores = np.asarray(call(model, inputs))
    assert np.isnan(scores[1]).all() and np.isfinite(scores[[0, 2]]).all()

    asked = GenerativeClassifier(
        model.representation, model.convac, nan_as_missing=True
    )
    asked.prior_logits[...] = model.prior_logits[...]
    np.testing.assert_allclose(asked(inputs), masked, rtol=1e-12)
    np.testing.assert_allclose(call(asked, inputs), masked, rtol=1e-12)


def test_gradients_stay_finite_with_nan_marked_missing():
    tree = TREES["binary"]
    base = make_model(tree, representation="gaussian")
    model = GenerativeClassifier(base.representation, base.convac, nan_as_missing=True)
    inputs = np.random.default_rng(3).normal(size=(4, 4, 1))
    inputs[0, :, 0] = np.nan
    inputs[2, 1, 0] = np.nan
    graphdef, params = nnx.split(model)
    loss = joint_loss(0.5)

    @jax.jit
    def grad(p):
        return jax.grad(lambda q: loss(nnx.merge(graphdef, q), inputs, labels)[0])(p)

    labels = jnp.array([0, 1, 1, 0])
    leaves = jax.tree.leaves(grad(params))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert all(float(jnp.abs(g).max()) > 0 for g in leaves)


@pytest.mark.parametrize(
    ("mask", "error", "match"),
    [
        (np.ones((3, 4), np.int32), TypeError, r"mask must be boolean.*int32"),
        (np.ones((3, 5), bool), ValueError, r"mask must have shape \(3, 4\).*\(3, 5\)"),
        (np.ones((4,), bool), ValueError, r"mask must have shape \(3, 4\).*\(4,\)"),
    ],
)
def test_bad_masks_raise(mask, error, match):
    model = make_model(TREES["binary"])
    with pytest.raises(error, match=match):
        model(np.zeros((3, 4), np.int32), mask)


def test_pure_function_errors():
    tree = TREES["binary"]
    model = make_model(tree)
    raw = tuple(w[...] for w in model.convac.weights)
    features = jnp.zeros((4, 3))
    with pytest.raises(ValueError, match=r"log_weights\[0\] is not normalised"):
        generative.log_joint(raw, tree, features)
    params = generative.normalize_log_weights(raw)
    np.testing.assert_allclose(
        generative.log_joint(params, tree, features),
        model.convac(features[None])[0] - np.log(2),  # a uniform prior by default
    )
    with pytest.raises(TypeError, match=r"mask must be boolean"):
        generative.log_joint(params, tree, features, mask=jnp.ones(4))
    with pytest.raises(ValueError, match=r"mask must have shape \(4,\)"):
        generative.log_joint(params, tree, features, mask=jnp.ones(3, bool))
    with pytest.raises(TypeError, match=r"with a mask, log_features must be floating"):
        generative.log_joint(params, tree, jnp.zeros(4, int), mask=jnp.ones(4, bool))
    with pytest.raises(
        ValueError, match=r"log_prior must have shape \(num_outputs,\) = \(2,\)"
    ):
        generative.log_joint(params, tree, features, log_prior=jnp.zeros(3))
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 4\)"):
        generative.marginalize(jnp.zeros((2, 4, 3)), jnp.ones((4,), bool))
    with pytest.raises(ValueError, match=r"missing_rate must lie in \[0, 1\]"):
        generative.random_mask(jax.random.key(0), (2, 3), 1.5)
    with pytest.raises(ValueError, match=r"rectangle \(9, 2\) must fit"):
        generative.rectangle_mask(
            jax.random.key(0), 2, 8, 8, rect_height=9, rect_width=2
        )


def test_module_settings_are_checked():
    tree = TREES["binary"]

    def convac(**kwargs):
        return nn.ConvAC(
            tree,
            num_descriptors=3,
            widths=(2, 2),
            num_outputs=2,
            initializer=numpy_initializer(0),
            rngs=nnx.Rngs(0),
            **kwargs,
        )

    categorical = Categorical(3, 2, logits_init=numpy_initializer(1), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"space='log' and normalize=True"):
        GenerativeClassifier(categorical, convac(normalize=False))
    with pytest.raises(ValueError, match=r"space='linear'"):
        GenerativeClassifier(categorical, convac(space="linear"))
    with pytest.raises(ValueError, match=r"log=True"):
        GenerativeClassifier(
            Categorical(
                3, 2, log=False, logits_init=numpy_initializer(1), rngs=nnx.Rngs(0)
            ),
            convac(),
        )
    with pytest.raises(ValueError, match=r"gives 2 descriptors.*num_descriptors=3"):
        GenerativeClassifier(nn.Indicator(2), convac())
    with pytest.raises(TypeError, match=r"normalised density family.*AffineReLU"):
        GenerativeClassifier(nn.AffineReLU(1, 3, rngs=nnx.Rngs(0)), convac())
    model = GenerativeClassifier(categorical, convac(), learn_prior=False)
    assert model.prior_logits is None
    np.testing.assert_allclose(jnp.exp(model.log_prior()), [0.5, 0.5])
    with pytest.raises(ValueError, match=r"num_modes = 4"):
        model(np.zeros((2, 5), np.int32))
    with pytest.raises(ValueError, match=r"exactly one of labels and num_samples"):
        model.sample(jax.random.key(0))
    with pytest.raises(ValueError, match=r"labels must be integer classes"):
        model.sample(jax.random.key(0), jnp.zeros((2, 2), int))
    with pytest.raises(ValueError, match=r"generative_weight must be finite"):
        joint_loss(-1.0)


# -- masks -------------------------------------------------------------------


def test_mask_generators():
    iid = np.asarray(generative.random_mask(jax.random.key(0), (200, 64), 0.25))
    assert iid.dtype == bool and abs(1 - iid.mean() - 0.25) < 0.01
    rects = np.asarray(
        generative.rectangle_mask(
            jax.random.key(1), 50, 8, 8, rect_height=3, rect_width=5
        )
    ).reshape(50, 8, 8)
    for image in rects:
        rows, cols = np.nonzero(~image)
        assert len(rows) == 15
        assert rows.max() - rows.min() == 2 and cols.max() - cols.min() == 4
    tops = {int(np.nonzero(~image)[0].min()) for image in rects}
    assert tops == set(range(6))  # every placement occurs


# -- sampling ----------------------------------------------------------------


def test_sampled_components_follow_the_coefficient_tensor():
    sharing = "per_tap"
    tree = TREES["binary"]
    model = make_model(tree, sharing=sharing, seed=11, scale=3.0)
    params = model.convac.decomposition_params()
    tensor = np.exp(np.asarray(jc.coefficient_tensor(params, tree, space="log")))
    draws = 30000
    keys = jax.random.split(jax.random.key(0), draws)
    draw = jax.jit(
        jax.vmap(lambda key: generative.sample_components(key, params, tree, 1))
    )
    components = np.asarray(draw(keys))
    counts = np.bincount(np.ravel_multi_index(components.T, (3,) * 4), minlength=81)

    fits = stats.chisquare(counts, draws * tensor[1].ravel())
    assert fits.pvalue > 1e-3
    other = stats.chisquare(counts, draws * tensor[0].ravel())
    assert other.pvalue < 1e-10  # the test can tell the classes apart


def test_samples_follow_the_model():
    tree = TREES["binary"]
    model = make_model(tree, sharing="full", seed=3)
    log_table = np.asarray(model(every_input(4)))  # (16, Y)
    draws = 8000
    values, labels = model.sample(jax.random.key(1), num_samples=draws)
    cells = np.ravel_multi_index(np.asarray(values).T, (NUM_VALUES,) * 4)
    joint_cells = cells * 2 + np.asarray(labels)
    counts = np.bincount(joint_cells, minlength=32)
    fits = stats.chisquare(counts, draws * np.exp(log_table).ravel())
    assert fits.pvalue > 1e-3

    # Given labels: the same batch size reuses the compiled sampler.
    fixed, same = model.sample(jax.random.key(2), jnp.ones_like(labels))
    assert fixed.shape == (draws, 4) and fixed.dtype == jnp.int32
    np.testing.assert_array_equal(same, 1)


def test_gaussian_and_indicator_sampling():
    gaussian = nn.Gaussian(
        2,
        2,
        log_scales_init=numpy_initializer(0, 0.3),
        dtype=jnp.float64,
        rngs=nnx.Rngs(0),
    )
    components = jnp.tile(jnp.array([[0, 1, 1]]), (4000, 1))
    samples = np.asarray(gaussian.sample(jax.random.key(0), components))
    assert samples.shape == (4000, 3, 2)
    means, scales = np.asarray(gaussian.means[...]), np.asarray(gaussian.scales())
    for position, d in enumerate([0, 1, 1]):
        np.testing.assert_allclose(samples[:, position].mean(0), means[d], atol=0.08)
        np.testing.assert_allclose(samples[:, position].std(0), scales[d], rtol=0.05)
    indicator = nn.Indicator(3)
    np.testing.assert_array_equal(
        indicator.sample(jax.random.key(0), components[:2]), components[:2]
    )
    with pytest.raises(ValueError, match=r"components must lie in \[0, 2\)"):
        gaussian.sample(jax.random.key(0), jnp.array([[0, 2]]))


# -- training ----------------------------------------------------------------


def test_joint_loss_value():
    model = make_model(TREES["binary"], seed=2)
    values = every_input(4)[:6]
    labels = jnp.array([0, 1, 1, 0, 1, 0])
    loss, scores = nnx.jit(joint_loss(0.7))(model, values, labels)
    log_joint = np.asarray(call(model, values))
    posterior = log_joint - special.logsumexp(log_joint, axis=1, keepdims=True)
    rows = np.arange(6), np.asarray(labels)
    expected = -posterior[rows].mean() - 0.7 * log_joint[rows].mean() / 4
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_array_equal(scores, log_joint)
