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


def test_global_task_fills_the_canvas():
    digit = np.zeros((1, 8, 8))
    digit[0, :, 0] = 1.0  # The left column.
    image = layer_widths.make_global(digit, 0.5).reshape(32, 32)
    assert image[:, :2].all() and not image[:, 8:].any()


def test_partitions_are_tree_nodes_or_halves():
    tree = jc.ModeTree.image(32, 32)
    nodes = {frozenset(n) for level in (2, 3) for n in tree.nodes(level)}
    parts = layer_widths.partitions()
    for name in ("block 4x4", "block 8x8"):
        assert frozenset(parts[name][1]) in nodes
    assert len(parts["left/right"][1]) == len(parts["top/bottom"][1]) == 512


def test_architectures_match_in_size_and_bounds():
    config = layer_widths.get_config("full")
    tree = jc.ModeTree.image(32, 32)
    counts = {
        name: layer_widths.count_params(tree, widths, config["sharing"])
        for name, widths in config["architectures"].items()
    }
    assert counts == {"wide-base": 6456, "wide-tip": 6520}
    parts = layer_widths.partitions()
    bounds = {
        name: {
            part: jc.min_cut_bound(tree, widths, 2, rows).bound
            for part, (_, rows) in parts.items()
        }
        for name, widths in config["architectures"].items()
    }
    # Halves: through the root's copy tensor, r_4. A 4×4 block (a level-2
    # node): through its copy tensor, r_1 (wide-base: 16, 2×2 spans also 16).
    # An 8×8 block: r_2 = 8 through its copy tensor (wide-tip) or its leg
    # r_3 = 8 (wide-base).
    assert bounds["wide-base"] == {
        "block 4x4": 16,
        "block 8x8": 8,
        "left/right": 4,
        "top/bottom": 4,
    }
    assert bounds["wide-tip"] == {
        "block 4x4": 4,
        "block 8x8": 8,
        "left/right": 36,
        "top/bottom": 36,
    }


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
