"""The random conv features' design, revalidated on held-out training images (never the test set).

    python -m rethinkgen_tf.kernels.design --data_dir=$CIFAR --out=docs/results/kernel/design_n4000.json

Each row is one kernel experiment (`kernel_experiment`) with `holdout` set: n training images fit,
`holdout` further training images of the same draw scored in place of the test images (the test
images are not read), its bandwidth and ridge chosen on a validation split of the n as always
(the bandwidth factors 0.25 to 2: the default grid less 1/8 and 1/(4 sqrt 2), never chosen).
The rows change one design choice at a time from the base (patch filters, 6x6 patches, a 3x3
pooling grid, the one-sided threshold 0.5): the filters (Gaussian directions), two-sided
thresholds, the threshold, the pooling grid, the patch size (the linear rows only for the first
two: each costs two eigendecompositions).  The table (`--out`) lists each row's
settings and its held-out errors: the Gaussian interpolant, the Gaussian ridge row, the linear
interpolant and the linear ridge row; each row's summary is written beside it
(`<out>.rows/<name>.json`) and read back on a rerun instead of run again.

    python -m rethinkgen_tf.kernels.design --data_dir=$CIFAR --ridge_sizes=1000,2000 --out=ridge.json

checks how a ridge chosen on a smaller fit carries over to the n-image fit (`ridge_sizes`): the
base row's features, one validation split of the n, the (bandwidth, ridge) chosen on fits of each
size m on a fine ridge grid, then the n-image fit with that ridge as chosen and times n / m (the
rule of --ridge_scaling=n), each scored on the held-out images.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from rethinkgen_tf import results
from rethinkgen_tf.kernels.config import KernelConfig
from rethinkgen_tf.kernels.experiment import kernel_experiment

BANDWIDTH_GRID = (0.25, 0.354, 0.5, 0.707, 1.0, 1.414, 2.0)  # the default grid less its two smallest factors
BASE = dict(conv_filters_from="patches", conv_kernel=6, conv_pool=3, conv_threshold=0.5, conv_two_sided=False)
ROWS = (
    ("patches", {}),
    ("gaussian", dict(conv_filters_from="gaussian")),
    ("two_sided_0.5", dict(conv_two_sided=True)),
    ("threshold_0.25", dict(conv_threshold=0.25)),
    ("threshold_1", dict(conv_threshold=1.0)),
    ("pool_2", dict(conv_pool=2)),
    ("pool_4", dict(conv_pool=4)),
    ("patch_5", dict(conv_kernel=5)),
)
LINEAR_ROWS = ("patches", "gaussian")  # the linear kernel's rows (two eigendecompositions each) only here


def row_of(name, summary) -> dict:
    r, lin = summary["results"], summary.get("linear") or {}
    keys = ("conv_filters_from", "conv_kernel", "conv_pool", "conv_threshold", "conv_two_sided")
    settings = {k: summary.get(k, "gaussian" if k == "conv_filters_from" else None) for k in keys}
    return dict(name=name, **settings, dim=summary["dim"], bandwidth_factor=summary["bandwidth_factor"],
                heldout_error=r["true"]["test_error"],
                heldout_error_ridge=r["true_ridge"]["test_error"] if "true_ridge" in r else None,
                ridge=r["true_ridge"]["ridge"] if "true_ridge" in r else None,
                heldout_error_linear=(lin.get("interpolation") or {}).get("test_error"),
                heldout_error_linear_ridge=(lin.get("ridge") or {}).get("test_error"),
                linear_ridge=(lin.get("ridge") or {}).get("ridge"),
                random_label_train_error=r["random"]["train_error"] if "random" in r else None)


def table_lines(rows) -> list:
    head = (f"{'row':<16}{'filters':>9}{'patch':>6}{'pool':>5}{'alpha':>6}{'sides':>6}{'dim':>7}"
            f"{'interp':>8}{'ridge':>8}{'lin':>8}{'lin rdg':>8}")
    lines = ["error (%) on training images held out of the fit (the test set unused); Gaussian kernel "
             "interpolant, Gaussian ridge row, linear interpolant, linear ridge row:", head]
    fmt = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731
    for r in rows:
        lines.append(f"{r['name']:<16}{r['conv_filters_from']:>9}{r['conv_kernel']:>6}{r['conv_pool']:>5}"
                     f"{r['conv_threshold']:>6g}{2 if r['conv_two_sided'] else 1:>6}{r['dim']:>7}"
                     f"{fmt(r['heldout_error']):>8}{fmt(r['heldout_error_ridge']):>8}"
                     f"{fmt(r['heldout_error_linear']):>8}{fmt(r['heldout_error_linear_ridge']):>8}")
    return lines


RIDGE_FINE = tuple(float(f"{v:.3g}") for v in np.logspace(-4, 1, 16))  # factors of 10^(1/3)


def ridge_sizes(cfg, sizes, val_n=1000, ridges=RIDGE_FINE, log=print) -> dict:
    """The ridge chosen at each fit size m in `sizes` (nested fits, one validation split of val_n
    of cfg.n training images), applied to the cfg.n-image fit as chosen and times n / m, scored on
    cfg.holdout held-out training images."""
    import scipy.linalg

    from rethinkgen_tf.data import sources
    from rethinkgen_tf.kernels.distances import accumulate
    from rethinkgen_tf.kernels.experiment import _holdout_subsets, feature_blocks
    from rethinkgen_tf.kernels.solvers import best, validate, validation_split
    x, y, xh, yh, names = _holdout_subsets(sources, cfg)
    k, n = len(names), len(x)
    block, blocks, _, standardize, _ = feature_blocks(x, xh, cfg.dataset, cfg.features, cfg.preprocess,
                                                      seed=cfg.seed, **cfg.conv)
    d = accumulate(block, blocks, n, len(xh), standardize, progress=log)
    med = d.median_distance(seed=cfg.seed)
    val_idx, rest = validation_split(n, val_n, n - val_n, cfg.seed)
    order = rest[np.random.default_rng([cfg.seed, 5]).permutation(len(rest))]  # nested fits: prefixes of it
    all_idx = np.arange(n)
    d_all, d_h = d.gather(all_idx, all_idx), d.test.astype(np.float64)
    onehot = np.eye(k)[y]

    def heldout_error(sigma, ridge):
        c = -0.5 / (sigma * sigma)
        a = np.exp(d_all * c)
        a[np.diag_indices(n)] += ridge
        alpha = scipy.linalg.cho_solve(scipy.linalg.cho_factor(a, lower=True, check_finite=False), onehot)
        return float(np.mean(np.argmax(np.exp(d_h * c) @ alpha, 1) != yh))

    rows = []
    for m in sizes:
        fit_idx = np.sort(order[:m])
        curve = validate(d, y, k, val_idx, fit_idx, [f * med for f in cfg.bandwidth_grid], list(ridges), None)
        r = best(curve, False)
        row = dict(fit_n=m, factor=r["sigma"] / med, ridge=r["ridge"], val_error=r["val_error"],
                   heldout_error_as_chosen=heldout_error(r["sigma"], r["ridge"]),
                   heldout_error_scaled=heldout_error(r["sigma"], r["ridge"] * n / m), scaled_ridge=r["ridge"] * n / m)
        rows.append(row)
        log(f"fit {m}: sigma {row['factor']:.3g} x median, ridge {row['ridge']:g} (validation {row['val_error']:.4f});"
            f" at n = {n}: held-out error {row['heldout_error_as_chosen']:.4f} as chosen, "
            f"{row['heldout_error_scaled']:.4f} with ridge x n / m = {row['scaled_ridge']:.3g}")
    return dict(n=n, holdout=len(xh), val_n=val_n, ridges=list(ridges), median_distance=med, rows=rows)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m rethinkgen_tf.kernels.design", description=__doc__.split("\n")[0])
    ap.add_argument("--data_dir", required=True)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--holdout", type=int, default=2000)
    ap.add_argument("--conv_filters", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", default=",".join(name for name, _ in ROWS), help="names of the rows to run")
    ap.add_argument("--ridge_sizes", default="", help="fit sizes for the ridge check (ridge_sizes) instead of "
                    "the design table")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    wanted = a.rows.split(",")
    unknown = [w for w in wanted if w not in dict(ROWS)]
    if unknown:
        sys.exit(f"error: --rows: unknown {', '.join(unknown)} (known: {', '.join(dict(ROWS))})")
    command = "python -m rethinkgen_tf.kernels.design " + " ".join(argv if argv is not None else sys.argv[1:])
    if a.ridge_sizes:
        t0 = time.time()
        cfg = KernelConfig(dataset=a.dataset, data_dir=a.data_dir, n=a.n, holdout=a.holdout, features="random_conv",
                           conv_filters=a.conv_filters, seed=a.seed, bandwidth_grid=BANDWIDTH_GRID, **BASE)
        check = ridge_sizes(cfg, [int(m) for m in a.ridge_sizes.split(",")])
        results.write_json(a.out, dict(command=command, base=BASE, conv_filters=a.conv_filters, seed=a.seed, **check,
                                       seconds=time.time() - t0))
        return
    rows_dir = str(a.out) + ".rows"
    os.makedirs(rows_dir, exist_ok=True)
    rows, t0 = [], time.time()
    for name, change in ROWS:
        if name not in wanted:
            continue
        path = os.path.join(rows_dir, f"{name}.json")
        summary = results.read_json(path) if os.path.exists(path) else {}
        if "total_seconds" not in summary:  # absent, or written before its ridge row: run (or resume) it
            cfg = KernelConfig(dataset=a.dataset, data_dir=a.data_dir, n=a.n, holdout=a.holdout,
                               features="random_conv", conv_filters=a.conv_filters, seed=a.seed,
                               bandwidth_grid=BANDWIDTH_GRID, linear=name in LINEAR_ROWS, **dict(BASE, **change),
                               out=path)
            summary = kernel_experiment(cfg)
        rows.append(row_of(name, summary))
        for line in table_lines(rows)[-1:]:
            print(line, flush=True)
    lines = table_lines(rows)
    print("\n".join(lines))
    results.write_json(a.out, dict(command=command, dataset=a.dataset, n=a.n, holdout=a.holdout,
        conv_filters=a.conv_filters, seed=a.seed, base=BASE, rows=rows, table=lines,
        seconds=time.time() - t0))


if __name__ == "__main__":
    main()
