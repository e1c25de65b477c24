import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconvac import matricize, numerical_rank, odd_even_modes


def reference_matricize(tensor, rows):
    """Entry by entry, from the index formula of SPEC §3."""
    tensor = np.asarray(tensor)
    rows = sorted(rows)
    cols = [m for m in range(tensor.ndim) if m not in rows]
    dims = tensor.shape
    out = np.zeros((math.prod(dims[m] for m in rows), math.prod(dims[m] for m in cols)))
    for index in itertools.product(*map(range, dims)):
        row = 0
        for m in rows:
            row = row * dims[m] + index[m]
        col = 0
        for m in cols:
            col = col * dims[m] + index[m]
        out[row, col] = tensor[index]
    return out


@pytest.mark.parametrize(
    "shape, rows",
    [
        ((2, 3), (0,)),
        ((2, 3), (1,)),
        ((2, 3, 4), (0, 2)),
        ((2, 3, 2, 3), (1, 3)),
        ((3, 2, 2, 2, 2), (4, 0)),
        ((2, 2, 2, 2), (0, 2)),
    ],
)
def test_matches_index_formula(shape, rows):
    tensor = np.random.default_rng(0).normal(size=shape)
    expected = reference_matricize(tensor, rows)
    np.testing.assert_allclose(matricize(tensor, rows), expected)
    np.testing.assert_allclose(
        jax.jit(matricize, static_argnums=1)(tensor, rows), expected
    )


def test_vmap():
    tensors = np.random.default_rng(1).normal(size=(4, 2, 3, 2))
    out = jax.vmap(lambda t: matricize(t, (0, 2)))(tensors)
    for k in range(4):
        np.testing.assert_allclose(out[k], reference_matricize(tensors[k], (0, 2)))


def test_outer_product_has_rank_one_everywhere():
    rng = np.random.default_rng(2)
    vectors = [rng.normal(size=d) for d in (2, 3, 2, 4)]
    tensor = np.einsum("a,b,c,d->abcd", *vectors)
    for size in (1, 2, 3):
        for rows in itertools.combinations(range(4), size):
            assert int(numerical_rank(matricize(tensor, rows))) == 1
    two = np.outer(vectors[0], vectors[1])
    assert int(numerical_rank(matricize(two, (0,)))) == 1


def test_ghz_tensor_rank_two_across_first_half():
    tensor = np.zeros((2, 2, 2, 2))
    tensor[0, 0, 0, 0] = tensor[1, 1, 1, 1] = 1 / np.sqrt(2)
    matrix = matricize(tensor, (0, 1))
    assert matrix.shape == (4, 4)
    assert int(numerical_rank(matrix)) == 2
    np.testing.assert_allclose(
        np.linalg.svd(matrix, compute_uv=False)[:2], [1 / np.sqrt(2)] * 2, rtol=1e-6
    )


def test_odd_even_of_tensor_product_is_kronecker():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(2, 3, 2, 3))
    b = rng.normal(size=(3, 2))
    ab = np.multiply.outer(a, b)
    expected = np.kron(matricize(a, odd_even_modes(4)), matricize(b, odd_even_modes(2)))
    np.testing.assert_allclose(matricize(ab, odd_even_modes(6)), expected, rtol=1e-6)


def test_odd_even_modes():
    assert odd_even_modes(6) == (0, 2, 4)
    with pytest.raises(ValueError, match="even and at least 2, got 5"):
        odd_even_modes(5)


@pytest.mark.parametrize(
    "rows, error, match",
    [
        (
            (0, 4),
            ValueError,
            "row_modes\\[1\\] = 4 is out of range .* order 4: valid modes are 0 … 3",
        ),
        ((-1,), ValueError, "row_modes\\[0\\] = -1 is out of range"),
        ((1, 1), ValueError, "repeats mode 1"),
        ((), ValueError, "must not be empty"),
        ((0, 1, 2, 3), ValueError, "proper subset of the 4 modes"),
        ((0.5,), TypeError, "row_modes\\[0\\] must be an integer, got 0.5"),
        ((True,), TypeError, "row_modes\\[0\\] must be an integer"),
        (3, TypeError, "row_modes must be an iterable of integers, got int"),
    ],
)
def test_bad_row_modes(rows, error, match):
    with pytest.raises(error, match=match):
        matricize(jnp.ones((2, 2, 2, 2)), rows)


def test_numpy_integer_modes_accepted_and_vector_refused():
    np.testing.assert_allclose(
        matricize(np.ones((2, 3)), (np.int64(1),)), np.ones((3, 2))
    )
    with pytest.raises(ValueError, match="at least 2 modes"):
        matricize(jnp.ones(3), (0,))
