"""tf.data pipelines for datasets that fit in memory (CIFAR-10, MNIST, class folders, NumPy).

Decode once -> select the subset -> randomize the whole arrays once (one op
call) -> keep them in memory as tensors.  Each pipeline then shuffles example
*indices*, batches them, and gathers + preprocesses a whole batch in one
vectorized map, which is far cheaper than per-example maps.
"""
from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from . import Data, DataConfig, DataError, check_crop
from .preprocess import preprocess
from .randomize import channel_stats, plan, randomize_images, randomize_labels
from .sources import load_arrays, select_subset

AUTOTUNE = tf.data.AUTOTUNE


def _check_arrays(x, y, what):
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"{what} images must be [N, H, W, C] (or [N, H, W]), got shape {x.shape}")
    if len(x) != len(y) or y.ndim != 1:
        raise DataError(f"{what}: {len(x)} images but labels of shape {y.shape}")
    if x.dtype != np.uint8:
        raise DataError(f"{what} images must be uint8 in [0, 255], got {x.dtype}; convert with "
                        "np.clip(np.round(x), 0, 255).astype(np.uint8) (scale [0, 1] data by 255 first)")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise DataError(f"{what} labels must be integers >= 0, got {y.dtype}")
    return x, y.astype(np.int64)


def _source(config, arrays):
    if config.dataset == "numpy":
        if arrays is None or len(arrays) != 4:
            raise DataError("dataset='numpy' needs load(config, arrays=(x_train, y_train, x_test, y_test))")
        x_tr, y_tr = _check_arrays(arrays[0], arrays[1], "training")
        x_te, y_te = _check_arrays(arrays[2], arrays[3], "test")
        names = [str(i) for i in range(int(max(y_tr.max(initial=0), y_te.max(initial=0))) + 1)]
    else:
        x_tr, y_tr, names = load_arrays(config.dataset, config.data_dir, "train")
        x_te, y_te, names_te = load_arrays(config.dataset, config.data_dir, "test")
        if names_te != names:
            raise DataError(f"train and test have different classes: {names} vs {names_te}")
    if x_te.shape[1:] != x_tr.shape[1:]:
        raise DataError(f"train images are {x_tr.shape[1:]} but test images {x_te.shape[1:]}: they must match")
    return x_tr, y_tr, x_te, y_te, names


def shuffle_seed_for_epoch(shuffle_seed, epoch):
    return int(np.random.SeedSequence([shuffle_seed, epoch]).generate_state(1)[0])


def load_small(config: DataConfig, arrays=None) -> Data:
    x_tr, y_tr, x_te, y_te, names = _source(config, arrays)
    # Up front: inside the pipeline a crop that does not fit fails deep in an autograph trace.
    where = f" in {config.data_dir}" if config.data_dir else (" of the arrays" if config.dataset == "numpy" else "")
    check_crop(config.crop, x_tr.shape[1], x_tr.shape[2], where)
    num_classes = len(names)
    if config.augment != "none" and config.crop is None:
        raise DataError(f"augment={config.augment!r} takes a random crop: set crop (paper: 28)")
    subset = "balanced" if config.balanced else "first"
    idx = select_subset(y_tr, config.train_size, subset, num_classes)
    x_tr, y_tr = x_tr[idx], y_tr[idx]
    # The test subset is balanced like the training subset: class-folder
    # sources list the test set class by class, so "the first n" alone
    # would hold one or two classes.
    idx_te = select_subset(y_te, config.test_size, subset, num_classes, what="test_size")
    x_te, y_te = x_te[idx_te], y_te[idx_te]
    stats = channel_stats(x_tr) if plan(config, "train").kind == "gaussian" else None
    y_rand = randomize_labels(y_tr, idx, config, num_classes)
    x_tr = randomize_images(x_tr, idx, config, "train", stats)
    x_te = randomize_images(x_te, idx_te, config, "test", stats)

    images, labels, true = tf.constant(x_tr), tf.constant(y_rand), tf.constant(y_tr.astype(np.int32))
    test_images, test_labels = tf.constant(x_te), tf.constant(y_te.astype(np.int32))
    n, bs = len(y_rand), config.batch_size
    opts = tf.data.Options()
    opts.deterministic = config.deterministic

    def prep(x, seed=None, augment="none"):
        return preprocess(x, config.crop, config.standardize, augment, seed)

    def gather(batches):
        """(index batch, augmentation seed) -> (images, labels): the one map that captures the
        image tensor.  A map per epoch would put a copy of it into the dataset graph per epoch
        (150 MB each for CIFAR-10: a 150-epoch run ran out of memory)."""
        ds = batches.map(lambda i, s: (prep(tf.gather(images, i), s, config.augment), tf.gather(labels, i)),
                         num_parallel_calls=AUTOTUNE, deterministic=config.deterministic)
        return ds.prefetch(AUTOTUNE).with_options(opts)

    def train_epochs(start, stop):
        if not 0 <= start < stop:
            raise ValueError(f"need 0 <= start < stop, got epochs {start}..{stop}")
        parts = []
        for e in range(start, stop):
            s = shuffle_seed_for_epoch(config.shuffle_seed, e)
            order = tf.data.Dataset.range(n).shuffle(n, seed=s, reshuffle_each_iteration=False)
            parts.append(tf.data.Dataset.zip(order.batch(bs), tf.data.Dataset.random(seed=s).batch(2)))
        return gather(functools.reduce(tf.data.Dataset.concatenate, parts))

    order = tf.data.Dataset.range(n).shuffle(n, seed=config.shuffle_seed, reshuffle_each_iteration=True)
    train = gather(tf.data.Dataset.zip(
        order.batch(bs), tf.data.Dataset.random(seed=config.shuffle_seed, rerandomize_each_iteration=True).batch(2)))

    train_eval = tf.data.Dataset.range(n).batch(bs).map(
        lambda i: (prep(tf.gather(images, i)), tf.gather(labels, i), tf.gather(true, i)),
        num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE).with_options(opts)
    test = tf.data.Dataset.range(len(y_te)).batch(bs).map(
        lambda i: (prep(tf.gather(test_images, i)), tf.gather(test_labels, i)),
        num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE).with_options(opts)
    h, w, c = x_tr.shape[1:]
    shape = (config.crop, config.crop, c) if config.crop else (h, w, c)
    return Data(train, train_eval, test, n, len(y_te), num_classes, shape, list(names), config,
                train_epochs=train_epochs, train_indices=idx, stats=stats)
