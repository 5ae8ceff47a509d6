"""Inception V3 on ImageNet with true or random labels (Table 2, Figure 2a).

    python -m experiments.imagenet --data_dir=/data/imagenet-tfrecords --train_dir=runs/imagenet
    python -m experiments.imagenet --randomize=labels --noaugment --dropout=0 --weight_decay=0

Flags are named and defaulted like the TensorFlow Inception package's
training script where it has one (batch 32 per replica, RMSProp with decay
0.9, momentum 0.9, epsilon 1.0, learning rate 0.045 x0.94 every 2 epochs, as
in docs/paper.md#training); the Table 2 switches are --randomize, --augment,
--dropout and --weight_decay.  Data: the package's TFRecord shards
(train-*-of-*, validation-*-of-*) or a tfds imagenet2012 manual directory.
Metrics per epoch: top-1 and top-5 on the training set (re-evaluated on its
first --train_eval_size examples) and on the validation set.
"""
import dataclasses
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging  # noqa: E402

from rethinkgen_tf import entry  # noqa: E402
from rethinkgen_tf.ops import randomizations  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "ImageNet TFRecord shards (Inception package format) or "
                    "a tfds imagenet2012 manual directory.", required=True)
flags.DEFINE_string("train_dir", "runs/imagenet", "Directory of this run (checkpoints, "
                    "metrics.csv, TensorBoard, result.json).")
flags.DEFINE_integer("batch_size", 32, "Batch size per replica (the package's default).", lower_bound=1)
flags.DEFINE_integer("max_steps", None, "Stop after this many steps (default: --num_epochs).",
                     lower_bound=1)
flags.DEFINE_integer("num_epochs", 100, "Epochs when --max_steps is not given.", lower_bound=1)
flags.DEFINE_float("initial_learning_rate", 0.045, "Initial learning rate.", lower_bound=0.0)
flags.DEFINE_float("num_epochs_per_decay", 2.0, "Epochs between learning-rate decays.",
                   lower_bound=0.0)
flags.DEFINE_float("learning_rate_decay_factor", 0.94, "Learning-rate decay factor.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("rmsprop_decay", 0.9, "RMSProp decay (rho), in [0, 1).", lower_bound=0.0)
flags.DEFINE_float("rmsprop_momentum", 0.9, "RMSProp momentum, in [0, 1).", lower_bound=0.0)
flags.DEFINE_float("rmsprop_epsilon", 1.0, "RMSProp epsilon, > 0.")
flags.DEFINE_integer("image_size", 299, "Input size (Inception V3 takes at least 75).", lower_bound=75)
flags.DEFINE_enum("randomize", "none", list(randomizations.NAMES),
                  "Randomization of the training set.")
flags.DEFINE_float("corrupt", 0.0, "Label corruption probability.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_bool("augment", True, "Inception distortions (random crop, flip, color).")
flags.DEFINE_float("dropout", 0.2, "Dropout before the classifier (the package keeps 0.8).",
                   lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_float("weight_decay", 4e-5, "L2 coefficient on kernels (the package's 0.00004).",
                   lower_bound=0.0)
flags.DEFINE_integer("train_size", None, "Use the first n training records.", lower_bound=1)
flags.DEFINE_integer("test_size", None, "Use the first n validation records.", lower_bound=1)
flags.DEFINE_integer("train_eval_size", 50_000, "Training examples re-evaluated per epoch for "
                     "the training accuracy (0: all; the full set costs as much as an epoch).",
                     lower_bound=0)
flags.DEFINE_integer("num_classes", 1000, "Classes.", lower_bound=2)
flags.DEFINE_enum("strategy", "default", ["default", "one_device", "mirrored", "multi_worker",
                                          "tpu"], "tf.distribute strategy.")
flags.DEFINE_bool("mixed_precision", False, "Mixed precision (GPU/TPU).")
flags.DEFINE_bool("jit_compile", None, "XLA (default: on for GPU/TPU).")
flags.DEFINE_integer("seed", 0, "Randomization and initialization seed.", lower_bound=0,
                     upper_bound=2**32 - 1)
flags.DEFINE_bool("overwrite", False, "Redo a finished run.")
for _name in ("rmsprop_decay", "rmsprop_momentum"):
    flags.register_validator(_name, lambda v: 0 <= v < 1, f"--{_name} must lie in [0, 1)")
flags.register_validator("rmsprop_epsilon", lambda v: 0 < v < math.inf, "--rmsprop_epsilon must be finite and > 0")
for _name in ("initial_learning_rate", "num_epochs_per_decay"):
    flags.register_validator(_name, lambda v: 0 < v < math.inf, f"--{_name} must be finite and > 0")
flags.register_validator("learning_rate_decay_factor", lambda v: 0 < v <= 1,
                         "--learning_rate_decay_factor must lie in (0, 1]")
flags.register_validator("weight_decay", math.isfinite, "--weight_decay must be finite")  # the bound lets inf in
del _name


def main(argv):
    if len(argv) > 1:
        entry.fail(f"error: unexpected arguments {argv[1:]}")
    run()  # entry.run: ValueError (DataError, ...), OSError and Ctrl-C end in one line, no traceback


def run():
    from rethinkgen_tf import results, train
    from rethinkgen_tf.data import DataConfig, load
    logging.set_verbosity(logging.INFO)
    if not os.path.isdir(FLAGS.data_dir):
        raise ValueError(f"--data_dir={FLAGS.data_dir} is not a directory")
    cfg = train.TrainConfig(
        model="inception_v3", epochs=FLAGS.num_epochs, learning_rate=FLAGS.initial_learning_rate,
        lr_decay=FLAGS.learning_rate_decay_factor, lr_decay_epochs=FLAGS.num_epochs_per_decay,
        optimizer="rmsprop", momentum=FLAGS.rmsprop_momentum, rmsprop_decay=FLAGS.rmsprop_decay,
        rmsprop_epsilon=FLAGS.rmsprop_epsilon, weight_decay=FLAGS.weight_decay,
        dropout=FLAGS.dropout, seed=FLAGS.seed, strategy=FLAGS.strategy,
        jit_compile=FLAGS.jit_compile, mixed_precision=FLAGS.mixed_precision,
        max_steps=FLAGS.max_steps, train_eval_size=FLAGS.train_eval_size or None,
        overwrite=FLAGS.overwrite)
    data_cfg = DataConfig(
        dataset="imagenet", data_dir=FLAGS.data_dir, randomize=FLAGS.randomize,
        corrupt=FLAGS.corrupt, seed=FLAGS.seed, shuffle_seed=FLAGS.seed,
        train_size=FLAGS.train_size, test_size=FLAGS.test_size, crop=None,
        augment="imagenet" if FLAGS.augment else "none",
        batch_size=FLAGS.batch_size, image_size=FLAGS.image_size,
        num_classes=FLAGS.num_classes)
    cfg.validate()  # both checked before anything is created or read
    problem = results.path_problem(FLAGS.train_dir)
    if problem:
        raise ValueError(f"--train_dir={FLAGS.train_dir}: {problem}")
    try:
        os.makedirs(FLAGS.train_dir, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--train_dir={FLAGS.train_dir}: cannot create it ({e.strerror or e})") from None
    try:
        strategy = train.make_strategy(FLAGS.strategy)
    except (ValueError, RuntimeError) as e:  # e.g. tpu without a TPU
        raise ValueError(f"--strategy={FLAGS.strategy}: {e}") from None
    data_cfg = dataclasses.replace(data_cfg, batch_size=FLAGS.batch_size * strategy.num_replicas_in_sync)
    data = load(data_cfg)
    if FLAGS.max_steps is not None:
        steps_per_epoch = math.ceil(data.num_train / data_cfg.batch_size)
        cfg = dataclasses.replace(cfg, epochs=math.ceil(FLAGS.max_steps / steps_per_epoch))
    from rethinkgen_tf.data.pipeline import MAX_EPOCHS
    if cfg.epochs > MAX_EPOCHS:
        raise ValueError(f"--num_epochs/--max_steps: {cfg.epochs} epochs, more than the {MAX_EPOCHS} a run can have")
    try:
        r = train.run(cfg, data_cfg, FLAGS.train_dir, data=data)
    except results.RunLocked as e:  # its message names the run-directory flags of experiments.cifar
        raise ValueError(f"{e.run_dir} is in use by process {e.pid or '(unknown)'}, which is training it; wait "
                         "for it to finish, or stop it and rerun to resume, or choose another --train_dir") from None
    if r["status"] == "diverged":  # result.json says so; one line, exit 1
        raise ValueError(train.diverged_line(r, FLAGS.train_dir, "--initial_learning_rate"))
    f = r["final"] or {}
    print(f"{FLAGS.train_dir}: {r['steps']} steps | train top-1 {f.get('train_eval_acc', float('nan')):.4f} "
          f"| test top-1 {f.get('test_acc', float('nan')):.4f} top-5 "
          f"{f.get('test_top5', float('nan')):.4f} | best test top-1 {r['best_test_acc']}")


if __name__ == "__main__":
    entry.run(main)
