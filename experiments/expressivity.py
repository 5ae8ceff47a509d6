"""Finite-sample expressivity (paper Section 4, Theorem 1) and Rademacher estimates.

    python -m experiments.expressivity --dataset=cifar10 --data_dir=/work/data/cifar10-jpeg
    python -m experiments.expressivity --dataset=fashion_mnist \
        --data_dir=/usr/share/datasets/fashion-mnist --labels=true --depth=4
    python -m experiments.expressivity --rademacher_models=mlp_1x512,alexnet --rademacher_n=1000

Builds the depth-two network of Theorem 1 for the (first --n) training images with random
(--labels=random, uniform over the classes, seed --seed) or true labels as one-hot targets,
without any training, and reports: weights (d + n + n*K), min gap, Lemma 1's smallest
eigenvalue, the O(n) solve's residual, training accuracy evaluated in float64 NumPy and in
the float64 Keras model (and the same model in float32), test accuracy, weight norms, and
optionally the depth-k variant and Rademacher estimates of the paper's models.
Writes a JSON summary to --out if given.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from rethinkgen_tf import cli, entry, theory  # noqa: E402

cli.define_subset_flags(datasets=("cifar10", "mnist", "fashion_mnist"))  # --dataset, --data_dir, --n, --test_n, --out
flags.DEFINE_enum("labels", "random", ["random", "true"], "Targets: uniform random classes or the true labels.")
flags.DEFINE_integer("seed", 0, "Seed of the random labels and of the direction a.", lower_bound=0)
flags.DEFINE_float("knot", 0.1, "Knot b_i at x_{i-1} + knot * (x_i - x_{i-1}); 0.5 = midpoints.  In "
                   "(0, 0.5]: above 0.5 the O(n) solve amplifies rounding errors geometrically.")
flags.DEFINE_integer("tries", 8, "Random directions tried; the one with the largest min gap is kept.",
                     lower_bound=1)
flags.DEFINE_integer("depth", 0, "Also build the depth-k corollary network, k >= 2 (0: skip).", lower_bound=0)
flags.DEFINE_bool("keras", True, "Evaluate the Keras models (float64 and float32).")
flags.DEFINE_list("rademacher_models", [], "Models (rethinkgen_tf.models names) whose empirical "
                  "Rademacher complexity to estimate by fitting random +-1 labels.")
flags.DEFINE_integer("rademacher_n", 1000, "Training images for the Rademacher estimate.", lower_bound=1)
flags.DEFINE_integer("rademacher_draws", 3, "Random sign vectors sigma per model.", lower_bound=1)
flags.DEFINE_integer("rademacher_epochs", 100, "Epoch limit per fit (stops at 100% accuracy).", lower_bound=1)
flags.register_validator("knot", lambda v: 0.0 < v <= 0.5, "--knot must lie in (0, 0.5]")
flags.register_validator("depth", lambda v: v != 1, "--depth must be 0 (skip) or >= 2")
flags.adopt_module_key_flags(cli)  # list the shared flags in --help


if __name__ == "__main__":
    # theory.expressivity_experiment(**the flags of its parameters' names); entry: one-line errors
    entry.run_with_flags(theory.expressivity_experiment)
