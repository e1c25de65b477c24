import gzip
import pickle
import struct

import numpy as np
import pytest

from jaxconvac.data import loaders


def write_idx(path, array, code=None, ndim=None, extra=b"", cut=0):
    """An IDX file written byte by byte from the format's definition."""
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C}
    codes |= {np.float32: 0x0D, np.float64: 0x0E}
    code = codes[array.dtype.type] if code is None else code
    ndim = array.ndim if ndim is None else ndim
    header = bytes([0, 0, code, ndim]) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes() + extra
    data = data[: len(data) - cut]
    if str(path).endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
)
def test_idx_round_trip(tmp_path, dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 10
    path = write_idx(tmp_path / "a.idx", array)
    loaded = loaders.load_idx(path)
    assert loaded.dtype == np.dtype(dtype) and loaded.dtype.isnative
    np.testing.assert_array_equal(loaded, array)


def test_idx_dataset_mnist_style(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, 5).astype(np.uint8)
    images_path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    labels_path = write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    x, y = loaders.load_idx_dataset(
        images_path, labels_path, example_shape=(28, 28), num_classes=10
    )
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    assert y.dtype == np.int32

    with pytest.raises(ValueError, match=r"each example must have shape \(27, 28\)"):
        loaders.load_idx_dataset(images_path, labels_path, example_shape=(27, 28))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        loaders.load_idx_dataset(images_path, labels_path, num_classes=3)
    short_labels = write_idx(tmp_path / "short-labels", labels[:4])
    with pytest.raises(ValueError, match=r"5 images but 4 labels"):
        loaders.load_idx_dataset(images_path, short_labels)
    float_labels = write_idx(tmp_path / "float-labels", labels.astype(np.float32))
    with pytest.raises(ValueError, match=r"float-labels: labels must be integers"):
        loaders.load_idx_dataset(images_path, float_labels)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"cut": 1}, r"truncated: 39 bytes, but its header \(uint8 \(2, 3, 4\)\) "),
        ({"cut": 30}, r"truncated header: 10 bytes, the 3 dimensions need 16"),
        ({"extra": b"\x00"}, r"has trailing bytes: 41 bytes"),
        ({"code": 0x07}, r"unknown IDX type code 0x07"),
        ({"ndim": 0}, r"the IDX header announces 0 dimensions"),
    ],
)
def test_idx_malformed(tmp_path, damage, message):
    array = np.zeros((2, 3, 4), np.uint8)
    path = write_idx(tmp_path / "bad.idx", array, **damage)
    with pytest.raises(ValueError, match=rf"bad.idx: {message}"):
        loaders.load_idx(path)


def test_idx_not_idx(tmp_path):
    (tmp_path / "x.idx").write_bytes(b"PK\x03\x04rest")
    with pytest.raises(ValueError, match=r"x.idx: not an IDX file \(magic number"):
        loaders.load_idx(tmp_path / "x.idx")
    (tmp_path / "y.idx").write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match=r"y.idx: truncated: 2 bytes"):
        loaders.load_idx(tmp_path / "y.idx")
    compressed = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 9]) + bytes(9))
    (tmp_path / "z.idx.gz").write_bytes(compressed[:-12])
    with pytest.raises(ValueError, match=r"z.idx.gz: cannot be read"):
        loaders.load_idx(tmp_path / "z.idx.gz")
    with pytest.raises(ValueError, match=r"missing.idx: no such file"):
        loaders.load_idx(tmp_path / "missing.idx")


def test_npz_round_trip_and_keys(tmp_path):
    inputs = np.arange(12, dtype=np.float32).reshape(4, 3)
    labels = np.array([0, 1, 1, 0])
    np.savez(tmp_path / "d.npz", x=inputs, y=labels)
    x, y = loaders.load_npz(
        tmp_path / "d.npz", inputs_key="x", labels_key="y", example_shape=(3,)
    )
    np.testing.assert_array_equal(x, inputs)
    np.testing.assert_array_equal(y, labels)
    with pytest.raises(ValueError, match=r"d.npz: no array 'inputs'.*\['x', 'y'\]"):
        loaders.load_npz(tmp_path / "d.npz")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"inputs": np.zeros((4, 2)), "labels": np.zeros(4)},
            r"labels must be integers of shape \(num_examples,\), got float64\(4,\)",
        ),
        (
            {"inputs": np.zeros((3, 2)), "labels": np.zeros(4, int)},
            r"inputs must have shape .* = len\(labels\) = 4, got \(3, 2\)",
        ),
        (
            {"inputs": np.zeros((4, 2), complex), "labels": np.zeros(4, int)},
            r"inputs must be integers or floats, got dtype complex128",
        ),
        (
            {"inputs": np.array(["a"] * 4), "labels": np.zeros(4, int)},
            r"inputs must be integers or floats, got dtype <U1",
        ),
        (
            {"inputs": np.zeros((0, 2)), "labels": np.zeros(0, int)},
            r"the data set is empty",
        ),
    ],
)
def test_npz_wrong_shapes_and_dtypes(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(ValueError, match=rf"d.npz: {message}"):
        loaders.load_npz(tmp_path / "d.npz")


def test_npz_refuses_pickles_and_damage(tmp_path):
    objects = np.empty(4, dtype=object)
    objects[:] = [{"a": 1}] * 4
    np.savez(tmp_path / "p.npz", inputs=objects, labels=np.zeros(4, int))
    with pytest.raises(ValueError, match=r"p.npz: array 'inputs' is a pickled"):
        loaders.load_npz(tmp_path / "p.npz")

    (tmp_path / "pickle.npz").write_bytes(pickle.dumps({"inputs": 1}))
    with pytest.raises(ValueError, match=r"pickle.npz: not a readable .npz"):
        loaders.load_npz(tmp_path / "pickle.npz")

    np.savez(tmp_path / "good.npz", inputs=np.zeros((64, 8)), labels=np.zeros(64, int))
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut.npz: not a readable .npz archive"):
        loaders.load_npz(tmp_path / "cut.npz")

    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"single.npy: a single .npy array"):
        loaders.load_npz(tmp_path / "single.npy")
