"""The randomization test applied to in-memory arrays, once, by example index.

`plan(config, split)` is the one place that decides what a DataConfig does to
a split (which randomization, which seed stream, mode and unit); the host
pipeline (`randomize_labels`, `randomize_images`), the streamed ImageNet
pipeline (`data.imagenet`) and the in-model layer (`layers.for_data_config`)
all carry out its Plan.

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

import dataclasses
import hashlib
import os
from typing import Optional

import numpy as np

from rethinkgen_tf.ops.reference import derive_seed

from .sources import _cache_dir, read_cache_json, write_cache_json

_STATS = {}
SPLITS = ("train", "test")
IMAGE_KINDS = ("none", "shuffled_pixels", "random_pixels", "gaussian")
PIXEL_MODES = {"shuffled_pixels": "shared", "random_pixels": "per_example"}  # kind -> permute_pixels mode


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the randomization test does to one split of a DataConfig.

    kind: the image randomization, "none" (the images as they are) |
      "shuffled_pixels" | "random_pixels" | "gaussian".
    seed: the seed of the image stream (None for kind "none").
    mode: the permute_pixels mode, "shared" | "per_example" (pixel kinds only).
    unit: the permute_pixels unit, "position" | "value" (pixel kinds only).
    label_prob, label_mode, label_seed: the label corruption (training split
      only; 0.0 / None where labels stay as they are).
    """
    split: str
    kind: str = "none"
    seed: Optional[int] = None
    mode: Optional[str] = None
    unit: Optional[str] = None
    label_prob: float = 0.0
    label_mode: Optional[str] = None
    label_seed: Optional[int] = None


def plan(config, split) -> Plan:
    """The Plan of `config` (a DataConfig) for split "train" or "test"; see the module docstring.

    Test images: test_images="original" never randomizes them; "randomized"
    always does; "auto" does except for random_pixels (per-example
    permutations of test images share nothing with training).  Test streams
    use derive_seed(seed, "test"), except shuffled_pixels, whose one
    permutation is shared by both splits.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    test = split == "test"
    labels = {}
    if not test and config.label_prob > 0:
        labels = dict(label_prob=config.label_prob, label_mode=config.label_mode, label_seed=config.seed)
    kind = config.randomize if config.randomize in IMAGE_KINDS else "none"  # "labels": images as they are
    if test and (config.test_images == "original" or (config.test_images == "auto" and kind == "random_pixels")):
        kind = "none"
    if kind == "none":
        return Plan(split, **labels)
    seed = derive_seed(config.seed, "test") if test and kind != "shuffled_pixels" else config.seed
    mode = PIXEL_MODES.get(kind)
    return Plan(split, kind, seed, mode, config.pixel_unit if mode else None, **labels)


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
    out = _ops().corrupt_labels(y.astype(np.int64), np.asarray(indices, np.int64), p.label_prob, num_classes,
                                p.label_seed, mode=p.label_mode)
    return _np(out).astype(np.int32)


def randomize_images(x, indices, config, split, stats=None):
    """The images of one split after the pixel randomization of plan(config, split) (x itself if none applies).

    Returns uint8 for the permutations, float32 in [0, 255] scale for Gaussian.
    """
    p = plan(config, split)
    if p.kind == "none":
        return x
    ops = _ops()
    idx = np.asarray(indices, np.int64)
    if p.mode is not None:
        return _np(ops.permute_pixels(x, idx, p.seed, mode=p.mode, unit=p.unit))
    mean, std = stats
    return _np(ops.gaussian_images(idx, p.seed, tuple(x.shape[1:]), mean, std)).astype(np.float32)
