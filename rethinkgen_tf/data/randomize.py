"""The randomization test applied to in-memory arrays, once, by example index.

`plan(config, split)` (rethinkgen_tf.ops.randomizations) is the one place that
decides what a DataConfig does to a split, and `apply_images` / `apply_labels`
the one dispatch from its Plan to the ops: the host pipeline here
(`randomize_labels`, `randomize_images`), the streamed ImageNet pipeline
(`data.imagenet`) and the in-model layer (`ops.layers.for_data_config`) all
carry out the same Plan the same way.

Every call goes through `rethinkgen_tf.ops` (one batched call over all
indices), so what the pipeline serves is exactly the op's output.  Seeds and
streams: rethinkgen_tf.ops.randomizations and docs/data.md.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np

from rethinkgen_tf.ops.randomizations import IMAGE_KINDS, SPLITS, Plan, apply_images, apply_labels, plan  # noqa: F401

from .sources import _cache_dir, read_cache_json, write_cache_json

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
        from rethinkgen_tf.ops import native_numpy
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
    stats = read_cache_json(path, lambda d: parse_stats(d, x.shape[-1]))
    if stats is None:  # exact, from per-channel histograms of the uint8 values
        hist = np.stack([np.bincount(x[..., c].ravel(), minlength=256) for c in range(x.shape[-1])])
        v = np.arange(256.0)
        n = hist.sum(1)
        mean = hist @ v / n
        std = np.sqrt(np.maximum(hist @ (v * v) / n - mean * mean, 0.0))
        stats = mean.astype(np.float32), std.astype(np.float32)
        write_cache_json(path, {"mean": mean.tolist(), "std": std.tolist(), "shape": list(x.shape)})
    _STATS[key] = stats
    return stats


def parse_stats(d, channels):
    """(mean, std) float32 of a cached stats file; ValueError if they are not `channels` finite
    values each, std >= 0 (a damaged file)."""
    mean, std = np.array(d["mean"], np.float32), np.array(d["std"], np.float32)
    if mean.shape != (channels,) or std.shape != (channels,) or not (
            np.isfinite(mean).all() and np.isfinite(std).all() and (std >= 0).all()):
        raise ValueError(f"mean {mean.tolist()} and std {std.tolist()} are not {channels} finite values each")
    return mean, std


def randomize_labels(y, indices, config, num_classes):
    """The training labels of `config` (plan(config, "train")), int32."""
    p = plan(config, "train")
    if p.label_prob == 0.0:
        return y.astype(np.int32)
    out = apply_labels(p, _ops(), y.astype(np.int64), np.asarray(indices, np.int64), num_classes)
    return _np(out).astype(np.int32)


def randomize_images(x, indices, config, split, stats=None):
    """The images of one split after the pixel randomization of plan(config, split) (x itself if none applies).

    Returns uint8 for the permutations, float32 in [0, 255] scale for Gaussian.
    """
    p = plan(config, split)
    if p.kind == "none":
        return x
    out = _np(apply_images(p, _ops(), np.asarray(indices, np.int64), images=x, shape=x.shape[1:],
                           stats=stats))
    return out.astype(np.float32) if p.randomization.generates_images else out
