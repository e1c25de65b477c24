import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from references import REFERENCE_G, node_weight

import jaxconvac as jc
from jaxconvac import ModeTree

TREES = {
    "shallow": ModeTree.shallow(4),
    "binary": ModeTree.balanced(8),
    "square": ModeTree.image(4, 4, "square"),
    "mirror": ModeTree.image(4, 4, "mirror"),
    "permuted": ModeTree.from_permutation([5, 2, 7, 0, 1, 6, 3, 4]),
}
SHARING = ("none", "per_tap", "full")


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def reference_coefficient_tensor(params, tree):
    """Node by node from SPEC §4, tensors indexed by their leaf labels."""
    width = tree.windows
    # Each entry: (label, tensor of shape (channels, M, ..., M) over label's leaves).
    phis = [
        (node, node_weight(params, tree, 0, j)) for j, node in enumerate(tree.nodes(0))
    ]
    for level in range(1, tree.depth + 1):
        merged = []
        for j in range(tree.num_nodes(level)):
            children = phis[j * width[level - 1] : (j + 1) * width[level - 1]]
            label = sum((c[0] for c in children), ())
            channels = children[0][1].shape[0]
            pooled = np.stack(
                [
                    _outer_all([c[1][alpha] for c in children])
                    for alpha in range(channels)
                ]
            )
            weight = node_weight(params, tree, level, j)
            merged.append((label, np.tensordot(weight, pooled, axes=(1, 0))))
        phis = merged
    label, root = phis[0]
    axes = [1 + label.index(i) for i in range(tree.num_modes)]
    return np.transpose(root, [0, *axes])


def _outer_all(tensors):
    out = tensors[0]
    for t in tensors[1:]:
        out = np.multiply.outer(out, t)
    return out


def contract(tensor, features):
    """``Σ_d A[y, d] Π_i F[i, d_i]``: contract the modes one by one."""
    out = np.asarray(tensor)
    for row in np.asarray(features):
        out = np.tensordot(out, row, axes=([1], [0]))
    return out


def reference_generalized(params, tree, features, g):
    """Bottom-up node by node with a left fold of ``g``."""
    features = np.asarray(features)
    values = [
        node_weight(params, tree, 0, j) @ features[leaf]
        for j, (leaf,) in enumerate(tree.nodes(0))
    ]
    for level in range(1, tree.depth + 1):
        window = tree.windows[level - 1]
        pooled_nodes = []
        for j in range(tree.num_nodes(level)):
            children = values[j * window : (j + 1) * window]
            pooled = children[0]
            for child in children[1:]:
                pooled = g(pooled, child)
            pooled_nodes.append(node_weight(params, tree, level, j) @ pooled)
        values = pooled_nodes
    return values[0]


def make(
    tree, sharing, *, key=0, num_descriptors=2, width=3, num_outputs=2, initializer=None
):
    return jc.init_decomposition(
        jax.random.key(key),
        tree,
        num_descriptors=num_descriptors,
        widths=(width,) * tree.depth,
        num_outputs=num_outputs,
        sharing=sharing,
        dtype=jnp.float64,
        initializer=initializer,
    )


@pytest.mark.parametrize("sharing", SHARING)
@pytest.mark.parametrize("name", sorted(TREES))
def test_coefficient_tensor_matches_reference(name, sharing):
    tree = TREES[name]
    params = make(tree, sharing)
    tensor = jc.coefficient_tensor(params, tree)
    assert tensor.shape == (2,) + (2,) * tree.num_modes
    np.testing.assert_allclose(
        tensor, reference_coefficient_tensor(params, tree), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("sharing", SHARING)
@pytest.mark.parametrize("name", ["shallow", "binary", "square", "mirror"])
def test_evaluate_is_the_contraction_of_the_coefficient_tensor(name, sharing):
    tree = TREES[name]
    params = make(tree, sharing, num_descriptors=3 if tree.num_modes <= 8 else 2)
    features = jax.random.normal(
        jax.random.key(1), (4, tree.num_modes, params[0].shape[2]), jnp.float64
    )
    tensor = jc.coefficient_tensor(params, tree)
    scores = jax.jit(jax.vmap(lambda f: jc.evaluate(params, tree, f)))(features)
    for k in range(features.shape[0]):
        np.testing.assert_allclose(
            scores[k], contract(tensor, features[k]), rtol=1e-9, atol=1e-12
        )


@pytest.mark.parametrize("sharing", SHARING)
@pytest.mark.parametrize("name", ["shallow", "binary", "square", "mirror"])
def test_log_space_evaluate_is_the_log_of_the_contraction(name, sharing):
    tree = TREES[name]
    log_params = make(tree, sharing)
    log_features = jax.random.normal(
        jax.random.key(2), (3, tree.num_modes, 2), jnp.float64
    )
    log_tensor = jc.coefficient_tensor(log_params, tree, space="log")
    linear_tensor = jc.coefficient_tensor(tuple(jnp.exp(p) for p in log_params), tree)
    np.testing.assert_allclose(jnp.exp(log_tensor), linear_tensor, rtol=1e-10)
    scores = jax.jit(jax.vmap(lambda f: jc.evaluate(log_params, tree, f, space="log")))(
        log_features
    )
    for k in range(log_features.shape[0]):
        expected = np.log(contract(np.exp(log_tensor), np.exp(log_features[k])))
        np.testing.assert_allclose(scores[k], expected, rtol=1e-10)


@pytest.mark.parametrize(
    "name, g",
    [
        (name, g)
        for name in ("shallow", "binary", "square", "permuted")
        for g in sorted(REFERENCE_G)
        # relu_of_sum pools windows of 2 only: see the test after this one.
        if g != "relu_of_sum" or max(TREES[name].windows) == 2
    ],
)
def test_generalized_evaluate_matches_reference(name, g):
    tree = TREES[name]
    params = make(tree, "none", width=4)
    features = jax.random.normal(jax.random.key(3), (tree.num_modes, 2), jnp.float64)
    expected = reference_generalized(params, tree, features, REFERENCE_G[g])
    np.testing.assert_allclose(
        jc.evaluate(params, tree, features, g=g), expected, rtol=1e-10
    )


def test_non_associative_g_refused_for_large_windows():
    tree = TREES["square"]
    params = make(tree, "full")
    with pytest.raises(
        ValueError, match="g='relu_of_sum' is not known to be associative.*window is 4"
    ):
        jc.evaluate(params, tree, jnp.ones((16, 2)), g="relu_of_sum")
    with pytest.raises(ValueError, match="not known to be associative"):
        jc.evaluate(params, tree, jnp.ones((16, 2)), g=jnp.minimum)
    vouched = jc.GeneralizedProduct("min", jnp.minimum, associative=True)
    out = jc.evaluate(params, tree, jnp.ones((16, 2)), g=vouched)
    assert out.shape == (2,) and np.all(np.isfinite(out))


def test_gradients_match_finite_differences():
    tree = TREES["binary"]
    params = make(tree, "per_tap")
    features = jax.random.normal(jax.random.key(4), (8, 2), jnp.float64)

    def loss(p):
        return jnp.sum(jc.evaluate(p, tree, features) ** 2)

    grads = jax.grad(loss)(params)
    direction = tuple(
        jax.random.normal(jax.random.key(5 + k), p.shape, p.dtype)
        for k, p in enumerate(params)
    )
    eps = 1e-6
    plus = loss(tuple(p + eps * d for p, d in zip(params, direction, strict=True)))
    minus = loss(tuple(p - eps * d for p, d in zip(params, direction, strict=True)))
    directional = sum(jnp.vdot(gr, d) for gr, d in zip(grads, direction, strict=True))
    np.testing.assert_allclose(directional, (plus - minus) / (2 * eps), rtol=1e-6)


def test_shallow_tree_is_cp_decomposition():
    tree = ModeTree.shallow(3)
    params = make(tree, "none", num_descriptors=2, width=2, num_outputs=1)
    leaves, root = np.asarray(params[0]), np.asarray(params[1])[0, 0]
    expected = sum(
        root[z] * np.einsum("a,b,c->abc", leaves[0, z], leaves[1, z], leaves[2, z])
        for z in range(2)
    )
    np.testing.assert_allclose(
        jc.coefficient_tensor(params, tree)[0], expected, rtol=1e-12
    )


@pytest.mark.parametrize("r0, expected", [(1, 1), (2, 4), (3, 4)])
def test_depth_efficiency_rank_on_small_tree(r0, expected):
    # COLT 2016: the odd/even rank of a generic deep network is min(r0, M)^(N/2).
    tree = ModeTree.balanced(4)
    params = jc.init_decomposition(
        jax.random.key(7),
        tree,
        num_descriptors=2,
        widths=(r0, r0),
        num_outputs=1,
        dtype=jnp.float64,
    )
    matrix = jc.matricize(jc.coefficient_tensor(params, tree)[0], jc.odd_even_modes(4))
    assert int(jc.numerical_rank(matrix)) == expected


def test_modular_coefficient_tensor_matches_integer_arithmetic():
    tree = ModeTree.balanced(8)

    def integers(key, shape, dtype):
        return jax.random.randint(key, shape, -3, 4).astype(dtype)

    params = jc.init_decomposition(
        jax.random.key(8),
        tree,
        num_descriptors=2,
        widths=(2, 2, 2),
        num_outputs=1,
        dtype=jnp.int64,
        initializer=integers,
    )
    exact = reference_coefficient_tensor(
        [np.asarray(p, dtype=object) for p in params], tree
    )
    modulus = 1_000_003
    got = jc.coefficient_tensor(params, tree, modulus=modulus)
    assert got.dtype == jnp.int64
    np.testing.assert_array_equal(np.asarray(got), (exact % modulus).astype(np.int64))


def test_log_space_large_image_is_finite_and_linear_underflows():
    tree = ModeTree.image(32, 32)
    with jax.enable_x64(False):
        log_params = jc.init_decomposition(
            jax.random.key(9),
            tree,
            num_descriptors=2,
            widths=(32,) * 5,
            num_outputs=2,
            sharing="none",
        )
        log_params = tuple(jax.nn.log_softmax(p, axis=-1) for p in log_params)
        pixels = jax.random.bernoulli(jax.random.key(10), 0.5, (4, 1024))
        one_hot = jnp.stack([pixels, ~pixels], axis=-1).astype(jnp.float32)
        log_features = jnp.log(one_hot)

        @jax.jit
        def run(p):
            def total(q):
                scores = jax.vmap(lambda x: jc.evaluate(q, tree, x, space="log"))(
                    log_features
                )
                return -jnp.sum(scores), scores

            (_, scores), grads = jax.value_and_grad(total, has_aux=True)(p)
            linear_params = tuple(jnp.exp(w) for w in p)
            linear = jax.vmap(lambda f: jc.evaluate(linear_params, tree, f))(one_hot)
            return scores, grads, linear

        scores, grads, linear = run(log_params)
    assert scores.dtype == jnp.float32
    assert np.all(np.isfinite(scores)) and np.all(
        scores < -200
    )  # probabilities below 1e-87
    assert all(np.all(np.isfinite(gr)) for gr in grads)
    # The same network in linear float32 underflows to exactly zero.
    np.testing.assert_array_equal(linear, 0.0)


def test_max_entries_refused_with_size():
    tree = ModeTree.balanced(32)
    params = make(tree, "full")
    with pytest.raises(
        ValueError,
        match="2 \\* 2\\*\\*32 = 8589934592 entries, above max_entries=16777216",
    ):
        jc.coefficient_tensor(params, tree)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda p, t: jc.evaluate(p, t, jnp.ones((8, 3))),
            ValueError,
            "features must have shape .* = \\(8, 2\\).*got \\(8, 3\\)",
        ),
        (
            lambda p, t: jc.evaluate(p, t, jnp.ones((2, 8, 2))),
            ValueError,
            "one example; vmap",
        ),
        (
            lambda p, t: jc.evaluate(p, t, jnp.ones((8, 2)), g="tanh"),
            ValueError,
            "g must be one of",
        ),
        (
            lambda p, t: jc.evaluate(p, t, jnp.ones((8, 2)), space="exp"),
            ValueError,
            "space must be one of",
        ),
        (
            lambda p, t: jc.evaluate(p, t, jnp.ones((8, 2)), g="relu_max", space="log"),
            ValueError,
            "g must be 'product' there",
        ),
        (
            lambda p, t: jc.evaluate(p[:-1], t, jnp.ones((8, 2))),
            ValueError,
            "params must hold 4 weight arrays",
        ),
        (
            lambda p, t: jc.evaluate(p, ModeTree.balanced(4), jnp.ones((4, 2))),
            ValueError,
            "params must hold 3",
        ),
        (
            lambda p, t: jc.evaluate((p[0][:, :2], *p[1:]), t, jnp.ones((8, 2))),
            ValueError,
            "params\\[1\\] takes 3 input channels but params\\[0\\] gives 2",
        ),
        (
            lambda p, t: jc.evaluate(p, "tree", jnp.ones((8, 2))),
            TypeError,
            "tree must be a ModeTree",
        ),
        (
            lambda p, t: jc.coefficient_tensor(p, t, modulus=7),
            TypeError,
            "params must be integers",
        ),
        (
            lambda p, t: jc.coefficient_tensor(p, t, space="log", modulus=7),
            ValueError,
            "space='linear'",
        ),
    ],
)
def test_bad_input(call, error, match):
    tree = TREES["binary"]
    with pytest.raises(error, match=match):
        call(make(tree, "none"), tree)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            {"widths": (3, 3)},
            ValueError,
            "widths must have one entry per level below the root, 3 .* got 2",
        ),
        ({"widths": (3, 0, 3)}, ValueError, "widths\\[1\\] must be positive, got 0"),
        ({"widths": (3, 2.5, 3)}, TypeError, "widths\\[1\\] must be an int"),
        (
            {"sharing": "conv"},
            ValueError,
            "sharing must be one of \\('none', 'per_tap', 'full'\\), got 'conv'",
        ),
        (
            {"num_descriptors": 0},
            ValueError,
            "num_descriptors must be a positive int, got 0",
        ),
    ],
)
def test_bad_init_arguments(kwargs, error, match):
    arguments = {"num_descriptors": 2, "widths": (3, 3, 3), "num_outputs": 2, **kwargs}
    with pytest.raises(error, match=match):
        jc.init_decomposition(jax.random.key(0), TREES["binary"], **arguments)


@pytest.mark.parametrize(
    "sharing, groups",
    [("none", (8, 4, 2, 1)), ("per_tap", (2, 2, 2, 1)), ("full", (1, 1, 1, 1))],
)
def test_sharing_shapes(sharing, groups):
    params = make(TREES["binary"], sharing)
    assert tuple(p.shape[0] for p in params) == groups


def test_evaluate_compiles_once_per_tree():
    tree = TREES["square"]
    params = make(tree, "full")
    traces = []

    @jax.jit
    def batch_scores(p, f):
        traces.append(1)
        return jax.vmap(lambda x: jc.evaluate(p, tree, x))(f)

    for k in range(3):
        batch_scores(params, jnp.full((5, 16, 2), float(k)))
    assert len(traces) == 1


@pytest.mark.parametrize(
    "name, g",
    [
        (name, g)
        for name in ("shallow", "binary", "square")
        for g in sorted(REFERENCE_G)
        if g != "relu_of_sum" or max(TREES[name].windows) == 2
    ],
)
def test_grid_tensor_is_evaluation_on_every_template_combination(name, g):
    tree = TREES[name]
    params = make(tree, "per_tap", num_descriptors=3, width=3)
    templates = jax.random.normal(jax.random.key(11), (2, 3), jnp.float64)
    grid = jc.grid_tensor(params, tree, templates, g=g)
    assert grid.shape == (2,) + (2,) * tree.num_modes
    combos = np.array(list(itertools.product(range(2), repeat=tree.num_modes)))
    scores = jax.vmap(lambda f: jc.evaluate(params, tree, f, g=g))(templates[combos])
    # itertools.product enumerates the combinations in C order, as reshape does.
    np.testing.assert_allclose(grid.reshape(2, -1).T, scores, rtol=1e-9, atol=1e-12)


def test_product_grid_tensor_is_coefficient_tensor_times_templates():
    tree = TREES["mirror"]
    params = make(tree, "none", num_descriptors=2)
    templates = jax.random.normal(jax.random.key(12), (2, 2), jnp.float64)
    expected = jc.coefficient_tensor(params, tree)
    for mode in range(tree.num_modes):
        expected = jnp.moveaxis(
            jnp.tensordot(templates, expected, axes=([1], [1 + mode])), 0, 1 + mode
        )
    np.testing.assert_allclose(
        jc.grid_tensor(params, tree, templates), expected, rtol=1e-9
    )


def test_grid_tensor_bad_templates_and_size():
    tree = TREES["binary"]
    params = make(tree, "full")
    with pytest.raises(
        ValueError, match="template_features must have shape .* got \\(3, 3\\)"
    ):
        jc.grid_tensor(params, tree, jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="grid tensor .* above max_entries=100"):
        jc.grid_tensor(params, tree, jnp.ones((2, 2)), max_entries=100)
    with pytest.raises(ValueError, match="g must be one of"):
        jc.grid_tensor(params, tree, jnp.ones((2, 2)), g="maxpool")


@pytest.mark.parametrize("sharing", SHARING)
@pytest.mark.parametrize("space", ["linear", "log"])
def test_traced_program_grows_with_depth_not_node_count(sharing, space):
    def equations(size):
        tree = ModeTree.image(size, size)
        params = make(tree, sharing)
        features = jnp.ones((tree.num_modes, 2), jnp.float64)
        jaxpr = jax.make_jaxpr(lambda p, f: jc.evaluate(p, tree, f, space=space))
        return len(jaxpr(params, features).jaxpr.eqns)

    counts = [equations(size) for size in (4, 8, 16, 32)]
    # 16 -> 1024 positions; each extra level adds the same fixed number of ops.
    steps = {b - a for a, b in zip(counts, counts[1:], strict=False)}
    assert len(steps) == 1 and steps.pop() < 40


def test_max_entries_counts_the_intermediates():
    # A shallow tree pools Z * M**N entries before its root contracts them.
    tree = ModeTree.shallow(10)
    params = make(tree, "none", width=64, num_outputs=1)  # output 2**10, pooled 2**16
    with pytest.raises(ValueError, match="intermediate of 65536 entries at level 1"):
        jc.coefficient_tensor(params, tree, max_entries=2**12)
    assert (
        jc.coefficient_tensor(params, tree, max_entries=2**16).shape == (1,) + (2,) * 10
    )


@pytest.mark.parametrize("sharing", SHARING)
@pytest.mark.parametrize("name", ["shallow", "binary", "mirror", "permuted"])
@pytest.mark.parametrize("space", ["linear", "log"])
def test_integer_features_are_indicator_descriptors(name, sharing, space):
    tree = TREES[name]
    params = make(tree, sharing, num_descriptors=3)
    values = jax.random.randint(jax.random.key(13), (5, tree.num_modes), 0, 3)
    one_hot = jax.nn.one_hot(values, 3, dtype=jnp.float64)
    features = jnp.log(one_hot) if space == "log" else one_hot

    def scores(f):
        return jax.jit(jax.vmap(lambda x: jc.evaluate(params, tree, x, space=space)))(f)

    np.testing.assert_allclose(scores(values), scores(features), rtol=1e-12)


def test_integer_features_out_of_range():
    tree = TREES["binary"]
    params = make(tree, "full")
    values = jnp.zeros(8, jnp.int32)
    with pytest.raises(ValueError, match="must lie in \\[0, 2\\).*position 3 holds 2"):
        jc.evaluate(params, tree, values.at[3].set(2))
    with pytest.raises(ValueError, match="position 0 holds -1"):
        jc.evaluate(params, tree, values.at[0].set(-1))
    traced = jax.jit(lambda x: jc.evaluate(params, tree, x))
    assert np.all(np.isnan(traced(values.at[5].set(-1))))
    assert np.all(np.isfinite(traced(values)))
    with pytest.raises(
        ValueError, match="integer features must have shape \\(num_modes,\\)"
    ):
        jc.evaluate(params, tree, jnp.zeros((8, 2), jnp.int32))


@pytest.mark.parametrize("gap", [10.0, 90.0, 400.0])
def test_log_space_keeps_scores_far_below_float_range(gap):
    # Weights peaked on descriptor 0, one-hot inputs on descriptor 1: every
    # score is -2 * gap, far below exp's float32 range. Regression test for a
    # shift scheme that underflowed to -inf (and NaN gradients) past ~87.
    tree = ModeTree.shallow(2)
    with jax.enable_x64(False):
        params = (jnp.tile(jnp.array([[[0.0, -gap]]]), (2, 1, 1)), jnp.zeros((1, 1, 1)))
        log_features = jnp.log(jnp.array([[0.0, 1.0], [0.0, 1.0]]))
        score = jc.evaluate(params, tree, log_features, space="log")
        grads = jax.grad(lambda p: jc.evaluate(p, tree, log_features, space="log")[0])(
            params
        )
    np.testing.assert_allclose(score, [-2 * gap], rtol=1e-6)
    np.testing.assert_allclose(grads[0].ravel(), [0.0, 1.0, 0.0, 1.0])
