"""The randomized pipeline on generated arrays, checked against the NumPy reference of the op."""
import os

import numpy as np
import pytest
import tensorflow as tf

from rethinkgen_tf.data import DataConfig, DataError, load
from rethinkgen_tf.data.randomize import channel_stats
from rethinkgen_tf.ops import reference as R

N, NT, K = 60, 20, 10


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RETHINKGEN_DATA_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (N, 32, 32, 3), dtype=np.uint8), rng.integers(0, K, N),
            rng.integers(0, 256, (NT, 32, 32, 3), dtype=np.uint8), rng.integers(0, K, NT))


def expected(x, crop=28, standardize=True):
    """The paper's preprocessing in NumPy: /255, center crop, per-image standardization."""
    x = np.asarray(x, np.float64) / 255.0
    t = (x.shape[1] - crop) // 2
    x = x[:, t:t + crop, t:t + crop]
    if standardize:
        m = x.mean(axis=(1, 2, 3), keepdims=True)
        s = np.maximum(x.std(axis=(1, 2, 3), keepdims=True), 1 / np.sqrt(x[0].size))
        x = (x - m) / s
    return x


def collect(ds):
    parts = list(zip(*[[t.numpy() for t in b] for b in ds]))
    return [np.concatenate(p) for p in parts]


def cfg(**kw):
    return DataConfig(dataset="numpy", batch_size=16, **kw)


def test_shapes_and_true_data(arrays):
    d = load(cfg(), arrays)
    assert (d.num_train, d.num_test, d.num_classes, d.input_shape) == (N, NT, K, (28, 28, 3))
    x, y = next(iter(d.train))
    assert x.dtype == tf.float32 and y.dtype == tf.int32 and x.shape == (16, 28, 28, 3)
    xe, ye, yt = collect(d.train_eval)
    np.testing.assert_allclose(xe, expected(arrays[0]), atol=1e-4)
    np.testing.assert_array_equal(ye, arrays[1])
    np.testing.assert_array_equal(yt, arrays[1])
    xt, yt = collect(d.test)
    np.testing.assert_allclose(xt, expected(arrays[2]), atol=1e-4)
    np.testing.assert_array_equal(yt, arrays[3])
    xe, _, _ = collect(load(cfg(crop=None, standardize=False), arrays).train_eval)
    np.testing.assert_allclose(xe, arrays[0] / 255.0, atol=1e-6)


@pytest.mark.parametrize("p,mode", [(1.0, "uniform"), (0.5, "uniform"), (0.5, "permute")])
def test_labels_equal_op_and_test_labels_stay_true(arrays, p, mode):
    c = cfg(randomize="labels", seed=7) if p == 1.0 else cfg(corrupt=p, label_mode=mode, seed=7)
    d = load(c, arrays)
    xe, ye, yt = collect(d.train_eval)
    np.testing.assert_array_equal(ye, R.corrupt_labels(arrays[1], np.arange(N), p, K, 7, mode))
    np.testing.assert_array_equal(yt, arrays[1])
    np.testing.assert_allclose(xe, expected(arrays[0]), atol=1e-4)  # images untouched
    xt, ytest = collect(d.test)
    np.testing.assert_array_equal(ytest, arrays[3])
    assert (ye != yt).mean() > 0.2


@pytest.mark.parametrize("unit", ["position", "value"])
def test_shuffled_pixels_one_permutation_for_train_and_test(arrays, unit):
    d = load(cfg(randomize="shuffled_pixels", pixel_unit=unit, seed=3), arrays)
    xe, ye, _ = collect(d.train_eval)
    np.testing.assert_allclose(xe, expected(R.permute_pixels(arrays[0], np.arange(N), 3, "shared", unit)), atol=1e-4)
    np.testing.assert_array_equal(ye, arrays[1])
    xt, yt = collect(d.test)
    np.testing.assert_allclose(xt, expected(R.permute_pixels(arrays[2], np.arange(NT), 3, "shared", unit)), atol=1e-4)
    np.testing.assert_array_equal(yt, arrays[3])


def test_random_pixels_test_images_original_by_default(arrays):
    d = load(cfg(randomize="random_pixels", seed=3), arrays)
    xe, _, _ = collect(d.train_eval)
    np.testing.assert_allclose(xe, expected(R.permute_pixels(arrays[0], np.arange(N), 3)), atol=1e-4)
    np.testing.assert_allclose(collect(d.test)[0], expected(arrays[2]), atol=1e-4)
    d = load(cfg(randomize="random_pixels", seed=3, test_images="randomized"), arrays)
    want = R.permute_pixels(arrays[2], np.arange(NT), R.derive_seed(3, "test"))
    np.testing.assert_allclose(collect(d.test)[0], expected(want), atol=1e-4)


def test_gaussian_train_stats_and_separate_test_stream(arrays):
    d = load(cfg(randomize="gaussian", seed=5, standardize=False, crop=None), arrays)
    assert len(os.listdir(os.environ["RETHINKGEN_DATA_CACHE"] + "/stats")) == 1  # computed once, cached
    mean, std = channel_stats(arrays[0])
    np.testing.assert_allclose(mean, arrays[0].reshape(-1, 3).mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, arrays[0].reshape(-1, 3).std(0), rtol=1e-5)
    xe, ye, _ = collect(d.train_eval)
    np.testing.assert_allclose(xe, R.gaussian_images(np.arange(N), 5, (32, 32, 3), mean, std) / 255.0, rtol=1e-5)
    np.testing.assert_array_equal(ye, arrays[1])
    xt, yt = collect(d.test)
    seed = R.derive_seed(5, "test")
    np.testing.assert_allclose(xt, R.gaussian_images(np.arange(NT), seed, (32, 32, 3), mean, std) / 255.0, rtol=1e-5)
    np.testing.assert_array_equal(yt, arrays[3])
    assert np.abs(xe.min()) > 0 or xe.min() < 0  # float Gaussian values are not clipped to [0, 1]


@pytest.mark.parametrize("damage", [b"", b'{"mean": [1.0, 2.0', b"\xff\xfe\x00", b"[]", b'{"mean": [1, 2, 3]}',
                                    b'{"mean": [1, 2, 3], "std": [1, "nan", 1]}'])
def test_damaged_stats_cache_is_recomputed_and_rewritten(arrays, monkeypatch, damage):
    from rethinkgen_tf import results
    from rethinkgen_tf.data import randomize
    written, write_json = [], results.write_json
    monkeypatch.setattr(results, "write_json", lambda p, o: (written.append(p), write_json(p, o))[1])
    monkeypatch.setattr(randomize, "_STATS", {})  # not from memory
    mean, std = channel_stats(arrays[0])
    (path,) = written
    with open(path, "wb") as f:
        f.write(damage)
    monkeypatch.setattr(randomize, "_STATS", {})
    m2, s2 = channel_stats(arrays[0])
    np.testing.assert_array_equal(m2, mean)
    np.testing.assert_array_equal(s2, std)
    assert written == [path, path] and os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
    monkeypatch.setattr(randomize, "_STATS", {})
    m3, _ = channel_stats(arrays[0])  # read back from the rewritten file
    np.testing.assert_array_equal(m3, mean)
    assert written == [path, path]


def test_randomization_fixed_across_epochs_and_runs(arrays):
    c = cfg(corrupt=0.5, randomize="random_pixels", seed=1, shuffle_seed=2)
    d = load(c, arrays)
    xe, ye, _ = collect(d.train_eval)
    key = {xe[i].tobytes(): ye[i] for i in range(N)}
    orders = []
    for _ in range(2):  # two epochs of the same dataset object
        x, y = collect(d.train)
        assert len(y) == N and all(key[x[i].tobytes()] == y[i] for i in range(N))
        orders.append(y)
    d2 = load(c, arrays)
    np.testing.assert_array_equal(collect(d2.train)[1], orders[0])  # same order in a new run
    np.testing.assert_array_equal(collect(d.train_epochs(4, 5))[0], collect(d2.train_epochs(4, 5))[0])
    assert not np.array_equal(collect(d.train_epochs(0, 1))[0], collect(d.train_epochs(1, 2))[0])
    # epochs 2..4 in one dataset are epochs 2, 3 and 4 one after the other
    np.testing.assert_array_equal(collect(d.train_epochs(2, 5))[0], np.concatenate(
        [collect(d.train_epochs(e, e + 1))[0] for e in (2, 3, 4)]))


def test_subsets(arrays):
    d = load(cfg(train_size=25, test_size=7, randomize="labels", seed=2), arrays)
    assert (d.num_train, d.num_test) == (25, 7)
    _, ye, yt = collect(d.train_eval)
    np.testing.assert_array_equal(yt, arrays[1][:25])
    np.testing.assert_array_equal(ye, R.corrupt_labels(arrays[1][:25], np.arange(25), 1.0, K, 2))
    y = np.repeat(np.arange(K), 6)[np.random.default_rng(1).permutation(N)]
    d = load(cfg(train_size=20, balanced=True), (arrays[0], y, arrays[2], arrays[3]))
    want = np.sort(np.concatenate([np.flatnonzero(y == k)[:2] for k in range(K)]))
    np.testing.assert_array_equal(d.train_indices, want)
    np.testing.assert_array_equal(collect(d.train_eval)[2], y[want])
    with pytest.raises(DataError, match="needs 3 examples of class"):
        load(cfg(train_size=30, balanced=True), (arrays[0], np.minimum(y, 8), arrays[2], arrays[3]))
    # A class-sorted test set (as class folders list it): balanced test subsets hold every class.
    yt_sorted = np.repeat(np.arange(K), NT // K)
    d = load(cfg(train_size=20, test_size=K, balanced=True), (arrays[0], y, arrays[2], yt_sorted))
    assert sorted(collect(d.test)[1]) == list(range(K))


@pytest.mark.parametrize("augment", ["crop", "crop_flip", "imagenet"])
def test_augmentation(arrays, augment):
    d = load(cfg(augment=augment, standardize=False), arrays)
    x, y = collect(d.train)
    assert x.shape == (N, 28, 28, 3) and 0 <= x.min() and x.max() <= 1
    again = collect(load(cfg(augment=augment, standardize=False), arrays).train)[0]
    np.testing.assert_array_equal(x, again)  # seeded
    if augment != "imagenet":  # each image is one of the 25 crops (or its mirror) of an original
        src = arrays[0] / 255.0
        crops = {np.round(c[:, ::f], 5).tobytes() for img in src for i in range(5) for j in range(5)
                 for c in [img[i:i + 28, j:j + 28]] for f in ((1, -1) if augment == "crop_flip" else (1,))}
        assert all(np.round(img.astype(np.float64), 5).tobytes() in crops for img in x[:10])
    np.testing.assert_allclose(collect(d.test)[0], expected(arrays[2], standardize=False), atol=1e-6)


def test_model_receives_randomized_tensors(arrays):
    import keras
    seen = []

    class Spy(keras.layers.Layer):
        def call(self, x):
            return x
    c = cfg(randomize="shuffled_pixels", corrupt=0.0, seed=9)
    c2 = cfg(randomize="labels", seed=9)
    for conf in (c, c2):
        d = load(conf, arrays)
        model = keras.Sequential([keras.Input(d.input_shape), Spy(), keras.layers.Flatten(), keras.layers.Dense(K)])

        class Recorder(keras.Model):
            def train_step(self, data):
                seen.append((data[0].numpy(), data[1].numpy()))
                return {"loss": tf.constant(0.0)}
        rec = Recorder(model.inputs, model.outputs)
        rec.compile(run_eagerly=True)
        rec.fit(d.train, epochs=1, verbose=0, shuffle=False)
        x, y = np.concatenate([s[0] for s in seen]), np.concatenate([s[1] for s in seen])
        seen.clear()
        xe, ye, _ = collect(d.train_eval)
        key = {xe[i].tobytes(): ye[i] for i in range(N)}
        assert len(x) == N and all(key[x[i].tobytes()] == y[i] for i in range(N))
        if conf.randomize == "labels":
            np.testing.assert_array_equal(ye, R.corrupt_labels(arrays[1], np.arange(N), 1.0, K, 9))
        else:
            want = expected(R.permute_pixels(arrays[0], np.arange(N), 9, "shared"))
            np.testing.assert_allclose(np.sort(x.reshape(N, -1), 0), np.sort(want.reshape(N, -1), 0), atol=1e-4)


def test_bad_config_and_arrays(arrays):
    with pytest.raises(ValueError, match="randomize"):
        DataConfig(randomize="noise")
    with pytest.raises(ValueError, match="corrupt=1"):
        DataConfig(randomize="labels", corrupt=0.3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DataConfig(corrupt=1.5)
    with pytest.raises(DataError, match="arrays="):
        load(cfg())
    with pytest.raises(DataError, match="uint8"):
        load(cfg(), (arrays[0] / 255.0,) + arrays[1:])
    with pytest.raises(DataError, match="60 images but labels"):
        load(cfg(), (arrays[0], arrays[1][:5]) + arrays[2:])
    with pytest.raises(DataError, match="must match"):
        load(cfg(), arrays[:2] + (arrays[2][:, :30], arrays[3]))
    with pytest.raises(DataError, match="train_size"):
        load(cfg(train_size=1000), arrays)
    with pytest.raises(ValueError, match="larger than"):
        load(cfg(crop=40), arrays)


def test_unbalanced_subset_of_class_sorted_source_warns(caplog):
    import logging

    from rethinkgen_tf.data.sources import select_subset
    with caplog.at_level(logging.WARNING):
        select_subset(np.repeat(np.arange(10), 5), 10, "first", 10)   # class folders: 0,0,0,0,0,1,...
    assert "hold only 2 of the 10 classes" in caplog.text and "--balanced" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        select_subset(np.tile(np.arange(10), 5), 10, "first", 10)     # interleaved: every class
    assert "classes" not in caplog.text
