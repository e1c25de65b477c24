import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconvac as jc
from jaxconvac.entanglement import (
    entanglement_entropy,
    exact_spectrum,
    geometric_measure,
    schmidt_number,
    schmidt_spectrum,
)


def _spectrum(tensor, row_modes):
    return jc.singular_values(jc.matricize(tensor, row_modes))


def _entropy_of(tensor, row_modes, **kwargs):
    return entanglement_entropy(_spectrum(tensor, row_modes), **kwargs)


def _numpy_entropy(values):
    p = np.asarray(values, np.float64) ** 2
    p = p / p.sum()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def test_singlet_has_entropy_ln2():
    singlet = jnp.outer(jnp.eye(2)[0], jnp.eye(2)[1]) - jnp.outer(*jnp.eye(2)[::-1])
    singlet = singlet / math.sqrt(2)
    np.testing.assert_allclose(_entropy_of(singlet, (0,)), math.log(2), rtol=1e-6)
    np.testing.assert_allclose(_entropy_of(singlet, (0,), base=2), 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        geometric_measure(_spectrum(singlet, (0,))), 0.5, rtol=1e-6
    )


def test_diagonal_state():
    matrix = jnp.diag(jnp.array([1.0, 1.0, 0.0, 0.0])) / math.sqrt(2)
    values = jc.singular_values(matrix)
    np.testing.assert_allclose(entanglement_entropy(values), math.log(2), rtol=1e-6)
    assert int(schmidt_number(values)) == 2
    assert int(schmidt_number(values, matrix_shape=(4, 4))) == 2
    np.testing.assert_allclose(schmidt_spectrum(values), [0.5, 0.5, 0, 0], atol=1e-7)


def test_product_state_entropy_zero_with_zero_gradient():
    u = jnp.array([0.3, -1.2, 0.5])
    v = jnp.array([2.0, 0.1])

    def entropy(matrix):
        return entanglement_entropy(jc.singular_values(matrix))

    product = jnp.outer(u, v)
    assert float(entropy(product)) == pytest.approx(0.0, abs=1e-6)
    grad = jax.grad(entropy)(product)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, 0.0, atol=1e-5)
    assert int(schmidt_number(jc.singular_values(product))) == 1
    assert float(geometric_measure(jc.singular_values(product))) == pytest.approx(
        0.0, abs=1e-6
    )


def test_mode_order_three_modes():
    # A[i, j, k] = u[i] · singlet[j, k]: mode 0 is a product factor.
    u = jnp.array([0.6, 0.8, 0.0])
    singlet = jnp.array([[0.0, 1.0], [-1.0, 0.0]]) / math.sqrt(2)
    tensor = jnp.einsum("i,jk->ijk", u, singlet)
    assert float(_entropy_of(tensor, (0,))) == pytest.approx(0.0, abs=1e-6)
    assert float(_entropy_of(tensor, (1,))) == pytest.approx(math.log(2), rel=1e-6)
    assert float(_entropy_of(tensor, (2,))) == pytest.approx(math.log(2), rel=1e-6)
    assert float(_entropy_of(tensor, (1, 2))) == pytest.approx(0.0, abs=1e-6)


def test_zero_tensor_is_not_entangled_and_has_finite_gradients():
    zero = jnp.zeros((3, 4))
    values = jc.singular_values(zero)
    assert float(entanglement_entropy(values)) == 0.0
    assert float(geometric_measure(values)) == 0.0
    assert int(schmidt_number(values)) == 0
    np.testing.assert_array_equal(schmidt_spectrum(values), np.zeros(3))
    for measure in (entanglement_entropy, geometric_measure):
        grad = jax.grad(lambda m, f=measure: f(jc.singular_values(m)))(zero)
        np.testing.assert_array_equal(grad, np.zeros((3, 4)))
    np.testing.assert_array_equal(jax.grad(entanglement_entropy)(values), 0.0)


def test_repeated_singular_values_have_finite_gradient():
    matrix = jnp.diag(jnp.array([1.0, 1.0, 1.0, 0.0]))
    for measure in (entanglement_entropy, geometric_measure):
        grad = jax.grad(lambda m, f=measure: f(jc.singular_values(m)))(matrix)
        assert np.all(np.isfinite(grad))
    # Uniform spectrum: the entropy is maximal, its gradient along the
    # uniform direction vanishes.
    grad = jax.grad(entanglement_entropy)(jnp.ones(4))
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)


def test_entropy_gradient_matches_finite_differences():
    values = jnp.array([1.0, 0.7, 0.2], jnp.float32)
    grad = jax.grad(entanglement_entropy)(values)
    step = 1e-3
    for k in range(3):
        shift = jnp.zeros(3).at[k].set(step)
        numeric = (_numpy_entropy(values + shift) - _numpy_entropy(values - shift)) / (
            2 * step
        )
        assert float(grad[k]) == pytest.approx(numeric, rel=1e-2, abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_against_numpy_under_jit_and_vmap(seed):
    rng = np.random.default_rng(seed)
    matrices = rng.normal(size=(5, 4, 6)).astype(np.float32)
    matrices[1] = 0.0
    spectra = jax.vmap(jc.singular_values)(jnp.asarray(matrices))
    entropies = jax.jit(jax.vmap(entanglement_entropy))(spectra)
    geometric = jax.jit(jax.vmap(geometric_measure))(spectra)
    numbers = jax.jit(jax.vmap(schmidt_number))(spectra)
    for k, matrix in enumerate(matrices):
        values = np.linalg.svd(matrix.astype(np.float64), compute_uv=False)
        if k == 1:
            assert float(entropies[k]) == 0.0 and float(geometric[k]) == 0.0
            assert int(numbers[k]) == 0
            continue
        assert float(entropies[k]) == pytest.approx(_numpy_entropy(values), rel=1e-5)
        p0 = values[0] ** 2 / (values**2).sum()
        assert float(geometric[k]) == pytest.approx(1 - p0, rel=1e-5)
        assert int(numbers[k]) == np.linalg.matrix_rank(matrix)


def test_huge_and_tiny_values_do_not_overflow():
    for scale in (1e30, 1e-30):
        values = jnp.array([1.0, 1.0], jnp.float32) * scale
        assert float(entanglement_entropy(values)) == pytest.approx(math.log(2))


def test_nan_spectrum_gives_nan_measures_not_a_number():
    # A NaN singular value must not be dropped: every measure is NaN (the
    # Schmidt number only counts values above its tolerance).
    values = jnp.array([1.0, jnp.nan, 0.5])
    assert bool(jnp.all(jnp.isnan(schmidt_spectrum(values))))
    assert math.isnan(float(entanglement_entropy(values)))
    assert math.isnan(float(geometric_measure(values)))
    assert math.isnan(float(jc.renyi_entropy(values)))
    assert math.isnan(float(jax.jit(entanglement_entropy)(values)))
    assert int(schmidt_number(values)) == 2


def test_schmidt_number_tolerances():
    values = jnp.array([1.0, 1e-3, 1e-9])
    assert int(schmidt_number(values)) == 2
    assert int(schmidt_number(values, rtol=1e-2)) == 1
    assert int(schmidt_number(values, rtol=0.0, atol=1e-12)) == 3


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: entanglement_entropy(jnp.ones((2, 2))), "1 dimension"),
        (lambda: entanglement_entropy(jnp.ones(2), base=1), "base"),
        (lambda: entanglement_entropy(jnp.ones(2), base=-2.0), "base"),
        (lambda: schmidt_number(jnp.ones(2), rtol=-1.0), "rtol"),
        (lambda: schmidt_number(jnp.ones(2), matrix_shape=(2,)), "matrix_shape"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- exact spectra ------------------------------------------------------------

_CASES = [
    (jc.ModeTree.balanced(8), 3, (2, 3, 4), [(0, 1, 2, 3), (0, 2, 4, 6), (1,), (3, 4)]),
    (jc.ModeTree.balanced(8), 2, (2, 2, 2), [(0, 1, 2, 3, 4, 5, 6), (5, 7)]),
    (jc.ModeTree.shallow(5), 3, (4,), [(0,), (1, 3)]),
    (jc.ModeTree.image(4, 4), 2, (3, 2), [(0, 1, 4, 5), (0, 1, 2, 3, 4, 5, 6, 7)]),
    (jc.ModeTree.image(4, 4), 2, (3, 2), [(0, 1, 4, 5, 8, 9, 12, 13), (0, 5, 10)]),
    (jc.ModeTree.image(4, 4, "mirror"), 2, (2, 3), [(0, 1, 4, 5), (0, 1, 2, 3)]),
    (jc.ModeTree.balanced(9, 3), 2, (2, 3), [(0, 1, 2), (0, 4, 8)]),
]


# One compilation per tree and shapes; eager evaluation compiles every op.
_coefficient = jax.jit(jc.coefficient_tensor, static_argnames=("tree", "space"))


def _materialised_spectra(params, tree, rows, tensor=None):
    if tensor is None:
        tensor = np.asarray(_coefficient(params, tree))
    spectra = []
    for output in tensor:
        values = np.linalg.svd(_numpy_matricize(output, rows), compute_uv=False)
        spectra.append(values)
    return spectra, np.log(np.linalg.norm(tensor.reshape(len(tensor), -1), axis=1))


def _float64_params(seed, tree, num_descriptors, widths, sharing, sign):
    """Two-output float64 params (call under x64); ``sign="positive"``: |W|."""
    params = jc.init_decomposition(
        jax.random.key(seed),
        tree,
        num_descriptors=num_descriptors,
        widths=widths,
        num_outputs=2,
        sharing=sharing,
        dtype=jnp.float64,
    )
    if sign == "positive":
        params = tuple(jnp.abs(p) for p in params)
    return params


def _assert_same_spectrum(exact, reference, atol=5e-8):
    # Gram matrices square the condition number: values are resolved to about
    # sqrt(eps) = 1.5e-8 of the largest, which is 1 here.
    k = min(len(exact), len(reference))
    np.testing.assert_allclose(exact[:k], reference[:k], atol=atol)
    np.testing.assert_allclose(exact[k:], 0.0, atol=atol)
    np.testing.assert_allclose(reference[k:], 0.0, atol=atol)


@pytest.mark.parametrize("case", range(len(_CASES)))
@pytest.mark.parametrize("sharing", ["none", "full"])
@pytest.mark.parametrize("sign", ["signed", "positive"])
def test_exact_spectrum_matches_materialised_svd(case, sharing, sign):
    tree, num_descriptors, widths, partitions = _CASES[case]
    with jax.enable_x64(True):
        params = _float64_params(case, tree, num_descriptors, widths, sharing, sign)
        tensor = np.asarray(_coefficient(params, tree))
        for rows in partitions:
            spectrum = exact_spectrum(params, tree, rows)
            references, log_norms = _materialised_spectra(params, tree, rows, tensor)
            assert spectrum.singular_values.dtype == jnp.float64
            for output, reference in enumerate(references):
                _assert_same_spectrum(
                    np.asarray(spectrum.singular_values[output]),
                    reference / np.sqrt(np.sum(reference**2)),
                )
            np.testing.assert_allclose(spectrum.log_norm, log_norms, rtol=1e-10)


def test_exact_spectrum_in_log_space():
    tree = jc.ModeTree.image(4, 4)
    with jax.enable_x64(True):
        log_params = jc.init_decomposition(
            jax.random.key(3),
            tree,
            num_descriptors=2,
            widths=(3, 3),
            num_outputs=2,
            dtype=jnp.float64,
        )
        log_params = tuple(p * 3.0 + 10.0 for p in log_params)
        rows = (0, 1, 4, 5)
        from_log = exact_spectrum(log_params, tree, rows, space="log")
        linear = tuple(jnp.exp(p) for p in log_params)
        direct = exact_spectrum(linear, tree, rows)
        references, log_norms = _materialised_spectra(linear, tree, rows)
    np.testing.assert_allclose(
        from_log.singular_values, direct.singular_values, atol=5e-8
    )
    np.testing.assert_allclose(from_log.log_norm, log_norms, rtol=1e-10)


def _log_space_reference(log_params, tree, rows):
    """Normalised SVD spectra and ``ln ‖A^y‖`` of a log-space network, via
    the log coefficient tensor shifted by its maximum (no overflow)."""
    log_tensor = np.asarray(_coefficient(log_params, tree, space="log"))
    shifts = log_tensor.reshape(len(log_tensor), -1).max(axis=1)
    spectra, log_norms = [], []
    for output, shift in zip(log_tensor, shifts, strict=True):
        values = np.linalg.svd(
            _numpy_matricize(np.exp(output - shift), rows), compute_uv=False
        )
        norm = np.linalg.norm(values)
        spectra.append(values / norm)
        log_norms.append(np.log(norm) + shift)
    return spectra, np.array(log_norms)


@pytest.mark.parametrize("scale", [15.0, 30.0])
@pytest.mark.parametrize("rank_rtol", [None, 0.0])
def test_exact_spectrum_log_space_with_widely_spread_weights(scale, rank_rtol):
    # Log-weights spread over ±45 nats: channels of a node differ by e^60 and
    # more, and parents enlarge what children shrink. Unscaled Gram matrices
    # lose the small channels (a spectrum off by 0.4, a norm by 3 nats).
    tree = jc.ModeTree.balanced(8)
    with jax.enable_x64(True):
        log_params = jc.init_decomposition(
            jax.random.key(3),
            tree,
            num_descriptors=2,
            widths=(3, 3, 3),
            num_outputs=2,
            dtype=jnp.float64,
        )
        log_params = tuple(p * scale for p in log_params)
        for rows in [(0, 2, 4, 6), (0, 1, 2, 3), (0, 1, 4), (1, 6, 7)]:
            spectrum = exact_spectrum(
                log_params, tree, rows, space="log", rank_rtol=rank_rtol
            )
            references, log_norms = _log_space_reference(log_params, tree, rows)
            for output, reference in enumerate(references):
                _assert_same_spectrum(
                    np.asarray(spectrum.singular_values[output]), reference
                )
            np.testing.assert_allclose(spectrum.log_norm, log_norms, atol=1e-9)


def test_exact_spectrum_channels_shrunk_and_enlarged_again():
    # Linear weights: each level scales its output channels by 10^±12 and the
    # next level undoes it, so the coefficient tensor is an ordinary one.
    tree = jc.ModeTree.image(4, 4)
    rng = np.random.default_rng(7)
    with jax.enable_x64(True):
        params = [
            np.array(p)
            for p in jc.init_decomposition(
                jax.random.key(5),
                tree,
                num_descriptors=2,
                widths=(3, 3),
                num_outputs=2,
                dtype=jnp.float64,
            )
        ]
        for level in range(len(params) - 1):
            scales = 10.0 ** rng.uniform(-12, 12, size=params[level].shape[1])
            params[level] = params[level] * scales[None, :, None]
            params[level + 1] = params[level + 1] / scales[None, None, :]
        params = tuple(params)
        tensor = np.asarray(_coefficient(params, tree))
        for rows in [(0, 1, 4, 5), (0, 1, 2, 3, 4, 5, 6, 7), (0, 5, 10)]:
            spectrum = exact_spectrum(params, tree, rows)
            references, log_norms = _materialised_spectra(params, tree, rows, tensor)
            for output, reference in enumerate(references):
                _assert_same_spectrum(
                    np.asarray(spectrum.singular_values[output]),
                    reference / np.linalg.norm(reference),
                )
            np.testing.assert_allclose(spectrum.log_norm, log_norms, atol=1e-9)


def test_exact_spectrum_ranks_channels_by_what_they_contribute():
    # Both halves' nodes (level 2) have 3 channels, one shrunk by 1e-12. If
    # the root leaves it small, it cannot change the tensor beyond round-off
    # (its term is 1e-24 of the others: the root multiplies the two halves)
    # and is cut (cut dimension 2); if the root enlarges it again by 1e24, it
    # matters as much as the others and is kept (3). Both match the SVD.
    tree = jc.ModeTree.balanced(8)
    rows = (0, 1, 2, 3)
    with jax.enable_x64(True):
        base = [
            np.array(p)
            for p in jc.init_decomposition(
                jax.random.key(6),
                tree,
                num_descriptors=2,
                widths=(3, 3, 3),
                num_outputs=2,
                dtype=jnp.float64,
            )
        ]
        base[2][:, 2] *= 1e-12
        enlarged = [*base[:3], base[3].copy()]
        enlarged[3][:, :, 2] *= 1e24
        for params, cut in ((base, 2), (enlarged, 3)):
            params = tuple(params)
            spectrum = exact_spectrum(params, tree, rows)
            assert spectrum.cut_dimension == cut
            assert exact_spectrum(params, tree, rows, rank_rtol=0).cut_dimension == 3
            references, log_norms = _materialised_spectra(params, tree, rows)
            for output, reference in enumerate(references):
                _assert_same_spectrum(
                    np.asarray(spectrum.singular_values[output]),
                    reference / np.linalg.norm(reference),
                )
            np.testing.assert_allclose(spectrum.log_norm, log_norms, atol=1e-9)
        # Enlarged, the third channel carries a visible part of the spectrum.
        assert float(spectrum.singular_values[0, 1]) > 1e-3


def test_exact_spectrum_and_purity_of_integer_and_boolean_weights():
    # Integer (or boolean) weights give float results equal to those of the
    # same weights as floats, not integers cut from them.
    tree = jc.ModeTree.balanced(4)
    rng = np.random.default_rng(0)
    integer = tuple(
        rng.integers(1, 4, size=shape) for shape in [(1, 2, 2), (1, 2, 2), (1, 1, 2)]
    )
    for params in (integer, tuple(p != 2 for p in integer)):
        floats = tuple(p.astype(np.float32) for p in params)
        spectrum, reference = (
            exact_spectrum(p, tree, (0, 2)) for p in (params, floats)
        )
        purity, purity_reference = (
            exact_purity(p, tree, (0, 2)) for p in (params, floats)
        )
        for got, want in [
            (spectrum.singular_values, reference.singular_values),
            (spectrum.log_norm, reference.log_norm),
            (purity.log_purity, purity_reference.log_purity),
            (purity.log_norm, purity_reference.log_norm),
        ]:
            assert got.dtype == jnp.float32
            np.testing.assert_allclose(got, want, rtol=1e-6)
        assert np.isfinite(float(reference.log_norm[0]))  # Not a zero tensor.


def test_exact_spectrum_large_image_network():
    # 32×32 pixels, 5 levels of 2×2 pooling, width 32: far too large to
    # materialise. Halves and quadrants are unions of tree nodes; the spectrum
    # has at most r = 32 values there, and the entropy is the same across a
    # partition and its complement.
    tree = jc.ModeTree.image(32, 32)
    params = jc.init_decomposition(
        jax.random.key(0), tree, num_descriptors=2, widths=(32,) * 5, num_outputs=3
    )
    pixels = np.arange(1024).reshape(32, 32)
    left = exact_spectrum(params, tree, pixels[:, :16].ravel().tolist())
    right = exact_spectrum(params, tree, pixels[:, 16:].ravel().tolist())
    quadrant = exact_spectrum(params, tree, pixels[:16, :16].ravel().tolist())
    assert left.singular_values.shape == (3, 32)
    assert quadrant.singular_values.shape == (3, 32)
    assert np.all(np.isfinite(left.log_norm)) and np.all(
        np.isfinite(left.singular_values)
    )
    np.testing.assert_allclose(left.singular_values, right.singular_values, atol=1e-5)
    np.testing.assert_allclose(
        np.sum(np.square(left.singular_values), axis=1), 1.0, rtol=1e-5
    )
    entropy = entanglement_entropy(left.singular_values[0])
    assert 0 < float(entropy) <= math.log(32) + 1e-5


def test_exact_spectrum_of_zero_tensor():
    tree = jc.ModeTree.balanced(4)
    params = jc.init_decomposition(
        jax.random.key(0), tree, num_descriptors=2, widths=(2, 2), num_outputs=1
    )
    params = (*params[:-1], jnp.zeros_like(params[-1]))
    spectrum = exact_spectrum(params, tree, (0, 1))
    np.testing.assert_array_equal(spectrum.singular_values, 0.0)
    assert float(spectrum.log_norm[0]) == -np.inf
    assert float(entanglement_entropy(spectrum.singular_values[0])) == 0.0


@pytest.mark.parametrize(
    "rows, message",
    [
        ((), "empty"),
        ((0, 0), "repeats"),
        ((8,), "0 … 7"),
        (tuple(range(8)), "proper subset"),
    ],
)
def test_exact_spectrum_bad_partition(rows, message):
    tree = jc.ModeTree.balanced(8)
    params = jc.init_decomposition(
        jax.random.key(0), tree, num_descriptors=2, widths=(2, 2, 2), num_outputs=1
    )
    with pytest.raises(ValueError, match=message):
        exact_spectrum(params, tree, rows)


def test_exact_spectrum_refuses_large_cuts():
    tree = jc.ModeTree.balanced(16)
    params = jc.init_decomposition(
        jax.random.key(0), tree, num_descriptors=2, widths=(4,) * 4, num_outputs=1
    )
    odd_even = jc.odd_even_modes(16)
    # Interleaved: the tracked dimension doubles at every level: 2, 4, 16, 256.
    with pytest.raises(ValueError, match="cut dimension of this partition is 256"):
        exact_spectrum(params, tree, odd_even, max_cut_dimension=100)
    assert exact_spectrum(params, tree, odd_even).cut_dimension == 256
    with pytest.raises(ValueError, match="space"):
        exact_spectrum(params, tree, odd_even, space="logs")
    with pytest.raises(ValueError, match="params"):
        exact_spectrum(params[:-1], tree, odd_even)


def test_astronomical_cuts_are_refused_with_their_size_not_an_overflow():
    # A mirror-pooled 32×32 net split into halves: every first-level window is
    # cut, so the tracked dimension is about 10^154; its planned cost must not
    # overflow a float before the cut-dimension check can name it.
    tree = jc.ModeTree.image(32, 32, "mirror")
    rng = np.random.default_rng(0)
    sizes = (2, 8, 8, 8, 8, 8)
    params = tuple(
        rng.normal(size=(1, sizes[level + 1], sizes[level]))
        for level in range(tree.depth)
    ) + (rng.normal(size=(1, 2, 8)),)
    left = [row * 32 + col for row in range(32) for col in range(16)]
    with pytest.raises(
        ValueError, match=r"cut dimension of this partition is about 10\^154"
    ):
        exact_spectrum(params, tree, left, rank_rtol=0)
    # The numerical ranks of the cut windows' Gram matrices lower it, not enough.
    with pytest.raises(
        ValueError, match=r"cut dimension of this partition is about 10\^1[0-5]\d"
    ):
        exact_spectrum(params, tree, left)


# -- exact spectra: every contraction path, against the materialised SVD -------

from jaxconvac.entanglement import _plan  # noqa: E402

_RANDOM_CASES = [
    # tree, M, widths: the upper widths are narrow or wide so that the path
    # sometimes continues into a cut child and sometimes ends on a factor.
    (jc.ModeTree.balanced(16), 2, (2, 3, 2, 3)),
    (jc.ModeTree.image(4, 4), 2, (2, 5)),
    (jc.ModeTree.balanced(8), 3, (3, 2, 3)),
    (jc.ModeTree.balanced(9, 3), 3, (3, 2)),
]


def _path_features(plan):
    """Which code paths a plan uses (for the coverage assertion)."""
    features = set()
    for level, node, finisher in plan.path:
        dims = plan.dims[level, node]
        window_cut = sum(
            plan.kinds[level - 1][child] == 2
            for child in range(node * 4, node * 4 + 4)
            if child < len(plan.kinds[level - 1])
        )
        if finisher is not None and dims.has_factor:
            features.add("factor folded into the environment")
        if finisher is not None and window_cut > 1:
            features.add("partial trace folded into the environment")
        if finisher is None and len(plan.path) > 1:
            features.add("path ends below the root")
    if plan.cut_dimension > max(d.factor_rank for d in plan.dims.values()):
        features.add("open indices carried down")
    return features


def _numpy_matricize(tensor, rows):
    """SPEC §3 in NumPy: axes ``I`` then ``J`` (sorted), C-order reshape."""
    cols = [i for i in range(tensor.ndim) if i not in rows]
    moved = np.transpose(tensor, list(rows) + cols)
    return moved.reshape(int(np.prod([tensor.shape[i] for i in rows])), -1)


def test_exact_spectrum_random_partitions_every_path():
    rng = np.random.default_rng(0)
    seen = set()
    with jax.enable_x64(True):
        for tree, num_descriptors, widths in _RANDOM_CASES:
            sizes = (num_descriptors, *widths, 2)
            # NumPy draws (no compilation); one weight matrix per node.
            params = tuple(
                rng.normal(size=(tree.num_nodes(level), sizes[level + 1], sizes[level]))
                for level in range(tree.depth)
            ) + (rng.normal(size=(1, 2, sizes[-2])),)
            tensor = np.asarray(_coefficient(params, tree))
            for _ in range(5):
                size = int(rng.integers(1, tree.num_modes))
                rows = sorted(rng.choice(tree.num_modes, size, replace=False).tolist())
                spectrum = exact_spectrum(params, tree, rows)
                mask = np.isin(np.arange(tree.num_modes), rows)
                for side in (mask, ~mask):
                    seen |= _path_features(_plan(tree, side, sizes, 2))
                for output in range(2):
                    matrix = _numpy_matricize(tensor[output], rows)
                    reference = np.linalg.svd(matrix, compute_uv=False)
                    _assert_same_spectrum(
                        np.asarray(spectrum.singular_values[output]),
                        reference / np.linalg.norm(reference),
                    )
    assert seen == {
        "factor folded into the environment",
        "partial trace folded into the environment",
        "path ends below the root",
        "open indices carried down",
    }


def test_exact_spectrum_unions_of_far_nodes():
    # Two or three tree nodes far apart: several cut branches meet.
    tree = jc.ModeTree.balanced(16)
    with jax.enable_x64(True):
        params = jc.init_decomposition(
            jax.random.key(5),
            tree,
            num_descriptors=2,
            widths=(2, 4, 4, 3),
            num_outputs=3,
            sharing="full",
            dtype=jnp.float64,
        )
        params = tuple(jnp.abs(p) for p in params[:-1]) + (params[-1],)
        tensor = np.asarray(_coefficient(params, tree))
        for rows in [(0, 1, 8, 9), (0, 6, 7, 12), (2, 3, 4, 5, 14), (4, 5, 6, 7, 13)]:
            spectrum = exact_spectrum(params, tree, rows)
            complement = [i for i in range(16) if i not in rows]
            other = exact_spectrum(params, tree, complement)
            for output in range(3):
                matrix = _numpy_matricize(tensor[output], rows)
                reference = np.linalg.svd(matrix, compute_uv=False)
                reference = reference / np.linalg.norm(reference)
                _assert_same_spectrum(
                    np.asarray(spectrum.singular_values[output]), reference
                )
                _assert_same_spectrum(
                    np.asarray(other.singular_values[output]), reference
                )


def test_exact_spectrum_outputs_subset():
    tree = jc.ModeTree.image(4, 4)
    params = jc.init_decomposition(
        jax.random.key(1), tree, num_descriptors=2, widths=(3, 3), num_outputs=4
    )
    rows = (0, 1, 4, 5, 10)
    full = exact_spectrum(params, tree, rows)
    part = exact_spectrum(params, tree, rows, outputs=(3, 1))
    chosen = np.array([3, 1])
    np.testing.assert_allclose(part.singular_values, full.singular_values[chosen])
    np.testing.assert_allclose(part.log_norm, full.log_norm[chosen])


def test_exact_spectrum_log_space_zero_weights():
    # A log-weight of -inf is a zero weight: allowed, same as linear zeros.
    tree = jc.ModeTree.balanced(8)
    with jax.enable_x64(True):
        log_params = jc.init_decomposition(
            jax.random.key(2),
            tree,
            num_descriptors=2,
            widths=(2, 3, 2),
            num_outputs=1,
            dtype=jnp.float64,
        )
        log_params = (log_params[0].at[0, 0, 1].set(-jnp.inf), *log_params[1:])
        rows = (0, 3, 4)
        from_log = exact_spectrum(log_params, tree, rows, space="log")
        linear = tuple(jnp.exp(p) for p in log_params)
        references, log_norms = _materialised_spectra(linear, tree, rows)
    _assert_same_spectrum(
        np.asarray(from_log.singular_values[0]),
        references[0] / np.linalg.norm(references[0]),
    )
    np.testing.assert_allclose(from_log.log_norm, log_norms, rtol=1e-10)


def test_exact_spectrum_cost_of_image_partitions():
    # The plans (no computation) for a 32×32 network of width 64: halves,
    # quadrants, blocks and unions of sibling blocks need no more than one
    # r × r eigenproblem per output and intermediates of 2 r² entries. A 2×2
    # block and two pixels far from it multiply their spans: 16 · (2 · 2).
    tree = jc.ModeTree.image(32, 32)
    sizes = (2, 64, 64, 64, 64, 64, 10)
    pixels = np.arange(1024).reshape(32, 32)
    cheap = {
        "left": pixels[:, :16],
        "top": pixels[:16],
        "quadrant": pixels[16:, :16],
        "block 4x4": pixels[4:8, 8:12],
        "block 8x8": pixels[8:16, 8:16],
        "siblings": pixels[0:4, 0:8],
    }
    for name, rows in cheap.items():
        mask = np.isin(np.arange(1024), rows.ravel())
        plan = min(
            (_plan(tree, side, sizes, 10) for side in (mask, ~mask)),
            key=lambda p: p.flops,
        )
        assert plan.cut_dimension <= 64, name
        assert plan.peak_entries <= 2 * 64 * 64, name
        assert plan.flops < 5e7, name
    far = np.isin(np.arange(1024), np.r_[pixels[0:2, 0:2].ravel(), [990, 991]])
    plan = _plan(tree, far, sizes, 10)
    assert plan.cut_dimension == 16 * 4  # 2×2 block (16) and 2 pixels (2 · 2).


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"outputs": ()}, ValueError, "outputs is empty"),
        ({"outputs": (2,)}, ValueError, r"outputs\[0\] = 2 is out of range"),
        ({"outputs": (0, 0)}, ValueError, "repeats"),
        ({"outputs": (0.0,)}, TypeError, "outputs"),
        ({"max_cut_dimension": 0}, ValueError, "max_cut_dimension must be positive"),
        ({"max_cut_dimension": True}, TypeError, "max_cut_dimension"),
        ({"max_entries": 2.0}, TypeError, "max_entries"),
    ],
)
def test_exact_spectrum_bad_options(kwargs, error, message):
    tree = jc.ModeTree.balanced(4)
    params = jc.init_decomposition(
        jax.random.key(0), tree, num_descriptors=2, widths=(2, 2), num_outputs=2
    )
    with pytest.raises(error, match=message):
        exact_spectrum(params, tree, (0,), **kwargs)


def test_exact_spectrum_bad_weights_and_memory_limit():
    tree = jc.ModeTree.balanced(16)
    params = jc.init_decomposition(
        jax.random.key(0), tree, num_descriptors=2, widths=(4,) * 4, num_outputs=1
    )
    broken = (params[0].at[0, 0, 0].set(jnp.nan), *params[1:])
    with pytest.raises(ValueError, match=r"params\[0\] has 1 non-finite"):
        exact_spectrum(broken, tree, (0, 1))
    infinite = (*params[:-1], params[-1].at[0, 0, 0].set(jnp.inf))
    with pytest.raises(ValueError, match=r"params\[4\] has 1 non-finite"):
        exact_spectrum(infinite, tree, (0, 1), space="log")
    with pytest.raises(ValueError, match="intermediate array of .* above max_entries"):
        exact_spectrum(params, tree, jc.odd_even_modes(16), max_entries=1000)
    with pytest.raises(TypeError, match="ModeTree"):
        exact_spectrum(params, "tree", (0, 1))
    empty = (params[0][:, :0], params[1][:, :, :0], *params[2:])
    with pytest.raises(ValueError, match=r"params\[0\] has shape .* positive"):
        exact_spectrum(empty, tree, (0, 1))


# -- Rényi entropies and the exact purity --------------------------------------

from jaxconvac.entanglement import exact_purity, renyi_entropy  # noqa: E402


def _numpy_purity(tensor, rows):
    values = np.linalg.svd(_numpy_matricize(tensor, rows), compute_uv=False)
    p = values**2 / np.sum(values**2)
    return float(np.sum(p**2))


def test_renyi_entropy_closed_forms():
    # diag(1, 1, 0, 0)/√2: two equal Schmidt values, every order gives ln 2.
    two = jnp.array([1.0, 1.0, 0.0, 0.0]) / math.sqrt(2)
    for order in (0.5, 2, 3.0, math.inf):
        assert float(renyi_entropy(two, order)) == pytest.approx(math.log(2), abs=1e-6)
    assert float(renyi_entropy(two, base=2)) == pytest.approx(1.0, abs=1e-6)
    # p = (0.8, 0.2): S_2 = −ln(0.68), S_inf = −ln(0.8), both below S_1.
    values = jnp.sqrt(jnp.array([0.8, 0.2]))
    assert float(renyi_entropy(values)) == pytest.approx(-math.log(0.68), rel=1e-6)
    assert float(renyi_entropy(values, math.inf)) == pytest.approx(
        -math.log(0.8), rel=1e-6
    )
    assert float(renyi_entropy(values)) < float(entanglement_entropy(values))
    # Product state and zero tensor: 0, with finite gradients.
    for spectrum in (jnp.array([2.0, 0.0, 0.0]), jnp.zeros(3)):
        assert float(renyi_entropy(spectrum)) == 0.0
        gradient = jax.grad(lambda s: renyi_entropy(s))(spectrum)
        assert np.all(np.isfinite(np.asarray(gradient)))
    # Jittable and vmappable.
    batch = jnp.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(
        jax.jit(jax.vmap(renyi_entropy))(batch), [math.log(2), 0.0], atol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"order": 1}, ValueError, "order must be positive and not 1"),
        ({"order": 0}, ValueError, "order must be positive"),
        ({"order": "2"}, TypeError, "order must be a number"),
        ({"base": 1}, ValueError, "base"),
    ],
)
def test_renyi_entropy_bad_input(kwargs, error, message):
    with pytest.raises(error, match=message):
        renyi_entropy(jnp.ones(2), **kwargs)


_PURITY_CASES = [
    (jc.ModeTree.balanced(8), 3, (2, 3, 2)),
    (jc.ModeTree.image(4, 4), 2, (3, 4)),
    (jc.ModeTree.image(4, 4, "mirror"), 2, (3, 4)),
    (jc.ModeTree.balanced(9, 3), 2, (3, 2)),
    (jc.ModeTree.shallow(5), 3, (4,)),
]


@pytest.mark.parametrize("case", range(len(_PURITY_CASES)))
@pytest.mark.parametrize("sharing", ["none", "full"])
@pytest.mark.parametrize("sign", ["signed", "positive"])
def test_exact_purity_matches_materialised_svd(case, sharing, sign):
    tree, num_descriptors, widths = _PURITY_CASES[case]
    rng = np.random.default_rng(case)
    with jax.enable_x64(True):
        params = _float64_params(case, tree, num_descriptors, widths, sharing, sign)
        tensor = np.asarray(_coefficient(params, tree))
        for _ in range(4):
            size = int(rng.integers(1, tree.num_modes))
            rows = sorted(rng.choice(tree.num_modes, size, replace=False).tolist())
            result = exact_purity(params, tree, rows)
            assert result.log_purity.dtype == jnp.float64
            for output in range(2):
                assert math.exp(float(result.log_purity[output])) == pytest.approx(
                    _numpy_purity(tensor[output], rows), rel=1e-10
                )
            np.testing.assert_allclose(
                result.log_norm,
                np.log(np.linalg.norm(tensor.reshape(2, -1), axis=1)),
                rtol=1e-10,
            )


def test_exact_purity_agrees_with_exact_spectrum_and_bounds_it():
    # A 16×16 square-pooled network: halves and a block are within reach of
    # exact_spectrum; there S_2 from the purity equals S_2 of the spectrum and
    # lies below the entanglement entropy.
    tree = jc.ModeTree.image(16, 16)
    with jax.enable_x64(True):
        params = jc.init_decomposition(
            jax.random.key(7),
            tree,
            num_descriptors=2,
            widths=(4, 5, 6, 7),
            num_outputs=2,
            dtype=jnp.float64,
        )
        pixels = np.arange(256).reshape(16, 16)
        for rows in (pixels[:, :8].ravel(), pixels[4:8, 8:12].ravel()):
            rows = rows.tolist()
            spectrum = exact_spectrum(params, tree, rows)
            purity = exact_purity(params, tree, rows)
            for output in range(2):
                values = spectrum.singular_values[output]
                assert float(purity.renyi2_entropy()[output]) == pytest.approx(
                    float(renyi_entropy(values)), rel=1e-6
                )
                assert float(purity.renyi2_entropy()[output]) <= float(
                    entanglement_entropy(values)
                )
            np.testing.assert_allclose(purity.log_norm, spectrum.log_norm, rtol=1e-10)


def test_exact_purity_of_mirror_halves_beyond_exact_spectrum():
    # Mirror pooling over 32×32 pixels: the halves cut every first-level
    # window (exact_spectrum refuses, cut dimension about 10^154), the purity
    # does not. With the same weights at every node (full sharing) and copies
    # of them per node (no sharing), the results agree: the second run
    # computes every node, the first reuses equal subtrees.
    tree = jc.ModeTree.image(32, 32, "mirror")
    rng = np.random.default_rng(3)
    sizes = (2, 3, 3, 3, 3, 3)
    shared = tuple(
        rng.normal(size=(1, sizes[level + 1], sizes[level]))
        for level in range(tree.depth)
    ) + (rng.normal(size=(1, 2, 3)),)
    per_node = tuple(
        np.repeat(w, tree.num_nodes(level), axis=0) for level, w in enumerate(shared)
    )
    left = [row * 32 + col for row in range(32) for col in range(16)]
    with pytest.raises(ValueError, match="cut dimension"):
        exact_spectrum(shared, tree, left)
    one, other = exact_purity(shared, tree, left), exact_purity(per_node, tree, left)
    np.testing.assert_allclose(one.log_purity, other.log_purity, rtol=1e-5)
    entropy = np.asarray(one.renyi2_entropy())
    bound = jc.min_cut_bound(tree, (3,) * 5, 2, left).bound
    assert np.all(entropy > 0) and np.all(entropy <= math.log(bound))


def test_exact_purity_log_space_and_zero_tensor():
    tree = jc.ModeTree.image(4, 4, "mirror")
    with jax.enable_x64(True):
        log_params = jc.init_decomposition(
            jax.random.key(1),
            tree,
            num_descriptors=2,
            widths=(3, 3),
            num_outputs=2,
            dtype=jnp.float64,
        )
        log_params = tuple(3.0 * p + 20.0 for p in log_params)
        rows = (0, 1, 4, 5, 8, 9, 12, 13)
        from_log = exact_purity(log_params, tree, rows, space="log")
        linear = exact_purity(tuple(jnp.exp(p) for p in log_params), tree, rows)
        np.testing.assert_allclose(from_log.log_purity, linear.log_purity, rtol=1e-10)
        np.testing.assert_allclose(from_log.log_norm, linear.log_norm, rtol=1e-10)
        zero = (*log_params[:-1], jnp.zeros_like(log_params[-1]))
        result = exact_purity(zero, tree, rows)
        np.testing.assert_array_equal(result.renyi2_entropy(), 0.0)
    assert np.all(np.asarray(result.log_purity) == -np.inf)
    assert np.all(np.asarray(result.log_norm) == -np.inf)


@pytest.mark.parametrize(
    "rows, kwargs, error, message",
    [
        ((), {}, ValueError, "empty"),
        ((0, 0), {}, ValueError, "repeats"),
        ((16,), {}, ValueError, "0 … 15"),
        (tuple(range(16)), {}, ValueError, "proper subset"),
        ((0,), {"outputs": (5,)}, ValueError, r"outputs\[0\] = 5 is out of range"),
        ((0,), {"space": "exp"}, ValueError, "space"),
        ((0,), {"max_entries": 80}, ValueError, r"r\^4 = 81 .* max_entries=80"),
        ((0,), {"max_entries": 1.0}, TypeError, "max_entries must be an int"),
    ],
)
def test_exact_purity_bad_input(rows, kwargs, error, message):
    tree = jc.ModeTree.image(4, 4, "mirror")
    params = jc.init_decomposition(
        jax.random.key(0), tree, num_descriptors=2, widths=(3, 3), num_outputs=2
    )
    with pytest.raises(error, match=message):
        exact_purity(params, tree, rows, **kwargs)
    with pytest.raises(ValueError, match="params"):
        exact_purity(params[:-1], tree, (0,))


def _assert_two_outputs_match_svd(params, tree, rows, spectra):
    with jax.enable_x64(True):
        tensor = np.asarray(_coefficient(tuple(params), tree))
    for output in range(2):
        reference = np.linalg.svd(
            _numpy_matricize(tensor[output], rows), compute_uv=False
        )
        reference = reference / np.linalg.norm(reference)
        for spectrum in spectra:
            _assert_same_spectrum(
                np.asarray(spectrum.singular_values[output], np.float64),
                reference,
                atol=2e-6,
            )


def test_exact_spectrum_cuts_pure_nodes_to_their_numerical_rank():
    # Level-1 weights of rank 2 (4 channels): each pair of leaves spans 2
    # dimensions, not the 4 of the widths. Two far pairs: cut dimension 2 · 2
    # instead of 4 · 4, and the same spectrum as the proven plan and the SVD.
    tree = jc.ModeTree.balanced(16)
    rng = np.random.default_rng(4)
    sizes = (2, 3, 4, 4, 3)
    params = [rng.normal(size=(1, sizes[1], sizes[0]))]
    params.append(rng.normal(size=(1, 4, 2)) @ rng.normal(size=(1, 2, 3)))
    params += [rng.normal(size=(1, sizes[3], sizes[2])), rng.normal(size=(1, 3, 4))]
    params.append(rng.normal(size=(1, 2, 3)))
    rows = (0, 1, 8, 9)
    numerical = exact_spectrum(params, tree, rows)
    proven = exact_spectrum(params, tree, rows, rank_rtol=0)
    assert (numerical.cut_dimension, proven.cut_dimension) == (4, 16)
    _assert_two_outputs_match_svd(params, tree, rows, (numerical, proven))


@pytest.mark.parametrize(
    "rank_rtol, error, message",
    [
        (-1e-3, ValueError, r"rank_rtol must be in \[0, 1\), got -0.001"),
        (1.0, ValueError, r"rank_rtol must be in \[0, 1\), got 1.0"),
        (float("nan"), ValueError, r"rank_rtol must be in \[0, 1\)"),
        ("1e-8", TypeError, "rank_rtol must be None or a number, got '1e-8'"),
        (True, TypeError, "rank_rtol must be None or a number, got True"),
    ],
)
def test_exact_spectrum_bad_rank_rtol(rank_rtol, error, message):
    tree = jc.ModeTree.balanced(4)
    params = jc.init_decomposition(
        jax.random.key(0), tree, num_descriptors=2, widths=(2, 2), num_outputs=1
    )
    with pytest.raises(error, match=message):
        exact_spectrum(params, tree, (0,), rank_rtol=rank_rtol)


def _psd_matrix(rng, size, rank, scales=None):
    factor = rng.normal(size=(size, rank))
    if scales is not None:
        factor = factor * scales
    return factor @ factor.T


@pytest.mark.parametrize(
    "size, rank, scales",
    [
        (200, 7, None),  # Low rank: the pivoted Cholesky path.
        (200, 24, np.logspace(0, -3, 24)),  # Eigenvalues spread over 6 decades.
        (200, 200, None),  # Full rank: the dense solver after the attempt.
        (96, 13, None),  # Rank above the budget of 96 // 8 = 12 steps.
        (40, 3, None),  # Too small to try.
    ],
)
def test_psd_eigenvalues_match_the_dense_solver(size, rank, scales):
    from jaxconvac.entanglement import _psd_eigenvalues

    rng = np.random.default_rng(size + rank)
    matrix = _psd_matrix(rng, size, rank, scales)
    values = _psd_eigenvalues(matrix)
    reference = np.linalg.eigvalsh(matrix)[::-1]
    assert values.shape == (size,)
    assert np.all(values >= 0) and np.all(np.diff(values) <= 0)
    # Weyl: every eigenvalue within size · eps of the largest diagonal entry.
    tolerance = size * np.finfo(np.float64).eps * np.max(np.diagonal(matrix))
    np.testing.assert_allclose(values, np.maximum(reference, 0), rtol=0, atol=tolerance)
    assert int(np.sum(values > 1e-9 * values[0])) == rank


def test_psd_eigenvalues_of_zero_matrix():
    from jaxconvac.entanglement import _psd_eigenvalues

    np.testing.assert_array_equal(_psd_eigenvalues(np.zeros((100, 100))), 0.0)


def test_exact_spectrum_low_rank_large_cut_matches_materialised_svd(monkeypatch):
    # Four far pairs of leaves, each spanning 2 of its 4 channels; with the
    # proven plan (rank_rtol=0) the traced matrix is 256 × 256 of rank ≤ 16,
    # which the pivoted Cholesky resolves without a 256 × 256 eigensolver.
    tree = jc.ModeTree.balanced(16)
    rng = np.random.default_rng(7)
    params = [rng.normal(size=(1, 4, 2))]
    params.append(rng.normal(size=(1, 4, 2)) @ rng.normal(size=(1, 2, 4)))
    params += [rng.normal(size=(1, 4, 4)), rng.normal(size=(1, 3, 4))]
    params.append(rng.normal(size=(1, 2, 3)))
    rows = (0, 1, 4, 5, 8, 9, 12, 13)
    sizes = []
    dense = np.linalg.eigvalsh

    def spy(matrix, *args, **kwargs):
        sizes.append(matrix.shape[0])
        return dense(matrix, *args, **kwargs)

    monkeypatch.setattr(np.linalg, "eigvalsh", spy)
    proven = exact_spectrum(params, tree, rows, rank_rtol=0)
    monkeypatch.setattr(np.linalg, "eigvalsh", dense)
    assert proven.cut_dimension == 256 and max(sizes) < 256
    numerical = exact_spectrum(params, tree, rows)
    assert numerical.cut_dimension == 16
    _assert_two_outputs_match_svd(params, tree, rows, (proven, numerical))


def _reference_net():
    tree = jc.ModeTree.balanced(8)
    params = jc.init_decomposition(
        jax.random.key(3),
        tree,
        num_descriptors=2,
        widths=(3, 3, 3),
        num_outputs=2,
        sharing="none",
    )
    return tree, [np.asarray(w, np.float64) for w in params]


@pytest.mark.parametrize("space", ["linear", "log"])
@pytest.mark.parametrize("factor", [1e160, 1e-200, 1e50])
def test_weights_of_any_magnitude_only_shift_the_log_norm(space, factor):
    # A is linear in each node's matrix: scaling node 0's by c (linear), or
    # adding ln c to its log-weights, leaves every spectrum and purity as it
    # is and adds ln c to ln ‖A‖. Gram matrices of the raw weights would
    # overflow or underflow here, and float32 (x64 is off) cannot hold 1e50.
    tree, params = _reference_net()
    rows = (0, 2, 5)
    scaled = list(params)
    if space == "linear":
        scaled[0] = params[0].copy()
        scaled[0][0] *= factor
    else:
        scaled[1] = params[1].copy()
        scaled[1][2] += math.log(factor)
    for function in (exact_spectrum, exact_purity):
        base = function(params, tree, rows, space=space)
        moved = function(scaled, tree, rows, space=space)
        np.testing.assert_allclose(
            moved.log_norm, np.asarray(base.log_norm) + math.log(factor), rtol=1e-6
        )
        for field in ("singular_values", "log_purity"):
            if hasattr(base, field):
                np.testing.assert_allclose(
                    getattr(moved, field), getattr(base, field), atol=1e-6
                )


def test_exact_purity_lost_to_cancellation_is_nan_not_a_zero_tensor():
    # Root weights (1, -1, 0) on two channels equal to 1e-6: A is 1e-6 of
    # its terms, below the fourth moment's resolution (eps^(1/4)), but not
    # zero: log_norm is given and the purity says it is unresolved. At 1e-9
    # the norm (a second moment) is lost as well.
    tree, params = _reference_net()
    rng = np.random.default_rng(0)
    weights = params[2].copy()
    weights[:, 1] = weights[:, 0] + 1e-6 * rng.normal(size=weights[:, 0].shape)
    params = params[:2] + [weights, np.array([[[1.0, -1.0, 0.0], [1.0, 1.0, 1.0]]])]
    purity = exact_purity(params, tree, (0, 2, 5))
    spectrum = exact_spectrum(params, tree, (0, 2, 5))
    assert np.isnan(purity.log_purity[0]) and np.isnan(purity.renyi2_entropy()[0])
    assert np.isfinite(purity.log_purity[1]) and np.isfinite(purity.log_norm).all()
    # The norm cancels to 1e-12 of its terms: resolved to about eps / 1e-12.
    np.testing.assert_allclose(purity.log_norm, spectrum.log_norm, atol=1e-3)
    weights[:, 1] = weights[:, 0] + 1e-9 * rng.normal(size=weights[:, 0].shape)
    purity = exact_purity(params, tree, (0, 2, 5))
    assert np.isnan(purity.log_purity[0]) and np.isnan(purity.log_norm[0])
    assert np.isfinite(purity.log_purity[1]) and np.isfinite(purity.log_norm[1])


@pytest.mark.parametrize(
    "params, message",
    [
        ("complex", "params.0. must hold real numbers .* got dtype complex128"),
        ("text", "params.0. must hold real numbers .* got dtype <U3"),
    ],
)
def test_exact_measures_refuse_non_real_weights(params, message):
    tree, weights = _reference_net()
    bad = [w * (1 + 1j) for w in weights] if params == "complex" else ["abc"] * 4
    for function in (exact_spectrum, exact_purity):
        with pytest.raises(TypeError, match=message):
            function(bad, tree, (0,))


def test_numeric_arguments_accept_numpy_and_jax_scalars():
    values = jnp.array([1.0, 1.0, 1.0])
    for order in (np.float32(2), np.int64(3), jnp.asarray(2.0), 10**400):
        assert float(renyi_entropy(values, order)) == pytest.approx(math.log(3))
    with pytest.raises(TypeError, match="order must be a concrete number"):
        jax.jit(renyi_entropy)(values, 3.0)
    assert float(jax.jit(renyi_entropy, static_argnames="order")(values, 3.0)) == (
        pytest.approx(math.log(3))
    )
    tree, params = _reference_net()
    chosen = exact_spectrum(params, tree, (0, 1), outputs=jnp.array([1]))
    every = exact_spectrum(params, tree, (0, 1))
    np.testing.assert_allclose(chosen.log_norm, every.log_norm[1:])
    cut = exact_spectrum(params, tree, (0, 1), rank_rtol=jnp.float32(0.1))
    assert cut.cut_dimension <= every.cut_dimension


def test_renyi_entropy_near_order_one_tends_to_the_entanglement_entropy():
    # log(Σ p^α) / (1 − α) cancels catastrophically as α → 1 (an error of
    # 1e-4 at 1 ± 1e-12 before); the expm1 form keeps it to round-off, and
    # the two forms meet where they switch (|α − 1| = 1e-3).
    with jax.enable_x64(True):
        values = jnp.asarray(np.random.default_rng(0).random(50))
        limit = float(entanglement_entropy(values))
        for order in (1 - 1e-12, 1 + 1e-12):
            assert float(renyi_entropy(values, order)) == pytest.approx(limit, abs=1e-9)
        below, above = (
            float(renyi_entropy(values, 1 + d)) for d in (0.999e-3, 1.001e-3)
        )
        assert below > above and below - above < 1e-6
        gradient = jax.grad(lambda v: renyi_entropy(v, 1 + 1e-6))(
            jnp.array([1.0, 1.0, 0.0])
        )
        assert np.all(np.isfinite(gradient))
