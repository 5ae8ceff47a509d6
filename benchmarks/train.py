"""Training throughput per model (float32 and bfloat16, with and without XLA) and one
full CIFAR-10 epoch.

    python benchmarks/train.py                       # all small models, 30 steps each
    python benchmarks/train.py --models=alexnet,inception --precision=float32,bf16
    python benchmarks/train.py --models=mlp_1x512 --steps=100
    python benchmarks/train.py --epoch_data_dir=/data/cifar10-jpeg   # + full epoch
    python benchmarks/train.py --models= --epoch_data_dir=DIR --examples_cost   # records' cost

Throughput: `fit` on synthetic 28x28x3 batches of 128 already in memory,
after a warm-up (tracing/compilation) call, so it measures the model's
training step alone; one line per model with every (precision, XLA) setting
side by side, in the same process, and the ratio of each to float32 without
XLA (bf16 = Keras' mixed_bfloat16 policy, what `--precision=bf16` trains with).
--pipeline adds the same model fed by the real input pipeline (CIFAR-10 from
--epoch_data_dir, the run's batches as train.run makes them) to show the
pipeline's share.  Full epoch: `rethinkgen_tf.train.run` for one epoch of
MLP 1x512 on the real CIFAR-10 training set, i.e. 50,000 training images plus
the re-evaluation of all 50,000 training images and the 10,000 test images.
Per-example records' cost (--examples_cost): the same run, --examples_epochs epochs with
--record_examples=none and =default, alternating, timing each epoch after the first from
one epoch's end to the next (training, both evaluations, metrics.csv, examples.npz and
the checkpoint), the fastest of the timed epochs per setting.
"""
import os
import re
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

from rethinkgen_tf import entry, models, results, train  # noqa: E402

flags.DEFINE_list("models", ["mlp_1x512", "mlp_3x512", "alexnet", "inception_nobn",
                             "inception"], "Models to time.")
flags.DEFINE_integer("steps", 30, "Timed training steps per model and setting.", lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Batch size.", lower_bound=1)
flags.DEFINE_list("jit", ["false", "true"], "XLA settings to time.")
flags.register_validator("jit", lambda v: set(v) <= {"false", "true"},
                         "must be a list of false and true")
flags.DEFINE_list("precision", ["float32", "bf16"], "Precisions to time (float32, bf16).")
flags.register_validator("precision", lambda v: set(v) <= set(train.PRECISIONS),
                         f"must be a list of {', '.join(train.PRECISIONS)}")
flags.DEFINE_bool("pipeline", False, "With --epoch_data_dir: also time each model fed by "
                  "the real input pipeline (float32, XLA off).")
flags.DEFINE_string("epoch_data_dir", None, "CIFAR-10 location for the full-epoch "
                    "timing (skipped if unset).")
flags.DEFINE_bool("compare_onednn", False, "Time each model twice, in two child processes "
                  "with TF_ENABLE_ONEDNN_OPTS=1 and =0 (TensorFlow reads it at load), and "
                  "print the ratio (see BUILD.md).")
flags.DEFINE_list("compare_threads", [], "Time each model (float32 and bf16, XLA off) in "
                  "one child process per TensorFlow thread setting INTRAxINTER (e.g. 2x1,1x2; "
                  "0 = TensorFlow's default) and print the ratio of each to the first.")
flags.DEFINE_bool("examples_cost", False, "With --epoch_data_dir: time full MLP 1x512 epochs "
                  "with --record_examples=none vs default and print both and the ratio.")
flags.DEFINE_integer("examples_epochs", 3, "Epochs per run of --examples_cost (the first, "
                     "with tracing, is not timed).", lower_bound=2)
flags.DEFINE_integer("examples_repeats", 1, "Runs per setting of --examples_cost "
                     "(alternating none, default).", lower_bound=1)
FLAGS = flags.FLAGS


def throughput(name, jit, steps, batch_size, precision="float32", ds=None):
    """Training images/s of `fit` on `ds` (default: one synthetic batch, repeated)."""
    keras.utils.set_random_seed(0)
    policy = keras.config.dtype_policy()
    if precision == "bf16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = models.build(name)
    finally:
        keras.config.set_dtype_policy(policy)
    lr = models.DEFAULT_LEARNING_RATE[models.family(name)]
    model.compile(keras.optimizers.SGD(lr, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=jit)
    if ds is None:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(batch_size, 28, 28, 3)).astype(np.float32)
        y = rng.integers(0, 10, batch_size).astype(np.int32)
        ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # trace + compile
    t = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch_size / (time.perf_counter() - t)


def pipeline_stream(data_dir, batch_size):
    """The training batches train.run feeds fit (CIFAR-10, random labels), repeated."""
    if not data_dir:
        raise ValueError("--pipeline needs --epoch_data_dir=CIFAR10_DIR")
    from rethinkgen_tf.data import DataConfig, load

    data = load(DataConfig(dataset="cifar10", data_dir=data_dir, randomize="labels",
                           batch_size=batch_size))
    return train._train_stream(data, 0, 2)


def full_epoch(data_dir, epochs=3):
    """One full MLP 1x512 epoch on CIFAR-10 (50,000 training images, re-evaluation of the
    50,000 and the 10,000 test images), as train.run runs it, for each setting side by
    side in this process: one step per tf.function call and evaluation batches of 128
    (`before`), the defaults (several steps per call, evaluation batches of EVAL_BATCH),
    and the defaults in bf16.  Each the fastest of epochs 2..`epochs` (the first traces).
    Then the same epoch in PyTorch where it is installed (benchmarks/torch_epoch.py: the
    demo's per-image DataLoader, and in-memory tensors), each setting's ratio against both."""
    from rethinkgen_tf.data import DataConfig, load, pipeline

    dc = DataConfig(dataset="cifar10", data_dir=data_dir, randomize="labels")
    t = time.perf_counter()
    load(dc)
    load_time = time.perf_counter() - t
    eval_batch = pipeline.EVAL_BATCH
    settings = [("before: 1 step/call, eval batch 128", dict(steps_per_execution=1), 0),
                ("float32", {}, eval_batch), ("bf16", dict(precision="bf16"), eval_batch)]
    ours = {}
    for label, overrides, eb in settings:
        pipeline.EVAL_BATCH = eb
        try:
            with tempfile.TemporaryDirectory() as d:
                train.run(train.TrainConfig(model="mlp_1x512", epochs=epochs, verbose=0,
                                            **overrides), dc, d, data=load(dc))
                timed = results.read_metrics(d)[1:]
        finally:
            pipeline.EVAL_BATCH = eval_batch
        row = min(timed, key=lambda x: x["epoch_time"] + x["eval_time"])
        ours[label] = (row["epoch_time"], row["eval_time"])
    torch_rows = torch_epochs(data_dir, epochs - 1)
    before = sum(ours[settings[0][0]])
    for label, (tr, ev) in ours.items():
        vs = "".join(f" | {name} {sum(t):.2f} s: {sum(t) / (tr + ev):.1f}x"
                     for name, t in torch_rows.items())
        print(f"full epoch mlp_1x512 cifar10, {label}: {tr + ev:.2f} s (train {tr:.2f} s = "
              f"{50_000 / tr:.0f} img/s, re-eval 50k train + 10k test {ev:.2f} s) | "
              f"{before / (tr + ev):.2f}x before{vs}", flush=True)
    for name, (tr, ev) in torch_rows.items():
        print(f"full epoch mlp_1x512 cifar10, {name}: {tr + ev:.2f} s (train {tr:.2f} s, "
              f"re-eval 50k train + 10k test {ev:.2f} s)")
    print(f"(data load {load_time:.1f} s, not included; fastest of epochs 2-{epochs} for ours, "
          f"of {epochs - 1} for PyTorch)")


def torch_epochs(data_dir, epochs):
    """{"PyTorch <mode>": (train s, re-eval s)} on the same images, or {} without torch."""
    try:
        import torch
    except ImportError:
        print("full epoch: PyTorch is not installed, so no PyTorch baseline (pip install "
              "torch into the venv to time one beside ours)")
        return {}
    from benchmarks import torch_epoch
    from rethinkgen_tf.data import sources
    torch.set_num_threads(os.cpu_count() or 1)
    arrays = []
    for split in ("train", "test"):
        x, y = sources.load_arrays("cifar10", data_dir, split)[:2]
        arrays += [np.ascontiguousarray(x[:, 2:30, 2:30]), y]  # the 28 x 28 center crop
    out = {}
    for mode in ("loader", "tensors"):
        t = torch_epoch.epoch(*arrays, mode=mode, epochs=epochs)
        out[f"PyTorch {torch.__version__} {mode}"] = (t["train"], t["eval"])
    return out


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
                 "--precision=float32",
                 f"--steps={FLAGS.steps}", f"--batch_size={FLAGS.batch_size}"],
                env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": v}, capture_output=True,
                text=True, check=True).stdout
            rate[v] = float(re.search(r"([\d.]+) img/s", out.strip().splitlines()[-1])[1])
        print(f"{name:16s} oneDNN on {rate['1']:8.0f} img/s | off {rate['0']:8.0f} img/s  "
              f"ratio {rate['1'] / rate['0']:5.2f}x", flush=True)


def compare_threads(settings):
    """TensorFlow's intra-/inter-op thread pools, each setting in its own process (the
    pools are fixed when the runtime starts), interleaved per model."""
    import subprocess
    import sys
    pairs = []
    for text in settings:
        m = re.fullmatch(r"(\d+)x(\d+)", text)
        if not m:
            raise ValueError(f"--compare_threads: {text!r} is not INTRAxINTER, e.g. 2x1")
        pairs.append((int(m[1]), int(m[2])))
    print(f"thread settings (intra x inter, 0 = default): {os.cpu_count()} CPUs, batch "
          f"{FLAGS.batch_size}, {FLAGS.steps} steps, xla off", flush=True)
    for name in FLAGS.models:
        line = [f"{name:16s}"]
        base = {}
        for intra, inter in pairs:
            env = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(intra),
                   "TF_NUM_INTEROP_THREADS": str(inter)}
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.train", f"--models={name}", "--jit=false",
                 "--precision=float32,bf16", f"--steps={FLAGS.steps}",
                 f"--batch_size={FLAGS.batch_size}"],
                env=env, capture_output=True, text=True, check=True).stdout
            rates = [float(r) for r in re.findall(r"([\d.]+) img/s", out.splitlines()[-1])]
            for prec, r in zip(("float32", "bf16"), rates):
                base.setdefault(prec, r)
                line.append(f"{intra}x{inter} {prec} {r:6.0f} img/s ({r / base[prec]:4.2f}x)")
        print(" | ".join(line), flush=True)


def main(_):
    for name in FLAGS.models:
        if not models.known(name):
            raise ValueError(f"--models: unknown model {name!r}; known: {models.NAMES}")
    if FLAGS.compare_onednn:
        return compare_onednn()
    if FLAGS.compare_threads:
        return compare_threads(FLAGS.compare_threads)
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, "
          f"{os.cpu_count()} CPUs, batch {FLAGS.batch_size}, {FLAGS.steps} steps")
    stream = pipeline_stream(FLAGS.epoch_data_dir, FLAGS.batch_size) if FLAGS.pipeline \
        else None
    for name in FLAGS.models:
        line, base = [f"{name:16s}"], None
        for precision in FLAGS.precision:
            for jit in FLAGS.jit:
                ips = throughput(name, jit == "true", FLAGS.steps, FLAGS.batch_size, precision)
                base = base or ips
                line.append(f"{precision} xla={jit}: {ips:6.0f} img/s ({ips / base:4.2f}x)")
        if stream is not None:
            ips = throughput(name, False, FLAGS.steps, FLAGS.batch_size, ds=stream)
            line.append(f"float32 pipeline: {ips:6.0f} img/s ({ips / base:4.2f}x)")
        print(" | ".join(line), flush=True)
    if FLAGS.epoch_data_dir and FLAGS.examples_cost:
        examples_cost(FLAGS.epoch_data_dir, FLAGS.examples_epochs, FLAGS.examples_repeats)
    elif FLAGS.epoch_data_dir:
        full_epoch(FLAGS.epoch_data_dir)
    elif FLAGS.examples_cost:
        raise ValueError("--examples_cost needs --epoch_data_dir=CIFAR10_DIR")


if __name__ == "__main__":
    entry.run(main)
