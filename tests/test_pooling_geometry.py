import importlib.util
import json
import pathlib
import sys

import jax
import numpy as np
import pytest
from flax import nnx

import jaxconvac as jc
from jaxconvac.data import blobs

EXPERIMENTS = pathlib.Path(__file__).parents[1] / "experiments"


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def geometry_script():
    return load_script("pooling_geometry")


def weights_of(model):
    return [np.asarray(w) for w in jax.tree.leaves(nnx.state(model, nnx.Param))]


@nnx.jit
def scores(model, images):
    return model(images)


def tree_of(model):
    return model.tree if hasattr(model, "tree") else model.network.tree


def relu_average_reference(image, params):
    """A plain 2-D CNN: 1×1 conv, ReLU, 2×2 average pooling, linear output."""
    h = np.eye(2)[image] @ params[0][0].T  # (32, 32, r_0)
    for weights in params[1:]:
        h = np.maximum(h, 0.0)
        side = h.shape[0] // 2
        h = h.reshape(side, 2, side, 2, -1).mean(axis=(1, 3))
        h = h @ weights[0].T
    return h[0, 0]


def test_relu_average_on_square_pooling_is_the_2d_cnn(geometry_script):
    model = geometry_script.build_network("relu_average", "square", [3] * 5, seed=1)
    images = np.random.default_rng(0).integers(0, 2, (2, 32, 32))
    scores = model(images.reshape(2, -1))
    raw = [np.asarray(w[...], np.float64) for w in model.network.weights]
    for image, score in zip(images, np.asarray(scores), strict=True):
        np.testing.assert_allclose(
            score, relu_average_reference(image, raw), rtol=1e-4, atol=1e-5
        )


@pytest.mark.parametrize("network", ["convac", "relu_max", "relu_average"])
def test_mirror_pooling_is_a_gather_in_the_same_network(geometry_script, network):
    # Width 8: at width 3 some draws leave every ReLU always on or always off,
    # a linear net that sees only the mean pixel, the same for both geometries.
    square = geometry_script.build_network(network, "square", [8] * 5, seed=3)
    mirror = geometry_script.build_network(network, "mirror", [8] * 5, seed=3)
    for a, b in zip(weights_of(square), weights_of(mirror), strict=True):
        np.testing.assert_array_equal(a, b)

    images = np.zeros((3, 32, 32), np.int32)
    images[0, :, :16] = 1  # left half
    images[1, :8, :8] = 1  # a corner block
    images[2] = np.random.default_rng(1).integers(0, 2, (32, 32))
    images = images.reshape(3, 1024)
    # Put pixel mirror.order[k] where the square tree reads its k-th leaf.
    moved = np.empty_like(images)
    moved[:, list(tree_of(square).order)] = images[:, list(tree_of(mirror).order)]
    mirror_scores, square_scores = scores(mirror, images), scores(square, images)
    np.testing.assert_allclose(mirror_scores, scores(square, moved), rtol=1e-5)
    assert not np.allclose(mirror_scores, square_scores, rtol=1e-3)


def test_mirror_windows_are_reflection_orbits():
    tree = jc.ModeTree.image(32, 32, "mirror")
    for node in tree.nodes(1):
        r, c = divmod(node[0], 32)
        expected = {(r, c), (r, 31 - c), (31 - r, c), (31 - r, 31 - c)}
        assert {divmod(mode, 32) for mode in node} == expected


def test_bad_sizes_geometries_and_networks_are_refused(geometry_script):
    with pytest.raises(ValueError, match="power of 2"):
        jc.ModeTree.image(30, 30, "square")
    with pytest.raises(ValueError, match="geometry must be one of"):
        jc.ModeTree.image(32, 32, "spiral")
    with pytest.raises(ValueError, match="network must be one of"):
        geometry_script.build_network("relu_min", "square", [2] * 5, seed=0)
    with pytest.raises(ValueError, match="geometry must be one of"):
        geometry_script.build_network("convac", "diagonal", [2] * 5, seed=0)
    with pytest.raises(ValueError, match="preset must be one of"):
        geometry_script.get_config("huge")


def test_margins_and_table(geometry_script):
    rows = [
        {
            "task": t,
            "geometry": g,
            "network": "convac",
            "widths": [4] * 5,
            "test_accuracy": a,
        }
        for t, g, a in [
            ("closedness", "square", 0.9),
            ("closedness", "mirror", 0.7),
            ("symmetry", "square", 0.8),
            ("symmetry", "mirror", 0.85),
        ]
    ]
    margins = geometry_script.margins(rows)
    assert margins["convac"]["closedness"] == pytest.approx(20.0)
    assert margins["convac"]["symmetry"] == pytest.approx(5.0)
    assert "| convac | 4×5 | 90.00 % | 70.00 % | +20.00 | 80.00 % | 85.00 % |" in (
        geometry_script.format_table(rows)
    )


def test_smoke_run_through_the_cli_writes_its_outputs_and_resumes(
    geometry_script, tmp_path, monkeypatch
):
    monkeypatch.setenv(blobs.CACHE_ENV, str(tmp_path / "cache"))
    run = tmp_path / "run"
    argv = [
        "--preset",
        "smoke",
        "--set",
        "tasks=symmetry",
        "--set",
        "geometries=mirror",
        "--set",
        "networks=convac",
        "--set",
        "train.checkpoint_every=3",
        "--workdir",
        str(run),
    ]
    summary = geometry_script.main(argv)

    cells = [(r["task"], r["geometry"], r["network"]) for r in summary["rows"]]
    assert cells == [("symmetry", "mirror", "convac")]
    for row in summary["rows"]:
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["steps"] == 6
    assert json.loads((run / "results.json").read_text())["rows"] == summary["rows"]
    saved = json.loads((run / "config.json").read_text())
    assert saved["preset"] == "smoke" and saved["config"]["networks"] == ["convac"]
    assert json.loads((run / "summary.json").read_text())["result"] == summary
    cell = run / "symmetry-mirror-convac"
    assert sorted(p.name for p in (cell / "checkpoints").iterdir()) == ["3", "6"]
    with np.load(run / "params-symmetry-mirror.npz") as params:
        trained = {name: params[name] for name in params.files}
    assert [trained[f"w{i}"].shape for i in range(6)] == (
        [(1, 4, 2)] + [(1, 4, 4)] * 4 + [(1, 2, 4)]
    )
    for figure in ("pooling_geometry_accuracy.png", "pooling_blobs_examples.png"):
        assert (run / figure).stat().st_size > 1000
    assert "| convac | 4×5 |" in (run / "table.md").read_text()

    # The checkpoints make the work directory refuse a fresh run; --resume
    # restores the finished network from step 6 instead of retraining it (a
    # retrained run would log new "seconds" in metrics.jsonl).
    metrics = (cell / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match="--resume"):
        geometry_script.main(argv)
    resumed = geometry_script.main([*argv, "--resume"])
    assert (cell / "metrics.jsonl").read_text() == metrics
    assert resumed["rows"][0]["test_accuracy"] == summary["rows"][0]["test_accuracy"]
    with np.load(run / "params-symmetry-mirror.npz") as params:
        for name, value in trained.items():
            np.testing.assert_array_equal(params[name], value)

    # The entanglement script measures what the run saved.
    entanglement = load_script("pooling_entanglement")
    measured = entanglement.main(
        ["--quick", "--set", f"params_dir={run}", "--workdir", str(tmp_path / "ent")]
    )
    assert [(r["geometry"], r["partition"]) for r in measured["rows"]] == [
        ("mirror", name) for name in entanglement.partitions()
    ]
    # Mirror pooling splits every first-level window across all three
    # partitions: min-cut bound 4^256 for halves, 4^128 for the quadrant.
    assert [r["min_cut_bound"] for r in measured["rows"]] == [4**256] * 2 + [4**128]
    # ... so exact_spectrum refuses all three, and the exact Rényi-2 entropy
    # from the purity is the measure there: finite, non-negative up to
    # rounding, within the bound, and its power of ten is S_2 / ln 10.
    assert all(
        "refused" in r and "cut dimension" in r["refused"] for r in measured["rows"]
    )
    for row in measured["rows"]:
        assert len(row["renyi2"]) == 2 and np.isfinite(row["renyi2"]).all()
        for s2, log10 in zip(
            row["renyi2"], row["log10_schmidt_lower_bound"], strict=True
        ):
            assert -1e-5 <= s2 <= row["ln_bound"]
            assert log10 == pytest.approx(s2 / np.log(10))
    assert [s["slice_matrix"] for s in measured["slices"]] == [[64, 64]] * 2
    for row in measured["slices"]:
        assert 1 <= row["slice_rank_min"] <= row["slice_rank_max"] <= 64
    table = (tmp_path / "ent" / "table.md").read_text()
    assert "| symmetry | mirror | top/bottom | 64×64 |" in table
    assert "| S_2 y=0 / y=1 (nats) | rank ≥ exp(S_2) y=0 / y=1 |" in table
    assert "| not computed | — | 1.34e+154 (354.9) | above limit |" in table


def test_bad_grid_and_measurement_settings_are_refused(geometry_script, tmp_path):
    config = geometry_script.get_config("smoke")
    for key, value in [
        ("networks", ["relu_min"]),
        ("geometries", []),
        ("tasks", ["symmetry", "symmetry"]),
    ]:
        with pytest.raises(ValueError, match=f"config '{key}' must be distinct"):
            geometry_script.check_config(config | {key: value})
    ranks = load_script("pooling_ranks")
    with pytest.raises(ValueError, match="'draws' must be an int >= 1, got 0"):
        ranks.run(ranks.get_config("smoke") | {"draws": 0}, tmp_path / "ranks")
    entanglement = load_script("pooling_entanglement")
    quick = entanglement.get_config("quick")
    with pytest.raises(ValueError, match="'test_backgrounds' must be an int >= 0"):
        entanglement.run(quick | {"test_backgrounds": -1}, tmp_path / "ent")
    with pytest.raises(FileNotFoundError, match="no params-<task>-<geometry>.npz"):
        entanglement.run(quick | {"params_dir": str(tmp_path)}, tmp_path / "ent")


def test_rank_script_meets_the_bounds(tmp_path):
    ranks = load_script("pooling_ranks")
    config = ranks.get_config("smoke")
    config["widths"] = [[2, 2]]
    summary = ranks.run(config, tmp_path)
    found = {(r["geometry"], r["partition"]): r for r in summary["rows"]}
    # S: windows split. Square: none by halves, all four by the checkerboard.
    expected = {
        ("square", "left/right"): (0, 2),
        ("square", "checkerboard"): (4, 16),
        ("square", "corners+centre"): (4, 16),
        ("mirror", "left/right"): (4, 16),
        ("mirror", "checkerboard"): (4, 16),
        ("mirror", "corners+centre"): (0, 2),
    }
    for key, (split, rank) in expected.items():
        assert found[key]["windows_split"] == split
        assert found[key]["ranks"] == [rank]
        assert found[key]["min_cut_bound"] == rank
    assert summary["all_within_bounds"] and summary["all_certified"]


@pytest.mark.parametrize("geometry", ["square", "mirror"])
def test_measure_bounds_the_spectrum_by_the_exact_renyi2_entropy(geometry):
    # A 4×4 image network is small enough for exact_spectrum across every
    # partition, square or mirror pooled: the purity's S_2 must equal the
    # spectrum's, lie below the von Neumann entropy and ln(min-cut bound), and
    # exp(S_2) below the Schmidt number.
    entanglement = load_script("pooling_entanglement")
    tree = jc.ModeTree.image(4, 4, geometry)
    params = jc.init_decomposition(
        jax.random.key(1), tree, num_descriptors=2, widths=(3, 3), num_outputs=2
    )
    for name, rows in entanglement.partitions(4).items():
        found = entanglement.measure(params, tree, rows, max_cut_dimension=4096)
        assert "refused" not in found, name
        np.testing.assert_allclose(
            found["renyi2"], found["renyi2_from_spectrum"], rtol=1e-4, atol=1e-6
        )
        for s2, entropy, schmidt in zip(
            found["renyi2"], found["entropy"], found["schmidt_number"], strict=True
        ):
            assert 0 < s2 <= entropy + 1e-6, name  # entangled, and a bound
            assert s2 <= found["ln_bound"] + 1e-6
            assert np.exp(s2) <= schmidt * (1 + 1e-6)
    # The limit refuses the spectrum (naming the cut dimension); S_2 remains.
    refused = entanglement.measure(
        params, tree, entanglement.partitions(4)["left/right"], max_cut_dimension=1
    )
    assert "cut dimension" in refused["refused"] and "entropy" not in refused
    assert np.isfinite(refused["renyi2"]).all()


def test_powers_of_ten_print_from_their_logarithm():
    entanglement = load_script("pooling_entanglement")
    assert entanglement.format_power(0.0) == "1"
    assert entanglement.format_power(np.log10(2.5)) == "2.5"
    assert entanglement.format_power(12.6) == "3.98e+12"
    assert entanglement.format_power(12.99999) == "1.00e+13"
    # exp(1000 nats) overflows a float; its power of ten does not.
    assert entanglement.format_power(1000 / np.log(10)) == "1.97e+434"


def test_slices_enumerate_a_submatrix_of_the_matricization():
    entanglement = load_script("pooling_entanglement")
    background = np.zeros(16, np.int32)
    background[[0, 5]] = 1
    images = entanglement.slice_images(background, (2, 3), (7,))
    assert images.shape == (8, 16)
    # Image a * 2 + b: pixels 2, 3 hold the bits of a, pixel 7 the bit of b.
    np.testing.assert_array_equal(
        images[:, [2, 3, 7]],
        [
            [0, 0, 0],
            [0, 0, 1],
            [0, 1, 0],
            [0, 1, 1],
            [1, 0, 0],
            [1, 0, 1],
            [1, 1, 0],
            [1, 1, 1],
        ],
    )
    others = [i for i in range(16) if i not in (2, 3, 7)]
    assert (images[:, others] == background[others]).all()
    # Both slices straddle their partitions: row side inside I, column side not.
    parts = entanglement.partitions()
    for name, (rows, cols) in entanglement.SLICE_PIXELS.items():
        for partition in name.split(" and "):
            inside = set(parts[partition])
            assert set(rows) <= inside and not set(cols) & inside


def test_slice_measure_ranks_the_submatrix_of_the_coefficient_tensor():
    entanglement = load_script("pooling_entanglement")
    tree = jc.ModeTree.image(4, 4, "mirror")
    params = jc.init_decomposition(
        jax.random.key(0),
        tree,
        num_descriptors=2,
        widths=(3, 3),
        num_outputs=2,
        sharing="full",
    )
    rows, cols, background = (0, 4, 8), (3, 7, 11), np.zeros(16, np.int32)
    found = entanglement.slice_measure(params, tree, [background], rows, cols)

    log_tensor = np.asarray(jc.coefficient_tensor(params, tree, space="log"))
    images = entanglement.slice_images(background, rows, cols)
    ranks = []
    for y in range(2):
        entries = log_tensor[(y, *images.T)].reshape(8, 8)
        values = np.linalg.svd(np.exp(entries - entries.max()), compute_uv=False)
        ranks.append(int(np.sum(values > 1e-7 * values[0])))
    assert found["slice_rank_max"] == max(ranks) and found["slice_rank_min"] == min(
        ranks
    )
    assert found["slice_rank_max"] > 1  # mirror pools pixel 0 with pixel 3
