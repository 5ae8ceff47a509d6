"""Throughput of the randomization ops against what a user would otherwise write.

    python -m benchmarks.ops [--repeats=5] [--only=gaussian,labels_permute]

Prints, from one run on this machine: the memory copy bandwidth (the
ceiling), then each op beside its baseline measured in the same run, with
the ratio.  Best of --repeats timings each.
"""
import functools
import time

import numpy as np
from absl import flags

from rethinkgen_tf import entry

flags.DEFINE_integer("repeats", 5, "Timings per measurement; the best is printed.")
flags.DEFINE_integer("examples", 50_000, "Images per Gaussian / random-pixel batch.")
PARTS = ("gaussian", "pixels", "labels_uniform", "labels_permute")
flags.DEFINE_list("only", [], f"Measure only these parts, comma-separated, of {', '.join(PARTS)}; "
                  "default: all.  The memory copy line is always printed.")
flags.register_validator("only", lambda v: set(v) <= set(PARTS),
                         f"--only takes parts of {', '.join(PARTS)}")
FLAGS = flags.FLAGS


def best_time(fn, repeats):
    fn()  # warm-up (graph tracing, allocation)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _rate(rate, unit):
    return f"{rate / 1e6:9.1f} M{unit}/s" if rate >= 1e6 else f"{rate / 1e3:9.1f} k{unit}/s"


def line(name, amount, unit, ours, base=None, base_name=""):
    s = f"{name:<44s} {_rate(amount / ours, unit)}  ({ours * 1e3:8.1f} ms)"
    if base is not None:
        s += (f" | {base_name}: {_rate(amount / base, unit)} ({base * 1e3:8.1f} ms)"
              f"  ratio {base / ours:6.1f}x")
    print(s, flush=True)


def main(_):
    import tensorflow as tf

    from rethinkgen_tf import ops

    print(f"op build: {ops.BUILD}; TensorFlow {tf.__version__}; "
          f"CPU threads {tf.config.threading.get_inter_op_parallelism_threads() or 'default'}")
    r = FLAGS.repeats
    n = FLAGS.examples
    parts = set(FLAGS.only or PARTS)

    # Ceiling: memory copy bandwidth (NumPy copy of 512 MB).
    buf = np.ones(64 * 2**20, np.float64)
    dst = np.empty_like(buf)
    t = best_time(functools.partial(np.copyto, dst, buf), r)
    gbs = buf.nbytes / t / 1e9
    print(f"{'memory copy (np.copyto, 512 MB)':<44s} {gbs:10.2f} GB/s (read+write {2 * gbs:.2f} GB/s)")
    del buf, dst

    idx = tf.range(n, dtype=tf.int64)
    shape = (28, 28, 3)
    if "gaussian" in parts:
        gaussian(tf, ops, idx, n, shape, r)
    if "pixels" in parts:
        pixels(tf, ops, idx, n, shape, r)
    if parts & {"labels_uniform", "labels_permute"}:
        label_lines(tf, ops, parts, r)


def gaussian(tf, ops, idx, n, shape, r):
    """Gaussian images: 50,000 x 28 x 28 x 3 float32."""
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    ours = best_time(lambda: ops.gaussian_images(idx, 1, shape, mean, std), r)

    @tf.function
    def tf_normal():
        return tf.random.stateless_normal((n,) + shape, seed=[1, 2], mean=0.0, stddev=1.0) \
            * tf.constant(std) + tf.constant(mean)
    base = best_time(tf_normal, r)
    count = n * 28 * 28 * 3
    line(f"gaussian_images {n}x28x28x3 f32", count, "values", ours, base,
         "tf.random.stateless_normal")
    print(f"{'':44s} output bandwidth {count * 4 / ours / 1e9:.2f} GB/s")


def pixels(tf, ops, idx, n, shape, r):
    """Random pixels: 50,000 x 28 x 28 x 3 uint8, one permutation per example."""
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (n,) + shape, dtype=np.uint8))
    ours = best_time(lambda: ops.permute_pixels(images, idx, 1, mode="per_example"), r)

    @tf.function
    def tf_perm():
        keys = tf.random.stateless_uniform((n, 28 * 28), seed=[1, 2])
        perm = tf.argsort(keys, axis=1)
        flat = tf.reshape(images, (n, 28 * 28, 3))
        return tf.reshape(tf.gather(flat, perm, batch_dims=1), (n,) + shape)
    base = best_time(tf_perm, r)
    line(f"permute_pixels per_example {n}x28x28x3 u8", n, "images", ours, base,
         "stateless_uniform+argsort+gather")
    ours_s = best_time(lambda: ops.permute_pixels(images, idx, 1, mode="shared"), r)
    line(f"permute_pixels shared {n}x28x28x3 u8", n, "images", ours_s)


def label_lines(tf, ops, parts, r):
    """Label corruption vs NumPy."""
    for m in (50_000, 1_281_167):
        labels = np.random.default_rng(1).integers(0, 1000, m)
        lt, it = tf.constant(labels), tf.range(m, dtype=tf.int64)
        if "labels_uniform" not in parts:
            continue
        ours = best_time(lambda: ops.corrupt_labels(lt, it, 0.5, 1000, 3), r)

        def numpy_corrupt():
            g = np.random.default_rng(3)
            flip = g.random(m) < 0.5
            return np.where(flip, g.integers(0, 1000, m), labels)
        base = best_time(numpy_corrupt, r)
        line(f"corrupt_labels uniform {m} labels", m, "labels", ours, base, "NumPy")
    if "labels_permute" not in parts:
        return
    ours = best_time(lambda: ops.corrupt_labels(lt, it, 1.0, 1000, 3, mode="permute"), r)
    base = best_time(lambda: np.random.default_rng(3).permutation(labels), r)
    line(f"corrupt_labels permute {m} labels", m, "labels", ours, base, "np.random.permutation")


if __name__ == "__main__":
    entry.run(main)
