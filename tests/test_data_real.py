"""Real data: CIFAR-10 (JPEG class folders from ../shared/data, and the same images as python pickles)
and Fashion-MNIST (Debian's dataset-fashion-mnist).  Skipped with a reason when the data is absent.

Locations: $RETHINKGEN_CIFAR10_TGZ (default ../shared/data/cifar10-jpeg.tar.gz beside the repo),
extracted once under $RETHINKGEN_DATA_CACHE (default: a pytest temporary directory);
$RETHINKGEN_CIFAR10_PICKLE_DIR, else ../shared/tools/cifar_jpeg_to_batches.py run once into the cache;
$RETHINKGEN_FASHION_MNIST_DIR (default /usr/share/datasets/fashion-mnist).
"""
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from rethinkgen_tf import ops
from rethinkgen_tf.data import DataConfig, load
from rethinkgen_tf.data.sources import CIFAR10_CLASSES, FASHION_MNIST_CLASSES, load_arrays

pytestmark = pytest.mark.slow  # subprocesses and real training: make test-fast skips these

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared")
TGZ = os.environ.get("RETHINKGEN_CIFAR10_TGZ", os.path.join(SHARED, "data", "cifar10-jpeg.tar.gz"))
CONVERTER = os.path.join(SHARED, "tools", "cifar_jpeg_to_batches.py")
FASHION = os.environ.get("RETHINKGEN_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    d = os.environ.get("RETHINKGEN_DATA_CACHE") or str(tmp_path_factory.mktemp("rethinkgen_cache"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETHINKGEN_DATA_CACHE", d)
        yield d


@pytest.fixture(scope="session")
def cifar_jpeg(cache):
    if not os.path.exists(TGZ):
        pytest.skip(f"CIFAR-10 JPEG tarball not found at {TGZ} (set RETHINKGEN_CIFAR10_TGZ)")
    out = os.path.join(cache, "cifar10-jpeg-extracted")
    if not os.path.exists(os.path.join(out, "done")):
        with tarfile.open(TGZ) as t:
            t.extractall(out, filter="data")
        open(os.path.join(out, "done"), "w").close()
    return os.path.join(out, "cifar10-jpeg")


@pytest.fixture(scope="session")
def cifar_pickle(cache):
    if os.environ.get("RETHINKGEN_CIFAR10_PICKLE_DIR"):
        return os.environ["RETHINKGEN_CIFAR10_PICKLE_DIR"]
    if not (os.path.exists(TGZ) and os.path.exists(CONVERTER)):
        pytest.skip("no CIFAR-10 pickles: set RETHINKGEN_CIFAR10_PICKLE_DIR or provide ../shared/tools")
    out = os.path.join(cache, "cifar10-pickle")
    if not os.path.exists(os.path.join(out, "cifar-10-batches-py", "batches.meta")):
        subprocess.run([sys.executable, CONVERTER, TGZ, out], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def cifar_train(cifar_jpeg):
    return load_arrays("cifar10", cifar_jpeg, "train")


def test_cifar_class_folders(cifar_jpeg, cifar_train):
    x, y, names = cifar_train
    assert x.shape == (50000, 32, 32, 3) and x.dtype == np.uint8 and names == CIFAR10_CLASSES
    np.testing.assert_array_equal(np.bincount(y), [5000] * 10)
    assert (np.diff(y) >= 0).all()  # index order: sorted classes, then sorted files
    xt, yt, names_t = load_arrays("cifar10", cifar_jpeg, "test")
    assert xt.shape == (10000, 32, 32, 3) and names_t == names
    np.testing.assert_array_equal(np.bincount(yt), [1000] * 10)


def test_cifar_pickle_and_folders_give_the_same_examples(cifar_jpeg, cifar_pickle, cifar_train):
    """The converter writes the sorted folder images in a seeded random order and records
    '<class>_<file>' in b'filenames'; sorting the pickle by that name gives the folder's index order."""
    for split in ("train", "test"):
        x, y, names = cifar_train if split == "train" else load_arrays("cifar10", cifar_jpeg, "test")
        xp, yp, names_p = load_arrays("cifar10", cifar_pickle, split)
        assert names_p == names and xp.shape == x.shape
        batches = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        files = []
        for b in batches:
            with open(os.path.join(cifar_pickle, "cifar-10-batches-py", b), "rb") as f:
                files += [n.decode() for n in pickle.load(f, encoding="bytes")[b"filenames"]]
        order = np.argsort(files, kind="stable")
        np.testing.assert_array_equal(yp[order], y)
        np.testing.assert_array_equal(xp[order], x)


def test_cifar_pipeline_randomization_equals_op(cifar_jpeg, cifar_train):
    x, y, _ = cifar_train
    n = 300
    d = load(DataConfig(dataset="cifar10", data_dir=cifar_jpeg, corrupt=0.6, randomize="shuffled_pixels",
                        seed=11, train_size=n, test_size=100, crop=None, standardize=False, batch_size=100))
    xe, ye, yt = (np.concatenate(p) for p in zip(*[[t.numpy() for t in b] for b in d.train_eval]))
    idx = np.arange(n)
    np.testing.assert_array_equal(ye, np.asarray(ops.corrupt_labels(y[:n], idx, 0.6, 10, 11)))
    np.testing.assert_array_equal(yt, y[:n])
    want = np.asarray(ops.permute_pixels(x[:n], idx, 11, mode="shared"))
    np.testing.assert_allclose(xe * 255.0, want, atol=1e-3)
    ytest = np.concatenate([b[1].numpy() for b in d.test])
    np.testing.assert_array_equal(ytest, load_arrays("cifar10", cifar_jpeg, "test")[1][:100])  # never corrupted


@pytest.fixture(scope="session")
def fashion():
    if not os.path.exists(os.path.join(FASHION, "train-images-idx3-ubyte.gz")):
        pytest.skip(f"Fashion-MNIST not found in {FASHION} (apt-get install dataset-fashion-mnist, "
                    "or set RETHINKGEN_FASHION_MNIST_DIR)")
    return FASHION


def test_fashion_mnist(fashion):
    x, y, names = load_arrays("fashion_mnist", fashion, "train")
    assert x.shape == (60000, 28, 28, 1) and x.dtype == np.uint8 and names == FASHION_MNIST_CLASSES
    np.testing.assert_array_equal(np.bincount(y), [6000] * 10)
    xt, yt, _ = load_arrays("fashion_mnist", fashion, "test")
    assert xt.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(yt), [1000] * 10)
    d = load(DataConfig(dataset="fashion_mnist", data_dir=fashion, randomize="random_pixels", seed=2,
                        train_size=50, test_size=50, standardize=False))
    assert d.input_shape == (28, 28, 1) and d.class_names == FASHION_MNIST_CLASSES
    xe = np.concatenate([b[0].numpy() for b in d.train_eval])
    want = np.asarray(ops.permute_pixels(x[:50], np.arange(50), 2, mode="per_example"))
    np.testing.assert_allclose(xe * 255.0, want, atol=1e-3)
    np.testing.assert_allclose(np.concatenate([b[0].numpy() for b in d.test]) * 255.0, xt[:50], atol=1e-3)
