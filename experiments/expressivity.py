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
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from rethinkgen_tf import entry, results, theory  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "cifar10", ["cifar10", "mnist", "fashion_mnist"], "Dataset.")
flags.DEFINE_string("data_dir", None, "Local copy of the dataset (default: tensorflow-datasets).")
flags.DEFINE_integer("n", None, "Use n random training images (default: all).", lower_bound=1)
flags.DEFINE_integer("test_n", None, "Use n random test images (default: all).", lower_bound=1)
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
flags.DEFINE_string("out", None, "Write the JSON summary here.")
flags.register_validator("knot", lambda v: 0.0 < v <= 0.5, "--knot must lie in (0, 0.5]")
flags.register_validator("depth", lambda v: v != 1, "--depth must be 0 (skip) or >= 2")

RADEMACHER_CROP = {"cifar10": 28, "mnist": None, "fashion_mnist": None}  # the paper's inputs: CIFAR-10 at 28x28


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def accuracy(pred, labels):
    return float(np.mean(np.argmax(pred, axis=1) == labels))


def theorem1(x, y, xt, yt, k, summary):
    n = x.shape[0]
    if FLAGS.labels == "random":
        targets = np.random.default_rng(FLAGS.seed).integers(0, k, n)
    else:
        targets = y
    log(f"checking {n} samples are distinct")
    theory.check_distinct(x, targets)
    t = time.time()
    fit = theory.fit_theorem1(x, theory.one_hot(targets, k), seed=FLAGS.seed, knot=FLAGS.knot, tries=FLAGS.tries)
    solve_s = time.time() - t
    d = fit.a.size
    log(f"Theorem 1 network: n={n} d={d} K={k}: {fit.num_weights} weights (= d + n + n*K; "
        f"{2 * n + d} = 2n + d per output); O(n) solve {solve_s:.2f} s")
    log(f"min gap {fit.min_gap:.3e}, Lemma 1 smallest eigenvalue {fit.lambda_min:.3e}, "
        f"max |A w - y| {fit.residual:.3e}")
    t = time.time()
    p = theory.predict_numpy(fit, x)
    r = dict(n=n, d=d, num_classes=k, labels=FLAGS.labels, weights=fit.num_weights, min_gap=fit.min_gap,
             lambda_min=fit.lambda_min, residual_recurrence=fit.residual, solve_seconds=solve_s,
             residual_network_float64=float(np.max(np.abs(p - theory.one_hot(targets, k)))),
             train_acc_numpy_float64=accuracy(p, targets),
             test_acc_numpy_float64=accuracy(theory.predict_numpy(fit, xt), yt),
             norms=theory.weight_norms(fit))
    log(f"float64 NumPy network: max |c(z_i) - y_i| = {r['residual_network_float64']:.3e}, "
        f"train acc {r['train_acc_numpy_float64']:.4f} ({FLAGS.labels} labels), "
        f"test acc {r['test_acc_numpy_float64']:.4f} (true test labels) [{time.time() - t:.1f} s]")
    log(f"weight norms: {r['norms']}")
    if FLAGS.keras:
        for dtype in ("float64", "float32"):
            t = time.time()
            model = theory.build_model(fit, x.shape[1:], dtype=dtype)
            assert model.count_params() == fit.num_weights
            r[f"train_acc_keras_{dtype}"] = accuracy(theory.keras_predict(model, x, dtype=dtype), targets)
            r[f"test_acc_keras_{dtype}"] = accuracy(theory.keras_predict(model, xt, dtype=dtype), yt)
            log(f"Keras {dtype} model ({model.count_params()} params): train acc "
                f"{r[f'train_acc_keras_{dtype}']:.4f}, test acc {r[f'test_acc_keras_{dtype}']:.4f} "
                f"[{time.time() - t:.1f} s]")
    if FLAGS.depth:
        t = time.time()
        model = theory.build_deep_model(fit, FLAGS.depth, x.shape[1:])
        pd = theory.keras_predict(model, x)
        r["deep"] = dict(depth=FLAGS.depth, weights=model.count_params(),
                         widths=[int(l.output.shape[-1]) for l in model.layers[3:-1]],
                         train_acc=accuracy(pd, targets),
                         max_diff_vs_depth2=float(np.max(np.abs(pd - p))))
        log(f"depth-{FLAGS.depth} Keras float64 model: {r['deep']}  [{time.time() - t:.1f} s]")
    summary["theorem1"] = r


def rademacher(x, summary):
    from rethinkgen_tf import models
    from rethinkgen_tf.data.preprocess import preprocess
    from rethinkgen_tf.data.sources import random_subset
    # random images (seed --seed + 1, as the --n subset; CIFAR-10 class folders are class-sorted)
    x, _ = random_subset(x, np.zeros(x.shape[0]), FLAGS.rademacher_n, FLAGS.seed + 1)
    n = x.shape[0]
    crop = RADEMACHER_CROP[FLAGS.dataset]
    xs = np.asarray(preprocess(x, crop=crop, standardize=True))
    res = {}
    for name in FLAGS.rademacher_models:
        lr = models.DEFAULT_LEARNING_RATE.get(models.family(name), 0.01)
        log(f"Rademacher estimate of {name} on {n} images (lr {lr}, <= {FLAGS.rademacher_epochs} epochs)")
        fp = theory.keras_fit_predict(lambda: models.build(name, xs.shape[1:], 2), epochs=FLAGS.rademacher_epochs,
                                      learning_rate=lr, seed=FLAGS.seed, progress=log)
        t = time.time()
        res[name] = theory.rademacher_estimate(fp, xs, FLAGS.rademacher_draws, FLAGS.seed, progress=log)
        res[name]["seconds"] = time.time() - t
        log(f"{name}: empirical Rademacher complexity >= {res[name]['estimate']:.4f}")
    res["theorem1"] = theory.rademacher_estimate(theory.theorem1_fit_predict, x.reshape(n, -1),
                                                 FLAGS.rademacher_draws, FLAGS.seed, progress=None)
    log(f"Theorem 1 class: {res['theorem1']['estimate']:.4f}")
    summary["rademacher"] = res


def check_rademacher_models():
    """Builds each --rademacher_models model once on the input shape it will get (a few seconds), so
    that a bad name or a model that cannot take these inputs stops the run before any work."""
    from rethinkgen_tf import models
    side = RADEMACHER_CROP[FLAGS.dataset] or 28
    shape = (side, side, 3 if FLAGS.dataset == "cifar10" else 1)
    for name in FLAGS.rademacher_models:
        if not models.known(name):
            raise ValueError(f"--rademacher_models: unknown model {name!r}; known: {models.NAMES}")
        try:
            models.build(name, shape, 2)
        except ValueError as e:
            raise ValueError(f"--rademacher_models: {name} on {shape[0]}x{shape[1]}x{shape[2]} images: "
                             f"{e}") from e


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
    if FLAGS.rademacher_models:
        check_rademacher_models()
    # random subsets (seed --seed + 1), kept in index order
    x, y, xt, yt, names = load_subsets(FLAGS.dataset, FLAGS.data_dir, FLAGS.n, FLAGS.test_n, FLAGS.seed + 1)
    log(f"{FLAGS.dataset}: {x.shape[0]} train, {xt.shape[0]} test images {x.shape[1:]}, raw pixels 0..255")
    if FLAGS.depth > x.shape[0] + 1:
        raise ValueError(f"--depth={FLAGS.depth} needs at least depth - 1 = {FLAGS.depth - 1} training images "
                         f"(one knot per ReLU layer), got {x.shape[0]}")
    summary = {"dataset": FLAGS.dataset, "seed": FLAGS.seed, "knot": FLAGS.knot}
    theorem1(x, y, xt, yt, len(names), summary)
    if FLAGS.rademacher_models:
        rademacher(x, summary)
    if FLAGS.out:
        results.write_json(FLAGS.out, summary)  # atomic: no half-written file on interruption
        log(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    entry.run(main)
