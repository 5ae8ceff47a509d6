"""Generated ImageNet TFRecord shards in the Inception package's format (for tests)."""
import io

import numpy as np
import tensorflow as tf
from PIL import Image

from rethinkgen_tf.data.imagenet import SHARD_STRIDE


def write_shards(directory, shards, num_classes, seed=0, size=(20, 40)):
    """Writes {name: count} shards; returns {split: [(index, jpeg bytes, label)]}."""
    rng = np.random.default_rng(seed)
    records = {}
    for name, n in shards.items():
        with tf.io.TFRecordWriter(str(directory / name)) as w:
            for pos in range(n):
                h, wd = rng.integers(size[0], size[1], 2)
                img = rng.integers(0, 256, (h, wd, 3), dtype=np.uint8)
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, "JPEG")
                label = int(rng.integers(1, num_classes + 1))  # Inception labels start at 1
                feat = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[buf.getvalue()])),
                        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                        "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[h]))}
                w.write(tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString())
                shard = int(name.split("-")[1])
                records.setdefault(name.split("-")[0], []).append(
                    (shard * SHARD_STRIDE + pos, buf.getvalue(), label - 1))
    return records
