import importlib.util
import math
import pathlib

import jax
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
    m = layer_widths.num_descriptors(config)
    assert m == 8
    counts = {
        name: layer_widths.count_params(tree, widths, config["sharing"], m)
        for name, widths in config["architectures"].items()
    }
    # per_tap: 4 (M r0 + r0 r1 + r1 r2 + r2 r3 + r3 r4) + 10 r4.
    assert counts == {
        "wide-base": 4 * (128 + 512 + 2048 + 1024 + 192) + 120,
        "wide-tip": 4 * (32 + 32 + 128 + 736 + 2852) + 620,
    }
    assert abs(counts["wide-base"] - counts["wide-tip"]) < 0.01 * counts["wide-tip"]
    parts = layer_widths.partitions()
    bounds = {
        name: {
            part: jc.min_cut_bound(tree, widths, m, rows).bound
            for part, (_, rows) in parts.items()
        }
        for name, widths in config["architectures"].items()
    }
    # A block that is one node of level l: min(r_{l-1} (its copy tensor),
    # r_l (its output leg), its open legs M^(4^l), its children cut apart).
    # 2×2: min(r_0, r_1); 4×4: min(r_1, r_2); 8×8: min(r_2, r_3).
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
        "left/right": 62,
        "top/bottom": 62,
    }


def test_shift_moves_every_digit_to_its_own_position():
    augment = layer_widths.make_shift(1)
    digits = np.zeros((200, 32, 32), np.float32)
    digits[:, :8, :8] = np.random.default_rng(0).uniform(size=(200, 8, 8)) > 0.5
    digits[:, 0, 0] = 1.0  # Marks the corner.
    moved = np.asarray(augment(jax.random.key(0), digits.reshape(200, -1)))
    corners = set()
    for before, after in zip(digits, moved.reshape(200, 32, 32), strict=True):
        rows, cols = np.nonzero(after)
        row, col = rows.min(), cols.min()
        assert row <= 24 and col <= 24
        # The same digit, whole, at the new corner.
        np.testing.assert_array_equal(
            after[row : row + 8, col : col + 8], before[:8, :8]
        )
        assert after.sum() == before.sum()
        corners.add((row, col))
    # 200 draws over 625 corners: far more than the 16 of the grid.
    assert len(corners) > 100
    grid = layer_widths.make_shift(8)(jax.random.key(1), digits.reshape(200, -1))
    grid_corners = set()
    for after in np.asarray(grid).reshape(200, 32, 32):
        rows, cols = np.nonzero(after)
        grid_corners.add((rows.min(), cols.min()))
    assert grid_corners == {(r, c) for r in (0, 8, 16, 24) for c in (0, 8, 16, 24)}
    with pytest.raises(ValueError, match="stride"):
        layer_widths.make_shift(3)


def test_patch_codes_are_normalised_and_move_with_the_image():
    codes = layer_widths.PatchCodes(3, 5, rngs=nnx.Rngs(0))
    image = np.zeros((1, 32, 32), np.float32)
    image[0, 10:14, 9:15] = np.random.default_rng(0).uniform(size=(4, 6))
    log_f = np.asarray(codes(image.reshape(1, -1)))
    assert log_f.shape == (1, 1024, 5)
    np.testing.assert_allclose(np.exp(log_f).sum(-1), 1.0, rtol=1e-5)
    # Shared over positions: shifting the image (away from the border)
    # shifts the descriptors.
    shifted = np.roll(image, (3, 5), axis=(1, 2))
    log_g = np.asarray(codes(shifted.reshape(1, -1))).reshape(32, 32, 5)
    np.testing.assert_allclose(
        log_g[3:, 5:], log_f.reshape(32, 32, 5)[:-3, :-5], rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="size"):
        layer_widths.PatchCodes(2, 5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_descriptors"):
        layer_widths.PatchCodes(3, 1, rngs=nnx.Rngs(0))


def test_make_model_for_each_representation():
    tree = jc.ModeTree.image(32, 32)
    config = layer_widths.get_config("quick")
    model = layer_widths.make_model(config, tree, [2, 2, 2, 4, 4], 0)
    assert isinstance(model, nn.Classifier)
    assert layer_widths.convac_of(model).num_descriptors == 8
    assert model(np.zeros((3, 1024), np.float32)).shape == (3, 10)
    config["representation"]["kind"] = "indicator"
    bare = layer_widths.make_model(config, tree, [2, 2, 2, 4, 4], 0)
    assert isinstance(bare, nn.ConvAC) and bare.num_descriptors == 2
    assert bare(np.zeros((3, 1024), np.int32)).shape == (3, 10)
    config["representation"]["kind"] = "gaussian"
    with pytest.raises(ValueError, match="representation.kind"):
        layer_widths.make_model(config, tree, [2, 2, 2, 4, 4], 0)


def test_local_tasks_train_at_the_corner_and_test_anywhere():
    config = layer_widths.get_config("quick")
    tasks = layer_widths.load_tasks(config, 0)
    train_x, train_y = tasks["local"]["train"]
    assert train_x.dtype == np.float32 and train_x.shape == (64, 1024)
    assert not train_x.reshape(64, 32, 32)[:, 8:].any()
    assert not train_x.reshape(64, 32, 32)[:, :, 8:].any()
    eval_x, eval_y = tasks["local"]["train_eval"]
    np.testing.assert_array_equal(eval_y, train_y)
    np.testing.assert_array_equal(eval_x.sum(1), train_x.sum(1))
    assert tasks["local"]["test"][0].shape == (32, 1024)
    config["representation"]["kind"] = "indicator"
    assert layer_widths.load_tasks(config, 0)["global"]["test"][0].dtype == np.int32


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


@pytest.mark.parametrize("num_descriptors", [2, 8])
def test_analyse_untrained_network(num_descriptors):
    tree = jc.ModeTree.image(32, 32)
    model = nn.ConvAC(
        tree,
        num_descriptors=num_descriptors,
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
