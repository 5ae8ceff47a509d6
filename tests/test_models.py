import keras
import numpy as np
import pytest
import tensorflow as tf

from rethinkgen_tf import models


@pytest.mark.parametrize("name", sorted(models.PAPER_PARAMS))
def test_table1_parameter_counts(name):
    model = models.build(name)
    assert models.paper_param_count(model) == models.PAPER_PARAMS[name]


def test_counting_convention():
    # With BN: the paper counts the shift (beta) but not the scale (gamma);
    # without BN, each conv has a bias instead: the same total.
    bn, nobn = models.build("inception"), models.build("inception_nobn")
    assert sum(int(tf.size(w)) for w in nobn.trainable_weights) == 1_649_402
    assert sum(int(tf.size(w)) for w in bn.trainable_weights) == 1_649_402
    scaled = models.build("inception", bn_scale=True)
    assert models.paper_param_count(scaled) == 1_649_402
    assert scaled.count_params() > bn.count_params()


@pytest.mark.parametrize("name,shape,classes", [
    ("inception", (28, 28, 1), 10), ("inception", (32, 32, 3), 100),
    ("alexnet", (28, 28, 1), 7), ("mlp_3x512", (8, 8, 1), 10), ("mlp_2x64", (28, 28, 3), 2),
    ("wrn_10_1", (32, 32, 3), 10), ("alexnet", (64, 48, 3), 5)])
def test_other_shapes(name, shape, classes):
    model = models.build(name, input_shape=shape, num_classes=classes)
    out = model(np.zeros((2, *shape), np.float32))
    assert out.shape == (2, classes) and out.dtype == tf.float32


def test_wrn_count():
    # WRN-16-4 has 2.75M parameters (Zagoruyko & Komodakis, Table 1).
    assert abs(models.build("wrn_16_4").count_params() - 2.75e6) < 0.01e6


@pytest.mark.slow
def test_inception_v3_small_input():
    model = models.build("inception_v3", input_shape=(75, 75, 3), num_classes=5, dropout=0.2)
    assert model.output_shape == (None, 5)
    assert any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)


def test_unknown_names_and_options():
    with pytest.raises(ValueError, match="unknown model"):
        models.build("resnet50")
    with pytest.raises(ValueError, match="unknown model option"):
        models.build("mlp_1x8", widht=3)
    assert models.known("mlp_12x7") and not models.known("mlp_x")
    assert models.family("wrn_28_10") == "wrn" and models.family("inception_nobn") == "inception"


def test_weight_decay_is_l2_on_kernels():
    model = models.build("mlp_2x16", input_shape=(4, 4, 1), weight_decay=1e-2, batchnorm=True)
    model(np.zeros((1, 4, 4, 1), np.float32))
    kernels = [w for w in model.trainable_weights if w.path.endswith("kernel")]
    expected = sum(0.5e-2 * float(tf.reduce_sum(tf.square(k))) for k in kernels)
    assert len(model.losses) == len(kernels) == 3
    np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-5)
    assert not models.build("mlp_2x16", input_shape=(4, 4, 1)).losses


def test_batchnorm_and_dropout_options():
    bn = lambda m: sum(isinstance(layer, keras.layers.BatchNormalization) for layer in m.layers)
    assert bn(models.build("inception")) == 1 + 2 * 8 + 2  # stem, 8 inception and 2 downsample modules
    assert bn(models.build("inception", batchnorm=False)) == 0
    assert bn(models.build("mlp_3x8", batchnorm=True)) == 3
    assert bn(models.build("alexnet")) == 0
    m = models.build("alexnet", dropout=0.5)
    assert [layer.rate for layer in m.layers if isinstance(layer, keras.layers.Dropout)] == [0.5]


def test_lrn_matches_tf():
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 16)).astype(np.float32)
    got = models.LocalResponseNormalization()(x)
    want = tf.nn.local_response_normalization(x, 4, 1.0, 0.001 / 9, 0.75)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_linear_control_is_softmax_regression():
    m = models.build("linear", (28, 28, 3), 10)
    assert m.count_params() == 28 * 28 * 3 * 10 + 10
    assert models.family("linear") == "linear" and models.known("linear")
    from rethinkgen_tf.train import TrainConfig
    r = TrainConfig(model="linear").resolved()
    assert (r.learning_rate, r.lr_decay, r.epochs) == (0.01, 0.985, 200)
