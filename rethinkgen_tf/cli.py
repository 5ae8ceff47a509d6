"""The command line of one run, shared by experiments/cifar.py and mnist.py.

    cli.define(datasets=("cifar10",), model="inception")
    entry.run(cli.main)

Every TrainConfig / DataConfig field the paper varies is a flag; defaults
mirror the paper (rethinkgen_tf/recipes.py, which the help strings quote; see
docs/training.md).  Invalid values and conflicting flags end the program with
a one-line error.

The experiments on random subsets of a small dataset (experiments/expressivity.py,
kernel.py) share `define_subset_flags` (--dataset, --data_dir, --n, --test_n,
--out); `results.check_out` checks --out.
"""

import os
from pathlib import Path

from absl import flags, logging

from rethinkgen_tf import recipes, train
from rethinkgen_tf.data import AUGMENTATIONS, RANDOMIZATIONS, DataConfig, datasets
from rethinkgen_tf.ops import randomizations
from rethinkgen_tf.results import path_problem, run_name

FLAGS = flags.FLAGS


def define(datasets, model):
    f = flags
    f.DEFINE_enum("dataset", datasets[0], datasets, "Dataset.")
    f.DEFINE_string("data_dir", None, "Local copy of the dataset (CIFAR-10 python/binary "
                    "batches or <dir>/{train,test}/<class>/ image folders; MNIST IDX files; "
                    "--dataset=folder: <dir>/{train,test}/<class>/ images of any one size and "
                    "class count; --dataset=numpy: a .npz of x_train, y_train, x_test, y_test). "
                    "Default: tensorflow-datasets.")
    f.DEFINE_string("model", model, "Model: inception, inception_nobn, alexnet, mlp_NxW "
                    "(e.g. mlp_1x512), wrn_D_K (e.g. wrn_28_10), inception_v3, linear; or your "
                    "own Keras builder as module:function (e.g. mynets.tiny:build, its package on "
                    "PYTHONPATH; docs/training.md#your-model), with --recipe or --learning_rate, "
                    "--lr_decay and --epochs.")
    f.DEFINE_enum("recipe", None, list(recipes.RECIPES), "A model given by reference "
                  "(module:function) trains with this family's recipe (learning rate, decay, "
                  "epochs), unless the flags give them.")
    # randomization test
    f.DEFINE_enum("randomize", "none", RANDOMIZATIONS, "Randomization: " + ", ".join(
        f"{r.name} ({r.label})" for r in randomizations.ALL) + ".")
    f.DEFINE_float("corrupt", 0.0, "Label corruption probability p in [0, 1]: each training "
                   "label is replaced by a uniform random class with probability p.",
                   lower_bound=0.0, upper_bound=1.0)
    f.DEFINE_enum("label_mode", "uniform", ["uniform", "permute"],
                  "Label corruption: uniform redraws (paper) or a permutation of the labels.")
    f.DEFINE_enum("pixel_unit", "position", ["position", "value"],
                  "What pixel shuffling permutes: spatial positions (channels move together) "
                  "or single values.")
    f.DEFINE_integer("seed", 0, f"Seed of weight init and, unless overridden, of the data; "
                     f"0 to {train.MAX_SEED} (it seeds NumPy, which takes 32 bits).",
                     lower_bound=0, upper_bound=train.MAX_SEED)
    f.DEFINE_integer("data_seed", None, "Randomization seed, 0 to 2^63-1 (default: --seed).",
                     lower_bound=0, upper_bound=2**63 - 1)
    f.DEFINE_integer("shuffle_seed", None, "Per-epoch shuffling seed, 0 to 2^63-1 (default: "
                     "--seed).", lower_bound=0, upper_bound=2**63 - 1)
    f.DEFINE_integer("train_size", None, "Use the first n training examples.", lower_bound=1)
    f.DEFINE_bool("balanced", False, "With --train_size: the first n/K examples of each class.")
    f.DEFINE_integer("test_size", None, "Use the first n test examples.", lower_bound=1)
    f.DEFINE_integer("crop", None, "Center crop size (default: 28 for CIFAR-10, none for "
                     "MNIST).", lower_bound=1)
    f.DEFINE_bool("standardize", True, "Per-image standardization (paper).")
    f.DEFINE_enum("augment", "none", AUGMENTATIONS,
                  "Augmentation: none (paper's randomization runs), crop (random crop), "
                  "crop_flip, imagenet.")
    # optimization
    f.DEFINE_integer("epochs", None, f"Epochs (default: per model: "
                     f"{recipes.by_family('epochs')}; with the default decay that fits at least "
                     "99.99% of random labels at full scale).", lower_bound=1)
    f.DEFINE_integer("batch_size", 128, "Global batch size (split across replicas).",
                     lower_bound=1)
    f.DEFINE_float("learning_rate", None, f"Initial SGD learning rate (default: "
                   f"{recipes.by_family('learning_rate')}).", lower_bound=0.0)
    f.DEFINE_float("lr_decay", None, f"Learning rate factor per epoch (default: "
                   f"{recipes.by_family('lr_decay')}; MLPs stall short of fitting random labels "
                   f"at the paper's {recipes.PAPER_LR_DECAY}; Table 4 with augmentation: "
                   f"{recipes.TABLE4_LR_DECAY}).", lower_bound=0.0, upper_bound=1.0)
    f.DEFINE_float("momentum", 0.9, "SGD momentum.", lower_bound=0.0, upper_bound=1.0)
    f.DEFINE_float("weight_decay", 0.0, "L2 coefficient on kernels: penalty wd/2*||w||^2 "
                   f"(reproductions use {recipes.WEIGHT_DECAY:g}).", lower_bound=0.0)
    f.DEFINE_float("dropout", 0.0, "Dropout rate before the classifier.",
                   lower_bound=0.0, upper_bound=0.99)
    f.DEFINE_bool("batchnorm", None, "Batch norm on/off (default: "
                  f"{recipes.by_family('batchnorm', lambda on: 'on' if on else 'off')}).")
    f.DEFINE_float("bn_momentum", None, "Decay of the batch norm moving averages used in "
                   f"inference mode (default {recipes.BN_MOMENTUM}; on small subsets with few "
                   "steps per epoch a lower value keeps them current, see figure1 --scale=cpu).",
                   lower_bound=0.0, upper_bound=0.9999)
    f.DEFINE_float("overfit_threshold", 1.0, "Train accuracy that counts as overfit "
                   "(time to overfit).", lower_bound=0.0, upper_bound=1.0)
    f.DEFINE_bool("stop_on_overfit", False, "Stop once the threshold is reached.")
    f.DEFINE_enum("record_examples", "default", ["none", "default", "full"],
                  "Per-example records of the re-evaluated training set in the run's "
                  "examples.npz (rethinkgen_tf.dynamics): default: correctness on the training "
                  "and original labels per epoch, first-fit epochs, forgetting events; full: also "
                  "the probability of the training label per epoch (data maps); none: no file.")
    f.DEFINE_integer("test_every", 1, "Evaluate the test set every n epochs (and always at the "
                     "last epoch, or when stopping on overfit); other rows of metrics.csv hold "
                     "NaN for the test columns.", lower_bound=1)
    # execution
    f.DEFINE_enum("strategy", "default", list(train.STRATEGIES),
                  "tf.distribute strategy; the batch is global, the learning rate unchanged. "
                  "multi_worker reads the cluster from TF_CONFIG, else under srun from "
                  "Slurm's variables (docs/cluster.md).")
    f.DEFINE_bool("jit_compile", None, "XLA (default: on for GPU/TPU, "
                  f"{'on' if train.JIT_DEFAULT_CPU else 'off'} on CPU).")
    f.DEFINE_bool("mixed_precision", False, "mixed_float16 on GPU (bfloat16 on TPU).")
    f.DEFINE_enum("precision", "float32", list(train.PRECISIONS),
                  "float32, or bf16: bfloat16 compute with float32 weights and logits (Keras "
                  "mixed_bfloat16) on any device; on CPUs with AVX-512 BF16 or AMX it trains "
                  "the convnets faster (docs/benchmarks.md). Part of the run's identity.")
    f.DEFINE_integer("steps_per_execution", 16, "Training steps per tf.function call, at "
                     "most about this many, never across an epoch's end (fewer Python round "
                     "trips; the same model for any value).", lower_bound=1)
    f.DEFINE_string("output_dir", "runs", "Parent directory of run directories.")
    f.DEFINE_string("run_name", None, "Run directory name (default: from the settings).")
    f.DEFINE_bool("overwrite", False, "Redo a finished run.")


def configs():
    """(TrainConfig, DataConfig, run_dir) from the parsed flags; ValueError if invalid."""
    F = FLAGS
    crop = F.crop if F.crop is not None else datasets.BY_NAME[F.dataset].crop  # the paper's crop, if any
    data = DataConfig(
        dataset=F.dataset, data_dir=F.data_dir, randomize=F.randomize, corrupt=F.corrupt,
        label_mode=F.label_mode, pixel_unit=F.pixel_unit,
        seed=F.seed if F.data_seed is None else F.data_seed,
        shuffle_seed=F.seed if F.shuffle_seed is None else F.shuffle_seed,
        train_size=F.train_size, balanced=F.balanced, test_size=F.test_size,
        crop=crop, standardize=F.standardize, augment=F.augment, batch_size=F.batch_size)
    cfg = train.TrainConfig(
        model=F.model, recipe=F.recipe, epochs=F.epochs, learning_rate=F.learning_rate, lr_decay=F.lr_decay,
        momentum=F.momentum, weight_decay=F.weight_decay, dropout=F.dropout,
        batchnorm=F.batchnorm, bn_momentum=F.bn_momentum, seed=F.seed, strategy=F.strategy,
        jit_compile=F.jit_compile,
        mixed_precision=F.mixed_precision, precision=F.precision,
        steps_per_execution=F.steps_per_execution,
        overfit_threshold=F.overfit_threshold, stop_on_overfit=F.stop_on_overfit,
        test_every=F.test_every, record_examples=F.record_examples,
        overwrite=F.overwrite)
    cfg.validate()
    return cfg, data, run_dir_of(F.output_dir, F.run_name or run_name(cfg, data))


def run_dir_of(output_dir, name):
    """output_dir/name, after checking both (ValueError, one line)."""
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name:
        raise ValueError(f"--run_name={name!r} must be a plain directory name (no '/', "
                         "not '.' or '..'): run directories live directly in --output_dir")
    out = Path(output_dir).expanduser()
    problem = path_problem(out / name)
    if problem:
        raise ValueError(f"--output_dir/--run_name: {problem}")  # problem names the path
    for parent in (out, *out.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"--output_dir={output_dir}: {parent} is a file, not a "
                                 "directory; choose another --output_dir")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ValueError(f"--output_dir={output_dir}: {parent} is not writable; "
                                 "choose another --output_dir")
            break
    return out / name


def define_subset_flags(datasets):
    """--dataset (one of `datasets`, the first by default), --data_dir, --n, --test_n and --out:
    the flags of the experiments on random subsets of a small dataset that write one JSON
    summary (experiments/expressivity.py and kernel.py; the subsets come from
    rethinkgen_tf.data.sources.load_subsets)."""
    f = flags
    f.DEFINE_enum("dataset", datasets[0], list(datasets), "Dataset.")
    f.DEFINE_string("data_dir", None, "Local copy of the dataset (default: tensorflow-datasets).")
    f.DEFINE_integer("n", None, "Use n random training images (default: all).", lower_bound=1)
    f.DEFINE_integer("test_n", None, "Use n random test images (default: all).", lower_bound=1)
    f.DEFINE_string("out", None, "Write the JSON summary here.")


def main(argv):
    """Checks the flags, trains (or resumes) the run, prints the result summary.

    Run under `rethinkgen_tf.entry.run`, which makes every error one line."""
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    cfg, data_config, run_dir = configs()
    train.make_strategy(cfg.strategy)  # before any TF op (multi_worker)
    r = train.run(cfg, data_config, run_dir)  # loads the data only if it trains
    if r["status"] == "diverged":  # result.json says so; one line, exit 1
        raise ValueError(train.diverged_line(r, run_dir, "--learning_rate"))
    f = r["final"] or {}
    print(f"{run_dir}: {r['epochs']} epochs, {r['steps']} steps | train acc "
          f"{f.get('train_eval_acc', float('nan')):.4f} (original labels "
          f"{f.get('train_eval_acc_orig', float('nan')):.4f}) | test acc "
          f"{f.get('test_acc', float('nan')):.4f} | overfit at epoch {r['overfit_epoch']} "
          f"(step {r['overfit_step']}) | {r['wall_time']:.0f}s")

