"""The tiny training problem the run-directory tests share: 256 training and
64 test random 12x12x3 images, half the labels corrupted, MLP 1x64.

SETUP is code, so that subprocesses (kill and fault tests) build the same data."""
TIMING = {"epoch_time", "images_per_sec", "eval_time", "wall_time"}

SETUP = """
import numpy as np
from rethinkgen_tf.data import DataConfig, load
rng = np.random.default_rng(0)
x, y = rng.integers(0, 256, (320, 12, 12, 3), np.uint8), rng.integers(0, 10, 320)
ARRAYS = (x[:256], y[:256], x[256:], y[256:])
DATA = DataConfig(dataset="numpy", corrupt=0.5, crop=None, batch_size=32)
"""
_ns = {}
exec(SETUP, _ns)
ARRAYS, DATA = _ns["ARRAYS"], _ns["DATA"]


def write_class_folders(root):
    """A tiny CIFAR-10 in class folders under root: 10 classes x (3 train, 2 test) random
    32x32 PNGs (the same bytes every time); returns root."""
    import numpy as np
    import tensorflow as tf
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for k in range(10):
            d = root / split / f"class{k}"
            d.mkdir(parents=True)
            for i in range(n):
                png = tf.io.encode_png(rng.integers(0, 256, (32, 32, 3), np.uint8))
                (d / f"{i}.png").write_bytes(png.numpy())
    return root


def strip(rows):
    """Metrics rows without their timing columns."""
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
