"""Minimum-norm kernel interpolation (paper Section 5): solve K alpha = Y, one-hot Y.

    python -m experiments.kernel --dataset=fashion_mnist --data_dir=/usr/share/datasets/fashion-mnist
    python -m experiments.kernel --dataset=cifar10 --data_dir=/work/data/cifar10-jpeg --n=5000 \\
        --test_n=2000 --features=random_conv --conv_filters=1024 --out=runs/kernel/conv1024.json

Gaussian kernel exp(-|x - x'|^2 / (2 sigma^2)) on raw pixels (--features=raw: scaled to [0, 1], or
per-image standardized, --preprocess) or on random convolutional features (--features=random_conv:
normalized, ZCA-whitened patches, random filters in the whitened space (whitened training
patches or Gaussian directions, --conv_filters_from), a threshold nonlinearity, sum-pooling over
image regions; docs/theory.md).  The squared distances are
accumulated over blocks of --conv_block filters, so memory does not grow with --conv_filters, and
checkpointed in --state_dir (default: --out plus ".state") every --checkpoint_minutes: rerunning
the same command after a kill continues where the last checkpoint left off.

The bandwidth and the ridge are chosen on a validation split of the training images (--val_n held
out, fit on up to --val_fit_n of the others; or --val_loo, leave-one-out), never on the test
images: sigma = each factor of --bandwidth_grid times the median pairwise distance, ridge 0 (the
interpolant) and each of --ridge_grid (the regularized row); the validation curve and the choices
are printed and saved.  --bandwidth, --bandwidth_factor or --ridge given fix that parameter
instead.  Then the interpolant of all n training images is solved for the true labels and uniform
random labels together (one kernel matrix, 20 right-hand sides), and (K + ridge I) alpha = Y for
the true labels.  Reports training error (0 when interpolating), test error, the RKHS norm
sqrt(trace(alpha^T K alpha)), residuals, iterations, time and peak memory.  Solver:
--method=direct (float64 Cholesky, n <= ~20,000) or mixed (float32 Cholesky of K as the
preconditioner of conjugate gradients on the exact K; 2 n^2 bytes resident besides the distances'
2 n^2); auto picks direct up to 12,000.

Random conv features with n up to 12,000 also give the linear kernel's rows (its interpolant
and its validated ridge row; --linear).  --holdout=H scores H further training images in place
of the test images (design runs; the test split is not read).  The flags fill one
kernels.KernelConfig, field by field (config_from_flags).
"""
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from rethinkgen_tf import cli, entry, kernels  # noqa: E402
from rethinkgen_tf.kernels import features as kf  # noqa: E402

FLAGS = flags.FLAGS
cli.define_subset_flags(datasets=("fashion_mnist", "mnist", "cifar10"))  # --dataset, --data_dir, --n, --test_n, --out
flags.DEFINE_enum("features", "raw", ["raw", "random_conv"], "Kernel inputs: raw pixels or random conv features.")
flags.DEFINE_enum("preprocess", "auto", ["auto", "scale", "standardize"],
                  "Raw pixels: scale to [0, 1], or per-image standardization (minus the image's mean, over its "
                  "standard deviation).  auto: standardize on CIFAR-10, scale on MNIST-format data.")
flags.DEFINE_integer("conv_filters", kf.FILTERS, "Random conv features: number of random filters (paper: 32,000).",
                     lower_bound=1)
flags.DEFINE_integer("conv_kernel", kf.PATCH, "Random conv features: patch (filter) size, stride 1.", lower_bound=1)
flags.DEFINE_integer("conv_pool", kf.POOL, "Random conv features: sum-pool over a pool x pool grid of image "
                     "regions (2: the quadrants).", lower_bound=1)
flags.DEFINE_float("conv_threshold", kf.THRESHOLD, "Random conv features: the nonlinearity max(0, z - threshold) of a "
                   "filter's response z (unit filters in the whitened space).")
flags.DEFINE_bool("conv_two_sided", False, "Random conv features: also max(0, -z - threshold), two features per "
                  "filter and region.")
flags.DEFINE_enum("conv_filters_from", kf.DEFAULT_FILTERS_FROM, list(kf.FILTERS_FROM),
                  "Random conv features: the filters: whitened training patches (a patch of a random training "
                  "image, normalized and whitened as every patch, unit length) or Gaussian directions in the "
                  "whitened space.")
flags.DEFINE_integer("conv_filter_seed", None, "Random conv features: seed of the filters' draw (default: --seed); "
                     "the first F filters of a larger draw are the F of a smaller one.", lower_bound=0)
flags.DEFINE_bool("conv_whiten", True, "Random conv features: ZCA-whiten the normalized patches (statistics of "
                  "100,000 random training patches).")
flags.DEFINE_bool("conv_standardize", True, "Random conv features: scale each feature to unit variance over the "
                  "training images.")
flags.DEFINE_integer("conv_block", kf.FILTER_BLOCK, "Random conv features: filters per block of the distance "
                     "accumulation (memory: (n + test_n) x pool^2 x block floats, twice).", lower_bound=1)
flags.DEFINE_float("bandwidth", None, "Gaussian kernel sigma > 0: fixes the bandwidth (default: chosen on the "
                   "validation split).")
flags.DEFINE_float("bandwidth_factor", None, "sigma = factor x median pairwise distance: fixes the bandwidth "
                   "(default: chosen on the validation split).")
flags.DEFINE_float("ridge", None, "Ridge of the regularized row (K + ridge I) alpha = Y, true labels: fixes it; 0 "
                   "skips that row (default: chosen on the validation split).  With the mixed solver this "
                   "factors K + ridge I anew: it doubles the time.", lower_bound=0.0)
flags.DEFINE_enum("ridge_scaling", "none", ["none", "n"], "n: apply a ridge chosen on the val_fit_n-image "
                  "validation fits times n / val_fit_n to the n-image fit (the ridge of a sum of n squared "
                  "errors); none: as chosen.")
flags.DEFINE_integer("holdout", None, "Design mode: hold out this many further training images (a seeded split "
                     "of the same draw) and report the error on them in place of the test error; the test images "
                     "are not read.  Excludes --test_n.", lower_bound=1)
flags.DEFINE_bool("linear", True, "Random conv features, n <= 12,000: also the linear kernel of the same features "
                  "(its interpolant and its ridge row, the ridge chosen on the validation split).")
flags.DEFINE_list("linear_ridge_grid", [format(r, "g") for r in kernels.LINEAR_RIDGE_GRID], "Ridges tried for "
                  "the linear kernel's ridge row, as fractions of its matrix's mean diagonal.")
flags.DEFINE_integer("val_n", None, "Training images held out to choose the bandwidth and ridge (default: "
                     f"min({kernels.VAL_N}, n / 5), none below {kernels.MIN_VAL}; 0: no search, default "
                     "bandwidth factor (0.25 raw MNIST pixels, 1 otherwise) and ridge 1e-3).", lower_bound=0)
flags.DEFINE_integer("val_fit_n", kernels.VAL_FIT_N, "Training images (besides the held-out ones) the validation "
                     "fits use, at most.", lower_bound=1)
flags.DEFINE_bool("val_loo", False, "Choose by the leave-one-out error over up to --val_fit_n training images "
                  "(exact, from each solve; 3x a solve's time) instead of a held-out split (excludes --val_n).")
flags.DEFINE_list("bandwidth_grid", [format(f, "g") for f in kernels.BANDWIDTH_GRID],
                  "Bandwidths tried, as factors of the median pairwise distance.")
flags.DEFINE_list("ridge_grid", [format(r, "g") for r in kernels.RIDGE_GRID], "Ridges tried for the regularized "
                  "row (the interpolant's is 0).")
flags.DEFINE_enum("method", "auto", ["auto", "direct", "mixed"],
                  "Solver: direct (float64 Cholesky), mixed (float32 Cholesky + CG on the exact K), "
                  "auto (direct up to n = 12,000).")
flags.DEFINE_float("tol", 1e-4, "mixed: stop at ||K alpha - Y|| <= tol ||Y|| per column ...", lower_bound=0.0)
flags.DEFINE_float("max_abs_tol", 1e-3, "... and max |K alpha - Y| <= this.", lower_bound=0.0)
flags.DEFINE_integer("maxiter", 100, "mixed: conjugate-gradient iteration limit.", lower_bound=1)
flags.DEFINE_bool("random_labels", True, "Also solve for uniform random labels.")
flags.DEFINE_integer("seed", 0, "Seed of the subsets, the validation split, random labels and conv filters.",
                     lower_bound=0)
flags.DEFINE_string("state_dir", None, "Checkpoints of the distance accumulation (default: --out plus '.state'; "
                    "none without --out).  A rerun of the same command resumes from it; another configuration "
                    "there is refused.")
flags.DEFINE_bool("keep_state", False, "Keep --state_dir after the run (2 n^2 + 4 n test_n bytes): reruns with "
                  "other bandwidths or ridges then skip the accumulation.")
flags.DEFINE_list("curve_filters", [], "Random conv features: also the test error at these smaller filter counts "
                  "(multiples of --conv_block), from the same accumulation: each is evaluated as the run with "
                  "--conv_filters set to it (interpolant and random labels, ridge 0), summarized in --out's "
                  "'curve' and drawn into --out's name plus '.curve.png'; needs --out.")
flags.DEFINE_string("start_from", None, "Random conv features: the --state_dir of a finished run (--keep_state) "
                    "with fewer filters (a multiple of --conv_block), all else the same: the accumulation starts "
                    "after its blocks, e.g. --conv_filters=32000 after a 16,384-filter run.")
flags.DEFINE_list("curve_with", [], "Random conv features: the summaries (--out) of the same run with other filter "
                  "counts, e.g. the run --start_from continues; their curve points join this run's curve and figure "
                  "(--out's name plus '.curve.png').")
flags.DEFINE_bool("plot_only", False, "Run nothing: join --out's curve with --curve_with's, rewrite --out and redraw "
                  "the curve's figure.")
flags.DEFINE_float("checkpoint_minutes", 10.0, "Checkpoint the accumulation at most this often (and after the "
                   "last block; 0: every block).", lower_bound=0.0)


def _floats(values):
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


for _name in ("bandwidth", "bandwidth_factor"):
    flags.register_validator(_name, lambda v: v is None or 0 < v < math.inf, f"--{_name} must be finite and > 0")
for _name in ("tol", "max_abs_tol", "checkpoint_minutes"):
    flags.register_validator(_name, math.isfinite, f"--{_name} must be finite")
flags.register_validator("ridge", lambda v: v is None or math.isfinite(v), "--ridge must be finite")
flags.register_validator("conv_threshold", math.isfinite, "--conv_threshold must be finite")
flags.register_validator("curve_filters", lambda v: all(f.isdigit() and int(f) > 0 for f in v),
                         "--curve_filters must be a comma-separated list of filter counts > 0")
for _name in ("bandwidth_grid", "ridge_grid", "linear_ridge_grid"):
    flags.register_validator(_name, lambda v: bool(v) and _floats(v) is not None and all(
        0 < f < math.inf for f in _floats(v)), f"--{_name} must be a comma-separated list of finite numbers > 0")
del _name
flags.adopt_module_key_flags(cli)  # list the shared flags in --help


def config_from_flags(F=FLAGS) -> kernels.KernelConfig:
    """The KernelConfig of the parsed flags, field by field (ValueError, one line, for a bad value)."""
    return kernels.KernelConfig(
        dataset=F.dataset, data_dir=F.data_dir, n=F.n, test_n=F.test_n, holdout=F.holdout, features=F.features,
        preprocess=F.preprocess, conv_filters=F.conv_filters, conv_kernel=F.conv_kernel, conv_pool=F.conv_pool,
        conv_threshold=F.conv_threshold, conv_two_sided=F.conv_two_sided, conv_whiten=F.conv_whiten,
        conv_standardize=F.conv_standardize, conv_block=F.conv_block, conv_filters_from=F.conv_filters_from,
        conv_filter_seed=F.conv_filter_seed, bandwidth=F.bandwidth, bandwidth_factor=F.bandwidth_factor,
        ridge=F.ridge, ridge_scaling=F.ridge_scaling, val_n=F.val_n, val_fit_n=F.val_fit_n, val_loo=F.val_loo,
        bandwidth_grid=tuple(F.bandwidth_grid), ridge_grid=tuple(F.ridge_grid), linear=F.linear,
        linear_ridge_grid=tuple(F.linear_ridge_grid), method=F.method, tol=F.tol, max_abs_tol=F.max_abs_tol,
        maxiter=F.maxiter, random_labels=F.random_labels, seed=F.seed, out=F.out, state_dir=F.state_dir,
        keep_state=F.keep_state, checkpoint_minutes=F.checkpoint_minutes, curve_filters=tuple(F.curve_filters),
        start_from=F.start_from, curve_with=tuple(F.curve_with), plot_only=F.plot_only)


def main(argv):
    if len(argv) > 1:
        entry.fail(f"error: unexpected arguments {argv[1:]}")
    kernels.kernel_experiment(config_from_flags())


if __name__ == "__main__":
    # ValueError (DataError, ...), OSError and Ctrl-C end in one line (rethinkgen_tf.entry)
    entry.run(main)
