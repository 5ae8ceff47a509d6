"""Minimum-norm kernel interpolation (paper Section 5): solve K alpha = Y, one-hot Y.

    python -m experiments.kernel --dataset=fashion_mnist --data_dir=/usr/share/datasets/fashion-mnist
    python -m experiments.kernel --dataset=cifar10 --data_dir=/work/data/cifar10-jpeg --n=10000 \
        --features=random_conv --conv_filters=1024

Gaussian kernel with bandwidth --bandwidth (default: --bandwidth_factor times the median pairwise
distance of 2000 random training points; factor 0.25 for raw MNIST-format pixels, else 1), on raw pixels scaled to [0, 1] (--features=raw) or on
random convolutional features (--features=random_conv).  Solves for the true labels and for uniform
random labels together (one kernel matrix, 20 right-hand sides), then with a ridge term
(--ridge, true labels; 0 skips it).  Reports training error (0 when interpolating), test error,
the RKHS norm sqrt(trace(alpha^T K alpha)), residuals, iterations, time and peak memory.
Solver: --method=direct (float64 Cholesky, n <= ~20,000) or mixed (float32 Cholesky of K as the
preconditioner of conjugate gradients on the exact K; 2 n^2 bytes resident: 7.2 GB at n = 60,000);
auto picks direct up to 12,000.
"""
import math
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from rethinkgen_tf import entry, kernels, results  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "fashion_mnist", ["fashion_mnist", "mnist", "cifar10"], "Dataset.")
flags.DEFINE_string("data_dir", None, "Local copy of the dataset (default: tensorflow-datasets).")
flags.DEFINE_integer("n", None, "Use n random training images (default: all).", lower_bound=1)
flags.DEFINE_integer("test_n", None, "Use n random test images (default: all).", lower_bound=1)
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
flags.DEFINE_string("out", None, "Write the JSON summary here.")
for _name in ("bandwidth", "bandwidth_factor"):
    flags.register_validator(_name, lambda v: v is None or 0 < v < math.inf, f"--{_name} must be finite and > 0")
for _name in ("tol", "max_abs_tol", "ridge"):
    flags.register_validator(_name, math.isfinite, f"--{_name} must be finite")
del _name


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def peak_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def features(x):
    if FLAGS.features == "raw":
        return x.reshape(x.shape[0], -1).astype(np.float32) / 255.0
    try:
        return kernels.random_conv_features(x, FLAGS.conv_filters, FLAGS.conv_kernel, FLAGS.conv_pool,
                                            FLAGS.seed, progress=log)
    except ValueError as e:
        raise ValueError(f"--conv_kernel={FLAGS.conv_kernel}, --conv_pool={FLAGS.conv_pool}: {e}") from None


def check_out():
    """--out must be writable: fail now rather than after the work."""
    if FLAGS.out:
        out = os.path.abspath(FLAGS.out)
        if os.path.isdir(out):
            raise ValueError(f"--out={FLAGS.out} is a directory; pass a file name")
        if not os.path.isdir(os.path.dirname(out)):
            raise ValueError(f"--out={FLAGS.out}: directory {os.path.dirname(out)} does not exist")


def main(argv):
    if len(argv) > 1:
        entry.fail(f"error: unexpected arguments {argv[1:]}")
    run()  # entry.run: ValueError (DataError, ...), OSError and Ctrl-C end in one line, no traceback


def run():
    from rethinkgen_tf.data.sources import load_subsets
    check_out()
    t_all = time.time()
    # random subsets (seed --seed + 1), kept in index order
    x, y, xt, yt, names = load_subsets(FLAGS.dataset, FLAGS.data_dir, FLAGS.n, FLAGS.test_n, FLAGS.seed + 1)
    k, n = len(names), x.shape[0]
    if n < 2 and FLAGS.bandwidth is None:
        raise ValueError(f"{n} training image has no median distance to set the bandwidth from; pass --bandwidth")
    log(f"{FLAGS.dataset}: {n} train, {xt.shape[0]} test, features={FLAGS.features}")
    t = time.time()
    f, ft = features(x), features(xt)
    log(f"features {f.shape[1]}-dimensional ({time.time() - t:.0f} s)")
    med = kernels.median_distance(f, seed=FLAGS.seed) if n > 1 else None  # n = 1: --bandwidth is given
    factor = FLAGS.bandwidth_factor
    if factor is None:
        factor = 0.25 if FLAGS.dataset != "cifar10" and FLAGS.features == "raw" else 1.0
    sigma = FLAGS.bandwidth if FLAGS.bandwidth is not None else factor * med
    log(f"median distance {'-' if med is None else f'{med:.4g}'}, bandwidth sigma {sigma:.4g}")
    ys = {"true": y}
    if FLAGS.random_labels:
        ys["random"] = np.random.default_rng(FLAGS.seed).integers(0, k, n)
    targets = np.hstack([np.eye(k)[v] for v in ys.values()])
    summary = dict(dataset=FLAGS.dataset, n=n, test_n=int(xt.shape[0]), features=FLAGS.features,
                   dim=int(f.shape[1]), median_distance=med, sigma=sigma, method=FLAGS.method, results={})
    if FLAGS.features == "random_conv":
        summary.update(conv_filters=FLAGS.conv_filters, conv_kernel=FLAGS.conv_kernel, conv_pool=FLAGS.conv_pool)
    solve_kw = dict(method=FLAGS.method, tol=FLAGS.tol, max_abs_tol=FLAGS.max_abs_tol,
                    maxiter=FLAGS.maxiter, progress=log)
    t = time.time()
    kmat, sol = kernels.interpolate(f, targets, sigma, **solve_kw)
    summary.update(solve_seconds=time.time() - t, iterations=sol.iterations, max_abs_residual=sol.residual_max,
                   relative_residual=sol.residual_rel, jitter=getattr(kmat, "jitter", 0.0),
                   interpolation_seconds=time.time() - t_all)
    log(f"solved K alpha = Y for {list(ys)} labels: {sol.iterations} iterations, max |K alpha - Y| "
        f"{sol.residual_max:.2e}, relative {sol.residual_rel:.2e}, {time.time() - t:.0f} s, peak {peak_gib():.2f} GiB")
    t = time.time()
    pred_test = kernels.predict(f, sol.alpha, ft, sigma)
    fitted = sol.fitted
    for j, (name, labels) in enumerate(ys.items()):
        cols = slice(j * k, (j + 1) * k)
        a = sol.alpha[:, cols]
        r = dict(train_error=float(np.mean(np.argmax(fitted[:, cols], 1) != labels)),
                 test_error=float(np.mean(np.argmax(pred_test[:, cols], 1) != yt)),
                 rkhs_norm=kernels.rkhs_norm(a, fitted[:, cols]),
                 max_abs_residual=float(np.abs(fitted[:, cols] - targets[:, cols]).max()))
        summary["results"][name] = r
        log(f"{name} labels: train error {r['train_error']:.4f}, test error {r['test_error']:.4f} "
            f"(true test labels), RKHS norm {r['rkhs_norm']:.4g}, max |K alpha - Y| {r['max_abs_residual']:.2e}")
    log(f"evaluation {time.time() - t:.0f} s")
    summary["solver"] = "mixed" if isinstance(kmat, kernels.LargeKernel) else "direct"
    if FLAGS.out:  # the interpolation results are safe before the ridge solve starts
        results.write_json(FLAGS.out, summary)
    if FLAGS.ridge:
        t = time.time()
        if isinstance(kmat, kernels.LargeKernel):
            log(f"ridge {FLAGS.ridge}: factoring K + ridge I (as long as the first factorization)")
            kmat = None  # free the first factor before the second
        _, sr = kernels.interpolate(f, targets[:, :k], sigma, ridge=FLAGS.ridge, kmat=kmat, **solve_kw)
        fit_r = sr.fitted
        r = dict(ridge=FLAGS.ridge, train_error=float(np.mean(np.argmax(fit_r, 1) != y)),
                 test_error=float(np.mean(np.argmax(kernels.predict(f, sr.alpha, ft, sigma), 1) != yt)),
                 rkhs_norm=kernels.rkhs_norm(sr.alpha, fit_r), iterations=sr.iterations,
                 max_abs_residual=sr.residual_max, seconds=time.time() - t)
        summary["results"]["true_ridge"] = r
        log(f"ridge {FLAGS.ridge}: train error {r['train_error']:.4f}, test error {r['test_error']:.4f}, "
            f"RKHS norm {r['rkhs_norm']:.4g} ({r['seconds']:.0f} s)")
    summary.update(total_seconds=time.time() - t_all, peak_rss_gib=peak_gib())
    log(f"total {summary['total_seconds']:.0f} s, peak memory (max RSS) {summary['peak_rss_gib']:.2f} GiB")
    if FLAGS.out:
        results.write_json(FLAGS.out, summary)  # atomic: no half-written file on interruption
        log(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    entry.run(main)
