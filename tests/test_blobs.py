import pathlib

import numpy as np
import pytest

from jaxconvac.data import blobs

SMALL = blobs.BlobConfig(seed=3, num_train_rendered=30, num_test_rendered=10)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(blobs.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def reference_closing(image: np.ndarray, size: int) -> np.ndarray:
    """Dilation then erosion with a ``size × size`` square, by explicit loops."""
    pad = size
    padded = np.pad(image.astype(bool), pad)
    height, width = padded.shape
    offsets = [(dr, dc) for dr in range(size) for dc in range(size)]
    centre = size // 2

    def shifted(array, dr, dc, fill):
        out = np.full_like(array, fill)
        for r in range(height):
            for c in range(width):
                rr, cc = r + dr - centre, c + dc - centre
                if 0 <= rr < height and 0 <= cc < width:
                    out[r, c] = array[rr, cc]
        return out

    dilated = np.zeros_like(padded)
    for dr, dc in offsets:
        dilated |= shifted(padded, dr, dc, False)
    eroded = np.ones_like(padded)
    for dr, dc in offsets:
        eroded &= shifted(dilated, size - 1 - dr, size - 1 - dc, True)
    return eroded


def test_cache_dir_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(blobs.CACHE_ENV, str(tmp_path / "here"))
    assert blobs.cache_dir() == tmp_path / "here"
    assert (tmp_path / "here").is_dir()
    monkeypatch.delenv(blobs.CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert blobs.cache_dir() == tmp_path / "home" / ".cache" / "jaxconvac"


def test_rendering_is_deterministic_and_seed_dependent():
    first = blobs.render_pool(12, seed=5, split="train")
    again = blobs.render_pool(12, seed=5, split="train")
    other = blobs.render_pool(12, seed=6, split="train")
    test_pool = blobs.render_pool(12, seed=5, split="test")
    np.testing.assert_array_equal(first["images"], again["images"])
    np.testing.assert_array_equal(first["tiles"], again["tiles"])
    assert not np.array_equal(first["images"], other["images"])
    assert not np.array_equal(first["images"], test_pool["images"])


def test_images_are_binary_non_empty_and_inside_their_grid_tile():
    pool = blobs.render_pool(60, seed=0, split="train")
    images, tiles = pool["images"], pool["tiles"]
    assert images.shape == (60, 32, 32) and images.dtype == np.uint8
    assert set(np.unique(images)) <= {0, 1}
    sizes = set()
    for image, (row, col, size) in zip(images, tiles, strict=True):
        sizes.add(int(size))
        assert size in (16, 32) and row % size == 0 and col % size == 0
        inside = np.zeros_like(image, bool)
        inside[row : row + size, col : col + size] = True
        assert image[inside].any() and not image[~inside].any()
    assert sizes == {16, 32}  # both tile sizes occur in 60 draws


def test_closedness_matches_the_loop_reference_and_closed_forms():
    square = np.zeros((1, 8, 8), np.uint8)
    square[0, 2:6, 2:6] = 1
    holed = square.copy()
    holed[0, 3, 3] = 0
    assert blobs.closedness(square)[0] == 1.0
    assert blobs.closedness(holed)[0] == pytest.approx(15 / 16)
    # Two pixels with a one-pixel gap: the 3×3 closing fills the gap.
    pair = np.zeros((1, 5, 5), np.uint8)
    pair[0, 2, 1] = pair[0, 2, 3] = 1
    assert blobs.closedness(pair)[0] == pytest.approx(2 / 3)

    images = blobs.render_pool(4, seed=1, split="test")["images"][:, ::2, ::2]
    for size in (2, 3):
        expected = [
            image.sum() / reference_closing(image, size).sum() for image in images
        ]
        np.testing.assert_allclose(
            blobs.closedness(images, closing_size=size), expected
        )


def test_symmetry_closed_forms():
    images = np.zeros((3, 4, 4), np.uint8)
    images[0, 1, 1:3] = 1  # symmetric within the whole image
    images[1, 0, 0] = 1  # one pixel, left of its tile's axis
    images[2, :2, 0] = 1  # tile (0, 0, 2): column 0 of 2, mirror empty
    images[2, 0, 1] = 1  # … except this one pixel's mirror is set
    tiles = np.array([[0, 0, 4], [0, 0, 4], [0, 0, 2]])
    np.testing.assert_allclose(blobs.symmetry(images, tiles), [1.0, 0.0, 2 / 3])


def test_select_by_score_keeps_the_extremes():
    scores = np.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.6, 0.4, 0.0])
    index, label = blobs.select_by_score(scores, 4)
    assert list(index) == sorted(index)
    assert set(index[label == 0]) == {1, 5, 9, 3}
    assert set(index[label == 1]) == {2, 6, 4, 7}


def test_generated_labels_follow_the_scores():
    arrays = blobs.generate(SMALL)
    for split, kept in (("train", 12), ("test", 4)):
        for task in blobs.TASKS:
            index = arrays[f"{split}_{task}_index"]
            label = arrays[f"{split}_{task}_label"]
            score = arrays[f"{split}_{task}_score"]
            assert np.bincount(label).tolist() == [kept, kept]
            assert score[index[label == 0]].max() <= score[index[label == 1]].min()
    data = blobs.load_blobs("symmetry", SMALL, cache=False)
    assert data["train"][0].shape == (24, 32, 32)
    assert data["test"][1].shape == (8,)


def test_cache_round_trip_and_regeneration(cache):
    arrays = blobs.load_arrays(SMALL)
    path = SMALL.cache_path()
    assert path.parent == cache and path.exists()
    assert not str(path).startswith(str(pathlib.Path(__file__).parents[1]))
    cached = blobs.read_cache(path, SMALL)
    for name, value in arrays.items():
        np.testing.assert_array_equal(cached[name], value)

    path.write_bytes(path.read_bytes()[:500])  # truncated
    with pytest.raises(ValueError, match="cannot be read"):
        blobs.read_cache(path, SMALL)
    with pytest.warns(UserWarning, match="Regenerating"):
        again = blobs.load_arrays(SMALL)
    np.testing.assert_array_equal(again["train_images"], arrays["train_images"])
    blobs.read_cache(path, SMALL)  # the rewritten file is valid


def test_cache_with_wrong_shapes_or_settings_is_regenerated(cache):
    arrays = blobs.load_arrays(SMALL)
    path = SMALL.cache_path()
    stored = dict(np.load(path))
    wrong = {**stored, "test_images": stored["test_images"][:, :16]}
    np.savez(path, **wrong)
    with pytest.raises(ValueError, match=r"'test_images' should be u\(10, 32, 32\)"):
        blobs.read_cache(path, SMALL)
    other = blobs.BlobConfig(seed=4, num_train_rendered=30, num_test_rendered=10)
    np.savez(path, **stored)
    with pytest.raises(ValueError, match="other settings"):
        blobs.read_cache(path, other)
    np.savez(path, **wrong)
    with pytest.warns(UserWarning, match="should be"):
        again = blobs.load_arrays(SMALL)
    np.testing.assert_array_equal(again["test_images"], arrays["test_images"])


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="task must be one of"):
        blobs.load_blobs("roundness", SMALL, cache=False)
    with pytest.raises(ValueError, match="num_train_rendered must be at least 5"):
        blobs.BlobConfig(num_train_rendered=2)
    with pytest.raises(TypeError, match="seed must be an int"):
        blobs.BlobConfig(seed=1.5)
    with pytest.raises(ValueError, match="keep_fraction"):
        blobs.BlobConfig(keep_fraction=0.6)
    with pytest.raises(ValueError, match=r"shape \(num_examples, height, width\)"):
        blobs.closedness(np.ones((4, 4)))
    with pytest.raises(ValueError, match="image 1 is empty"):
        blobs.closedness(np.stack([np.ones((4, 4)), np.zeros((4, 4))]))
    with pytest.raises(ValueError, match=r"tiles must have shape"):
        blobs.symmetry(np.ones((2, 4, 4)), np.zeros((3, 3), int))
