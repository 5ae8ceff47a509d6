"""Model registry: the paper's CIFAR-10 architectures (docs/paper.md#models) and friends.

    model = build("inception", input_shape=(28, 28, 3), num_classes=10,
                  batchnorm=True, dropout=0.0, weight_decay=0.0)

Every model maps preprocessed float images to float32 logits (no softmax).

Names: ``inception``, ``inception_nobn``, ``alexnet``, ``mlp_NxW`` (any depth N
and width W, e.g. ``mlp_1x512``), ``wrn_D_K`` (wide ResNet of depth D = 6n + 4
and widening factor K, e.g. ``wrn_28_10``) and ``inception_v3`` (ImageNet,
from ``keras.applications``, no pretrained weights, input at least 75x75).

Options shared by all models:
  batchnorm     batch norm after every conv / hidden dense layer (default: on
                for Inception and WRN, off for AlexNet and MLPs).
  dropout       dropout rate in front of the final classifier (default 0).
  bn_momentum   decay of the batch norm moving averages (default 0.997, TF-slim's
                Inception: recipes.BN_MOMENTUM); the inference-mode statistics
                average over about 1 / (1 - bn_momentum) steps.
  weight_decay  L2 penalty ``weight_decay / 2 * sum(w**2)`` on every kernel
                (conv and dense, not biases or BN shifts), i.e. a gradient of
                ``weight_decay * w``, as in ``tf.nn.l2_loss`` and PyTorch SGD.

Batch norm follows TF-slim, the paper's framework: a learned shift (center)
but no learned scale, and convolutions/dense layers followed by batch norm have
no bias.  ``bn_scale=True`` adds the scale.  So every conv channel has exactly
one bias-or-shift, which is the counting convention of the paper's Table 1
(see :func:`paper_param_count`).
"""

import re

import keras
import tensorflow as tf
from keras import layers

from rethinkgen_tf import recipes, user_model
from rethinkgen_tf.recipes import BN_MOMENTUM  # batch norm's default decay (TF-slim's Inception)

MODELS = {}  # name or regex pattern -> builder(input_shape, num_classes, **opts)
PAPER_PARAMS = recipes.PAPER_PARAMS  # Table 1 of the paper, from the family records
# The paper's initial learning rate per CIFAR-10 family, read from recipes.RECIPES
# (for benchmarks/train.py and experiments/expressivity.py; TrainConfig.resolved
# reads the recipes itself).
DEFAULT_LEARNING_RATE = {fam: r.learning_rate for fam, r in recipes.RECIPES.items()}


def register(pattern):
    """Registers a builder under a name, or a regex whose groups are int args."""

    def wrap(fn):
        MODELS[pattern] = fn
        return fn

    return wrap


NAMES = "inception, inception_nobn, alexnet, mlp_NxW, wrn_D_K, inception_v3, linear"


def _match(name):
    """(builder, int args) for a model name, or None; sizes in a name are >= 1."""
    for pattern, fn in MODELS.items():
        m = re.fullmatch(pattern, name)
        if m and all(int(g) >= 1 for g in m.groups()):
            return fn, [int(g) for g in m.groups()]
    return None


def known(name):
    """Whether `name` is a built-in model, or a reference module:function to a builder
    (rethinkgen_tf.user_model; TrainConfig.validate imports it)."""
    return user_model.is_reference(name) or _match(name) is not None


def family(name):
    """'inception' | 'inception_v3' | 'alexnet' | 'mlp' | 'wrn' | 'linear' (for defaults)."""
    if name == "inception_v3":
        return "inception_v3"
    if user_model.is_reference(name):
        return user_model.FAMILY  # no recipe of its own: TrainConfig.recipe or the flags
    m = re.match(r"[a-z]+", name)
    return m.group(0) if m else name


def build(name, input_shape=(28, 28, 3), num_classes=10, weight_decay=0.0, **opts):
    """Builds model ``name`` (or the builder module:function, user_model.build); raises
    ValueError for unknown names/options."""
    if user_model.is_reference(name):
        model = user_model.build(name, input_shape, num_classes, **opts)
    else:
        found = _match(name)
        if found is None:
            raise ValueError(f"unknown model {name!r}; known: {NAMES} (sizes >= 1), or "
                             "module:function for your own builder")
        fn, args = found
        model = fn(*args, input_shape=tuple(input_shape), num_classes=num_classes, **opts)
    if weight_decay:
        reg = keras.regularizers.L2(weight_decay / 2)
        for layer in all_layers(model):
            if getattr(layer, "kernel", None) is not None:
                layer.kernel.regularizer = reg
    return model


all_layers = user_model.all_layers  # every layer, nested models' layers included


def paper_param_count(model):
    """Parameters as the paper counts them: trainable weights minus BN scales.

    Table 1 lists 1,649,402 for Inception with and without batch norm: each
    conv channel has one bias (no BN) or one BN shift (with BN), and the BN
    scale is not a parameter (TF-slim's default).  Moving statistics are state,
    not parameters.
    """
    return sum(int(tf.size(v)) for v in model.trainable_weights
               if not v.path.endswith("gamma"))


# ---------------------------------------------------------------- helpers


def _act(x, batchnorm, bn_scale, bn_momentum=BN_MOMENTUM):
    if batchnorm:
        x = layers.BatchNormalization(scale=bn_scale, momentum=bn_momentum, epsilon=1e-3)(x)
    return layers.ReLU()(x)


def _conv(x, filters, kernel, strides=1, padding="same", batchnorm=True,
          bn_scale=False, bn_momentum=BN_MOMENTUM):
    """Conv module: conv -> [batch norm] -> ReLU."""
    x = layers.Conv2D(filters, kernel, strides, padding, use_bias=not batchnorm)(x)
    return _act(x, batchnorm, bn_scale, bn_momentum)


def _dense(x, units, batchnorm=False, bn_scale=False, bn_momentum=BN_MOMENTUM):
    x = layers.Dense(units, use_bias=not batchnorm)(x)
    return _act(x, batchnorm, bn_scale, bn_momentum)


def _head(x, num_classes, dropout):
    if dropout:
        x = layers.Dropout(dropout)(x)
    return layers.Dense(num_classes, dtype="float32")(x)  # fp32 logits


def _check(opts, **defaults):
    unknown = set(opts) - set(defaults)
    if unknown:
        raise ValueError(f"unknown model option(s): {sorted(unknown)}")
    return {**defaults, **{k: v for k, v in opts.items() if v is not None}}


# ---------------------------------------------------------------- models


@register("inception")
def inception(input_shape, num_classes, **opts):
    """Small Inception (docs/paper.md#models): 1,649,402 parameters on 28x28x3, 10 classes."""
    o = _check(opts, batchnorm=True, dropout=0.0, bn_scale=False, bn_momentum=BN_MOMENTUM)
    conv = lambda x, c, k, s=1, p="same": _conv(x, c, k, s, p, o["batchnorm"], o["bn_scale"],
                                                  o["bn_momentum"])
    inc = lambda x, c1, c3: layers.Concatenate()([conv(x, c1, 1), conv(x, c3, 3)])
    down = lambda x, c3: layers.Concatenate()(
        [conv(x, c3, 3, 2, "valid"), layers.MaxPooling2D(3, 2, "valid")(x)])

    inputs = keras.Input(input_shape)
    x = conv(inputs, 96, 3)
    x = inc(x, 32, 32)
    x = inc(x, 32, 48)
    x = down(x, 80)
    for c1, c3 in [(112, 48), (96, 64), (80, 80), (48, 96)]:
        x = inc(x, c1, c3)
    x = down(x, 96)
    x = inc(x, 176, 160)
    x = inc(x, 176, 160)
    x = layers.GlobalAveragePooling2D()(x)
    name = "inception" if o["batchnorm"] else "inception_nobn"
    return keras.Model(inputs, _head(x, num_classes, o["dropout"]), name=name)


@register("inception_nobn")
def inception_nobn(input_shape, num_classes, **opts):
    return inception(input_shape, num_classes, **{**opts, "batchnorm": False})


class LocalResponseNormalization(layers.Layer):
    """tf.nn.local_response_normalization over channels (AlexNet, TF tutorial).

    Computed in float32 under every dtype policy: TensorFlow has no bfloat16 CPU
    kernel for it, and its sum of squares is where low precision would hurt."""

    def __init__(self, depth_radius=4, bias=1.0, alpha=0.001 / 9.0, beta=0.75, **kw):
        kw.setdefault("dtype", "float32")
        super().__init__(**kw)
        self.args = dict(depth_radius=depth_radius, bias=bias, alpha=alpha, beta=beta)

    def call(self, x):
        return tf.nn.local_response_normalization(x, **self.args)

    def get_config(self):
        return {**super().get_config(), **self.args}


@register("alexnet")
def alexnet(input_shape, num_classes, **opts):
    """Small AlexNet (docs/paper.md#models): 2 x (conv5x5(64) -> maxpool 3x3/2 -> LRN), 384, 192."""
    o = _check(opts, batchnorm=False, dropout=0.0, bn_scale=False, bn_momentum=BN_MOMENTUM)
    inputs = keras.Input(input_shape)
    x = inputs
    for _ in range(2):
        x = _conv(x, 64, 5, batchnorm=o["batchnorm"], bn_scale=o["bn_scale"],
                  bn_momentum=o["bn_momentum"])
        x = layers.MaxPooling2D(3, 2, "same")(x)
        x = LocalResponseNormalization()(x)
    x = layers.Flatten()(x)
    x = _dense(x, 384, o["batchnorm"], o["bn_scale"], o["bn_momentum"])
    x = _dense(x, 192, o["batchnorm"], o["bn_scale"], o["bn_momentum"])
    return keras.Model(inputs, _head(x, num_classes, o["dropout"]), name="alexnet")


@register(r"mlp_(\d+)x(\d+)")
def mlp(depth, width, input_shape, num_classes, **opts):
    """MLP with `depth` hidden ReLU layers of `width` units."""
    o = _check(opts, batchnorm=False, dropout=0.0, bn_scale=False, bn_momentum=BN_MOMENTUM)
    inputs = keras.Input(input_shape)
    x = layers.Flatten()(inputs)
    for _ in range(depth):
        x = _dense(x, width, o["batchnorm"], o["bn_scale"], o["bn_momentum"])
    return keras.Model(inputs, _head(x, num_classes, o["dropout"]),
                       name=f"mlp_{depth}x{width}")


@register("linear")
def linear(input_shape, num_classes, **opts):
    """Softmax regression on the preprocessed pixels: the control that shows
    when fitting random labels is trivial (n below the input dimension)."""
    o = _check(opts, batchnorm=False, dropout=0.0, bn_scale=False, bn_momentum=BN_MOMENTUM)
    if o["batchnorm"]:
        raise ValueError("linear has no batch norm")
    inputs = keras.Input(input_shape)
    x = layers.Flatten()(inputs)
    return keras.Model(inputs, _head(x, num_classes, o["dropout"]), name="linear")


@register(r"wrn_(\d+)_(\d+)")
def wide_resnet(depth, k, input_shape, num_classes, **opts):
    """Wide ResNet WRN-depth-k (Zagoruyko & Komodakis 2016), pre-activation."""
    o = _check(opts, batchnorm=True, dropout=0.0, bn_scale=False, bn_momentum=BN_MOMENTUM)
    if (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
    bn_relu = lambda x: _act(x, o["batchnorm"], o["bn_scale"], o["bn_momentum"])
    conv = lambda x, c, s=1: layers.Conv2D(c, 3, s, "same", use_bias=not o["batchnorm"])(x)

    inputs = keras.Input(input_shape)
    x = conv(inputs, 16)
    for group, width in enumerate([16 * k, 32 * k, 64 * k]):
        for block in range((depth - 4) // 6):
            stride = 2 if group > 0 and block == 0 else 1
            y = bn_relu(x)
            shortcut = x
            if stride != 1 or x.shape[-1] != width:
                shortcut = layers.Conv2D(width, 1, stride, use_bias=False)(y)
            y = conv(bn_relu(conv(y, width, stride)), width)
            x = layers.Add()([shortcut, y])
    x = layers.GlobalAveragePooling2D()(bn_relu(x))
    return keras.Model(inputs, _head(x, num_classes, o["dropout"]),
                       name=f"wrn_{depth}_{k}")


@register("inception_v3")
def inception_v3(input_shape, num_classes, **opts):
    """Inception V3 (keras.applications, random init); dropout before the top."""
    o = _check(opts, batchnorm=True, dropout=0.0)
    if not o["batchnorm"]:
        raise ValueError("inception_v3 always uses batch norm")
    base = keras.applications.InceptionV3(
        include_top=False, weights=None, input_shape=input_shape, pooling="avg")
    return keras.Model(base.input, _head(base.output, num_classes, o["dropout"]),
                       name="inception_v3")
