"""Sources on generated data: every layout loads in index order; bad input gives clear errors."""
import gzip
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from rethinkgen_tf.data import DataError, sources
from rethinkgen_tf.data.sources import load_arrays

CLASSES = sources.CIFAR10_CLASSES


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RETHINKGEN_DATA_CACHE", str(tmp_path / "cache"))


def fake_cifar(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


def write_pickles(d, train, test):
    os.makedirs(d)
    for b in range(5):
        x, y = train[0][b * 4:(b + 1) * 4], train[1][b * 4:(b + 1) * 4]
        with open(os.path.join(d, f"data_batch_{b + 1}"), "wb") as f:
            pickle.dump({b"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1), b"labels": list(map(int, y))}, f)
    with open(os.path.join(d, "test_batch"), "wb") as f:
        pickle.dump({b"data": test[0].transpose(0, 3, 1, 2).reshape(len(test[0]), -1),
                     b"labels": list(map(int, test[1]))}, f)
    with open(os.path.join(d, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES]}, f)


def write_bins(d, train, test):
    os.makedirs(d)
    def rec(x, y):
        return np.concatenate([y[:, None].astype(np.uint8), x.transpose(0, 3, 1, 2).reshape(len(x), -1)], 1)
    for b in range(5):
        rec(train[0][b * 4:(b + 1) * 4], train[1][b * 4:(b + 1) * 4]).tofile(os.path.join(d, f"data_batch_{b + 1}.bin"))
    rec(*test).tofile(os.path.join(d, "test_batch.bin"))
    with open(os.path.join(d, "batches.meta.txt"), "w") as f:
        f.write("\n".join(CLASSES) + "\n\n")


def write_folders(root, split, x, y, classes, ext="png"):
    for k, c in enumerate(classes):
        os.makedirs(os.path.join(root, split, c), exist_ok=True)
    for i, (img, k) in enumerate(zip(x, y)):
        Image.fromarray(img.squeeze()).save(os.path.join(root, split, classes[k], f"{i:05d}.{ext}"))


def folder_order(x, y):
    """The documented class-folder order: by class, then by file name (here the original position)."""
    order = np.lexsort((np.arange(len(y)), y))
    return x[order], y[order]


def test_cifar_pickle_bin_and_folder_layouts(tmp_path):
    train, test = fake_cifar(20, 0), fake_cifar(6, 1)
    train[1][:10] = np.arange(10)  # every class present
    test[1][:] = np.arange(6)
    write_pickles(str(tmp_path / "p" / "cifar-10-batches-py"), train, test)
    write_bins(str(tmp_path / "b" / "cifar-10-batches-bin"), train, test)
    write_folders(str(tmp_path / "f"), "train", *train, CLASSES)
    write_folders(str(tmp_path / "f"), "test", *test, CLASSES[:6] + ["truck", "ship", "horse", "frog"][::-1])
    for d in ("p", "b", "p/cifar-10-batches-py", "b/cifar-10-batches-bin"):
        for split, (x, y) in (("train", train), ("test", test)):
            xs, ys, names = load_arrays("cifar10", str(tmp_path / d), split)
            assert xs.dtype == np.uint8 and ys.dtype == np.int64 and names == CLASSES
            np.testing.assert_array_equal(xs, x)
            np.testing.assert_array_equal(ys, y)
    xs, ys, names = load_arrays("cifar10", str(tmp_path / "f"), "train")
    assert names == CLASSES and xs.shape == (20, 32, 32, 3)
    ex, ey = folder_order(*train)
    np.testing.assert_array_equal(xs, ex)
    np.testing.assert_array_equal(ys, ey)


def write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_idx_layout(tmp_path, dataset):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8), rng.integers(0, 10, 7)
    for p in ("train", "t10k"):
        write_idx(tmp_path / f"{p}-images-idx3-ubyte.gz", x)
        write_idx(tmp_path / f"{p}-labels-idx1-ubyte.gz", y)
    xs, ys, names = load_arrays(dataset, str(tmp_path), "test")
    np.testing.assert_array_equal(xs[..., 0], x)
    np.testing.assert_array_equal(ys, y)
    assert xs.shape == (7, 28, 28, 1) and len(names) == 10
    assert names[0] == ("0" if dataset == "mnist" else "T-shirt/top")


def test_idx_truncated(tmp_path):
    x = np.zeros((3, 28, 28), np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3))
    raw = gzip.open(tmp_path / "train-images-idx3-ubyte.gz").read()
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw[:-5])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz is truncated"):
        load_arrays("mnist", str(tmp_path))


def test_user_class_folders_grayscale_and_cache(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (9, 12, 10), dtype=np.uint8), np.array([0, 1, 2] * 3)
    write_folders(str(tmp_path), "train", x, y, ["cats", "dogs", "emus"])
    write_folders(str(tmp_path), "val", x[:3], y[:3], ["cats", "dogs", "emus"])
    xs, ys, names = load_arrays("folder", str(tmp_path), "train")
    assert xs.shape == (9, 12, 10, 1) and names == ["cats", "dogs", "emus"]
    ex, ey = folder_order(x, y)
    np.testing.assert_array_equal(xs[..., 0], ex)
    np.testing.assert_array_equal(ys, ey)
    assert load_arrays("folder", str(tmp_path), "test")[0].shape == (3, 12, 10, 1)  # "val" counts as test
    assert os.listdir(tmp_path / "cache" / "arrays")  # decoded once, then read from the cache
    np.testing.assert_array_equal(load_arrays("folder", str(tmp_path), "train")[0], xs)


def test_missing_directory_and_wrong_layout(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_arrays("cifar10", str(tmp_path / "nope"))
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(DataError, match="no known layout.*cifar-10-batches-py"):
        load_arrays("cifar10", str(tmp_path))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz not found.*dataset-fashion-mnist"):
        load_arrays("fashion_mnist", str(tmp_path))
    with pytest.raises(DataError, match="no train folder"):
        load_arrays("folder", str(tmp_path))
    with pytest.raises(DataError, match="needs data_dir"):
        load_arrays("folder")
    os.makedirs(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_2"):
        load_arrays("cifar10", str(tmp_path))


def test_corrupt_pickle_and_truncated_bin(tmp_path):
    train, test = fake_cifar(20, 0), fake_cifar(2, 1)
    write_pickles(str(tmp_path / "p"), train, test)
    (tmp_path / "p" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_3"):
        load_arrays("cifar10", str(tmp_path / "p"))
    write_bins(str(tmp_path / "b"), train, test)
    raw = (tmp_path / "b" / "test_batch.bin").read_bytes()
    (tmp_path / "b" / "test_batch.bin").write_bytes(raw[:-100])
    with pytest.raises(DataError, match="test_batch.bin is truncated"):
        load_arrays("cifar10", str(tmp_path / "b"), "test")


def test_bad_image_files(tmp_path):
    x = np.zeros((4, 8, 8, 3), np.uint8)
    write_folders(str(tmp_path), "train", x, np.array([0, 0, 1, 1]), ["a", "b"])
    good = (tmp_path / "train" / "b" / "00002.png").read_bytes()
    (tmp_path / "train" / "b" / "00002.png").write_bytes(good[:len(good) // 2])  # truncated
    with pytest.raises(DataError, match=r"cannot decode image file .*b/00002.png"):
        load_arrays("folder", str(tmp_path))
    (tmp_path / "train" / "b" / "00002.png").write_bytes(b"\x89PNG not really")  # corrupt
    with pytest.raises(DataError, match=r"b/00002.png"):
        load_arrays("folder", str(tmp_path))
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(tmp_path / "train" / "b" / "00002.png")  # other size
    with pytest.raises(DataError, match=r"00002.png is 8x9.*one size"):
        load_arrays("folder", str(tmp_path))
    os.remove(tmp_path / "train" / "b" / "00002.png")
    os.makedirs(tmp_path / "train" / "c")
    with pytest.raises(DataError, match=r"class folder .*train/c has no images"):
        load_arrays("folder", str(tmp_path))


@pytest.mark.parametrize("dataset,shape", [("cifar10", (32, 32, 3)), ("fashion_mnist", (28, 28, 1))])
def test_tfds_path_with_mock_data(dataset, shape):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5):
        x, y, names = load_arrays(dataset, None, "test")
    assert x.shape == (5,) + shape and x.dtype == np.uint8 and y.shape == (5,) and len(names) == 10


def test_tfds_without_internet_says_how_to_provide_data(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")

    def offline(*a, **k):
        raise ConnectionError("no route to host")
    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(DataError, match="Without internet.*cifar-10-python.tar.gz.*data_dir"):
        load_arrays("cifar10")


# --------------------------------------------------------------------------- subsets
# The selections below were computed with the two subset rules as they were before
# sources.select_subset became their one home (pipeline.select_subset: first n /
# balanced; sources.random_subset: seeded random).  They must never change: a run's
# training set is defined by them.
Y_SORTED = np.repeat(np.arange(4), 6)  # class-ordered, like class folders
Y_MIXED = np.array([3, 1, 0, 2, 1, 1, 0, 3, 2, 2, 0, 1, 3, 0, 2, 1, 3, 0])


@pytest.mark.parametrize("y, n, mode, want", [
    (Y_SORTED, 5, "first", [0, 1, 2, 3, 4]),
    (Y_SORTED, 10, "balanced", [0, 1, 2, 6, 7, 8, 12, 13, 18, 19]),
    (Y_SORTED, 7, "balanced", [0, 1, 6, 7, 12, 13, 18]),
    (Y_MIXED, 9, "balanced", [0, 1, 2, 3, 4, 6, 7, 8, 10]),
    (Y_MIXED, 6, "first", [0, 1, 2, 3, 4, 5]),
    (Y_MIXED, 18, "balanced", list(range(18))),
    (Y_SORTED, None, "balanced", list(range(24))),
])
def test_first_and_balanced_subsets_are_pinned(y, n, mode, want):
    np.testing.assert_array_equal(sources.select_subset(y, n, mode, 4), want)


@pytest.mark.parametrize("n, seed, want", [
    (10, 0, [0, 1, 3, 8, 11, 13, 21, 26, 34, 40]),
    (10, 1, [1, 6, 12, 15, 19, 21, 32, 38, 41, 45]),
    (3, 7, [30, 34, 45]),
    (49, 2, [i for i in range(50) if i != 17]),
    (1, 123456789, [45]),
    (50, 0, list(range(50))),
    (60, 3, list(range(50))),   # n >= N: all of them
    (None, 0, list(range(50))),
])
def test_random_subsets_are_pinned(n, seed, want):
    x, y = np.arange(100).reshape(50, 2), np.arange(50) % 7
    np.testing.assert_array_equal(sources.select_subset(y, n, "random", seed=seed), want)
    xs, ys = sources.random_subset(x, y, n, seed)
    np.testing.assert_array_equal(xs, x[want])
    np.testing.assert_array_equal(ys, y[want])


def test_large_subsets_are_pinned():
    """Subsets of a CIFAR-10-sized split (sha1 of the int64 indices, computed before the merge)."""
    import hashlib
    y = np.random.default_rng(3).integers(0, 10, 50000)

    def h(idx):
        return hashlib.sha1(np.asarray(idx, np.int64).tobytes()).hexdigest()[:16]
    assert h(sources.select_subset(y, 5000, "balanced", 10)) == "56e855e390a23742"
    assert h(sources.select_subset(y, 5000, "first", 10)) == "bfece35a9e3bf1fb"
    assert h(sources.select_subset(y, 1000, "random", seed=1)) == "fd01d685a88ea86d"
    assert h(sources.random_subset(np.arange(50000), y, 10000, 0)[0]) == "a39031cf4515e596"


def test_subset_errors():
    with pytest.raises(DataError, match="train_size=25 must be between 1 and the 24"):
        sources.select_subset(Y_SORTED, 25, "first", 4)
    with pytest.raises(DataError, match="test_size=0 must be between"):
        sources.select_subset(Y_SORTED, 0, "balanced", 4, what="test_size")
    with pytest.raises(DataError, match="balanced train_size=8 needs 2 examples of class 2, only 1 exist"):
        sources.select_subset(np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 3, 3, 3]), 8, "balanced", 4)
    with pytest.raises(ValueError, match="subset mode"):
        sources.select_subset(Y_SORTED, 3, "last", 4)
