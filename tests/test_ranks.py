from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconvac import ranks

SMALL_PRIME = 101


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def low_rank_integers(rng, rows, cols, rank, low=-5, high=6):
    left = rng.integers(low, high, (rows, rank))
    right = rng.integers(low, high, (rank, cols))
    return left @ right


def rank_over_rationals(matrix):
    """Gaussian elimination over Q with exact fractions."""
    rows = [[Fraction(int(x)) for x in row] for row in np.asarray(matrix)]
    return _eliminate(rows, lambda x: x != 0, lambda x: 1 / x, lambda x: x)


def rank_modulo(matrix, modulus):
    """Gaussian elimination over GF(modulus) with Python ints."""
    rows = [[int(x) % modulus for x in row] for row in np.asarray(matrix)]
    return _eliminate(
        rows, lambda x: x != 0, lambda x: pow(x, -1, modulus), lambda x: x % modulus
    )


def _eliminate(rows, nonzero, inverse, reduce):
    rank = 0
    num_cols = len(rows[0]) if rows else 0
    for col in range(num_cols):
        pivot = next((i for i in range(rank, len(rows)) if nonzero(rows[i][col])), None)
        if pivot is None:
            continue
        rows[rank], rows[pivot] = rows[pivot], rows[rank]
        scale = inverse(rows[rank][col])
        rows[rank] = [reduce(x * scale) for x in rows[rank]]
        for i in range(len(rows)):
            if i != rank and nonzero(rows[i][col]):
                factor = rows[i][col]
                rows[i] = [
                    reduce(a - factor * b)
                    for a, b in zip(rows[i], rows[rank], strict=True)
                ]
        rank += 1
    return rank


# singular_values


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4), (1, 6)])
def test_singular_values_match_numpy(x64, shape):
    matrix = np.random.default_rng(0).normal(size=shape)
    expected = np.linalg.svd(matrix, compute_uv=False)
    np.testing.assert_allclose(ranks.singular_values(matrix), expected, rtol=1e-12)
    np.testing.assert_allclose(
        jax.jit(ranks.singular_values)(matrix), expected, rtol=1e-12
    )
    assert ranks.singular_values(matrix).shape == (min(shape),)


def test_singular_values_vmap(x64):
    batch = np.random.default_rng(1).normal(size=(3, 4, 6))
    expected = np.linalg.svd(batch, compute_uv=False)
    np.testing.assert_allclose(jax.vmap(ranks.singular_values)(batch), expected)


def test_singular_values_of_integers_use_default_float():
    values = ranks.singular_values(jnp.array([[3, 0], [0, 4]]))
    assert values.dtype == jnp.result_type(float)
    np.testing.assert_allclose(values, [4.0, 3.0])


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4), ()])
def test_singular_values_reject_non_matrices(shape):
    with pytest.raises(ValueError, match=r"`matrix` must have 2 dimensions"):
        ranks.singular_values(jnp.zeros(shape))


# numerical_rank


@pytest.mark.parametrize(
    ("rows", "cols", "rank"), [(8, 6, 3), (6, 8, 3), (7, 7, 7), (10, 4, 1), (5, 9, 0)]
)
def test_numerical_rank_matches_numpy(x64, rows, cols, rank):
    rng = np.random.default_rng(rows * 100 + cols)
    matrix = rng.normal(size=(rows, rank)) @ rng.normal(size=(rank, cols))
    assert np.linalg.matrix_rank(matrix) == rank
    assert int(ranks.numerical_rank(matrix)) == rank
    assert int(jax.jit(ranks.numerical_rank)(matrix)) == rank


def test_numerical_rank_vmap(x64):
    rng = np.random.default_rng(2)
    known = [1, 2, 3, 4, 5]
    batch = np.stack([rng.normal(size=(6, r)) @ rng.normal(size=(r, 5)) for r in known])
    expected = [np.linalg.matrix_rank(m) for m in batch]
    assert expected == known
    got = jax.jit(jax.vmap(ranks.numerical_rank))(batch)
    np.testing.assert_array_equal(got, known)


def test_numerical_rank_of_outer_product():
    outer = jnp.outer(jnp.arange(1.0, 6.0), jnp.array([1.0, -2.0, 0.5]))
    assert int(ranks.numerical_rank(outer)) == 1


def test_numerical_rank_tolerances(x64):
    matrix = np.diag([1.0, 1e-3, 1e-9, 0.0])
    assert int(ranks.numerical_rank(matrix)) == 3
    assert int(ranks.numerical_rank(matrix, rtol=1e-2)) == 1
    assert int(ranks.numerical_rank(matrix, rtol=1e-6)) == 2
    assert int(ranks.numerical_rank(matrix, atol=1e-12, rtol=0.0)) == 3
    # The larger of the two tolerances wins.
    assert int(ranks.numerical_rank(matrix, rtol=1e-12, atol=1e-6)) == 2
    assert int(ranks.numerical_rank(matrix, rtol=1e-2, atol=1e-6)) == 1
    # Strictly above the cut.
    assert int(ranks.numerical_rank(matrix, atol=1e-3, rtol=0.0)) == 1
    # NumPy agrees on the same cut.
    assert np.linalg.matrix_rank(matrix, tol=1e-6) == 2


def test_numerical_rank_traced_tolerances(x64):
    matrix = jnp.diag(jnp.array([1.0, 1e-3, 1e-9]))
    rtols = jnp.array([1e-12, 1e-6, 1e-2, 2.0])
    got = jax.vmap(lambda rtol: ranks.numerical_rank(matrix, rtol=rtol))(rtols)
    np.testing.assert_array_equal(got, [3, 2, 1, 0])
    rank = jax.jit(lambda a: ranks.numerical_rank(matrix, atol=a))(1e-4)
    assert int(rank) == 2


def test_numerical_rank_default_rtol_follows_dtype():
    # 1e-8 is above float64's default cut (3 · eps64) but below float32's.
    matrix = np.diag([1.0, 1e-5, 1e-8])
    assert int(ranks.numerical_rank(matrix.astype(np.float32))) == 2
    with jax.enable_x64(True):
        assert int(ranks.numerical_rank(matrix)) == 3


def test_numerical_rank_zero_matrix_and_integers():
    assert int(ranks.numerical_rank(jnp.zeros((3, 4)))) == 0
    assert int(ranks.numerical_rank(jnp.array([[1, 2], [2, 4]]))) == 1


@pytest.mark.parametrize("name", ["rtol", "atol"])
def test_numerical_rank_rejects_negative_tolerances(name):
    with pytest.raises(ValueError, match=f"`{name}` must be non-negative"):
        ranks.numerical_rank(jnp.eye(3), **{name: -1e-3})


def test_numerical_rank_rejects_non_matrices():
    with pytest.raises(
        ValueError, match=r"`matrix` must have 2 dimensions.*\(2, 2, 2\)"
    ):
        ranks.numerical_rank(jnp.zeros((2, 2, 2)))


# singular_value_gap


def test_singular_value_gap_on_diagonal_matrix(x64):
    values = ranks.singular_values(np.diag([2.0, 100.0, 0.0, 1e-10, 5.0]))
    np.testing.assert_allclose(values, [100.0, 5.0, 2.0, 1e-10, 0.0])
    expected = {1: 20.0, 2: 2.5, 3: 2e10, 4: np.inf, 5: np.inf}
    for rank, gap in expected.items():
        np.testing.assert_allclose(ranks.singular_value_gap(values, rank), gap)
    assert np.isnan(ranks.singular_value_gap(values, 0))
    rank = ranks.numerical_rank(np.diag([2.0, 100.0, 0.0, 1e-10, 5.0]))
    assert int(rank) == 4
    assert ranks.singular_value_gap(values, rank) == np.inf


def test_singular_value_gap_at_rank_zero():
    assert ranks.singular_value_gap(jnp.zeros(3), 0) == jnp.inf
    assert jnp.isnan(ranks.singular_value_gap(jnp.array([1e-9, 0.0]), 0))
    assert ranks.singular_value_gap(jnp.zeros(0), 0) == jnp.inf


def test_singular_value_gap_traced_rank():
    values = jnp.array([8.0, 4.0, 1.0, 0.0])
    gaps = jax.jit(jax.vmap(ranks.singular_value_gap, in_axes=(None, 0)))(
        values, jnp.arange(-1, 6)
    )
    np.testing.assert_allclose(gaps, [np.nan, np.nan, 2.0, 4.0, np.inf, np.inf, np.nan])


def test_singular_value_gap_vmap_over_matrices(x64):
    rng = np.random.default_rng(3)
    batch = np.stack(
        [np.diag(rng.uniform(1.0, 2.0, 4) * [1, 1, 1e-20, 0][::s]) for s in (1, -1)]
    )
    values = jax.vmap(ranks.singular_values)(batch)
    rank = jax.vmap(ranks.numerical_rank)(batch)
    np.testing.assert_array_equal(rank, [2, 2])
    gaps = jax.vmap(ranks.singular_value_gap)(values, rank)
    expected = [v[1] / v[2] for v in np.asarray(values)]
    np.testing.assert_allclose(gaps, expected)


def test_singular_value_gap_bad_input():
    with pytest.raises(ValueError, match=r"`singular_values` must have 1 dimension"):
        ranks.singular_value_gap(jnp.ones((2, 2)), 1)
    with pytest.raises(TypeError, match=r"`rank` must be an integer"):
        ranks.singular_value_gap(jnp.ones(3), 1.0)
    with pytest.raises(ValueError, match=r"`rank` must lie in \[0, 3\]; got 4"):
        ranks.singular_value_gap(jnp.ones(3), 4)


# exact_rank


def test_default_modulus_is_prime_below_2_to_26():
    assert ranks.DEFAULT_MODULUS == 2**26 - 5
    modulus = ranks.DEFAULT_MODULUS
    assert all(modulus % d for d in range(2, int(modulus**0.5) + 1))
    assert all(
        any(m % d == 0 for d in range(2, 8193)) for m in range(modulus + 1, 2**26)
    )


@pytest.mark.parametrize(
    ("rows", "cols", "rank"),
    [(6, 4, 2), (4, 6, 2), (6, 4, 4), (4, 6, 3), (5, 5, 5), (5, 5, 1)],
)
def test_exact_rank_matches_references(x64, rows, cols, rank):
    # Few distinct shapes: each one is a compilation.
    rng = np.random.default_rng(rows * 10 + cols + 100 * rank)
    matrix = low_rank_integers(rng, rows, cols, rank)
    assert rank_over_rationals(matrix) == rank
    assert rank_modulo(matrix, ranks.DEFAULT_MODULUS) == rank
    assert int(ranks.exact_rank(matrix)) == rank


def test_exact_rank_under_jit(x64):
    rng = np.random.default_rng(7)
    matrix = low_rank_integers(rng, 4, 6, 3)
    assert rank_over_rationals(matrix) == 3
    assert int(jax.jit(ranks.exact_rank)(matrix)) == 3
    modulus_7 = jax.jit(lambda m: ranks.exact_rank(m, modulus=7))
    assert int(modulus_7(matrix * 7 + np.eye(4, 6, dtype=np.int64))) == 4


@pytest.mark.parametrize("seed", range(6))
def test_exact_rank_matches_python_reference_for_small_prime(x64, seed):
    # With p = 101 ranks modulo p often differ from ranks over Q; the jitted
    # elimination must reproduce the Python elimination over GF(101) exactly.
    rng = np.random.default_rng(seed)
    shape = [(5, 5), (4, 6), (6, 4)][seed % 3]
    matrix = rng.integers(-300, 300, shape) * rng.integers(0, 2, shape)
    matrix[:, 0] = matrix[:, 1] * 3 + SMALL_PRIME * rng.integers(-2, 3, shape[0])
    expected = rank_modulo(matrix, SMALL_PRIME)
    assert int(ranks.exact_rank(matrix, modulus=SMALL_PRIME)) == expected
    assert expected <= rank_over_rationals(matrix)


def test_exact_rank_vmap(x64):
    rng = np.random.default_rng(4)
    known = [0, 1, 2, 3, 4, 5]
    batch = np.stack([low_rank_integers(rng, 6, 5, r) for r in known])
    expected = [rank_over_rationals(m) for m in batch]
    assert expected == known
    got = jax.jit(jax.vmap(ranks.exact_rank))(batch)
    np.testing.assert_array_equal(got, known)
    got_wide = jax.vmap(ranks.exact_rank)(np.swapaxes(batch, 1, 2))
    np.testing.assert_array_equal(got_wide, known)


@pytest.mark.parametrize("shape", [(4, 6), (6, 4), (5, 5), (0, 3), (3, 0)])
def test_exact_rank_zero_matrix(x64, shape):
    assert int(ranks.exact_rank(jnp.zeros(shape, jnp.int64))) == 0


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (5, 5), (4, 6), (6, 4)])
def test_exact_rank_identity(x64, rows, cols):
    identity = jnp.eye(rows, cols, dtype=jnp.int64)
    assert int(ranks.exact_rank(identity)) == min(rows, cols)
    assert int(ranks.exact_rank(-identity[::-1])) == min(rows, cols)


def test_exact_rank_multiples_of_the_prime_vanish(x64):
    # A lower bound only: rank 3 over Q, 0 modulo p when every entry is a
    # multiple of p.
    rng = np.random.default_rng(5)
    matrix = low_rank_integers(rng, 6, 4, 3)
    modulus = ranks.DEFAULT_MODULUS
    assert rank_over_rationals(matrix * modulus) == 3
    assert int(ranks.exact_rank(matrix * modulus)) == 0
    assert int(ranks.exact_rank(matrix * modulus + np.eye(6, 4, dtype=np.int64))) == 4


def test_exact_rank_negative_and_large_entries(x64):
    rng = np.random.default_rng(6)
    matrix = low_rank_integers(rng, 5, 5, 4, low=-(2**20), high=2**20)
    assert matrix.min() < 0
    assert np.abs(matrix).max() > ranks.DEFAULT_MODULUS
    assert rank_over_rationals(matrix) == 4
    assert int(ranks.exact_rank(matrix)) == 4
    assert int(ranks.exact_rank(-matrix)) == 4
    # Reduction first: a negative entry equals its residue.
    assert int(ranks.exact_rank(np.array([[-1, 2], [2, -4 + 7]]), modulus=7)) == 1


def test_exact_rank_beyond_float_precision(x64):
    # Rank 2, but a float64 SVD of this matrix cannot see it.
    big = 2**40
    matrix = np.array([[big, big + 1], [big - 1, big]], dtype=np.int64)
    assert rank_over_rationals(matrix) == 2
    assert int(ranks.numerical_rank(matrix.astype(np.float64))) == 1
    assert int(ranks.exact_rank(matrix)) == 2


def test_exact_rank_other_integer_dtypes(x64):
    matrix = np.array([[1, -2], [-2, 4]])
    for dtype in (np.int8, np.int16, np.int32, np.uint8, np.uint32, np.uint64):
        expected = rank_modulo(matrix.astype(dtype), ranks.DEFAULT_MODULUS)
        assert int(ranks.exact_rank(matrix.astype(dtype))) == expected
    huge = np.array([[2**64 - 1, 1], [1, 1]], dtype=np.uint64)
    expected = rank_modulo(huge.astype(object), ranks.DEFAULT_MODULUS)
    assert expected == 2
    assert int(ranks.exact_rank(huge)) == expected
    assert ranks.exact_rank(matrix).dtype == jnp.int64


@pytest.mark.parametrize(
    "matrix",
    [np.eye(3), np.eye(3, dtype=np.float32), np.eye(3, dtype=bool), [[1.0, 2.0]]],
)
def test_exact_rank_rejects_non_integers(x64, matrix):
    with pytest.raises(TypeError, match=r"`matrix` must have an integer dtype"):
        ranks.exact_rank(matrix)


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4)])
def test_exact_rank_rejects_non_matrices(x64, shape):
    with pytest.raises(ValueError, match=r"`matrix` must have 2 dimensions"):
        ranks.exact_rank(jnp.zeros(shape, jnp.int64))


@pytest.mark.parametrize("modulus", [1, 0, -7, 2**31, 2**31 + 11])
def test_exact_rank_rejects_modulus_out_of_range(x64, modulus):
    with pytest.raises(
        ValueError, match=r"`modulus` must be a prime in \[2, 2\*\*31\)"
    ):
        ranks.exact_rank(jnp.eye(2, dtype=jnp.int64), modulus=modulus)


@pytest.mark.parametrize("modulus", [4, 100, 2**26, 8191 * 8209])
def test_exact_rank_rejects_composite_modulus(x64, modulus):
    with pytest.raises(ValueError, match=r"`modulus` must be prime"):
        ranks.exact_rank(jnp.eye(2, dtype=jnp.int64), modulus=modulus)


@pytest.mark.parametrize("modulus", [7.0, True, "7"])
def test_exact_rank_rejects_non_int_modulus(x64, modulus):
    with pytest.raises(TypeError, match=r"`modulus` must be an integer"):
        ranks.exact_rank(jnp.eye(2, dtype=jnp.int64), modulus=modulus)


def test_exact_rank_small_primes_accepted(x64):
    matrix = np.array([[1, 1], [1, 3]])
    assert int(ranks.exact_rank(matrix, modulus=2)) == 1
    assert int(ranks.exact_rank(matrix, modulus=3)) == 2
    assert int(ranks.exact_rank(matrix, modulus=2**31 - 1)) == 2
    assert int(ranks.exact_rank(matrix, modulus=np.int64(3))) == 2


def test_exact_rank_needs_x64():
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match=r"jax_enable_x64"):
            ranks.exact_rank(jnp.eye(3, dtype=jnp.int32))
        with pytest.raises(ValueError, match=r"jax_enable_x64"):
            ranks.exact_rank(np.eye(3, dtype=np.int64))
