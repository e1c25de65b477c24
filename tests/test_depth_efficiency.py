"""Smoke and correctness tests of experiments/depth_efficiency.py."""

import importlib.util
import json
import pathlib
import sys
from fractions import Fraction

import jax
import numpy as np
import pytest

import jaxconvac as jc

SCRIPT = (
    pathlib.Path(__file__).resolve().parent.parent
    / "experiments"
    / "depth_efficiency.py"
)
MODULUS = jc.ranks.DEFAULT_MODULUS


def _load_script():
    spec = importlib.util.spec_from_file_location("depth_efficiency", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


de = _load_script()


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("depth_efficiency")
    before = jax.config.jax_enable_x64
    summary = de.main(
        [
            "--quick",
            "--set",
            "draws=2",
            "--set",
            "shallow_draws=2",
            "--workdir",
            str(workdir),
        ]
    )
    return summary["records"], workdir, before


def reference_tensor(params, tree):
    """The coefficient tensor by the SPEC §4 recursion, in NumPy int64."""
    params = [np.asarray(w, np.int64) for w in params]
    phi = list(params[0])  # per leaf: (r_0, M), channel first
    for level, window in enumerate(tree.windows, start=1):
        grown = []
        for node, weights in enumerate(params[level]):
            children = phi[node * window : (node + 1) * window]
            pooled = children[0]
            for child in children[1:]:
                channels = len(child)
                outer = pooled.reshape(channels, -1, 1) * child.reshape(channels, 1, -1)
                pooled = outer.reshape(channels, *pooled.shape[1:], *child.shape[1:])
            grown.append(np.tensordot(weights, pooled, axes=(1, 0)))
        phi = grown
    return phi[0]  # (Y, M, ..., M), leaves in order 0 … N-1


def rank_over_rationals(matrix):
    rows = [[Fraction(int(x)) for x in row] for row in np.asarray(matrix)]
    rank, num_cols = 0, len(rows[0])
    for col in range(num_cols):
        pivot = next((r for r in range(rank, len(rows)) if rows[r][col] != 0), None)
        if pivot is None:
            continue
        rows[rank], rows[pivot] = rows[pivot], rows[rank]
        for r in range(len(rows)):
            if r != rank and rows[r][col] != 0:
                factor = rows[r][col] / rows[rank][col]
                rows[r] = [
                    a - factor * b for a, b in zip(rows[r], rows[rank], strict=True)
                ]
        rank += 1
    return rank


def odd_even(tensor):
    num_modes = tensor.ndim
    rows = tuple(range(0, num_modes, 2))
    cols = tuple(range(1, num_modes, 2))
    return tensor.transpose(rows + cols).reshape(
        int(np.prod([tensor.shape[m] for m in rows])), -1
    )


CASES = [
    de.deep_case(3, 4, (2, 3)),
    de.deep_case(2, 8, (2, 1, 1)),
    de.shallow_case(2, 4, 3),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.kind}-{c.label}")
def test_modular_and_float_tensors_match_integer_reference(case, x64):
    shapes = de.parameter_shapes(case)

    @jax.jit
    @jax.vmap
    def draw(key):
        params = de.draw_integer_params(key, shapes, 2)
        residues = jc.coefficient_tensor(params, case.tree, modulus=MODULUS)
        floats = jc.coefficient_tensor(
            tuple(w.astype(np.float64) for w in params), case.tree
        )
        return params, residues, floats

    batch, residues, floats = draw(jax.random.split(jax.random.key(0), 3))

    assert residues.dtype == np.int64
    for index in range(3):
        params = [np.asarray(w[index]) for w in batch]
        assert all(np.abs(w).max() <= 2 for w in params)
        expected = reference_tensor(params, case.tree)
        np.testing.assert_array_equal(residues[index], expected % MODULUS)
        np.testing.assert_array_equal(floats[index], expected)


def test_draw_ranks_match_rational_rank_and_report_misses(x64):
    # Weights in {-1, 0, 1}: singular leaf matrices are common, so some draws
    # fall short of the generic rank; the exact rank must say so truthfully.
    case = de.deep_case(2, 4, (2, 2))
    draws = 16
    keys = jax.random.split(jax.random.key(3), draws)
    out = de.batched_ranks(case, draws=draws, weight_bits=0, modulus=MODULUS)(keys)

    shapes = de.parameter_shapes(case)
    truth = [
        rank_over_rationals(
            odd_even(
                reference_tensor(de.draw_integer_params(key, shapes, 1), case.tree)[0]
            )
        )
        for key in keys
    ]
    np.testing.assert_array_equal(np.asarray(out["exact_rank"]), truth)
    np.testing.assert_array_equal(np.asarray(out["float_rank"]), truth)
    assert max(truth) <= case.bound == 4
    assert min(truth) < case.predicted, "expected degenerate draws at K = 1"


def test_quick_run_matches_theorem_and_writes_outputs(quick_run, capsys):
    records, workdir, before = quick_run
    assert jax.config.jax_enable_x64 == before  # main restores the setting
    assert [r["kind"] for r in records] == ["deep", "deep-upper", "shallow"]
    for record in records:
        assert record["exact_matched"] == record["draws"] == 2
        assert set(record["exact_ranks"]) == {record["predicted"]}
    assert records[1]["predicted"] == 16  # upper widths 1 keep min(r_0, M)^(N/2)
    assert records[2]["predicted"] == 4 and records[2]["bound"] == 8

    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["label"] for line in lines] == [
        r["label"] for r in records
    ]
    assert all(r["modulus"] == MODULUS for r in records)
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["preset"] == "quick"
    assert saved["config"] == {
        "seed": 0,
        "cases": "quick",
        "draws": 2,
        "shallow_draws": 2,
        "weight_bits": 20,
        "compile_workers": 0,
    }
    written = json.loads((workdir / "summary.json").read_text())["result"]
    assert written["records"] == json.loads(json.dumps(records))
    results = json.loads((workdir / "results.json").read_text())
    assert written["summary"] == results["summary"]
    assert results["summary"].startswith("SUMMARY: exact rank matched the theorem")
    assert results["summary"].endswith("every draw matched (exact): yes")
    assert (workdir / "ranks.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("draws=0", "draws"),
        ("shallow_draws=0", "shallow_draws"),
        ("weight_bits=25", "weight_bits"),
        ("compile_workers=-1", "compile_workers"),
        ("cases=paper", "cases"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(override, key, tmp_path):
    config = de.get_config("quick")
    name, _, value = override.partition("=")
    config[name] = type(config[name])(value)
    with pytest.raises(ValueError, match=f"config key '{key}'"):
        de.run(config, tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_summary_and_table_flag_a_miss(quick_run):
    records = [dict(r) for r in quick_run[0]]
    records[0]["exact_ranks"] = [records[0]["predicted"] - 1, records[0]["predicted"]]
    records[0]["exact_matched"] = 1

    summary = de.summary_line(records)
    table = de.format_table(records)

    assert "on 1/2 deep draws" in summary
    assert summary.endswith("every draw matched (exact): no")
    assert "NO (1 short)" in table.splitlines()[2]


def test_full_grid_covers_the_issue():
    cases = de.build_cases()
    deep = {
        (c.num_descriptors, c.num_modes, c.widths[0]): c.predicted
        for c in cases
        if c.kind == "deep"
    }
    expected_keys = {
        (m, n, r)
        for m, ns in ((2, (4, 8, 16)), (3, (4, 8)))
        for n in ns
        for r in (1, 2, 3, 4)
    }
    assert set(deep) == expected_keys
    assert deep[(2, 16, 2)] == 256 and deep[(3, 8, 2)] == 16
    assert deep[(3, 8, 4)] == 81 and deep[(2, 16, 1)] == 1
    for m, n in ((2, 4), (2, 8), (2, 16), (3, 4), (3, 8)):
        terms = [
            c.widths[0]
            for c in cases
            if c.kind == "shallow" and (c.num_descriptors, c.num_modes) == (m, n)
        ]
        assert m ** (n // 2) in terms and 2 * m ** (n // 2) in terms
    for case in cases:
        if case.kind == "shallow":
            full = case.num_descriptors ** (case.num_modes // 2)
            assert case.predicted == min(case.widths[0], full)
            assert case.bound == case.widths[0]


def test_chunks_divide_draws_and_bound_memory():
    big = de.shallow_case(2, 16, 512)
    assert de.chunk_size(big, 16) == 1
    assert de.chunk_size(de.shallow_case(2, 16, 256), 16) == 2
    assert de.chunk_size(de.deep_case(2, 16, (2, 2, 2, 2)), 32) == 32
    for draws in (5, 12, 32):
        size = de.chunk_size(de.shallow_case(2, 16, 64), draws)
        assert draws % size == 0
        assert size * de.shallow_case(2, 16, 64).widest_entries <= 2**25
