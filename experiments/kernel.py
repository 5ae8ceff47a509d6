"""Minimum-norm kernel interpolation (paper Section 5): solve K alpha = Y, one-hot Y.

    python -m experiments.kernel --dataset=fashion_mnist --data_dir=/usr/share/datasets/fashion-mnist
    python -m experiments.kernel --dataset=cifar10 --data_dir=/work/data/cifar10-jpeg --n=10000 \
        --features=random_conv --conv_filters=1024

Gaussian kernel with bandwidth --bandwidth (default: --bandwidth_factor times the median pairwise
distance of 2000 random training points; factor 0.25 for raw MNIST-format pixels, else 1), on raw
pixels scaled to [0, 1] (--features=raw) or on random convolutional features
(--features=random_conv).  Solves for the true labels and for uniform random labels together (one
kernel matrix, 20 right-hand sides), then with a ridge term (--ridge, true labels; 0 skips it).
Reports training error (0 when interpolating), test error, the RKHS norm sqrt(trace(alpha^T K
alpha)), residuals, iterations, time and peak memory.  Solver: --method=direct (float64 Cholesky, n
<= ~20,000) or mixed (float32 Cholesky of K as the preconditioner of conjugate gradients on the
exact K; 2 n^2 bytes resident: 7.2 GB at n = 60,000); auto picks direct up to 12,000.
"""
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from rethinkgen_tf import cli, entry, kernels  # noqa: E402

FLAGS = flags.FLAGS
cli.define_subset_flags(datasets=("fashion_mnist", "mnist", "cifar10"))  # --dataset, --data_dir, --n, --test_n, --out
flags.DEFINE_enum("features", "raw", ["raw", "random_conv"], "Preprocessing.")
flags.DEFINE_integer("conv_filters", 1024, "Random conv features: number of filters (paper: 32,000).",
                     lower_bound=1)
flags.DEFINE_integer("conv_kernel", 5, "Random conv features: filter size.", lower_bound=1)
flags.DEFINE_integer("conv_pool", 4, "Random conv features: average-pool to a pool x pool grid.", lower_bound=1)
flags.DEFINE_float("bandwidth", None, "Gaussian kernel sigma > 0 (default: bandwidth_factor x median distance).")
flags.DEFINE_float("bandwidth_factor", None, "sigma = factor x median pairwise distance when --bandwidth is "
                   "unset.  Default: 0.25 for raw MNIST / Fashion-MNIST pixels (better conditioned, same test "
                   "error), 1 otherwise (CIFAR-10, random conv features: in thousands of dimensions a small "
                   "sigma makes K nearly the identity; raw CIFAR-10 at 0.25 had 82% test error).")
flags.DEFINE_enum("method", "auto", ["auto", "direct", "mixed"],
                  "Solver: direct (float64 Cholesky), mixed (float32 Cholesky + CG on the exact K), "
                  "auto (direct up to n = 12,000).")
flags.DEFINE_float("tol", 1e-4, "mixed: stop at ||K alpha - Y|| <= tol ||Y|| per column ...", lower_bound=0.0)
flags.DEFINE_float("max_abs_tol", 1e-3, "... and max |K alpha - Y| <= this.", lower_bound=0.0)
flags.DEFINE_integer("maxiter", 100, "mixed: conjugate-gradient iteration limit.", lower_bound=1)
flags.DEFINE_float("ridge", 1e-3, "Also solve (K + ridge I) alpha = Y for the true labels (0: skip).  With "
                   "the mixed solver this factors K + ridge I anew: it doubles the time.", lower_bound=0.0)
flags.DEFINE_bool("random_labels", True, "Also solve for uniform random labels.")
flags.DEFINE_integer("seed", 0, "Seed of the subsets, random labels and conv filters.", lower_bound=0)
for _name in ("bandwidth", "bandwidth_factor"):
    flags.register_validator(_name, lambda v: v is None or 0 < v < math.inf, f"--{_name} must be finite and > 0")
for _name in ("tol", "max_abs_tol", "ridge"):
    flags.register_validator(_name, math.isfinite, f"--{_name} must be finite")
del _name
flags.adopt_module_key_flags(cli)  # list the shared flags in --help


def main(argv):
    if len(argv) > 1:
        entry.fail(f"error: unexpected arguments {argv[1:]}")
    # entry.run: ValueError (DataError, ...), OSError and Ctrl-C end in one line, no traceback
    kernels.kernel_experiment(
        dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, n=FLAGS.n, test_n=FLAGS.test_n, features=FLAGS.features,
        conv_filters=FLAGS.conv_filters, conv_kernel=FLAGS.conv_kernel, conv_pool=FLAGS.conv_pool,
        bandwidth=FLAGS.bandwidth, bandwidth_factor=FLAGS.bandwidth_factor, method=FLAGS.method, tol=FLAGS.tol,
        max_abs_tol=FLAGS.max_abs_tol, maxiter=FLAGS.maxiter, ridge=FLAGS.ridge,
        random_labels=FLAGS.random_labels, seed=FLAGS.seed, out=FLAGS.out)


if __name__ == "__main__":
    entry.run(main)
