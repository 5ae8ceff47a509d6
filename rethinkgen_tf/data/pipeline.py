"""tf.data pipelines for datasets that fit in memory (CIFAR-10, MNIST, class folders, NumPy).

Decode once -> select the subset -> randomize the whole arrays once (one op
call) -> keep them in memory as tensors.  Each pipeline then shuffles example
*indices*, batches them, and gathers + preprocesses a whole batch in one
vectorized map, which is far cheaper than per-example maps.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import threading

import numpy as np
import tensorflow as tf

from .config import Data, DataConfig, DataError, check_crop
from .preprocess import preprocess
from .randomize import channel_stats, plan, randomize_images, randomize_labels
from .sources import load_arrays, load_npz, select_subset

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
        if arrays is None and config.data_dir:  # --dataset=numpy --data_dir=FILE.npz
            arrays = load_npz(config.data_dir)
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


def fingerprint_arrays(*arrays):
    """The sha1 (hex) of arrays' shapes and bytes, images as uint8 and labels as int64 so that a
    change of dtype in the code does not change it; about 0.3 s for CIFAR-10's training set."""
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a if a.dtype == np.uint8 or a.ndim > 1 else a.astype(np.int64))
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.data)
    return h.hexdigest()


def fingerprint_files(paths):
    """The sha1 (hex) of files' names and sizes: a cheap fingerprint of streamed data (reading
    ImageNet's 140 GB to hash it would take minutes); a file replaced by another of the same name
    and size goes unnoticed."""
    h = hashlib.sha1()
    for p in sorted(paths):
        h.update(f"{os.path.basename(p)}\0{os.path.getsize(p)}\n".encode())
    return h.hexdigest()


def shuffle_seed_for_epoch(shuffle_seed, epoch):
    return int(np.random.SeedSequence([shuffle_seed, epoch]).generate_state(1)[0])


# numpy.random.SeedSequence's constants (numpy/random/bit_generator.pyx)
_M32, _INIT_A, _MULT_A, _INIT_B, _MULT_B = 0xFFFFFFFF, 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
# train_eval and test are read in batches of at least this many images: evaluation runs no
# optimizer, so larger batches only save per-batch overhead (about 15% of an MLP's evaluation).
EVAL_BATCH = 1024
MAX_EPOCHS = 2**32  # epoch indices fit one 32-bit word of the seed's entropy


def _words(n):
    """SeedSequence's entropy words of a non-negative int: 32 bits at a time, low first."""
    out = [n & _M32]
    while n > _M32:
        n >>= 32
        out.append(n & _M32)
    return out


def epoch_seed(shuffle_seed, epoch):
    """shuffle_seed_for_epoch(shuffle_seed, epoch) as a tensor, for an int64 tensor `epoch` in
    [0, MAX_EPOCHS): NumPy's SeedSequence([shuffle_seed, epoch]).generate_state(1)[0] in uint64
    arithmetic, so a dataset can derive each epoch's seed from its index lazily."""
    u = lambda v: tf.constant(v, tf.uint64)
    xor, shr = tf.bitwise.bitwise_xor, tf.bitwise.right_shift
    low = lambda v: tf.bitwise.bitwise_and(v, u(_M32))
    entropy = [u(w) for w in _words(int(shuffle_seed))] + [tf.cast(epoch, tf.uint64)]
    const = [_INIT_A]

    def hashmix(v):
        v = xor(v, u(const[0]))
        const[0] = (const[0] * _MULT_A) & _M32
        v = low(v * u(const[0]))
        return xor(v, shr(v, u(16)))

    def mix(x, y):  # (L x - R y) mod 2^32
        r = low(u(_MIX_L) * x + (u(2**32) - low(u(_MIX_R) * y)))
        return xor(r, shr(r, u(16)))

    pool = [hashmix(entropy[i] if i < len(entropy) else u(0)) for i in range(4)]
    for src in range(4):
        for dst in range(4):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    v = low(xor(pool[0], u(_INIT_B)) * u((_INIT_B * _MULT_B) & _M32))
    return tf.cast(xor(v, shr(v, u(16))), tf.int64)


_SEED_LOCK = threading.Lock()


@contextlib.contextmanager
def _seeds_of(seed, pair):
    """While tf.data datasets are built: a `seed=` argument that is the tensor `seed` itself
    gets the (seed, seed2) op seeds `pair`; every other seed goes through tf.data as usual.

    Dataset.shuffle/random(seed=s) combine s with the global seed in Python (TensorFlow's
    random_seed.get_seed), which fails for a tensor s when the global seed is 0; here the
    same combination is done in tensor arithmetic (each_epoch)."""
    from tensorflow.python.data.util import random_seed as data_seed  # what shuffle/random call
    original = data_seed.get_seed

    def get_seed(s):
        return pair if s is seed else original(s)

    with _SEED_LOCK:
        data_seed.get_seed = get_seed
        try:
            yield
        finally:
            data_seed.get_seed = original


def each_epoch(start, stop, shuffle_seed, make_epoch):
    """Epochs start..stop-1 as one Dataset: make_epoch(seed) for each epoch, built lazily as the
    epochs are read, so building it takes the same time and memory for any number of epochs.

    `seed` is an int64 tensor, shuffle_seed_for_epoch(shuffle_seed, epoch), to be passed as the
    seed= of the epoch's Dataset.shuffle and Dataset.random: they give the same elements as
    with that seed as a Python int, under the global seed set when each_epoch is called (a run
    of rethinkgen_tf.train sets it to TrainConfig.seed), as the epoch-by-epoch concatenation
    of earlier versions did."""
    from tensorflow.python.framework import random_seed
    if not 0 <= start < stop:
        raise ValueError(f"need 0 <= start < stop, got epochs {start}..{stop}")
    if stop > MAX_EPOCHS:
        raise ValueError(f"--epochs={stop}: a run has at most {MAX_EPOCHS} (2^32) epochs; pass fewer")
    # Python's get_seed(op_seed) -> (global seed or its default, op_seed mod 2^31-1), and
    # never (0, 0): the first of the pair now, the second per epoch below.
    first, _ = random_seed.get_seed(1)
    big = 2**31 - 1

    @tf.autograph.experimental.do_not_convert  # plain TensorFlow: nothing to convert
    def epoch(e):
        s = epoch_seed(shuffle_seed, e)
        second = tf.math.floormod(s, big)
        if first == 0:
            second = tf.where(second == 0, tf.constant(big, tf.int64), second)
        with _seeds_of(s, (tf.constant(first, tf.int64), second)):
            return make_epoch(s)

    return tf.data.Dataset.range(start, stop).flat_map(epoch)


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
    stats = channel_stats(x_tr) if plan(config, "train").randomization.generates_images else None
    y_rand = randomize_labels(y_tr, idx, config, num_classes)
    # what this run reads: the selected examples (before the image randomizations, which are a
    # function of them and the config) and the labels it trains on
    fingerprint = {"train": fingerprint_arrays(idx, x_tr, y_tr, y_rand), "test": fingerprint_arrays(idx_te, x_te, y_te)}
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

    def one_epoch(s):  # s: the epoch's seed (shuffle_seed_for_epoch)
        order = tf.data.Dataset.range(n).shuffle(n, seed=s, reshuffle_each_iteration=False)
        return tf.data.Dataset.zip(order.batch(bs), tf.data.Dataset.random(seed=s).batch(2))

    def train_epochs(start, stop):
        return gather(each_epoch(start, stop, config.shuffle_seed, one_epoch))

    order = tf.data.Dataset.range(n).shuffle(n, seed=config.shuffle_seed, reshuffle_each_iteration=True)
    train = gather(tf.data.Dataset.zip(
        order.batch(bs), tf.data.Dataset.random(seed=config.shuffle_seed, rerandomize_each_iteration=True).batch(2)))

    eb = max(bs, EVAL_BATCH)
    train_eval = tf.data.Dataset.range(n).batch(eb).map(
        lambda i: (prep(tf.gather(images, i)), tf.gather(labels, i), tf.gather(true, i)),
        num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE).with_options(opts)
    test = tf.data.Dataset.range(len(y_te)).batch(eb).map(
        lambda i: (prep(tf.gather(test_images, i)), tf.gather(test_labels, i)),
        num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE).with_options(opts)
    h, w, c = x_tr.shape[1:]
    shape = (config.crop, config.crop, c) if config.crop else (h, w, c)
    return Data(train, train_eval, test, n, len(y_te), num_classes, shape, list(names), config,
                train_epochs=train_epochs, train_indices=idx, stats=stats, fingerprint=fingerprint,
                eval_batch_size=eb)
