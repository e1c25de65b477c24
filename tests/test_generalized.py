import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from references import REFERENCE_G, node_weight

import jaxconvac as jc
from jaxconvac.nn import Indicator
from jaxconvac.nn.generalized import (
    AffineReLU,
    GeneralizedClassifier,
    GeneralizedConvNet,
    network_operator,
    scale_for_average_pooling,
)
from jaxconvac.tensor_products import BUILTIN_OPERATORS, operator_for

TREES = {
    "shallow": jc.ModeTree.shallow(4),
    "binary": jc.ModeTree.balanced(8),
    "square": jc.ModeTree.image(4, 4, "square"),
}
ACTIVATION = {"linear": lambda x: x, "relu": lambda x: np.maximum(x, 0)}
POOL = {
    "product": lambda x: np.prod(x, axis=1),
    "max": lambda x: np.max(x, axis=1),
    "sum": lambda x: np.sum(x, axis=1),
    "average": lambda x: np.mean(x, axis=1),
}
PAIRS = [(a, p) for a in ("linear", "relu") for p in ("product", "max", "average")]


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def reference_decomposition(params, tree, features, g):
    """Scores of a batch ``(B, N, M)``, node by node with a left fold of ``g``."""
    features = np.asarray(features)
    values = [
        features[:, leaf] @ node_weight(params, tree, 0, j).T
        for j, (leaf,) in enumerate(tree.nodes(0))
    ]
    for level in range(1, tree.depth + 1):
        window = tree.windows[level - 1]
        merged = []
        for j in range(tree.num_nodes(level)):
            children = values[j * window : (j + 1) * window]
            pooled = children[0]
            for child in children[1:]:
                pooled = g(pooled, child)
            merged.append(pooled @ node_weight(params, tree, level, j).T)
        values = merged
    return values[0]


def reference_network(params, tree, features, activation, pooling):
    """The network as practitioners write it: conv, activation, pool, output."""
    features = np.asarray(features)
    sigma, pool = ACTIVATION[activation], POOL[pooling]
    values = [
        features[:, leaf] @ node_weight(params, tree, 0, j).T
        for j, (leaf,) in enumerate(tree.nodes(0))
    ]
    for level in range(1, tree.depth + 1):
        window = tree.windows[level - 1]
        activated = [sigma(v) for v in values]
        pooled = [
            pool(np.stack(activated[j * window : (j + 1) * window], axis=1))
            for j in range(tree.num_nodes(level))
        ]
        values = [
            p @ node_weight(params, tree, level, j).T for j, p in enumerate(pooled)
        ]
    return values[0]


def random_params(tree, *, sharing="per_tap", num_descriptors=3, width=3, key=0):
    return jc.init_decomposition(
        jax.random.key(key),
        tree,
        num_descriptors=num_descriptors,
        widths=(width,) * tree.depth,
        num_outputs=2,
        sharing=sharing,
        dtype=jnp.float64,
    )


def all_combinations(templates, num_modes):
    combos = np.array(list(itertools.product(range(len(templates)), repeat=num_modes)))
    return np.asarray(templates)[combos]


@pytest.mark.parametrize(
    "name, g",
    [
        (name, g)
        for name in TREES
        for g in sorted(BUILTIN_OPERATORS)
        if BUILTIN_OPERATORS[g].associative or max(TREES[name].windows) == 2
    ],
)
def test_grid_tensor_matches_brute_force_for_every_builtin(name, g):
    assert set(REFERENCE_G) == set(BUILTIN_OPERATORS)
    tree = TREES[name]
    params = random_params(tree)
    num_templates = 2 if tree.num_modes > 8 else 3
    templates = jax.random.normal(jax.random.key(1), (num_templates, 3), jnp.float64)
    grid = jc.grid_tensor(params, tree, templates, g=g)
    assert grid.shape == (2,) + (num_templates,) * tree.num_modes
    expected = reference_decomposition(
        params, tree, all_combinations(templates, tree.num_modes), REFERENCE_G[g]
    )
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(
        grid.reshape(2, -1).T, expected, rtol=1e-12, atol=1e-13 * scale
    )


@pytest.mark.parametrize("g", ["relu_product", "linear_max", "linear_sum"])
def test_new_builtins_pool_equals_fold_and_match_reference(g):
    op = BUILTIN_OPERATORS[g]
    values = np.random.default_rng(2).normal(size=(3, 5, 4))
    folded = values[:, 0]
    for k in range(1, 5):
        folded = REFERENCE_G[g](folded, values[:, k])
    np.testing.assert_allclose(op.pool(jnp.asarray(values), 1), folded, rtol=1e-12)
    np.testing.assert_allclose(
        op.binary(values[:, 0], values[:, 1]),
        REFERENCE_G[g](values[:, 0], values[:, 1]),
    )
    assert op.associative


@pytest.mark.parametrize(
    "activation, pooling, name",
    [
        ("linear", "product", "product"),
        ("relu", "max", "relu_max"),
        ("relu", "sum", "relu_sum"),
        ("relu", "product", "relu_product"),
        ("linear", "max", "linear_max"),
        ("linear", "sum", "linear_sum"),
    ],
)
def test_operator_for_pairs(activation, pooling, name):
    assert operator_for(activation, pooling) is BUILTIN_OPERATORS[name]
    sigma = ACTIVATION[activation]
    a, b = np.array([-1.5, 0.5, 2.0]), np.array([0.7, -0.2, 3.0])
    pair = np.stack([sigma(a), sigma(b)], axis=1)
    np.testing.assert_allclose(
        operator_for(activation, pooling).binary(a, b), POOL[pooling](pair)
    )
    expected_average = "relu_sum" if activation == "relu" else "linear_sum"
    if pooling == "sum":
        assert network_operator(activation, "average").name == expected_average


@pytest.mark.parametrize("activation, pooling", PAIRS)
@pytest.mark.parametrize("sharing", ["none", "per_tap", "full"])
@pytest.mark.parametrize("name", sorted(TREES))
def test_module_is_the_network_practitioners_write(name, sharing, activation, pooling):
    tree = TREES[name]
    net = GeneralizedConvNet(
        tree,
        num_descriptors=3,
        widths=(4,) * tree.depth,
        num_outputs=2,
        activation=activation,
        pooling=pooling,
        sharing=sharing,
        dtype=jnp.float64,
        rngs=nnx.Rngs(3),
    )
    features = np.abs(np.random.default_rng(4).normal(size=(5, tree.num_modes, 3)))
    stored = tuple(w[...] for w in net.weights)
    expected = reference_network(stored, tree, features, activation, pooling)
    np.testing.assert_allclose(net(features), expected, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("activation, pooling", PAIRS + [("relu", "sum")])
@pytest.mark.parametrize("name", sorted(TREES))
def test_classifier_on_templates_equals_grid_tensor(name, activation, pooling):
    tree = TREES[name]
    num_templates = 2 if tree.num_modes > 8 else 3
    representation = AffineReLU(2, 3, dtype=jnp.float64, rngs=nnx.Rngs(5))
    net = GeneralizedConvNet(
        tree,
        num_descriptors=3,
        widths=(3,) * tree.depth,
        num_outputs=2,
        activation=activation,
        pooling=pooling,
        dtype=jnp.float64,
        rngs=nnx.Rngs(6),
    )
    model = GeneralizedClassifier(representation, net)
    templates = jax.random.normal(jax.random.key(7), (num_templates, 2), jnp.float64)
    inputs = all_combinations(templates, tree.num_modes)
    scores = jax.jit(lambda x: model(x))(inputs)
    grid = model.grid_tensor(templates)
    expected = jc.grid_tensor(
        net.decomposition_params(),
        tree,
        representation(templates[None])[0],
        g=net.g,
    )
    np.testing.assert_array_equal(grid, expected)
    scale = np.max(np.abs(scores))
    np.testing.assert_allclose(
        grid.reshape(2, -1).T, scores, rtol=1e-11, atol=1e-12 * scale
    )


def test_indicator_templates_give_the_identity_representation():
    tree = TREES["binary"]
    net = GeneralizedConvNet(
        tree,
        num_descriptors=3,
        widths=(3, 3, 3),
        num_outputs=1,
        dtype=jnp.float64,
        rngs=nnx.Rngs(8),
    )
    model = GeneralizedClassifier(Indicator(3, log=False, dtype=jnp.float64), net)
    np.testing.assert_array_equal(model.template_features(jnp.arange(3)), np.eye(3))
    grid = model.grid_tensor(jnp.arange(3))
    np.testing.assert_allclose(grid, net.grid_tensor(jnp.eye(3)), rtol=0)
    inputs = jnp.asarray(all_combinations(np.arange(3), 8))
    np.testing.assert_allclose(grid.reshape(1, -1).T, model(inputs), rtol=1e-12)


def test_average_pooling_scales_every_level_above_the_leaves():
    tree = jc.ModeTree.image(4, 4, "square")
    params = random_params(tree)
    scaled = scale_for_average_pooling(params, tree)
    np.testing.assert_array_equal(scaled[0], params[0])
    for level in (1, 2):
        np.testing.assert_allclose(scaled[level], params[level] / 4, rtol=0)


def every_partition(num_modes):
    """Every split ``(I, J)`` once: the subsets ``I`` holding mode 0."""
    rest = range(1, num_modes)
    return [
        (0, *extra)
        for size in range(num_modes - 1)
        for extra in itertools.combinations(rest, size)
    ]


def shallow_partition_ranks(g, templates, *, num_modes, width, draws=10, key=11):
    """Ranks of every partition's matricization, ``(partitions, draws)``."""
    tree = jc.ModeTree.shallow(num_modes)
    partitions = every_partition(num_modes)

    def grid(one_key):
        params = jc.init_decomposition(
            one_key,
            tree,
            num_descriptors=templates.shape[1],
            widths=(width,),
            num_outputs=1,
            sharing="none",
            dtype=jnp.float64,
        )
        return jc.grid_tensor(params, tree, templates, g=g)[0]

    grids = np.asarray(
        jax.jit(jax.vmap(grid))(jax.random.split(jax.random.key(key), draws))
    )
    # Ranks with NumPy (the reference): transpose to I + J, reshape in C order,
    # count singular values above max(rows, cols) * eps * sigma_max. (Many
    # batched SVDs inside one jitted program can deadlock on the CPU jaxlib.)
    ranks = []
    for rows in partitions:
        cols = tuple(m for m in range(num_modes) if m not in rows)
        matrices = np.transpose(grids, (0, *(1 + m for m in rows + cols)))
        matrices = matrices.reshape(draws, templates.shape[0] ** len(rows), -1)
        ranks.append([np.linalg.matrix_rank(m) for m in matrices])
    return partitions, np.array(ranks)


def test_numpy_matricization_matches_the_library():
    tensor = np.random.default_rng(3).normal(size=(2, 3, 2, 3))
    rows = (0, 3)
    expected = np.transpose(tensor, (0, 3, 1, 2)).reshape(6, 6)
    np.testing.assert_array_equal(jc.matricize(tensor, rows), expected)


@pytest.mark.parametrize(
    "g, templates_kind, width",
    [
        ("relu_sum", "indicator", 1),
        ("relu_sum", "indicator", 8),
        ("relu_sum", "affine_relu", 8),
        ("linear_sum", "affine_relu", 8),
    ],
)
def test_shallow_average_pooling_rank_at_most_two_on_every_partition(
    g, templates_kind, width
):
    if templates_kind == "indicator":
        templates = jnp.eye(3)
    else:
        layer = AffineReLU(2, 3, dtype=jnp.float64, rngs=nnx.Rngs(9))
        points = jax.random.normal(jax.random.key(10), (4, 2), jnp.float64)
        templates = layer(points[None])[0]
    partitions, ranks = shallow_partition_ranks(g, templates, num_modes=6, width=width)
    assert len(partitions) == 31 and ranks.shape == (31, 10)
    assert ranks.max() <= 2
    assert (ranks == 2).any()  # The bound is attained, not vacuous.


@pytest.mark.parametrize("width", [1, 2])
def test_shallow_max_pooling_rank_bound_per_unit(width):
    # A width-Z shallow ReLU-max network has rank <= Z (min(|I|, |J|) K + 1):
    # each unit's matricization has at most that many distinct rows.
    num_modes, num_templates = 6, 3
    partitions, ranks = shallow_partition_ranks(
        "relu_max", jnp.eye(num_templates), num_modes=num_modes, width=width, key=12
    )
    for rows, row_ranks in zip(partitions, ranks, strict=True):
        side = min(len(rows), num_modes - len(rows))
        assert row_ranks.max() <= width * (side * num_templates + 1)
    assert ranks.max() > 2  # Above anything sum pooling reaches.


def test_module_trains_under_nnx_jit_without_retracing():
    tree = TREES["binary"]
    model = GeneralizedClassifier(
        AffineReLU(2, 3, dtype=jnp.float64, rngs=nnx.Rngs(13)),
        GeneralizedConvNet(
            tree,
            num_descriptors=3,
            widths=(4, 4, 4),
            num_outputs=1,
            pooling="average",
            initializer=jax.nn.initializers.normal(0.5),
            dtype=jnp.float64,
            rngs=nnx.Rngs(14),
        ),
    )
    inputs = jax.random.normal(jax.random.key(15), (16, 8, 2), jnp.float64)
    targets = jnp.sin(inputs.sum(axis=(1, 2)))[:, None]
    traces = []

    @nnx.jit
    def step(m, x, y):
        traces.append(1)

        def loss(mm):
            return jnp.mean((mm(x) - y) ** 2)

        value, grads = nnx.value_and_grad(loss)(m)
        params = nnx.state(m, nnx.Param)
        nnx.update(m, jax.tree.map(lambda p, g: p - 0.05 * g, params, grads))
        return value

    losses = [float(step(model, inputs, targets)) for _ in range(5)]
    assert len(traces) == 1
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: jc.grid_tensor(
                random_params(TREES["binary"]),
                TREES["binary"],
                jnp.eye(3),
                g="relu_avg",
            ),
            ValueError,
            "g must be one of .*got 'relu_avg'",
        ),
        (
            lambda: jc.grid_tensor(
                random_params(TREES["binary"]), TREES["binary"], jnp.ones((3, 2))
            ),
            ValueError,
            "template_features must have shape .*num_descriptors=3.*got \\(3, 2\\)",
        ),
        (
            lambda: jc.grid_tensor(
                random_params(TREES["binary"]), TREES["binary"], jnp.ones(3)
            ),
            ValueError,
            "template_features must have shape .*got \\(3,\\)",
        ),
        (
            lambda: jc.grid_tensor(
                random_params(TREES["binary"]),
                TREES["binary"],
                jnp.eye(3),
                max_entries=1000,
            ),
            ValueError,
            "2 \\* 3\\*\\*8 = 13122 entries, above max_entries=1000",
        ),
        (
            lambda: operator_for("relu", "min"),
            ValueError,
            "pooling must be one of \\('product', 'max', 'sum'\\), got 'min'",
        ),
        (
            lambda: operator_for("relu", "average"),
            ValueError,
            "pooling='average' is pooling='sum'",
        ),
        (
            lambda: operator_for("tanh", "max"),
            ValueError,
            "activation must be one of \\('linear', 'relu'\\), got 'tanh'",
        ),
        (
            lambda: network_operator("relu", "mean"),
            ValueError,
            "pooling must be one of \\('product', 'max', 'average', 'sum'\\), "
            "got 'mean'",
        ),
    ],
)
def test_bad_input_pure(call, error, match):
    with pytest.raises(error, match=match):
        call()


def small_net(**kwargs):
    arguments = {
        "num_descriptors": 3,
        "widths": (3, 3, 3),
        "num_outputs": 2,
        "dtype": jnp.float64,
        "rngs": nnx.Rngs(0),
        **kwargs,
    }
    return GeneralizedConvNet(TREES["binary"], **arguments)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            {"pooling": "min"},
            ValueError,
            "pooling must be one of \\('product', 'max', 'average', 'sum'\\), "
            "got 'min'",
        ),
        ({"activation": "gelu"}, ValueError, "activation must be one of .*'gelu'"),
        ({"sharing": "conv"}, ValueError, "sharing must be one of .*'conv'"),
        ({"widths": (3, 3)}, ValueError, "widths must have one entry per level"),
    ],
)
def test_bad_module_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        small_net(**kwargs)


def test_bad_module_inputs():
    net = small_net()
    with pytest.raises(ValueError, match="features must have shape .*got \\(8, 3\\)"):
        net(jnp.ones((8, 3)))
    with pytest.raises(ValueError, match="template_features must have shape"):
        net.grid_tensor(jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="above max_entries=100"):
        net.grid_tensor(jnp.eye(3), max_entries=100)

    model = GeneralizedClassifier(AffineReLU(2, 3, rngs=nnx.Rngs(1)), net)
    with pytest.raises(
        ValueError,
        match="templates must have shape \\(num_templates, num_features=2\\).*"
        "got \\(3, 5\\)",
    ):
        model.grid_tensor(jnp.ones((3, 5)))
    with pytest.raises(ValueError, match="above max_entries=10"):
        model.grid_tensor(jnp.ones((3, 2)), max_entries=10)
    indicator = GeneralizedClassifier(Indicator(3, log=False), net)
    with pytest.raises(
        ValueError, match="templates must have shape \\(num_templates,\\).*\\(3, 1\\)"
    ):
        indicator.grid_tensor(jnp.zeros((3, 1), jnp.int32))
    with pytest.raises(ValueError, match="log-descriptors"):
        GeneralizedClassifier(Indicator(3), net)
    with pytest.raises(ValueError, match="gives 4 descriptors .* num_descriptors=3"):
        GeneralizedClassifier(AffineReLU(2, 4, rngs=nnx.Rngs(2)), net)
    with pytest.raises(TypeError, match="network must be a GeneralizedConvNet"):
        GeneralizedClassifier(Indicator(3, log=False), "net")
    with pytest.raises(ValueError, match="inputs must have shape"):
        AffineReLU(2, 3, rngs=nnx.Rngs(3))(jnp.ones((4, 2)))
