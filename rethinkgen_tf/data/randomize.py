"""The randomization test applied to in-memory arrays, once, by example index.

Every call goes through `rethinkgen_tf.ops` (one batched call over all
indices), so what the pipeline serves is exactly the op's output.

Seeds and streams (docs/data.md):
- train labels: ops.corrupt_labels(y, idx, p, K, seed, label_mode); test labels never change.
- shuffled_pixels: one permutation from `seed` (mode "shared"), on train and test.
- random_pixels: per-example permutations from `seed` (train) and
  derive_seed(seed, "test") (test, only with test_images="randomized").
- gaussian: images from `seed` (train) and derive_seed(seed, "test") (test),
  with the per-channel mean and std of the training images (in [0, 255]).
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from .sources import _cache_dir

_STATS = {}


def _ops():
    """The compiled op if it is built, else the compiled NumPy module, else the op's pure-TF fallback.

    All three give the same bits (tests/test_ops*); the pure-TF per-example
    permutation is too slow for a whole dataset, so it comes last.
    """
    from rethinkgen_tf import ops
    if ops.NATIVE:
        return ops
    try:
        from rethinkgen_tf import native_numpy
    except ImportError:
        return ops
    return native_numpy


def _np(t):
    return t.numpy() if hasattr(t, "numpy") else np.asarray(t)


def channel_stats(x):
    """(mean, std) per channel of uint8 images [N,H,W,C] in [0, 255] scale (population std), float32.

    Computed once per distinct array and cached in memory and as JSON under
    $RETHINKGEN_DATA_CACHE/stats/<sha1 of the array>.json.
    """
    key = hashlib.sha1(np.ascontiguousarray(x).data).hexdigest() + f"-{x.shape}-{x.dtype}"
    key = hashlib.sha1(key.encode()).hexdigest()
    if key in _STATS:
        return _STATS[key]
    path = os.path.join(_cache_dir(), "stats", key + ".json")
    try:
        with open(path) as f:
            d = json.load(f)
        stats = np.array(d["mean"], np.float32), np.array(d["std"], np.float32)
    except (OSError, ValueError, KeyError):  # exact, from per-channel histograms of the uint8 values
        hist = np.stack([np.bincount(x[..., c].ravel(), minlength=256) for c in range(x.shape[-1])])
        v = np.arange(256.0)
        n = hist.sum(1)
        mean = hist @ v / n
        std = np.sqrt(np.maximum(hist @ (v * v) / n - mean * mean, 0.0))
        stats = mean.astype(np.float32), std.astype(np.float32)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + f".{os.getpid()}.tmp", "w") as f:
                json.dump({"mean": mean.tolist(), "std": std.tolist(), "shape": list(x.shape)}, f)
            os.replace(path + f".{os.getpid()}.tmp", path)
        except OSError:
            pass  # read-only cache: the stats are cheap to recompute
    _STATS[key] = stats
    return stats


def randomize_labels(y, indices, config, num_classes):
    p = config.label_prob
    if p == 0.0:
        return y.astype(np.int32)
    out = _ops().corrupt_labels(y.astype(np.int64), np.asarray(indices, np.int64), p, num_classes,
                                config.seed, mode=config.label_mode)
    return _np(out).astype(np.int32)


def randomize_images(x, indices, config, split, stats=None):
    """The images of one split after the pixel randomization of `config` (x itself if none applies).

    Returns uint8 for the permutations, float32 in [0, 255] scale for Gaussian.
    """
    r = config.randomize
    if r in ("none", "labels"):
        return x
    test = split == "test"
    if test and (config.test_images == "original" or (config.test_images == "auto" and r == "random_pixels")):
        return x
    from rethinkgen_tf.ops import derive_seed
    ops = _ops()
    idx = np.asarray(indices, np.int64)
    seed = derive_seed(config.seed, "test") if test and r != "shuffled_pixels" else config.seed
    if r in ("shuffled_pixels", "random_pixels"):
        mode = "shared" if r == "shuffled_pixels" else "per_example"
        return _np(ops.permute_pixels(x, idx, seed, mode=mode, unit=config.pixel_unit))
    mean, std = stats
    return _np(ops.gaussian_images(idx, seed, tuple(x.shape[1:]), mean, std)).astype(np.float32)
