"""Randomization on the accelerator: a Keras layer around `rethinkgen_tf.ops`.

The host path (``rethinkgen_tf.data``) randomizes whole arrays once on the CPU
and streams the results through tf.data.  `RandomizeOnDevice` applies the same
op inside the model instead, so it runs where the model runs (the GPU when the
op library was built with its GPU kernels, see docs/gpu.md):

* ``kind="gaussian"``: the input is a batch of example indices; the images are
  generated on the device from (seed, index) alone, nothing but int64 indices
  crosses the host-device link.
* ``kind="random_pixels"`` / ``"shuffled_pixels"``: the input is
  ``(images, indices)``; the original images are sent and permuted on the
  device (per example / one shared permutation).
* ``kind="labels"``: the input is ``(labels, indices)``; mode "uniform"
  label corruption per batch (mode "permute" is a dataset-level transform and
  stays on the host path).

The output for example i depends only on (seed, i, parameters), never on the
batch, its order or the device: it is bit-identical to the host path's output
for the same example (labels and pixels on every device; Gaussians on the GPU
equal the CPU kernels bit for bit, with a documented tolerance of 1 ulp).

Example (Gaussian images generated on the GPU from indices)::

    layer = RandomizeOnDevice("gaussian", seed=7, image_shape=(32, 32, 3),
                              mean=[125.3, 123.0, 113.9], stddev=[63.0, 62.1, 66.7])
    idx = keras.Input(shape=(), dtype="int64")
    x = layer(idx)                      # [batch, 32, 32, 3] float32, 0..255 scale
    ...                                 # preprocessing + network
    ds = tf.data.Dataset.from_tensor_slices((indices, labels)).batch(128)

`for_data_config` builds the layer that reproduces exactly what
``rethinkgen_tf.data`` would have served for a given DataConfig and split.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

try:  # Keras 3 (TF >= 2.16) or tf.keras
    import keras
except ImportError:  # pragma: no cover
    from tensorflow import keras

from rethinkgen_tf.ops import _checks, tf_ops
from rethinkgen_tf.ops.randomizations import ALL, BY_NAME, Plan, apply_images, apply_labels, plan

KINDS = tuple(r.name for r in ALL if r.op is not None)  # every randomization with an op


class RandomizeOnDevice(keras.layers.Layer):
    """Applies one randomization of the paper to a batch, on the model's device.

    Args:
      kind: "gaussian" | "shuffled_pixels" | "random_pixels" | "labels".
      seed: the int64 randomization seed (use ``rethinkgen_tf.ops.derive_seed(seed, "test")``
        for test-split streams, as the host path does).
      unit: "position" | "value" (pixel kinds).
      image_shape, mean, stddev, output_dtype: Gaussian images ([H, W, C],
        per-channel mean/stddev of length C, float32/float16/bfloat16).
      num_classes, corrupt_prob: kind "labels" (mode "uniform").
      device: optional explicit placement such as "/GPU:0" (default: the
        placement TensorFlow chooses for the model, i.e. the GPU if the op has
        GPU kernels and one is visible).

    Inputs: indices (gaussian), or a tuple (images, indices) / (labels,
    indices).  Not trainable; no gradient flows through (the ops have none).
    """

    def __init__(self, kind, seed, unit="position", image_shape=None, mean=None,
                 stddev=None, output_dtype="float32", num_classes=None,
                 corrupt_prob=1.0, device=None, **kwargs):
        kwargs.setdefault("trainable", False)
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        # Custom ops have no XLA lowering: keep Keras' jit_compile="auto" off
        # for models containing this layer (fit() would fail on GPU machines).
        self.supports_jit = False
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        # The ops' own rules (_checks), checked once, here.
        _checks.choice("unit", unit, _checks.PIXEL_UNITS)
        self.kind = kind
        self.seed = _checks.seed(seed)
        self.unit = unit
        self.device = device
        self.output_dtype = tf.as_dtype(output_dtype).name
        self.image_shape = None if image_shape is None else tuple(int(s) for s in image_shape)
        self.mean = None if mean is None else [float(v) for v in np.asarray(mean).reshape(-1)]
        self.stddev = None if stddev is None else [float(v) for v in np.asarray(stddev).reshape(-1)]
        self.num_classes = None if num_classes is None else int(num_classes)
        self.corrupt_prob = float(corrupt_prob)
        if BY_NAME[kind].generates_images:
            if image_shape is None or mean is None or stddev is None:
                raise ValueError("kind='gaussian' needs image_shape, mean and stddev")
            _checks.gaussian_dtype(self.output_dtype)
            _checks.gaussian_shape(self.image_shape)
            _checks.gaussian_params(self.mean, self.stddev, self.image_shape[-1])
        if BY_NAME[kind].target == "labels":
            if num_classes is None:
                raise ValueError("kind='labels' needs num_classes in [1, 2^32]")
            self.num_classes = _checks.num_classes(num_classes)
            self.corrupt_prob = _checks.corrupt_prob(corrupt_prob)
        # The Plan this layer carries out (through the one dispatch the host pipelines use).
        r = BY_NAME[kind]
        if r.target == "labels":
            self.plan = Plan("train", label_prob=self.corrupt_prob, label_mode="uniform",
                             label_seed=self.seed)
        else:
            self.plan = Plan("train", kind, self.seed, r.pixel_mode,
                             unit if r.pixel_mode else None)

    # -- computation ---------------------------------------------------------
    def _apply(self, inputs):
        if self.plan.randomization.generates_images:
            return apply_images(self.plan, tf_ops, inputs, shape=self.image_shape,
                                stats=(self.mean, self.stddev), dtype=self.output_dtype)
        first, indices = inputs
        if BY_NAME[self.kind].target == "labels":
            return apply_labels(self.plan, tf_ops, first, indices, self.num_classes)
        return apply_images(self.plan, tf_ops, indices, images=first)

    def call(self, inputs):
        if self.device:
            with tf.device(self.device):
                return self._apply(inputs)
        return self._apply(inputs)

    def compute_output_shape(self, input_shape):
        if self.plan.randomization.generates_images:
            return tuple(input_shape) + self.image_shape
        return tuple(input_shape[0])

    def compute_output_spec(self, inputs):
        if self.plan.randomization.generates_images:
            return keras.KerasTensor(tuple(inputs.shape) + self.image_shape,
                                     dtype=self.output_dtype)
        first = inputs[0]
        return keras.KerasTensor(tuple(first.shape), dtype=first.dtype)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(kind=self.kind, seed=self.seed, unit=self.unit,
                   image_shape=self.image_shape, mean=self.mean, stddev=self.stddev,
                   output_dtype=self.output_dtype, num_classes=self.num_classes,
                   corrupt_prob=self.corrupt_prob, device=self.device)
        return cfg


def for_data_config(config, split, image_shape=None, stats=None):
    """The layer reproducing the image randomization of ``rethinkgen_tf.data``.

    Carries out ``rethinkgen_tf.ops.randomizations.plan(config, split)``, the Plan
    the host pipelines carry out too: same kind, seed stream, mode and unit,
    and for Gaussians the per-channel (mean, std) of the training images
    (``stats``, see ``data.randomize.channel_stats``) in the 0..255 scale,
    float32.  Returns None where the plan leaves the images unchanged (no
    pixel randomization, or original test images).
    """
    p = plan(config, split)
    if p.kind == "none":
        return None
    if not p.randomization.generates_images:
        return RandomizeOnDevice(p.kind, p.seed, unit=p.unit)
    if stats is None or image_shape is None:
        raise ValueError(f"{p.kind} needs image_shape and stats=(mean, std) of the training images")
    mean, std = stats
    return RandomizeOnDevice(p.kind, p.seed, image_shape=image_shape, mean=mean, stddev=std)


def randomized_train_step(model, layer, loss_fn, optimizer):
    """A tf.function train step that randomizes on the device, for custom loops.

    ``step(inputs, labels)``: ``inputs`` is what `layer` takes (indices, or
    (images, indices)).  The randomization runs inside the same function as
    the forward/backward pass, on the model's device.
    """
    @tf.function
    def step(inputs, labels):
        x = layer(inputs)
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = loss_fn(labels, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss
    return step
