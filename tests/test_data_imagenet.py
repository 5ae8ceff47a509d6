"""Streamed ImageNet on a handful of generated TFRecord shards in the Inception package's format."""
import os

import numpy as np
import pytest
import tensorflow as tf
from imagenet_shards import write_shards

from rethinkgen_tf.data import DataConfig, DataError, load
from rethinkgen_tf.ops import reference as R

K, SIZE = 5, 16
SHARDS = {"train-00000-of-00002": 4, "train-00001-of-00002": 3, "validation-00000-of-00001": 3}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RETHINKGEN_DATA_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def shards(tmp_path):
    return str(tmp_path), write_shards(tmp_path, SHARDS, K)


def resized(encoded):
    img = tf.cast(tf.io.decode_jpeg(encoded, channels=3), tf.float32)
    return tf.image.resize(tf.image.central_crop(img, 0.875)[None], [SIZE, SIZE])[0].numpy()


def cfg(d, **kw):
    return DataConfig(dataset="imagenet", data_dir=d, image_size=SIZE, num_classes=K, batch_size=3,
                      standardize=False, **kw)


def collect(ds):
    return [np.concatenate(p) for p in zip(*[[t.numpy() for t in b] for b in ds])]


def test_true_data_and_index_order(shards):
    d, rec = shards
    data = load(cfg(d))
    assert (data.num_train, data.num_test, data.num_classes, data.input_shape) == (7, 3, K, (SIZE, SIZE, 3))
    x, y, yt = collect(data.train_eval)
    np.testing.assert_array_equal(y, [r[2] for r in rec["train"]])
    np.testing.assert_allclose(x * 255, np.stack([resized(r[1]) for r in rec["train"]]), atol=1e-3)
    xs, ys = collect(data.train)
    assert sorted(ys.tolist()) == sorted(y.tolist()) and xs.shape == (7, SIZE, SIZE, 3)
    xt, ytest = collect(data.test)
    np.testing.assert_array_equal(ytest, [r[2] for r in rec["validation"]])


@pytest.mark.slow
def test_randomizations_equal_reference(shards):
    d, rec = shards
    idx = np.array([r[0] for r in rec["train"]])
    labels = np.array([r[2] for r in rec["train"]])
    _, y, yt = collect(load(cfg(d, randomize="labels", seed=4)).train_eval)
    np.testing.assert_array_equal(y, R.corrupt_labels(labels, idx, 1.0, K, 4))
    np.testing.assert_array_equal(yt, labels)
    data = load(cfg(d, randomize="shuffled_pixels", seed=4))
    x = collect(data.train_eval)[0]
    want = R.permute_pixels(np.stack([resized(r[1]) for r in rec["train"]]), idx, 4, "shared")
    np.testing.assert_allclose(x * 255, want, atol=1e-3)
    xt, ytest = collect(data.test)
    want = R.permute_pixels(np.stack([resized(r[1]) for r in rec["validation"]]), np.arange(3), 4, "shared")
    np.testing.assert_allclose(xt * 255, want, atol=1e-3)
    np.testing.assert_array_equal(ytest, [r[2] for r in rec["validation"]])
    data = load(cfg(d, randomize="gaussian", seed=4))
    mean, std = data.stats
    x = collect(data.train_eval)[0]
    np.testing.assert_allclose(x * 255, R.gaussian_images(idx, 4, (SIZE, SIZE, 3), mean, std), rtol=1e-4, atol=1e-3)
    xt = collect(data.test)[0]
    want = R.gaussian_images(np.arange(3), R.derive_seed(4, "test"), (SIZE, SIZE, 3), mean, std)
    np.testing.assert_allclose(xt * 255, want, rtol=1e-4, atol=1e-3)


def test_subset_augment_and_errors(shards, tmp_path):
    d, rec = shards
    data = load(cfg(d, train_size=5, augment="imagenet", corrupt=0.5))
    x, y = collect(data.train)
    assert data.num_train == 5 and x.shape == (5, SIZE, SIZE, 3) and 0 <= x.min() and x.max() <= 1
    x2, y2 = collect(data.train)  # next epoch: new order and new distortions, same (corrupted) labels
    assert sorted(y2.tolist()) == sorted(y.tolist()) and not np.allclose(np.sort(x.ravel()), np.sort(x2.ravel()))
    np.testing.assert_array_equal(collect(data.train_eval)[1][:5].shape, (5,))
    with pytest.raises(DataError, match="permute"):
        load(cfg(d, corrupt=0.5, label_mode="permute"))
    os.remove(os.path.join(d, "validation-00000-of-00001"))
    with pytest.raises(DataError, match="validation-\\*-of-\\*"):
        load(cfg(d))


# ---- the count and statistics caches: written atomically, damage counts as absent ----
DAMAGE = [b"", b'{"count": 7, "fil', b"\xff\xfe\x00 not json", b"[1, 2]", b'{"count": "seven", "mean": "x"}']


def spy_writes(monkeypatch):
    """The paths written through results.write_json, the package's one atomic writer."""
    from rethinkgen_tf import results
    written, original = [], results.write_json
    monkeypatch.setattr(results, "write_json", lambda path, obj: (written.append(os.fspath(path)),
                                                                  original(path, obj))[1])
    return written


def cache_files(directory):
    names = sorted(os.listdir(directory))
    assert not [n for n in names if ".tmp" in n], names  # no temporary file left behind
    return [os.path.join(directory, n) for n in names]


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.slow
def test_damaged_count_cache_is_recounted_and_rewritten(shards, tmp_path, monkeypatch, damage):
    import json
    d, _ = shards
    written = spy_writes(monkeypatch)
    data = load(cfg(d))
    counts = cache_files(tmp_path / "cache" / "counts")
    assert (data.num_train, data.num_test) == (7, 3) and sorted(written) == counts and len(counts) == 2
    for path in counts:  # e.g. a file another shard's process was writing when this one was killed
        with open(path, "wb") as f:
            f.write(damage)
    written.clear()
    data = load(cfg(d))
    assert (data.num_train, data.num_test) == (7, 3)
    assert sorted(written) == counts == cache_files(tmp_path / "cache" / "counts")
    assert sorted(json.load(open(p))["count"] for p in counts) == [3, 7]
    written.clear()
    assert load(cfg(d)).num_train == 7 and written == []  # read back, not recounted


@pytest.mark.parametrize("damage", DAMAGE + [b'{"mean": [1, 2], "std": [1, 1]}',
                                    b'{"mean": [1, 2, 3], "std": [1, -1, 1]}'])
@pytest.mark.slow
def test_damaged_gaussian_stats_cache_is_recomputed_and_rewritten(shards, tmp_path, monkeypatch, damage):
    d, _ = shards
    written = spy_writes(monkeypatch)
    mean, std = load(cfg(d, randomize="gaussian")).stats
    (path,) = [p for p in written if "/cache/stats/" in p]
    assert cache_files(tmp_path / "cache" / "stats") == [path]
    with open(path, "wb") as f:
        f.write(damage)
    written.clear()
    data = load(cfg(d, randomize="gaussian"))
    np.testing.assert_array_equal(data.stats[0], mean)
    np.testing.assert_array_equal(data.stats[1], std)
    assert [p for p in written if "/cache/stats/" in p] == [path] == cache_files(tmp_path / "cache" / "stats")
    written.clear()
    data = load(cfg(d, randomize="gaussian"))  # read back: the same float32 values, nothing written
    np.testing.assert_array_equal(data.stats[0], mean)
    assert written == []


def test_unwritable_cache_does_not_stop_loading(shards, tmp_path, monkeypatch):
    d, _ = shards
    (tmp_path / "cache_file").write_text("not a directory")
    monkeypatch.setenv("RETHINKGEN_DATA_CACHE", str(tmp_path / "cache_file"))
    data = load(cfg(d, randomize="gaussian"))
    assert (data.num_train, data.num_test) == (7, 3) and data.stats[0].shape == (3,)
