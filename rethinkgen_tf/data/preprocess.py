"""The paper's preprocessing (docs/paper.md#data) and the optional augmentations, on batches.

Input: images [B, H, W, C], uint8 or float in [0, 255] scale (Gaussian images
are float and are not clipped).  Steps: divide by 255 -> crop (center, or a
random crop when augmenting) -> flips / colour distortion if asked ->
per-image standardization.  Random choices are stateless functions of `seed`
(a [2] int tensor), so a pipeline is reproducible.
"""
from __future__ import annotations

import tensorflow as tf


def _uniform(seed, n, salt, lo, hi):
    return tf.random.stateless_uniform([n], seed + tf.constant([0, salt], seed.dtype), lo, hi)


def crop_at(x, size, oy, ox, flip=None):
    """Crop every image b of x at its own offset (oy[b], ox[b]), mirrored left-right where flip[b]; exact."""
    r = tf.range(size)
    cols = r if flip is None else tf.where(flip[:, None], size - 1 - r, r)
    x = tf.gather(x, oy[:, None] + r, axis=1, batch_dims=1)
    return tf.gather(x, ox[:, None] + cols, axis=2, batch_dims=1)


def center_crop(x, size):
    h, w = x.shape[1], x.shape[2]
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, top:top + size, left:left + size, :]


def random_crop(x, size, seed, flip=False):
    """A uniformly random size x size crop of each image, mirrored with probability 1/2 if flip."""
    n, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    oy = tf.random.stateless_uniform([n], seed, 0, h - size + 1, tf.int32)
    ox = tf.random.stateless_uniform([n], seed + tf.constant([0, 1], seed.dtype), 0, w - size + 1, tf.int32)
    return crop_at(x, size, oy, ox, _uniform(seed, n, 2, 0.0, 1.0) < 0.5 if flip else None)


def distort_color(x, seed):
    """Per-image random brightness, contrast, saturation and hue (Inception-style ranges), clipped to [0, 1]."""
    n = tf.shape(x)[0]
    x = x + _uniform(seed, n, 3, -32.0 / 255, 32.0 / 255)[:, None, None, None]
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    x = (x - mean) * _uniform(seed, n, 4, 0.5, 1.5)[:, None, None, None] + mean
    if x.shape[-1] == 3:
        hsv = tf.image.rgb_to_hsv(tf.clip_by_value(x, 0.0, 1.0))
        hue = tf.math.floormod(hsv[..., 0] + _uniform(seed, n, 5, -0.2, 0.2)[:, None, None], 1.0)
        sat = tf.clip_by_value(hsv[..., 1] * _uniform(seed, n, 6, 0.5, 1.5)[:, None, None], 0.0, 1.0)
        x = tf.image.hsv_to_rgb(tf.stack([hue, sat, hsv[..., 2]], -1))
    return tf.clip_by_value(x, 0.0, 1.0)


def preprocess(images, crop=28, standardize=True, augment="none", seed=None):
    """Scale to [0, 1], crop, augment (when augment != "none"), standardize.  Returns float32."""
    x = images
    if augment != "none" and (seed is None or crop is None):
        raise ValueError("augmentation takes a random crop: it needs a crop size and a seed")
    if crop is not None:  # cropping first is the same as after the scaling, and cheaper
        if crop > x.shape[1] or crop > x.shape[2]:
            raise ValueError(f"crop={crop} is larger than the {x.shape[1]}x{x.shape[2]} images")
        x = center_crop(x, crop) if augment == "none" else random_crop(x, crop, seed, augment != "crop")
    x = tf.cast(x, tf.float32) / 255.0
    if augment == "imagenet":
        x = distort_color(x, seed)
    if standardize:
        x = tf.image.per_image_standardization(x)
    return x
