"""Throughput of the CIFAR-10 training pipeline per randomization vs what MLP 1x512 consumes.

    python -m benchmarks.pipeline [--data_dir DIR] [--batches 100] [--synthetic]

Data: --data_dir (any CIFAR-10 layout), else $RETHINKGEN_CIFAR10_DIR, else
../shared/data/cifar10-jpeg.tar.gz extracted once under $RETHINKGEN_DATA_CACHE
(default ~/.cache/rethinkgen_tf); --synthetic uses random uint8 arrays of CIFAR-10's
shape (throughput does not depend on the pixel values).  Prints images/s for
each pipeline and its ratio to the MLP's training rate, both the best of 3 timed windows
(the machine may be shared); the MLP is measured before and after, and the verdict uses the
higher MLP rate and the randomization pipelines (target: >= 5x).
"""
from __future__ import annotations

import argparse
import os
import tarfile
import time

import numpy as np

from rethinkgen_tf import entry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARBALL = os.path.join(REPO, "..", "shared", "data", "cifar10-jpeg.tar.gz")


def cifar10_dir(tarball=TARBALL):
    """A local CIFAR-10 directory: $RETHINKGEN_CIFAR10_DIR, or the shared tarball extracted once into the cache."""
    if os.environ.get("RETHINKGEN_CIFAR10_DIR"):
        return os.environ["RETHINKGEN_CIFAR10_DIR"]
    if not os.path.exists(tarball):
        return None
    from rethinkgen_tf.data.sources import _cache_dir
    out = os.path.join(_cache_dir(), "cifar10-jpeg-extracted")
    if not os.path.exists(os.path.join(out, "done")):
        os.makedirs(out, exist_ok=True)
        with tarfile.open(tarball) as t:
            t.extractall(out, filter="data")
        open(os.path.join(out, "done"), "w").close()
    return out


def mlp_rate(batch_size, steps=50, reps=3):
    """Best images/s over reps fits of MLP 1x512 (SGD) on one cached in-memory batch: no input cost."""
    import keras
    import tensorflow as tf
    try:
        from rethinkgen_tf.models import build
        model = build("mlp_1x512", (28, 28, 3), 10)
    except Exception:  # models not available: the same network inline
        model = keras.Sequential([keras.Input((28, 28, 3)), keras.layers.Flatten(),
                                  keras.layers.Dense(512, activation="relu"), keras.layers.Dense(10)])
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).standard_normal((batch_size, 28, 28, 3)).astype(np.float32)
    ds = tf.data.Dataset.from_tensors((x, np.arange(batch_size) % 10)).repeat()
    model.fit(ds, steps_per_epoch=10, epochs=1, verbose=0, shuffle=False)  # compile
    best = 0.0
    for _ in range(reps):
        t = time.perf_counter()
        model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        best = max(best, steps * batch_size / (time.perf_counter() - t))
    return best


def pipeline_rate(ds, batches, reps=3, warmup=10):
    """Best images/s over reps windows of `batches` batches (best-of filters out other jobs on the machine)."""
    it = iter(ds.repeat())
    for _ in range(warmup):
        next(it)
    best = 0.0
    for _ in range(reps):
        n, t = 0, time.perf_counter()
        for _ in range(batches):
            n += int(next(it)[0].shape[0])
        best = max(best, n / (time.perf_counter() - t))
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data_dir")
    ap.add_argument("--batches", type=int, default=100, help="batches per timed window (3 windows, best kept)")
    ap.add_argument("--batch_size", type=int, default=128)
    ap.add_argument("--synthetic", action="store_true")
    ap.error = lambda message: entry.fail(f"error: {message} (see --help)")
    args = ap.parse_args(argv)
    if args.batches < 1 or args.batch_size < 1:
        ap.error("--batches and --batch_size must be >= 1")
    from rethinkgen_tf.data import DataConfig, load
    arrays, data_dir = None, args.data_dir or (None if args.synthetic else cifar10_dir())
    if data_dir is None:
        if not args.synthetic:
            print("no CIFAR-10 found (pass --data_dir or set RETHINKGEN_CIFAR10_DIR); using synthetic arrays")
        rng = np.random.default_rng(0)
        arrays = (rng.integers(0, 256, (50000, 32, 32, 3), dtype=np.uint8), np.arange(50000) % 10,
                  rng.integers(0, 256, (10000, 32, 32, 3), dtype=np.uint8), np.arange(10000) % 10)
    mlp = mlp_rate(args.batch_size)
    print(f"MLP 1x512 training consumes {mlp:,.0f} images/s (batch {args.batch_size})")
    rates = {}
    for name, kw in [("none", {}), ("labels", dict(randomize="labels")), ("corrupt_0.5", dict(corrupt=0.5)),
                     ("shuffled_pixels", dict(randomize="shuffled_pixels")),
                     ("random_pixels", dict(randomize="random_pixels")), ("gaussian", dict(randomize="gaussian")),
                     ("none+crop_flip", dict(augment="crop_flip"))]:
        cfg = DataConfig(dataset="numpy" if arrays else "cifar10", data_dir=data_dir,
                         batch_size=args.batch_size, **kw)
        t = time.perf_counter()
        data = load(cfg, arrays)
        setup = time.perf_counter() - t
        rates[name] = pipeline_rate(data.train, args.batches)
        print(f"pipeline {name:16s} {rates[name]:10,.0f} images/s  {rates[name] / mlp:5.1f}x MLP 1x512  "
              f"(setup {setup:.1f} s)")
    mlp2 = mlp_rate(args.batch_size)  # again: on a shared machine the rate drifts; judge by the higher one
    print(f"MLP 1x512 training consumes {mlp2:,.0f} images/s (measured again)")
    worst = min(v for k, v in rates.items() if "+" not in k) / max(mlp, mlp2)
    print(f"slowest randomization pipeline: {worst:.1f}x MLP 1x512 consumption (target >= 5x): "
          f"{'OK' if worst >= 5 else 'BELOW TARGET'}")


if __name__ == "__main__":
    with entry.errors():
        main()
