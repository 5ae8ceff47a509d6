"""Training throughput per model (with and without XLA) and one full CIFAR-10 epoch.

    python benchmarks/train.py                       # all small models, 30 steps each
    python benchmarks/train.py --models=mlp_1x512 --steps=100
    python benchmarks/train.py --epoch_data_dir=/data/cifar10-jpeg   # + full epoch
    python benchmarks/train.py --models= --epoch_data_dir=DIR --examples_cost   # records' cost

Throughput: `fit` on synthetic 28x28x3 batches of 128 already in memory,
after a warm-up (tracing/compilation) call, so it measures the model's
training step alone.  Full epoch: `rethinkgen_tf.train.run` for one epoch of
MLP 1x512 on the real CIFAR-10 training set, i.e. 50,000 training images plus
the re-evaluation of all 50,000 training images and the 10,000 test images.
Per-example records' cost (--examples_cost): the same run, --examples_epochs epochs with
--record_examples=none and =default, alternating, timing each epoch after the first from
one epoch's end to the next (training, both evaluations, metrics.csv, examples.npz and
the checkpoint), the fastest of the timed epochs per setting.
"""
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

from rethinkgen_tf import entry, models, train  # noqa: E402

flags.DEFINE_list("models", ["mlp_1x512", "mlp_3x512", "alexnet", "inception_nobn",
                             "inception"], "Models to time.")
flags.DEFINE_integer("steps", 30, "Timed training steps per model and setting.", lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Batch size.", lower_bound=1)
flags.DEFINE_list("jit", ["false", "true"], "XLA settings to time.")
flags.register_validator("jit", lambda v: set(v) <= {"false", "true"},
                         "must be a list of false and true")
flags.DEFINE_string("epoch_data_dir", None, "CIFAR-10 location for the full-epoch "
                    "timing (skipped if unset).")
flags.DEFINE_bool("compare_onednn", False, "Time each model twice, in two child processes "
                  "with TF_ENABLE_ONEDNN_OPTS=1 and =0 (TensorFlow reads it at load), and "
                  "print the ratio (see BUILD.md).")
flags.DEFINE_bool("examples_cost", False, "With --epoch_data_dir: time full MLP 1x512 epochs "
                  "with --record_examples=none vs default and print both and the ratio.")
flags.DEFINE_integer("examples_epochs", 3, "Epochs per run of --examples_cost (the first, "
                     "with tracing, is not timed).", lower_bound=2)
flags.DEFINE_integer("examples_repeats", 1, "Runs per setting of --examples_cost "
                     "(alternating none, default).", lower_bound=1)
FLAGS = flags.FLAGS


def throughput(name, jit, steps, batch_size):
    keras.utils.set_random_seed(0)
    model = models.build(name)
    lr = models.DEFAULT_LEARNING_RATE[models.family(name)]
    model.compile(keras.optimizers.SGD(lr, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=jit)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch_size, 28, 28, 3)).astype(np.float32)
    y = rng.integers(0, 10, batch_size).astype(np.int32)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # trace + compile
    t = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch_size / (time.perf_counter() - t)


def full_epoch(data_dir):
    from rethinkgen_tf.data import DataConfig, load

    dc = DataConfig(dataset="cifar10", data_dir=data_dir, randomize="labels")
    t = time.perf_counter()
    data = load(dc)
    load_time = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        r = train.run(train.TrainConfig(model="mlp_1x512", epochs=1, verbose=0), dc, d,
                      data=data)
    row = r["final"]
    print(f"full epoch mlp_1x512 cifar10: {row['epoch_time'] + row['eval_time']:.1f} s "
          f"(train {row['epoch_time']:.1f} s = {row['images_per_sec']:.0f} img/s, "
          f"re-eval 50k train + 10k test {row['eval_time']:.1f} s; data load "
          f"{load_time:.1f} s, not included)")


class _EpochEnds(keras.callbacks.Callback):
    """perf_counter at the end of each epoch, after every callback of train.run (they run
    before the callbacks passed in): metrics.csv, examples.npz, checkpoint."""

    def __init__(self):
        super().__init__()
        self.ends = []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.perf_counter())


def examples_cost(data_dir, epochs, repeats):
    """Seconds per full MLP 1x512 epoch with record_examples none vs default."""
    from rethinkgen_tf.data import DataConfig, load

    dc = DataConfig(dataset="cifar10", data_dir=data_dir, corrupt=0.5)
    data = load(dc)
    best = {}
    for _ in range(repeats):
        for mode in ("none", "default"):
            timer = _EpochEnds()
            with tempfile.TemporaryDirectory() as d:
                train.run(train.TrainConfig(model="mlp_1x512", epochs=epochs, verbose=0,
                                            record_examples=mode), dc, d, data=data,
                          callbacks=[timer])
            per = np.diff(timer.ends)  # epochs 2.. (the first traces)
            best[mode] = min(best.get(mode, np.inf), per.min())
    print(f"examples.npz cost, full epoch mlp_1x512 cifar10 (50k train, p=0.5): "
          f"record_examples=none {best['none']:.2f} s, default {best['default']:.2f} s, "
          f"ratio {best['default'] / best['none']:.3f} (fastest of {repeats * (epochs - 1)} "
          f"timed epochs each)")


def compare_onednn():
    """oneDNN on vs off, each in its own process, interleaved per model."""
    import subprocess
    import sys
    print(f"oneDNN on vs off: {os.cpu_count()} CPUs, batch {FLAGS.batch_size}, "
          f"{FLAGS.steps} steps, xla off", flush=True)
    for name in FLAGS.models:
        rate = {}
        for v in ("1", "0"):
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.train", f"--models={name}", "--jit=false",
                 f"--steps={FLAGS.steps}", f"--batch_size={FLAGS.batch_size}"],
                env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": v}, capture_output=True,
                text=True, check=True).stdout
            rate[v] = float(out.strip().splitlines()[-1].split()[-2])
        print(f"{name:16s} oneDNN on {rate['1']:8.0f} img/s | off {rate['0']:8.0f} img/s  "
              f"ratio {rate['1'] / rate['0']:5.2f}x", flush=True)


def main(_):
    for name in FLAGS.models:
        if not models.known(name):
            raise ValueError(f"--models: unknown model {name!r}; known: {models.NAMES}")
    if FLAGS.compare_onednn:
        return compare_onednn()
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, "
          f"{os.cpu_count()} CPUs, batch {FLAGS.batch_size}, {FLAGS.steps} steps")
    for name in FLAGS.models:
        line = [f"{name:16s}"]
        for jit in FLAGS.jit:
            ips = throughput(name, jit == "true", FLAGS.steps, FLAGS.batch_size)
            line.append(f"xla={jit:5s} {ips:8.0f} img/s")
        print("  ".join(line), flush=True)
    if FLAGS.epoch_data_dir and FLAGS.examples_cost:
        examples_cost(FLAGS.epoch_data_dir, FLAGS.examples_epochs, FLAGS.examples_repeats)
    elif FLAGS.epoch_data_dir:
        full_epoch(FLAGS.epoch_data_dir)
    elif FLAGS.examples_cost:
        raise ValueError("--examples_cost needs --epoch_data_dir=CIFAR10_DIR")


if __name__ == "__main__":
    entry.run(main)
