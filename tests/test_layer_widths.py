import importlib.util
import math
import pathlib

import numpy as np
import pytest
from flax import nnx

import jaxconvac as jc
from jaxconvac import nn

_PATH = pathlib.Path(__file__).parents[1] / "experiments" / "layer_widths.py"
_SPEC = importlib.util.spec_from_file_location("layer_widths", _PATH)
layer_widths = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(layer_widths)


def test_local_task_pastes_the_whole_digit_inside_the_canvas():
    rng = np.random.default_rng(0)
    digits = rng.uniform(size=(5, 8, 8))
    images, index = layer_widths.make_local(digits, 3, 0.5, rng)
    assert images.shape == (15, 1024) and images.dtype == np.int32
    np.testing.assert_array_equal(index, np.repeat(np.arange(5), 3))
    for image, k in zip(images, index, strict=True):
        # Every "on" pixel of the digit is on the canvas, nothing else is.
        assert image.sum() == (digits[k] > 0.5).sum()
        rows, cols = np.nonzero(image.reshape(32, 32))
        assert rows.max() - rows.min() < 8 and cols.max() - cols.min() < 8


def test_local_task_on_the_grid_fills_one_8x8_tree_node():
    rng = np.random.default_rng(1)
    digits = np.ones((4, 8, 8))
    images, _ = layer_widths.make_local(digits, 25, 0.5, rng)  # stride 8
    tree = jc.ModeTree.image(32, 32)
    nodes = {frozenset(n) for n in tree.nodes(3)}
    corners = set()
    for image in images:
        on = frozenset(np.flatnonzero(image).tolist())
        assert on in nodes
        rows, cols = np.nonzero(image.reshape(32, 32))
        corners.add((rows.min(), cols.min()))
    # 100 draws over 16 corners: all of them appear (fails with prob. < 1e-10).
    assert corners == {(r, c) for r in (0, 8, 16, 24) for c in (0, 8, 16, 24)}
    anywhere, _ = layer_widths.make_local(digits, 25, 0.5, rng, stride=1)
    assert sum(frozenset(np.flatnonzero(x).tolist()) in nodes for x in anywhere) < 25


def test_local_task_rejects_bad_stride_and_placements():
    digits = np.ones((1, 8, 8))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="stride"):
        layer_widths.make_local(digits, 1, 0.5, rng, stride=3)
    with pytest.raises(ValueError, match="placements"):
        layer_widths.make_local(digits, 0, 0.5, rng)


def test_validation_split_leaves_the_test_digits_out():
    config = layer_widths.get_config("quick")
    config["data"].update(max_train=None, max_test=None)
    full = layer_widths.load_tasks(config, 0)
    config["data"]["validation"] = True
    val = layer_widths.load_tasks(config, 0)
    # 1 347 training digits: 1 077 train + 270 validation; test digits unused.
    assert len(full["global"]["train"][1]) == 1347
    assert len(val["global"]["train"][1]) == 1077
    assert len(val["global"]["test"][1]) == 270
    test_images = {x.tobytes() for x in full["global"]["test"][0]}
    assert not any(x.tobytes() in test_images for x in val["global"]["test"][0])


def test_global_task_fills_the_canvas():
    digit = np.zeros((1, 8, 8))
    digit[0, :, 0] = 1.0  # The left column.
    image = layer_widths.make_global(digit, 0.5).reshape(32, 32)
    assert image[:, :2].all() and not image[:, 8:].any()


def test_partitions_are_tree_nodes_or_halves():
    tree = jc.ModeTree.image(32, 32)
    nodes = {frozenset(n) for level in (2, 3) for n in tree.nodes(level)}
    parts = layer_widths.partitions()
    nodes |= {frozenset(n) for n in tree.nodes(1)}
    for name in ("block 2x2", "block 4x4", "block 8x8"):
        assert frozenset(parts[name][1]) in nodes
    assert len(parts["left/right"][1]) == len(parts["top/bottom"][1]) == 512


def test_architectures_match_in_size_and_bounds():
    config = layer_widths.get_config("full")
    tree = jc.ModeTree.image(32, 32)
    counts = {
        name: layer_widths.count_params(tree, widths, config["sharing"])
        for name, widths in config["architectures"].items()
    }
    # per_tap: 4 (2 r0 + r0 r1 + r1 r2 + r2 r3 + r3 r4) + 10 r4.
    assert counts == {
        "wide-base": 4 * (32 + 512 + 2048 + 1024 + 192) + 120,
        "wide-tip": 4 * (8 + 32 + 128 + 736 + 2760) + 600,
    }
    assert abs(counts["wide-base"] - counts["wide-tip"]) < 0.01 * counts["wide-tip"]
    parts = layer_widths.partitions()
    bounds = {
        name: {
            part: jc.min_cut_bound(tree, widths, 2, rows).bound
            for part, (_, rows) in parts.items()
        }
        for name, widths in config["architectures"].items()
    }
    # A block that is one node of level l: min(r_{l-1} (its copy tensor),
    # r_l (its output leg), its open legs 2^(4^l), its children cut apart).
    # 2×2: min(r_0, r_1, 16); 4×4: min(r_1, r_2); 8×8: min(r_2, r_3).
    # Halves: through the root's copy tensor, r_4.
    assert bounds["wide-base"] == {
        "block 2x2": 16,
        "block 4x4": 32,
        "block 8x8": 16,
        "left/right": 12,
        "top/bottom": 12,
    }
    assert bounds["wide-tip"] == {
        "block 2x2": 4,
        "block 4x4": 8,
        "block 8x8": 16,
        "left/right": 60,
        "top/bottom": 60,
    }


@pytest.mark.parametrize("sharing", ["per_tap"])
def test_count_params_matches_the_module(sharing):
    tree = jc.ModeTree.image(4, 4)
    model = nn.ConvAC(
        tree,
        num_descriptors=2,
        widths=(3, 5),
        num_outputs=10,
        sharing=sharing,
        rngs=nnx.Rngs(0),
    )
    assert layer_widths.count_params(tree, [3, 5], sharing) == nn.count_params(model)


def test_analyse_untrained_network():
    tree = jc.ModeTree.image(32, 32)
    model = nn.ConvAC(
        tree,
        num_descriptors=2,
        widths=(2, 3, 3, 2, 2),
        num_outputs=10,
        sharing="per_tap",
        rngs=nnx.Rngs(0),
    )
    analysis = layer_widths.analyse(model, [2, 3, 3, 2, 2])
    for part in analysis.values():
        assert 0 <= part["entropy_min"] <= part["entropy_mean"]
        assert part["entropy_max"] <= part["ln_bound"] + 1e-6
        assert part["ln_bound"] == pytest.approx(math.log(part["bound"]))
    assert analysis["left/right"]["bound"] == 2


def test_bad_preset():
    with pytest.raises(ValueError, match="preset"):
        layer_widths.get_config("paper")
