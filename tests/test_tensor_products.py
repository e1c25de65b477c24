import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconvac import GeneralizedProduct, generalized_tensor_product
from jaxconvac.tensor_products import BUILTIN_OPERATORS, resolve_operator

REFERENCE_G = {
    "product": lambda a, b: a * b,
    "relu_max": lambda a, b: max(a, b, 0.0),
    "relu_sum": lambda a, b: max(a, 0.0) + max(b, 0.0),
    "relu_of_sum": lambda a, b: max(a + b, 0.0),
}


def reference_product(a, b, g):
    """Entry by entry, straight from the definition."""
    out = np.empty(a.shape + b.shape)
    for i in itertools.product(*map(range, a.shape)):
        for j in itertools.product(*map(range, b.shape)):
            out[i + j] = g(float(a[i]), float(b[j]))
    return out


@pytest.mark.parametrize("name", sorted(REFERENCE_G))
@pytest.mark.parametrize("shapes", [((3,), (2,)), ((2, 3), (4,)), ((2,), (2, 2, 3))])
def test_matches_reference(name, shapes):
    rng = np.random.default_rng(0)
    a = rng.normal(size=shapes[0]).astype(np.float32)
    b = rng.normal(size=shapes[1]).astype(np.float32)
    expected = reference_product(a, b, REFERENCE_G[name])
    np.testing.assert_allclose(
        generalized_tensor_product(a, b, name), expected, rtol=1e-6
    )
    jitted = jax.jit(generalized_tensor_product, static_argnums=2)
    np.testing.assert_allclose(jitted(a, b, name), expected, rtol=1e-6)


def test_vmap_over_a_batch():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 3))
    b = rng.normal(size=(5, 4))
    out = jax.vmap(lambda x, y: generalized_tensor_product(x, y, "relu_max"))(a, b)
    for k in range(5):
        np.testing.assert_allclose(
            out[k], reference_product(a[k], b[k], REFERENCE_G["relu_max"])
        )


def test_user_callable_and_scalars():
    out = generalized_tensor_product(
        jnp.array([1.0, 2.0]), jnp.array([3.0]), lambda a, b: a - b
    )
    np.testing.assert_allclose(out, [[-2.0], [-1.0]])
    np.testing.assert_allclose(
        generalized_tensor_product(2.0, jnp.array([1.0, 3.0])), [2.0, 6.0]
    )


def test_product_is_the_outer_product_and_gradients_flow():
    a, b = jnp.array([1.0, -2.0]), jnp.array([3.0, 0.5, 4.0])
    np.testing.assert_allclose(generalized_tensor_product(a, b), np.outer(a, b))
    grad = jax.grad(lambda x: generalized_tensor_product(x, b).sum())(a)
    np.testing.assert_allclose(grad, [b.sum(), b.sum()])


@pytest.mark.parametrize("name", ["product", "relu_max", "relu_sum"])
def test_builtin_pool_equals_fold(name):
    op = BUILTIN_OPERATORS[name]
    values = jnp.asarray(np.random.default_rng(2).normal(size=(3, 4, 5)))
    folded = values[:, 0]
    for k in range(1, 4):
        folded = op.binary(folded, values[:, k])
    np.testing.assert_allclose(op.pool(values, 1), folded, rtol=1e-6)
    assert op.associative


def test_relu_of_sum_is_not_associative():
    op = BUILTIN_OPERATORS["relu_of_sum"]
    assert not op.associative
    a, b, c = -3.0, 1.0, 1.0  # (0 + 1) vs max(-3 + 2, 0)
    assert op.binary(op.binary(a, b), c) != op.binary(a, op.binary(b, c))


def test_unknown_name_and_non_callable():
    with pytest.raises(ValueError, match="g must be one of .*'product'.*got 'relu'"):
        generalized_tensor_product(jnp.ones(2), jnp.ones(2), "relu")
    with pytest.raises(TypeError, match="g must be a name .* got int"):
        resolve_operator(3)


def test_user_operator_declared_associative():
    op = GeneralizedProduct("min", jnp.minimum, associative=True)
    assert resolve_operator(op) is op
    assert resolve_operator(jnp.minimum, associative=True).associative
    assert not resolve_operator(jnp.minimum).associative
