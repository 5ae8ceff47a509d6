"""RandomizeOnDevice: the in-model path equals the host (tf.data) path and the
NumPy reference, for any batching, inside Keras models and tf.functions.

On a machine with a GPU and the op's GPU kernels, the GPU tests at the end
also compare the GPU placement with the CPU placement bit for bit.
"""
import numpy as np
import pytest
import tensorflow as tf

keras = pytest.importorskip("keras")

from rethinkgen_tf import ops  # noqa: E402
from rethinkgen_tf.ops import layers, reference  # noqa: E402

SEED = 20170301


def _gpu_available():
    return bool(tf.config.list_physical_devices("GPU"))


def test_gaussian_layer_matches_ops_and_reference():
    idx = np.array([5, 0, 123456789, 7], np.int64)
    mean, std = [125.3, 123.0, 113.9], [63.0, 62.1, 66.7]
    layer = layers.RandomizeOnDevice("gaussian", SEED, image_shape=(5, 7, 3), mean=mean,
                                     stddev=std)
    got = layer(tf.constant(idx)).numpy()
    host = ops.gaussian_images(idx, SEED, (5, 7, 3), mean, std).numpy()
    want = reference.gaussian_images(idx, SEED, (5, 7, 3), mean, std)
    assert got.shape == (4, 5, 7, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got, host)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_gaussian_layer_low_precision(dtype):
    idx = np.arange(3, dtype=np.int64)
    layer = layers.RandomizeOnDevice("gaussian", SEED, image_shape=(4, 4, 1), mean=[0.0],
                                     stddev=[1.0], output_dtype=dtype)
    got = layer(tf.constant(idx))
    assert got.dtype.name == dtype
    host = ops.gaussian_images(idx, SEED, (4, 4, 1), [0.0], [1.0], dtype=dtype)
    np.testing.assert_array_equal(tf.bitcast(got, tf.uint16).numpy(),
                                  tf.bitcast(host, tf.uint16).numpy())


@pytest.mark.parametrize("kind", ["random_pixels", "shuffled_pixels"])
@pytest.mark.parametrize("unit", ["position", "value"])
def test_pixel_layer_matches_ops_and_reference(kind, unit):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 8, 9, 3)).astype(np.uint8)
    idx = rng.integers(0, 10**6, 6).astype(np.int64)
    layer = layers.RandomizeOnDevice(kind, SEED, unit=unit)
    got = layer((tf.constant(images), tf.constant(idx))).numpy()
    mode = "per_example" if kind == "random_pixels" else "shared"
    host = ops.permute_pixels(images, idx, SEED, mode=mode, unit=unit).numpy()
    want = reference.permute_pixels(images, idx, SEED, mode=mode, unit=unit)
    np.testing.assert_array_equal(got, host)
    np.testing.assert_array_equal(got, want)


def test_labels_layer_matches_reference():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 100).astype(np.int64)
    idx = np.arange(100, dtype=np.int64)
    layer = layers.RandomizeOnDevice("labels", SEED, num_classes=10, corrupt_prob=0.4)
    got = layer((tf.constant(labels), tf.constant(idx))).numpy()
    np.testing.assert_array_equal(got, reference.corrupt_labels(labels, idx, 0.4, 10, SEED))


def test_batching_and_order_do_not_matter_in_a_model():
    """Model.predict over shuffled, odd-sized batches == one host call."""
    n, shape = 37, (6, 6, 3)
    mean, std = [1.0, 2.0, 3.0], [0.5, 1.0, 2.0]
    inp = keras.Input(shape=(), dtype="int64")
    out = layers.RandomizeOnDevice("gaussian", SEED, image_shape=shape, mean=mean,
                                   stddev=std)(inp)
    model = keras.Model(inp, out)
    order = np.random.default_rng(2).permutation(n).astype(np.int64)
    got = model.predict(order, batch_size=5, verbose=0)
    host = ops.gaussian_images(np.arange(n, dtype=np.int64), SEED, shape, mean, std).numpy()
    np.testing.assert_array_equal(got, host[order])


def test_same_as_host_tf_data_path():
    """The same examples through a tf.data map (host) and through the layer."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (20, 7, 5, 1)).astype(np.uint8)
    idx = np.arange(20, dtype=np.int64)
    ds = tf.data.Dataset.from_tensor_slices((images, idx)).batch(6).map(
        lambda x, i: ops.permute_pixels(x, i, SEED, mode="per_example"))
    host = np.concatenate(list(ds.as_numpy_iterator()))
    layer = layers.RandomizeOnDevice("random_pixels", SEED)
    step = tf.function(lambda x, i: layer((x, i)))
    dev = np.concatenate([step(images[s:s + 8], idx[s:s + 8]).numpy()
                          for s in range(0, 20, 8)])
    np.testing.assert_array_equal(dev, host)


def test_config_round_trip():
    layer = layers.RandomizeOnDevice("gaussian", -5, image_shape=(2, 2, 2), mean=[0, 1],
                                     stddev=[1, 2], output_dtype="bfloat16", name="g")
    clone = layers.RandomizeOnDevice.from_config(layer.get_config())
    idx = tf.constant([3, 4], tf.int64)
    np.testing.assert_array_equal(tf.bitcast(layer(idx), tf.uint16).numpy(),
                                  tf.bitcast(clone(idx), tf.uint16).numpy())
    assert clone.trainable is False


def test_model_with_layer_is_not_xla_compiled():
    inp = keras.Input(shape=(), dtype="int64")
    x = layers.RandomizeOnDevice("gaussian", SEED, image_shape=(4, 4, 1), mean=[0.0],
                                 stddev=[1.0])(inp)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    model.compile("sgd", "sparse_categorical_crossentropy", jit_compile="auto")
    assert not model.jit_compile
    assert model.layers[1].supports_jit is False  # what keeps "auto" off on GPU machines
    model.fit(np.arange(8, dtype=np.int64), np.zeros(8, np.int64), batch_size=4, verbose=0)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        layers.RandomizeOnDevice("nope", 0)
    with pytest.raises(ValueError):
        layers.RandomizeOnDevice("gaussian", 0, image_shape=(2, 2, 3), mean=[0], stddev=[1])
    with pytest.raises(ValueError):
        layers.RandomizeOnDevice("gaussian", 0, image_shape=(2, 2, 1), mean=[0], stddev=[-1])
    with pytest.raises(ValueError):
        layers.RandomizeOnDevice("labels", 0)
    layer = layers.RandomizeOnDevice("random_pixels", 0)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        layer((tf.zeros((2, 3, 3, 1), tf.uint8), tf.constant([0, -1], tf.int64)))


def test_for_data_config_matches_host_randomize_images():
    data = pytest.importorskip("rethinkgen_tf.data")
    from rethinkgen_tf.data import randomize as host
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (9, 6, 6, 3)).astype(np.uint8)
    idx = np.arange(9, dtype=np.int64)
    stats = (np.array([120.0, 110.0, 100.0], np.float32), np.array([60.0, 61.0, 62.0], np.float32))
    for r in ("shuffled_pixels", "random_pixels", "gaussian"):
        for split, test_images in (("train", "auto"), ("test", "randomized"), ("test", "auto")):
            cfg = data.DataConfig(dataset="numpy", randomize=r, seed=11, test_images=test_images)
            want = host.randomize_images(x, idx, cfg, split, stats)
            layer = layers.for_data_config(cfg, split, image_shape=x.shape[1:], stats=stats)
            if layer is None:
                assert want is x
                continue
            got = layer(idx) if r == "gaussian" else layer((x, idx))
            np.testing.assert_array_equal(np.asarray(got), want, err_msg=f"{r} {split}")


def test_randomized_train_step_runs():
    layer = layers.RandomizeOnDevice("gaussian", SEED, image_shape=(4, 4, 1), mean=[0.0],
                                     stddev=[1.0])
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    step = layers.randomized_train_step(
        model, layer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        keras.optimizers.SGD(0.1))
    loss = step(tf.constant([0, 1, 2, 3], tf.int64), tf.constant([0, 1, 2, 0]))
    assert np.isfinite(float(loss))


# ---- GPU placement (skipped without a GPU) ----------------------------------
@pytest.mark.skipif(not _gpu_available(), reason="no GPU visible to TensorFlow")
@pytest.mark.parametrize("kind", ["gaussian", "random_pixels", "shuffled_pixels", "labels"])
def test_gpu_placement_equals_cpu(kind):
    rng = np.random.default_rng(5)
    idx = tf.constant(rng.integers(0, 10**9, 16), tf.int64)
    images = tf.constant(rng.integers(0, 256, (16, 299, 299, 3)).astype(np.uint8))
    labels = tf.constant(rng.integers(0, 10, 16), tf.int64)
    kw = dict(image_shape=(299, 299, 3), mean=[0.5, 0.4, 0.3], stddev=[0.2, 0.2, 0.2]) \
        if kind == "gaussian" else dict(num_classes=10, corrupt_prob=0.5) \
        if kind == "labels" else {}
    args = idx if kind == "gaussian" else ((labels if kind == "labels" else images), idx)
    cpu = layers.RandomizeOnDevice(kind, SEED, device="/CPU:0", **kw)(args)
    gpu = layers.RandomizeOnDevice(kind, SEED, device="/GPU:0", **kw)(args)
    if kind == "gaussian":
        a, b = cpu.numpy().view(np.int32), gpu.numpy().view(np.int32)
        assert np.max(np.abs(a.astype(np.int64) - b)) <= 1  # documented tolerance
    else:
        np.testing.assert_array_equal(cpu.numpy(), gpu.numpy())
