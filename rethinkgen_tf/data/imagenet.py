"""ImageNet (ILSVRC 2012), streamed: TFRecord shards of the TensorFlow Inception package, or tfds imagenet2012.

Inception shards: ``train-00000-of-01024 ...`` and ``validation-00000-of-00128 ...``
with ``image/encoded`` (JPEG) and ``image/class/label`` (1..1000; 0 is the
package's background class, hence label_offset=1).  tfds imagenet2012 records
carry a tfds_id naming their shard and position.

Example index (the input of the randomization):
    index = shard_number * 2**20 + position of the record in its shard
with shards sorted by name.  It is stable across epochs, runs, file orders and
processes, though not contiguous; "first n examples" means the first n records
reading the shards in sorted order.

Per example: decode -> central crop (87.5%) and resize to image_size
(default 299) -> randomization (labels by index; pixel permutations at the
final size; Gaussian images generated from the index, per-channel stats of the
first 10,000 training images) -> optional Inception-style augmentation
(random distorted crop, flip, colour) -> scale to [0, 1] -> per-image
standardization.  Training reads the shards in a seeded random order each epoch
(8 at a time) through a 10,000-example shuffle buffer; with train_size it reads
the first n records in index order and shuffles those.  Label mode "permute" needs the whole label column and is
not available for a streamed dataset.
"""
from __future__ import annotations

import glob
import hashlib
import os

import numpy as np
import tensorflow as tf

from .config import Data, DataConfig, DataError
from .pipeline import each_epoch, fingerprint_files
from .preprocess import distort_color
from .randomize import apply_images, apply_labels, parse_stats, plan
from .sources import _cache_dir, read_cache_json, write_cache_json

SHARD_STRIDE = 1 << 20
STATS_EXAMPLES = 10_000
AUTOTUNE = tf.data.AUTOTUNE
_KNOWN_SIZES = {("train", 1024): 1_281_167, ("validation", 128): 50_000}


def shard_files(data_dir, split):
    prefix = "train" if split == "train" else "validation"
    files = sorted(glob.glob(os.path.join(data_dir, f"{prefix}-*-of-*")))
    if not files:
        raise DataError(f"imagenet: no {prefix}-*-of-* TFRecord shards in {data_dir}; build them with the "
                        "Inception package's build_imagenet_data.py, or pass the directory holding "
                        "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar to read through tensorflow-datasets")
    return files


def _count(files):
    """The number of records in `files`, counted once and cached (a damaged cache file is counted again)."""
    key = hashlib.sha1("".join(f"{f}:{os.path.getsize(f)}:{os.path.getmtime(f)}\n" for f in files).encode())
    path = os.path.join(_cache_dir(), "counts", key.hexdigest() + ".json")
    count = read_cache_json(path, _parse_count)
    if count is None:
        count = int(tf.data.TFRecordDataset(files).reduce(np.int64(0), lambda n, _: n + 1))
        write_cache_json(path, {"count": count, "files": len(files)})
    return count


def _parse_count(d):
    count = d["count"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count {count!r} is not a number of records")
    return count


def _records_tfrecord(files, offset, order_seed=None, reshuffle=False):
    """(index, image bytes, label): in index order, or with order_seed the shards in a seeded
    random order (new each iteration if reshuffle), 8 read at a time.  Indices stay the same."""
    def shard(i, f):
        return tf.data.TFRecordDataset(f).enumerate().map(lambda pos, rec: (i * SHARD_STRIDE + pos, rec))

    def parse(index, rec):
        ex = tf.io.parse_single_example(rec, {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                                              "image/class/label": tf.io.FixedLenFeature([], tf.int64)})
        return index, ex["image/encoded"], ex["image/class/label"] - offset

    ds = tf.data.Dataset.from_tensor_slices((tf.range(len(files), dtype=tf.int64), files))
    if order_seed is None:
        ds = ds.interleave(shard, cycle_length=1)
    else:
        ds = ds.shuffle(len(files), seed=order_seed, reshuffle_each_iteration=reshuffle)
        ds = ds.interleave(shard, cycle_length=min(8, len(files)), num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.map(parse, num_parallel_calls=AUTOTUNE, deterministic=True)


def _records_tfds(data_dir, split):
    import tensorflow_datasets as tfds
    try:
        builder = tfds.builder("imagenet2012", data_dir=None if data_dir is None else os.path.join(data_dir, "tfds"))
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=data_dir))
        ds = builder.as_dataset(split="train" if split == "train" else "validation", shuffle_files=False,
                                decoders={"image": tfds.decode.SkipDecoding()},
                                read_config=tfds.ReadConfig(add_tfds_id=True))
    except Exception as e:
        raise DataError(f"imagenet: tensorflow-datasets could not prepare imagenet2012 ({type(e).__name__}: {e}). "
                        "Put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in data_dir, or pass a "
                        "directory of Inception TFRecord shards") from e

    def index(ex):
        name, pos = tf.strings.split(ex["tfds_id"], "__")[0], tf.strings.split(ex["tfds_id"], "__")[1]
        shard = tf.strings.to_number(tf.strings.regex_replace(name, r".*-(\d+)-of-\d+$", r"\1"), tf.int64)
        return shard * SHARD_STRIDE + tf.strings.to_number(pos, tf.int64), ex["image"], ex["label"]

    return ds.map(index, num_parallel_calls=AUTOTUNE), builder.info.splits[split if split == "train" else
                                                                          "validation"].num_examples


def _decode_resize(encoded, size):
    img = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    img = tf.image.central_crop(tf.cast(img, tf.float32), 0.875)
    img = tf.image.resize(img[None], [size, size], antialias=False)[0]
    return tf.ensure_shape(img, [size, size, 3])


def _augment(img, seed):
    """Inception-style distortions of one [S, S, 3] image in [0, 255], from an int64 seed."""
    s = tf.stack([seed, tf.constant(0x494D4147, tf.int64)])
    size = img.shape[0]
    begin, box_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(img), tf.zeros([1, 0, 4]), seed=s, min_object_covered=0.1, aspect_ratio_range=[0.75, 1.33],
        area_range=[0.05, 1.0], max_attempts=100, use_image_if_no_bounding_boxes=True)
    img = tf.image.resize(tf.slice(img, begin, box_size)[None], [size, size])[0]
    img = tf.image.stateless_random_flip_left_right(img, s + 1)
    return distort_color(img[None] / 255.0, s + 2)[0] * 255.0


def load_imagenet(config: DataConfig) -> Data:
    from rethinkgen_tf import ops
    if config.label_mode == "permute" and config.label_prob > 0:
        raise DataError("imagenet is streamed: label_mode='permute' needs the whole label column; use 'uniform'")
    if config.balanced:
        raise DataError("imagenet is streamed: balanced subsets are not available; use train_size alone")
    size = config.image_size or 299
    k = config.num_classes or 1000
    tfrecords = config.data_dir is not None and glob.glob(os.path.join(config.data_dir, "train-*-of-*"))
    if tfrecords:
        offset = 1 if config.label_offset is None else config.label_offset
        splits, fingerprint = {}, {}
        for split in ("train", "test"):
            files = shard_files(config.data_dir, split)
            fingerprint[split] = fingerprint_files(files)  # names and sizes: cheap, not the bytes
            prefix = "train" if split == "train" else "validation"
            n = _KNOWN_SIZES.get((prefix, len(files))) or _count(files)
            splits[split] = (_records_tfrecord(files, offset), n)
        train_files = shard_files(config.data_dir, "train")
    else:
        splits = {s: _records_tfds(config.data_dir, s) for s in ("train", "test")}
        fingerprint = None  # tensorflow-datasets' own files: not fingerprinted
    (train_rec, num_train), (test_rec, num_test) = splits["train"], splits["test"]
    if config.train_size is not None:
        num_train = min(num_train, config.train_size)
        train_rec = train_rec.take(num_train)
    if config.test_size is not None:
        num_test = min(num_test, config.test_size)
        test_rec = test_rec.take(num_test)

    plans = {split: plan(config, split) for split in ("train", "test")}
    stats = None
    if plans["train"].randomization.generates_images:
        stats = _stats(train_rec, size, config)

    def images(index, encoded, split):
        p = plans[split]
        img = None if p.randomization.generates_images else _decode_resize(encoded, size)
        return apply_images(p, ops, index, images=img, shape=(size, size, 3), stats=stats)

    def finish(img):
        img = img / 255.0
        return tf.image.per_image_standardization(img) if config.standardize else img

    def train_map(index, encoded, label, augment, aug_seed=None):
        y = tf.cast(label, tf.int32)
        p = plans["train"]
        if p.label_prob > 0:
            y = tf.cast(apply_labels(p, ops, label, index, k), tf.int32)
        img = images(index, encoded, "train")
        if augment:
            img = _augment(img, aug_seed)
        return finish(img), y, tf.cast(label, tf.int32)

    opts = tf.data.Options()
    opts.deterministic = config.deterministic

    def make_train(seed, reshuffle):
        ds = train_rec
        if tfrecords and config.train_size is None:  # shards in a seeded random order each epoch
            ds = _records_tfrecord(train_files, offset, seed, reshuffle)
        ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=reshuffle)
        aug_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=reshuffle)
        ds = tf.data.Dataset.zip(ds, aug_seeds).map(
            lambda rec, a: train_map(*rec, config.augment != "none", a)[:2],
            num_parallel_calls=AUTOTUNE, deterministic=config.deterministic)
        return ds.batch(config.batch_size).prefetch(AUTOTUNE).with_options(opts)

    def train_epochs(start, stop):  # built lazily, epoch by epoch (pipeline.each_epoch)
        return each_epoch(start, stop, config.shuffle_seed, lambda seed: make_train(seed, False))

    train_eval = train_rec.map(lambda i, e, y: train_map(i, e, y, False), num_parallel_calls=AUTOTUNE,
                               deterministic=True)
    test = test_rec.map(lambda i, e, y: (finish(images(i, e, "test")), tf.cast(y, tf.int32)),
                        num_parallel_calls=AUTOTUNE, deterministic=True)
    return Data(make_train(config.shuffle_seed, True),
                train_eval.batch(config.batch_size).prefetch(AUTOTUNE).with_options(opts),
                test.batch(config.batch_size).prefetch(AUTOTUNE).with_options(opts),
                num_train, num_test, k, (size, size, 3), _class_names(config.data_dir, k), config,
                train_epochs=train_epochs, stats=stats, fingerprint=fingerprint)


def _stats(train_rec, size, config):
    """Per-channel mean and std ([0, 255] scale) of the first 10,000 training images at the final size, cached."""
    key = hashlib.sha1(f"{os.path.abspath(config.data_dir or 'tfds')}|{size}|{config.train_size}".encode())
    path = os.path.join(_cache_dir(), "stats", "imagenet-" + key.hexdigest() + ".json")
    cached = read_cache_json(path, lambda d: parse_stats(d, 3))
    if cached is not None:
        return cached
    s, sq, n = np.zeros(3), np.zeros(3), 0
    ds = train_rec.take(STATS_EXAMPLES).map(lambda i, e, y: _decode_resize(e, size), num_parallel_calls=AUTOTUNE)
    for b in ds.batch(64):
        b = b.numpy().astype(np.float64).reshape(-1, 3)
        s, sq, n = s + b.sum(0), sq + (b * b).sum(0), n + len(b)
    if n == 0:
        raise DataError("imagenet: no training images to compute the Gaussian statistics from")
    mean = s / n
    std = np.sqrt(np.maximum(sq / n - mean * mean, 0))
    write_cache_json(path, {"mean": mean.tolist(), "std": std.tolist(), "examples": n})
    return mean.astype(np.float32), std.astype(np.float32)


def _class_names(data_dir, k):
    for name in ("synsets.txt", "imagenet_lsvrc_2015_synsets.txt"):
        path = os.path.join(data_dir or "", name)
        if data_dir and os.path.exists(path):
            with open(path) as f:
                names = [line.strip() for line in f if line.strip()]
            if len(names) >= k:
                return names[:k]
    return [str(i) for i in range(k)]
