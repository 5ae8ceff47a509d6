"""The kernel experiment (experiments/kernel.py): `kernel_experiment(cfg)`, a KernelConfig in,
the summary dict out (and its JSON, if asked).

It chooses the bandwidth and the ridge on a validation split of the training images
(solvers.validate), never on the test images; with `holdout`, held-out training images stand in
for the test images too (for design choices: the test images play no part at all).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import time
from typing import Callable, Optional

import numpy as np

from rethinkgen_tf.kernels import features as kf
from rethinkgen_tf.kernels import solvers
from rethinkgen_tf.kernels.config import DEFAULT_RIDGE, LINEAR_MAX_N, MIN_VAL, VAL_FRACTION, VAL_N, KernelConfig
from rethinkgen_tf.kernels.solvers import (
    LargeKernel,
    _curve_table,
    _log,
    best,
    predict,
    rkhs_norm,
    validate,
    validation_split,
)


def _quiet(msg):
    pass


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (max RSS), GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def feature_blocks(x, xt, dataset="fashion_mnist", features="raw", preprocess="auto", conv_filters=kf.FILTERS,
                   conv_kernel=kf.PATCH, conv_pool=kf.POOL, conv_threshold=kf.THRESHOLD, conv_two_sided=False,
                   conv_whiten=True, conv_standardize=True, conv_block=kf.FILTER_BLOCK,
                   conv_filters_from=kf.DEFAULT_FILTERS_FROM, conv_filter_seed=None, seed=0):
    """The kernel's inputs for training images x and test images xt (pixels 0..255), as blocks:
    (features, blocks, dim, standardize, settings): features(b) [len(x) + len(xt), d_b] float32 is
    block b (training images first), standardize whether kernels.distances.accumulate standardizes
    each feature, settings the choices made (for the summary and the state's configuration).

    raw: one block, kernels.features.raw_features with `preprocess` ("auto": standardize on
    CIFAR-10, scale on MNIST-format data).  random_conv: kernels.features.RandomConvFeatures (its
    statistics and patch filters from x only) in blocks of conv_block filters.  The settings hold
    conv_filters_from only for patch filters and conv_filter_seed only when it is not seed, so a Gaussian
    run's settings (and the identity of its state and summary) are those of the runs made before
    either existed."""
    images = np.concatenate([x, xt])
    if features == "raw":
        pre = preprocess if preprocess != "auto" else _record(dataset).normalization
        return (lambda b: kf.raw_features(images, pre)), 1, int(np.prod(x.shape[1:])), False, dict(preprocess=pre)
    try:
        fm = kf.RandomConvFeatures(x, conv_filters, conv_kernel, conv_pool, conv_threshold, conv_two_sided,
                                   conv_whiten, seed=seed, filters_from=conv_filters_from,
                                   filter_seed=conv_filter_seed)
    except ValueError as e:
        raise ValueError(f"--conv_kernel={conv_kernel}, --conv_pool={conv_pool}: {e}") from None

    def block(b):
        return fm.transform(images, b * conv_block, min((b + 1) * conv_block, conv_filters))
    settings = dict(conv_filters=conv_filters, conv_kernel=conv_kernel, conv_pool=conv_pool,
                    conv_threshold=conv_threshold, conv_two_sided=conv_two_sided, conv_whiten=conv_whiten,
                    conv_standardize=conv_standardize, conv_block=conv_block)
    if conv_filters_from != "gaussian":
        settings["conv_filters_from"] = conv_filters_from
    if conv_filter_seed is not None and conv_filter_seed != seed:  # its default is seed: the same run
        settings["conv_filter_seed"] = conv_filter_seed
    return block, -(-conv_filters // conv_block), fm.dim, conv_standardize, settings


def _start_from(source, state_dir, config, blocks, n, t, standardize, log):
    """kernel_experiment's start_from: a state_dir without a checkpoint begins as the smaller
    run's finished state in `source` (checked to be the same run but for fewer, whole blocks)."""
    from rethinkgen_tf.kernels import distances as kd
    if os.path.exists(os.path.join(state_dir, kd.PROGRESS)):
        log(f"--start_from={source}: {state_dir} holds a checkpoint already, resuming that")
        return
    src = kd.read_json(os.path.join(source, "config.json"), "pass another --start_from")
    f, b = src.get("conv_filters"), src.get("blocks")
    ours = kd.full_config(config, blocks, n, t, standardize)
    same = dict(ours, conv_filters=f, blocks=b) == src
    if not (same and isinstance(f, int) and 0 < f < config["conv_filters"] and f == b * config["conv_block"]):
        diff = sorted(k for k in set(src) | set(ours) if src.get(k) != ours.get(k) and k not in ("conv_filters",
                                                                                                 "blocks"))
        why = (f"it differs in {', '.join(diff[:4])}" if diff else
               f"its {f} filters are not fewer than {config['conv_filters']} in whole blocks of "
               f"{config['conv_block']}")
        raise ValueError(f"--start_from={source} is not this run with fewer filters: {why}")
    t0 = time.time()
    done = kd.start_from(state_dir, source, src, ours)
    log(f"  started from {source}: {done} blocks ({f} filters) copied in {time.time() - t0:.0f} s")


def _curve_path(out, filters, suffix=None):
    """out's name plus ".curve<filters>" (or plus `suffix`), its extension kept."""
    root, ext = os.path.splitext(str(out))
    return f"{root}.curve{filters}{ext}" if suffix is None else root + suffix


def _curve_row(filters, summary, out=None) -> dict:
    res = summary["results"]
    row = dict(filters=filters, dim=summary.get("dim"), sigma=summary["sigma"],
               bandwidth_factor=summary.get("bandwidth_factor"), test_error=res["true"]["test_error"],
               train_error=res["true"]["train_error"], out=out)
    v = summary.get("validation")
    row["val_error"] = v["interpolation"]["val_error"] if v and v.get("interpolation") else None
    if "random" in res:
        row.update(random_train_error=res["random"]["train_error"], random_test_error=res["random"]["test_error"])
    if "true_ridge" in res:
        row.update(ridge=res["true_ridge"]["ridge"], ridge_test_error=res["true_ridge"]["test_error"])
    return row


def _curve(curve_filters, skipped, curve_outs, state_dir, point_cfg, summary, log, progress) -> list:
    """kernel_experiment, step 4: each curve point's row (its summary read from its out when there,
    else computed from its snapshot state), then the largest run's row."""
    from rethinkgen_tf import results
    from rethinkgen_tf.kernels import distances as kd
    rows = []
    for f in curve_filters:
        p = curve_outs[f]
        if os.path.exists(p):
            point = kd.read_json(p, "delete it to rerun that point")
            if point.get("conv_filters") != f or "results" not in point:
                raise results.StateError(f"{p} is not the summary of a {f}-filter run; delete it to rerun that point")
            log(f"curve: {f} filters: read {p}")
        elif f in skipped:
            log(f"curve: {f} filters: no snapshot (the accumulation resumed past it); run it with "
                f"--conv_filters={f} --out={p}")
            continue
        else:
            log(f"curve: {f} filters, from the snapshot of the first {f} filters")
            point = kernel_experiment(point_cfg.replace(conv_filters=f, out=p,
                                                        state_dir=os.path.join(state_dir, f"curve{f}")), progress)
        rows.append(_curve_row(f, point, p))
        log(f"curve: {f} filters: test error {rows[-1]['test_error']:.4f}")
    rows.append(_curve_row(summary["conv_filters"], summary))
    return rows


_SAME_RUN = ("dataset", "n", "test_n", "features", "preprocess", "seed", "data_sha1", "conv_kernel", "conv_pool",
             "conv_threshold", "conv_two_sided", "conv_whiten", "conv_standardize", "conv_block", "holdout")
# settings a summary holds only when not their default (so that earlier summaries, made before they
# existed, keep their identity): compared with these defaults where a summary lacks them
_SAME_RUN_DEFAULTS = {"conv_filters_from": "gaussian", "conv_filter_seed": None}


def _read_summary(path, needs, what) -> dict:
    """The kernel experiment's summary (its --out) in `path`, holding the keys `needs`; else a
    ValueError of one line: `what`, then why."""
    from rethinkgen_tf.kernels import distances as kd
    try:
        s = kd.read_json(path, "")
    except FileNotFoundError:
        why = "no such file"
    except OSError:
        why = "unreadable"
    except ValueError:  # results.StateError
        why = "damaged"
    else:
        if all(k in s for k in needs):
            return s
        why = "no " + ", ".join(k for k in needs if k not in s)
    raise ValueError(f"{what}: {why}")


def _read_curve_with(curve_with) -> list:
    """curve_with's summaries, read before any work: each a random conv kernel experiment's summary."""
    return [_read_summary(p, ("results", "conv_filters"),
                          f"--curve_with={p} is not the summary (--out) of a random conv kernel experiment")
            for p in curve_with]


def _check_same_run(summary, others, names):
    if summary.get("features") != "random_conv":
        raise ValueError("--curve_with needs --features=random_conv")
    for s, name in zip(others, names):
        diff = [k for k in _SAME_RUN if k in s and k in summary and s[k] != summary[k]]
        diff += [k for k, v in _SAME_RUN_DEFAULTS.items() if s.get(k, v) != summary.get(k, v)]
        if diff:
            raise ValueError(f"--curve_with={name} is not this run with other filter counts: it differs in "
                             + ", ".join(diff[:4]))


def merge_curves(summary, others, names) -> list:
    """The test error against the filter count of `summary` (its "curve", else its own row) joined
    with those of `others`, summaries of the same run with other filter counts (curve_with, named
    by `names`): one row per filter count, summary's own first, by ascending filters.  A summary
    of another run (data, seed, conv settings but the filter count) is a ValueError of one line."""
    _check_same_run(summary, others, names)
    rows = {}
    for s, name in [(summary, None)] + list(zip(others, names)):
        for row in s.get("curve") or [_curve_row(s["conv_filters"], s, name)]:
            rows.setdefault(row["filters"], row)
    return [rows[f] for f in sorted(rows)]


def _redraw_curve(out, curve_with, log) -> dict:
    """kernel_experiment(plot_only=True): out's curve joined with curve_with's, saved and drawn."""
    from rethinkgen_tf import results
    if not out:
        raise ValueError("--plot_only needs --out (the summary whose curve it draws)")
    summary = _read_summary(out, ("results",), f"--plot_only: {out} is not a kernel experiment's summary "
                                               "(run the experiment first)")
    summary["curve"] = merge_curves(summary, _read_curve_with(curve_with), curve_with)
    summary["curve_figure"] = _curve_figure(summary, out, log)
    results.write_json(out, summary)
    log(f"wrote {out}")
    return summary


def _curve_figure(summary, out, log) -> str:
    from rethinkgen_tf import plots
    path = _curve_path(out, None, ".curve.png")
    plots.kernel_curve(summary, path)
    log(f"drew {path}")
    return path


# --------------------------------------------------------------------------- memory
def _record(dataset):
    """The dataset's record (rethinkgen_tf.data.datasets): its sizes, pixels and normalization."""
    from rethinkgen_tf.data import datasets
    return datasets.BY_NAME[dataset]

BASE_BYTES = 2**30  # Python, NumPy, TensorFlow (the entry point imports it) and the dataset


def memory_estimate(n, t, dim_block, method="auto", fit_n=0) -> dict:
    """Bytes the kernel experiment holds at its peak, by part, for n training and t test images
    and feature blocks of dim_block features: the squared distances (the lower triangle of an
    n x n float32 array, and t x n) throughout, plus the largest of the phases that follow one
    another: a feature block (the block, its centered copy, a row block of products), the
    validation fits (fit_n^2 float64 matrices: distances, kernel, its factor, its inverse), and
    the solver: direct, K and its Cholesky factor in float64; mixed, the float32 factor's lower
    triangle and float64 row blocks of K.  "peak" is their sum with the base."""
    method = ("direct" if n <= 12000 else "mixed") if method == "auto" else method
    phases = {
        "a feature block": 3 * 4 * (n + t) * dim_block + 4 * 2048 * n,
        "the validation fits": 32 * fit_n * fit_n,
        f"the {method} solver": 16 * n * n if method == "direct" else 2 * n * n + 4 * 8 * 2048 * n,
    }
    largest = max(phases, key=phases.get)
    parts = {"the distances": 2 * n * n + 4 * n * t, largest: phases[largest]}
    return dict(parts=parts, method=method, peak=BASE_BYTES + sum(parts.values()))


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit if lower."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                limit = f.read().strip()
        except OSError:
            continue
        if limit.isdigit():
            total = min(total, int(limit))
    return total


def _check_memory(n, t, features, method, val_fit_n, conv, dataset, shape=None) -> str:
    """The line that says how much memory the experiment needs; ValueError (one line, what to reduce)
    if that is more than the machine has."""
    if features == "raw":
        d = _record(dataset)
        dim_block = int(np.prod(shape)) if shape is not None else d.image_size ** 2 * d.channels
    else:
        dim_block = conv["conv_pool"] ** 2 * (2 if conv["conv_two_sided"] else 1) * min(conv["conv_block"],
                                                                                          conv["conv_filters"])
    est = memory_estimate(n, t, dim_block, method, min(val_fit_n, n))
    gib = 2.0 ** 30
    parts = ", ".join(f"{k} {v / gib:.1f}" for k, v in est["parts"].items())
    have = machine_memory()
    if est["peak"] > have:
        fix = ["--n", "--test_n"]
        if est["method"] == "direct" and memory_estimate(n, t, dim_block, "mixed", min(val_fit_n, n))["peak"] <= have:
            fix.append("--method=mixed")
        if "a feature block" in est["parts"] and features == "random_conv":
            fix.append("--conv_block")
        if "the validation fits" in est["parts"]:
            fix.append("--val_fit_n")
        raise ValueError(f"n = {n} training and {t} test images need about {est['peak'] / gib:.1f} GiB of memory "
                         f"({parts} GiB), more than the {have / gib:.1f} GiB of this machine; reduce "
                         + ", ".join(fix[:-1]) + " or " + fix[-1])
    return f"memory: about {est['peak'] / gib:.1f} GiB of {have / gib:.1f} GiB ({parts} GiB, {est['method']} solver)"


def _data_sha1(*arrays) -> str:
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def kernel_experiment(cfg: KernelConfig, progress: Optional[Callable] = _log) -> dict:
    """experiments/kernel.py: minimum-norm Gaussian-kernel interpolation of a random subset of
    cfg.n training images (seed cfg.seed + 1, kept in index order; None: all) of cfg.dataset (read
    from cfg.data_dir, None: tensorflow-datasets), tested on cfg.test_n test images; or, with
    cfg.holdout, on that many further training images of the same draw (held out of the n by a
    seeded split; the test images play no part: the mode for design choices).

    1. Features (feature_blocks) folded block by block into squared distances
       (kernels.distances.accumulate), checkpointed in state_dir (default: out + ".state"; None
       without out) every checkpoint_minutes, resumed by a rerun; removed at the end unless
       keep_state.
    2. Bandwidth and ridge chosen on a validation split of the training images (validate): val_n
       of them held out (None: min(5,000, n / 5); 0, or a default below 20: no search, the
       defaults instead: bandwidth_factor 0.25 for raw MNIST-format pixels and 1 otherwise,
       ridge 1e-3), fit on up to val_fit_n of the others (val_loo: no held-out split, the
       leave-one-out error over up to val_fit_n training images instead), for sigma = each factor
       of bandwidth_grid times the median pairwise distance and ridge 0 (interpolation) and each of
       ridge_grid.  `bandwidth` (sigma) or `bandwidth_factor` fix the bandwidth, `ridge` the ridge
       (0: no ridge row); what is fixed is not searched.  ridge_scaling "n": a ridge chosen on the
       fit_n validation-fit images is applied to the n-image fit times n / fit_n (the ridge of the
       summed squared loss grows with the number of terms; the bandwidth, a factor of the median
       distance, carries over as it is).
    3. The interpolant on all n images with the chosen bandwidth (interpolate: method, tol,
       max_abs_tol, maxiter), for the one-hot true labels and, if random_labels, uniform random
       labels (seed `seed`) together; then, unless the ridge is 0, (K + ridge I) alpha = Y for the
       true labels with the chosen (bandwidth, ridge).
    3b. linear (n up to LINEAR_MAX_N): the linear kernel of the same (centered) features,
       recovered from the squared distances: its interpolant when the features outnumber the
       images, and its ridge row with the ridge (a fraction of the matrix's mean diagonal, from
       linear_ridge_grid) chosen on the same validation split (summary["linear"]).
    4. curve_filters (random_conv, each a multiple of conv_block below conv_filters): the test
       error against the filter count from the same accumulation.  When the first F filters' blocks
       are in, their distances are saved as the finished state of the run with conv_filters=F
       (state_dir/curveF); after step 3 each is evaluated as that run (steps 2-3, interpolant and
       random labels, ridge 0) with out = out's name plus ".curveF", and summary["curve"] lists
       each F's filters, test error and choices, with the largest run's row last; a curve point
       whose out exists is read, not rerun.  With out, the curve is drawn into out's name plus
       ".curve.png".

    start_from: the finished state (state_dir of a run with keep_state) of the same run with fewer
    filters, a multiple of conv_block: a fresh accumulation starts after its blocks instead of
    from block 0 (the paper's 32,000 filters after a 16,384-filter run, say).

    curve_with: summaries (out) of the same run with other filter counts (the run start_from
    continues, say): their curves (or their own rows) join this run's curve and its figure
    (merge_curves; needs out).  plot_only: no run; out's summary gets the curve joined with
    curve_with's, is rewritten, and its curve is drawn.

    Returns the summary (dataset, n, test_n, features and their settings, dim, median_distance,
    sigma, bandwidth, validation (the curve and the choices), method, solver, iterations,
    residuals, jitter, accumulate (blocks, timings), timings, peak_rss_gib, results: {true,
    random, true_ridge}: train_error, test_error, rkhs_norm, max_abs_residual; linear); writes it
    as JSON to `out` if given (atomically), once before the ridge solve and once at the end.
    Checks cfg (when it is made) and `out` before any work."""
    from rethinkgen_tf import results
    from rethinkgen_tf.data import sources
    from rethinkgen_tf.kernels.distances import StateLock, accumulate
    if not isinstance(cfg, KernelConfig):
        raise TypeError(f"kernel_experiment takes a KernelConfig, not {type(cfg).__name__}")
    log = progress or _quiet
    out, features, conv_block = cfg.out, cfg.features, cfg.conv_block
    if cfg.plot_only:
        return _redraw_curve(out, cfg.curve_with, log)
    if cfg.start_from is not None and not os.path.isfile(os.path.join(cfg.start_from, "config.json")):
        raise ValueError(f"--start_from={cfg.start_from} holds no state (config.json); pass the --state_dir of a "
                         "finished run kept with --keep_state")
    others = _read_curve_with(cfg.curve_with)
    results.check_out(out)
    state_dir = cfg.state_dir
    if state_dir is None and out:
        state_dir = str(out) + ".state"
    curve_outs = {f: _curve_path(out, f) for f in cfg.curve_filters}
    for p in curve_outs.values():
        results.check_out(p)
    if state_dir and os.path.exists(state_dir) and not os.path.isdir(state_dir):
        raise ValueError(f"--state_dir={state_dir} is a file; pass a directory")
    t_all = time.time()
    dataset, seed, asked_n = cfg.dataset, cfg.seed, cfg.n
    # random subsets (seed + 1), kept in index order
    if cfg.data_dir is None:  # tensorflow-datasets: the sizes are known
        n0, t0 = _record(dataset).num_train, _record(dataset).num_test
        t_est = cfg.holdout if cfg.holdout else min(cfg.test_n or t0, t0)
        _check_memory(min(asked_n or n0, n0), t_est, features, cfg.method, cfg.val_fit_n, cfg.conv, dataset)
    if cfg.holdout:
        x, y, xt, yt, names = _holdout_subsets(sources, cfg)
    else:
        x, y, xt, yt, names = sources.load_subsets(dataset, cfg.data_dir, asked_n, cfg.test_n, seed + 1)
    k, n, t = len(names), x.shape[0], xt.shape[0]
    for name, asked, got, split in (("n", asked_n, n, "training"), ("test_n", cfg.test_n, t, "test")):
        if asked is not None and asked > got:
            log(f"--{name}={asked} is more than the {got} {split} images: using all {got}")
    log(_check_memory(n, t, features, cfg.method, cfg.val_fit_n, cfg.conv, dataset, x.shape[1:]))
    if n < 2 and cfg.bandwidth is None:
        raise ValueError(f"{n} training image has no median distance to set the bandwidth from; pass --bandwidth")
    if cfg.val_n and cfg.val_n > n - 1:
        raise ValueError(f"--val_n={cfg.val_n} leaves no training image of the {n} to fit the validation models to")
    log(f"{dataset}: {n} train, {t} {'held-out training' if cfg.holdout else 'test'}, features={features}")
    block, blocks, dim, standardize, settings = feature_blocks(x, xt, dataset, features, cfg.preprocess, seed=seed,
                                                               **cfg.conv)
    config = dict(version=1, dataset=dataset, data_sha1=_data_sha1(x, y, xt, yt), seed=seed, features=features,
                  **settings)
    if cfg.holdout:
        config["holdout"] = cfg.holdout
    summary = dict(dataset=dataset, n=n, test_n=t, features=features, seed=seed, data_sha1=config["data_sha1"],
                   **settings, dim=dim, method=cfg.method, state_dir=state_dir, results={})
    if cfg.holdout:
        summary["holdout"] = cfg.holdout  # test_error below is the error on these held-out training images
    if cfg.ridge_scaling != "none":
        summary["ridge_scaling"] = cfg.ridge_scaling
    if others:
        _check_same_run(summary, others, cfg.curve_with)  # another run's summary: one line, before any work
    with StateLock(state_dir) if state_dir else contextlib.nullcontext():
        t0 = time.time()
        log(f"squared distances: {blocks} block(s) of {dim}-dimensional features"
            + (f" ({conv_block} filters each)" if features == "random_conv" else ""))
        if cfg.start_from is not None:
            _start_from(cfg.start_from, state_dir, config, blocks, n, t, standardize, log)
        todo = [f for f in cfg.curve_filters if not os.path.exists(curve_outs[f])]
        snapshots = {f // conv_block: (os.path.join(state_dir, f"curve{f}"), dict(config, conv_filters=f))
                     for f in todo}
        dists = accumulate(block, blocks, n, t, standardize, state_dir, config, 60.0 * cfg.checkpoint_minutes,
                           progress=progress, snapshots=snapshots)
        skipped = [f for f in todo if f // conv_block in dists.skipped_snapshots]
        summary["accumulate"] = dict(blocks=blocks, resumed_after=dists.blocks_resumed, seconds=time.time() - t0,
                                     **dists.timing)
        log(f"distances done ({time.time() - t0:.0f} s, peak {peak_rss_gib():.2f} GiB)")
        med = dists.median_distance(seed=seed) if n > 1 else None  # n = 1: the bandwidth is given
        if med == 0 and cfg.bandwidth is None:
            why = (f"--conv_threshold={cfg.conv_threshold:g} leaves (almost) every feature 0: lower it"
                   if features == "random_conv" else "remove duplicate images")
            raise ValueError(f"most training images have the same features (median pairwise distance 0), so "
                             f"the bandwidth cannot be set from it; {why}, or pass --bandwidth")
        summary["median_distance"] = med
        summary.update(_choose(dists, y, k, med, cfg, log, progress))
        solve_kw = dict(method=cfg.method, tol=cfg.tol, max_abs_tol=cfg.max_abs_tol, maxiter=cfg.maxiter,
                        progress=progress)
        _solve(dists, y, yt, k, summary, cfg.random_labels, seed, solve_kw, out, t_all, log)
        linear = _linear(dists, y, yt, k, dim, cfg, log) if cfg.linear and features == "random_conv" else None
        if linear:
            summary["linear"] = linear
        if cfg.curve_filters:
            del dists  # 2 n^2 + 4 n t bytes: each curve point loads its own
            point = cfg.replace(ridge=0.0, keep_state=False, curve_filters=(), start_from=None, curve_with=(),
                                linear=False)
            summary["curve"] = _curve(cfg.curve_filters, skipped, curve_outs, state_dir, point, summary, log,
                                      progress)
        if cfg.curve_filters or cfg.curve_with:
            summary["curve"] = merge_curves(summary, others, cfg.curve_with)
            summary["curve_figure"] = _curve_figure(summary, out, log)
        summary.update(total_seconds=time.time() - t_all, peak_rss_gib=peak_rss_gib())
        log(f"total {summary['total_seconds']:.0f} s, peak memory (max RSS) {summary['peak_rss_gib']:.2f} GiB")
        if out:
            results.write_json(out, summary)  # atomic: no half-written file on interruption
            log(f"wrote {out}")
        if state_dir and not cfg.keep_state:
            shutil.rmtree(state_dir, ignore_errors=True)
            log(f"removed {state_dir} (--keep_state keeps it for reruns with other bandwidths and ridges)")
    return summary


def _holdout_subsets(sources, cfg):
    """cfg.holdout: the random subset of n + holdout training images (seed + 1, index order), split
    by a seeded permutation ([seed, 3]) into the n the experiment fits and the holdout images it is
    scored on in place of the test images; the test split is never read."""
    x, y, names = sources.load_arrays(cfg.dataset, cfg.data_dir, "train")
    if cfg.holdout >= x.shape[0]:
        raise ValueError(f"--holdout={cfg.holdout} leaves none of the {x.shape[0]} training images to fit")
    total = None if cfg.n is None or cfg.n + cfg.holdout >= x.shape[0] else cfg.n + cfg.holdout
    x, y = sources.random_subset(x, y, total, cfg.seed + 1)
    idx = np.random.default_rng([cfg.seed, 3]).permutation(x.shape[0])
    held, fit = np.sort(idx[:cfg.holdout]), np.sort(idx[cfg.holdout:])
    return x[fit], y[fit], x[held], y[held], names


def _val_sizes(cfg, n):
    """(held-out, fit) sizes of the validation split of n training images (0 held out: none, or
    leave-one-out with cfg.val_loo)."""
    default_n = min(VAL_N, int(VAL_FRACTION * n))
    v = cfg.val_n if cfg.val_n is not None else (default_n if default_n >= MIN_VAL else 0)
    if cfg.val_loo:
        v = 0
    return v, min(cfg.val_fit_n, n - v)


def _choose(dists, y, k, med, cfg, log, progress) -> dict:
    """The bandwidth of the interpolant and the (bandwidth, ridge) of the ridge row: what is fixed by
    an argument, the rest chosen on the validation split (kernel_experiment, step 2).  Returns the
    summary's sigma, bandwidth_factor, bandwidth (the choices and their sources), ridge and
    validation (None without a search).  With cfg.ridge_scaling "n" a validated ridge is applied
    times n / fit_n (the ridge row's "validated_ridge" keeps the one chosen)."""
    dataset, features, bandwidth, bandwidth_factor, ridge = (cfg.dataset, cfg.features, cfg.bandwidth,
                                                             cfg.bandwidth_factor, cfg.ridge)
    val_n, val_loo, seed = cfg.val_n, cfg.val_loo, cfg.seed
    bandwidth_grid, ridge_grid = cfg.bandwidth_grid, cfg.ridge_grid
    n = dists.n
    if bandwidth is not None:
        fixed, source = bandwidth, "--bandwidth"
    elif bandwidth_factor is not None:
        fixed, source = bandwidth_factor * med, "--bandwidth_factor"
    else:
        fixed, source = None, "validation"
    v, fit_n = _val_sizes(cfg, n)
    validation = None
    if (v or (val_loo and n > 1)) and (fixed is None or ridge is None):
        t = time.time()
        val_idx, fit_idx = validation_split(n, v, fit_n, seed)
        sigmas = [fixed] if fixed is not None else [f * med for f in bandwidth_grid]
        ridges = [0.0] + (list(ridge_grid) if ridge is None else [ridge] if ridge > 0 else [])
        log(f"validation: fitting {fit_n} training images, "
            + ("leave-one-out" if val_loo else f"{v} held out") + f"; {len(sigmas)} bandwidth(s) x "
            f"{len(ridges)} ridge(s)")
        rows = validate(dists, y, k, None if val_loo else val_idx, fit_idx, sigmas, ridges, progress)
        for r in rows:
            r["factor"] = r["sigma"] / med if med else None
        interp, reg = best(rows, True), best(rows, False)
        if interp is None and fixed is None:
            raise ValueError(f"no bandwidth of --bandwidth_grid gives a kernel matrix positive definite in float64 "
                             f"on the {fit_n} validation-fit images (duplicate images?); pass smaller factors")
        validation = dict(method="leave-one-out" if val_loo else "held-out", val_n=v, fit_n=fit_n, seed=seed,
                          curve=rows, interpolation=interp, ridge=reg, seconds=time.time() - t)
        for line in _curve_table(rows, med):
            log(line)
        log("chosen on validation: " + "; ".join(
            f"{name} sigma {r['sigma']:.4g}, ridge {r['ridge']:g} (validation error {r['val_error']:.4f})"
            for name, r in (("interpolation", interp), ("ridge row", reg)) if r is not None))
    elif val_n is None and 0 < n and (fixed is None or ridge is None):
        log(f"validation: n = {n} is too small to hold out {MIN_VAL} images (--val_n); default bandwidth"
            f"{'' if fixed is None else ' (fixed)'} and ridge")
    if fixed is None:
        if validation is not None:
            fixed = validation["interpolation"]["sigma"]
        else:
            factor = 0.25 if _record(dataset).normalization == "scale" and features == "raw" else 1.0
            fixed, source = factor * med, "default"
    if ridge == 0:
        ridge_row = None
    elif validation is not None and validation["ridge"] is not None:
        ridge_row = dict(sigma=validation["ridge"]["sigma"], ridge=validation["ridge"]["ridge"],
                         source="validation" if ridge is None else "--ridge")  # its bandwidth: chosen either way
        if cfg.ridge_scaling == "n" and ridge is None:
            ridge_row.update(validated_ridge=ridge_row["ridge"], ridge=ridge_row["ridge"] * n / validation["fit_n"],
                             source=f"validation x n / fit_n = {n} / {validation['fit_n']}")
    else:
        ridge_row = dict(sigma=fixed, ridge=DEFAULT_RIDGE if ridge is None else ridge,
                         source="default" if ridge is None else "--ridge")
    factor = fixed / med if med else None
    log(f"median distance {'-' if med is None else f'{med:.4g}'}; interpolation: bandwidth sigma {fixed:.4g} "
        f"({'-' if factor is None else f'{factor:.3g}'} x median, {source})"
        + ("" if ridge_row is None else f"; ridge row: ridge {ridge_row['ridge']:g}, sigma {ridge_row['sigma']:.4g} "
                                       f"({ridge_row['source']})"))
    return dict(sigma=fixed, bandwidth_factor=factor, bandwidth_source=source, ridge=ridge_row, validation=validation)


def _evaluate(sol, cols, targets, labels, pred_test, yt) -> dict:
    fitted, a = sol.fitted[:, cols], sol.alpha[:, cols]
    return dict(train_error=float(np.mean(np.argmax(fitted, 1) != labels)),
                test_error=float(np.mean(np.argmax(pred_test[:, cols], 1) != yt)),
                rkhs_norm=rkhs_norm(a, fitted), max_abs_residual=float(np.abs(fitted - targets[:, cols]).max()))


def _solve(dists, y, yt, k, summary, random_labels, seed, solve_kw, out, t_all, log):
    """kernel_experiment, step 3: the interpolant (true and random labels), then the ridge row."""
    from rethinkgen_tf import results
    n, sigma = dists.n, summary["sigma"]
    ys = {"true": y}
    if random_labels:
        ys["random"] = np.random.default_rng(seed).integers(0, k, n)
    targets = np.hstack([np.eye(k)[v] for v in ys.values()])
    t = time.time()
    kmat, sol = solvers.interpolate(dists, targets, sigma, **solve_kw)
    summary.update(solve_seconds=time.time() - t, iterations=sol.iterations, max_abs_residual=sol.residual_max,
                   relative_residual=sol.residual_rel, jitter=getattr(kmat, "jitter", 0.0),
                   solver="mixed" if isinstance(kmat, LargeKernel) else "direct",
                   interpolation_seconds=time.time() - t_all)
    log(f"solved K alpha = Y for {list(ys)} labels: {sol.iterations} iterations, max |K alpha - Y| "
        f"{sol.residual_max:.2e}, relative {sol.residual_rel:.2e}, {time.time() - t:.0f} s, "
        f"peak {peak_rss_gib():.2f} GiB")
    t = time.time()
    pred_test = predict(None, sol.alpha, dists.test, sigma)
    for j, (name, labels) in enumerate(ys.items()):
        r = summary["results"][name] = _evaluate(sol, slice(j * k, (j + 1) * k), targets, labels, pred_test, yt)
        log(f"{name} labels: train error {r['train_error']:.4f}, test error {r['test_error']:.4f} "
            f"(true test labels), RKHS norm {r['rkhs_norm']:.4g}, max |K alpha - Y| {r['max_abs_residual']:.2e}")
    log(f"evaluation {time.time() - t:.0f} s")
    if out:  # the interpolation results are safe before the ridge solve starts
        results.write_json(out, summary)
    row = summary["ridge"]
    if row is None:
        return
    t = time.time()
    if isinstance(kmat, LargeKernel) or row["sigma"] != sigma:
        log(f"ridge {row['ridge']:g}: {'factoring' if isinstance(kmat, LargeKernel) else 'building'} "
            f"K + ridge I (sigma {row['sigma']:.4g})")
        kmat = None  # free the first matrix (or factor) before the second
    _, sr = solvers.interpolate(dists, targets[:, :k], row["sigma"], ridge=row["ridge"], kmat=kmat, **solve_kw)
    r = _evaluate(sr, slice(0, k), targets, y, predict(None, sr.alpha, dists.test, row["sigma"]), yt)
    r.update(ridge=row["ridge"], sigma=row["sigma"], iterations=sr.iterations, seconds=time.time() - t)
    r["max_abs_residual"] = sr.residual_max  # of (K + ridge I) alpha = Y
    summary["results"]["true_ridge"] = r
    log(f"ridge {row['ridge']:g}, sigma {row['sigma']:.4g}: train error {r['train_error']:.4f}, test error "
        f"{r['test_error']:.4f}, RKHS norm {r['rkhs_norm']:.4g} ({r['seconds']:.0f} s)")


# --------------------------------------------------------------------------- the linear kernel
def centered_gram(d_ab, d_af, d_bf, d_ff_mean) -> np.ndarray:
    """<a - m, b - m> for all a, b from squared distances alone, m the mean of a reference set F:
    -(D_ab - mean_f D_af - mean_f D_bf + mean D_FF) / 2.  d_ab [A, B]; d_af [A, |F|], d_bf
    [B, |F|] (their row means are used); d_ff_mean the mean of D over F x F."""
    return -0.5 * (d_ab - d_af.mean(1)[:, None] - d_bf.mean(1)[None, :] + d_ff_mean)


def linear_fit(k_ff, y, ridges, rcond=1e-8):
    """The linear kernel's predictors on a centered Gram matrix k_ff [n, n] (so with an
    unpenalized intercept, the targets' mean) for one-hot y [n, C]: {ridge: alpha}, ridge 0 the
    minimum-norm least-squares fit (the interpolant when the centered features span n - 1
    dimensions; eigenvalues below rcond x the largest count as 0), the others (K + ridge I)^-1
    (Y - mean Y).  Returns (alphas, mean Y, rank)."""
    ym = y.mean(0)
    e, u = np.linalg.eigh(k_ff)
    keep = e > rcond * max(e.max(), 0.0)
    uy = u.T @ (y - ym)
    alphas = {}
    for r in ridges:
        if r == 0:
            alphas[r] = u[:, keep] @ (uy[keep] / e[keep, None])
        else:
            alphas[r] = u @ (uy / (np.maximum(e, 0.0) + r)[:, None])
    return alphas, ym, int(keep.sum())


def _linear(dists, y, yt, k, dim, cfg, log) -> dict:
    """kernel_experiment, step 3b: the linear kernel x . x' of the (centered, standardized)
    features, recovered from the squared distances (centered_gram): its minimum-norm interpolant
    and its ridge row, the ridge (a fraction of the matrix's mean diagonal, from
    cfg.linear_ridge_grid) chosen on the same validation split as the Gaussian kernel's.  None
    (the summary without "linear") outside 3 <= n <= LINEAR_MAX_N."""
    n = dists.n
    if n > LINEAR_MAX_N or n < 3:
        log(f"linear kernel: skipped (n = {n}; its rows need 3 <= n <= {LINEAR_MAX_N}: 16 n^2 bytes)")
        return None
    t0 = time.time()
    onehot = np.eye(k)
    v, fit_n = _val_sizes(cfg, n)
    out = dict(dim=dim, interpolates=dim >= n, ridge_grid=list(cfg.linear_ridge_grid))
    chosen = None
    if v and not cfg.val_loo:
        val_idx, fit_idx = validation_split(n, v, fit_n, cfg.seed)
        d_ff = dists.gather(fit_idx, fit_idx)
        d_vf = dists.gather(val_idx, fit_idx)
        mean_ff = d_ff.mean()
        k_ff = centered_gram(d_ff, d_ff, d_ff, mean_ff)
        k_vf = centered_gram(d_vf, d_vf, d_ff, mean_ff)
        scale = float(np.mean(np.diag(k_ff)))
        alphas, ym, _ = linear_fit(k_ff, onehot[y[fit_idx]], [r * scale for r in cfg.linear_ridge_grid])
        rows = [dict(ridge=r, val_error=float(np.mean(np.argmax(k_vf @ a + ym, 1) != y[val_idx])))
                for r, a in zip(cfg.linear_ridge_grid, alphas.values())]
        chosen = min(rows, key=lambda r: (r["val_error"], -r["ridge"]))
        out["validation"] = dict(val_n=v, fit_n=fit_n, curve=rows, ridge=chosen)
        log("linear kernel, validation error by ridge (x mean diagonal): "
            + ", ".join(f"{r['ridge']:g}: {r['val_error']:.4f}" for r in rows))
        del d_ff, d_vf, k_ff, k_vf
    all_idx = np.arange(n)
    d = dists.gather(all_idx, all_idx)
    mean_d = d.mean()
    k_tt = centered_gram(d, d, d, mean_d)
    k_test = centered_gram(dists.test.astype(np.float64), dists.test.astype(np.float64), d, mean_d)
    del d
    scale = float(np.mean(np.diag(k_tt)))
    ridge = chosen["ridge"] if chosen else None
    if ridge and cfg.ridge_scaling == "n":
        ridge *= n / fit_n
    alphas, ym, rank = linear_fit(k_tt, onehot[y], [0.0] + ([ridge * scale] if ridge else []))
    out.update(rank=rank, mean_diagonal=scale)
    for name, (r, a) in zip(("interpolation", "ridge"), alphas.items()):
        fitted = k_tt @ a + ym
        row = dict(train_error=float(np.mean(np.argmax(fitted, 1) != y)),
                   test_error=float(np.mean(np.argmax(k_test @ a + ym, 1) != yt)),
                   max_abs_residual=float(np.abs(fitted - onehot[y]).max()), rkhs_norm=rkhs_norm(a, fitted - ym))
        if name == "ridge":
            row.update(ridge=ridge, ridge_absolute=r)
        out[name] = row
        log(f"linear kernel, {name}{'' if name != 'ridge' else f' {ridge:g} x mean diagonal'}: train error "
            f"{row['train_error']:.4f}, test error {row['test_error']:.4f}, max |residual| "
            f"{row['max_abs_residual']:.2e}")
    out["seconds"] = time.time() - t0
    return out
