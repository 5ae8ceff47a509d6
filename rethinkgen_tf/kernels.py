"""Minimum-norm kernel interpolation (Zhang et al. 2017, Section 5; docs/paper.md#kernels).

Solve K alpha = Y for a Gaussian kernel K_ij = exp(-|x_i - x_j|^2 / (2 sigma^2)) and one-hot
targets Y [n, C]; predict f(x) = k(x, X) alpha.  alpha is the minimum-RKHS-norm interpolant,
its norm is sqrt(trace(alpha^T K alpha)) = sqrt(trace(alpha^T Y)) when K alpha = Y.  A ridge
term solves (K + ridge I) alpha = Y instead.

Two solvers (see docs/theory.md for the sizes and timings):

- ``direct``: float64 Cholesky of the dense matrix (n up to ~20,000: 8 n^2 bytes).
- ``mixed`` (large n): a float32 Cholesky of K (+ a jitter only if float32 needs one), computed
  in place in one n x n array of which only the lower triangle is touched (2 n^2 bytes resident:
  7.2 GB for n = 60,000), preconditions conjugate gradients on the exact K, whose products are
  recomputed in row blocks in float64 (nothing else stored).  This is mixed-precision
  iterative refinement: a few iterations bring the residual from float32 level to the
  tolerance.  All right-hand sides (true and random labels) are solved together.

The kernel's inputs are features x [n, ...] or, for features too large to hold (random
convolutional features with thousands of filters), squared distances accumulated over feature
blocks (`kernel_distances.Distances`, see rethinkgen_tf/kernel_distances.py); every matrix and
solver takes either.

The experiment of experiments/kernel.py is `kernel_experiment`: plain arguments in, the summary
dict out (and its JSON, if asked).  It chooses the bandwidth and the ridge on a validation split
of the training images (`validate`), never on the test images.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import resource
import shutil
import time
from typing import Callable, NamedTuple, Optional

import numpy as np

from rethinkgen_tf import kernel_features as kf
from rethinkgen_tf.kernel_distances import Distances, lazy_zeros


def _log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- kernel
def _features(x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"need features of shape [n, ...] with n >= 1, got {x.shape}")
    return x.reshape(x.shape[0], -1)


def sq_dists(a, b, dtype=np.float32, scale=1.0) -> np.ndarray:
    """scale * |a_i - b_j|^2 [len(a), len(b)], float64; the cross term in `dtype` BLAS."""
    a, b = _features(a), _features(b)
    na = np.einsum("ij,ij->i", a, a, dtype=np.float64) * scale
    nb = np.einsum("ij,ij->i", b, b, dtype=np.float64) * scale
    g = a.astype(dtype, copy=False) @ b.astype(dtype, copy=False).T
    d = np.multiply(g, -2.0 * scale, dtype=np.float64)  # in place from here: these blocks are large
    d += na[:, None]
    d += nb[None, :]
    return np.maximum(d, 0.0, out=d) if scale > 0 else np.minimum(d, 0.0, out=d)


def rbf(a, b, sigma, dtype=np.float32) -> np.ndarray:
    d = sq_dists(a, b, dtype, scale=-0.5 / (sigma * sigma))
    return np.exp(d, out=d)


def median_distance(x, sample=2000, seed=0) -> float:
    """Median pairwise Euclidean distance among `sample` random rows of x."""
    x = _features(x)
    if x.shape[0] < 2 or sample < 2:
        raise ValueError(f"the median pairwise distance needs at least 2 samples, got {min(x.shape[0], sample)}; "
                         "give the bandwidth explicitly")
    idx = np.random.default_rng(seed).choice(x.shape[0], min(sample, x.shape[0]), replace=False)
    d = sq_dists(x[idx], x[idx], np.float64)
    return float(np.sqrt(np.median(d[np.triu_indices(len(idx), 1)])))


# --------------------------------------------------------------------------- matrices
def _is_dists(x) -> bool:
    return isinstance(x, Distances)


def _inputs(x):
    """Features [n, ...] as [n, d], or accumulated squared distances (kernel_distances.Distances) as they are."""
    return x if _is_dists(x) else _features(x)


def kernel_rows(x, sigma, dtype=np.float64) -> Callable:
    """rows(i0, i1) -> K[i0:i1, :i1], a block row of the lower triangle (the diagonal block whole,
    unit diagonal), in `dtype`.  x: features [n, d] (float32 cross terms of the distances) or a
    kernel_distances.Distances (its lower triangle; the diagonal block is mirrored)."""
    c = -0.5 / (sigma * sigma)
    if _is_dists(x):
        def rows(i0, i1):
            k = np.multiply(x.train[i0:i1, :i1], c, dtype=dtype)
            upper = np.triu_indices(i1 - i0, 1)
            diag = k[:, i0:i1]
            diag[upper] = diag.T[upper]
            np.exp(k, out=k)
            diag[np.diag_indices(i1 - i0)] = 1.0
            return k
    elif dtype == np.float64:
        def rows(i0, i1):
            k = rbf(x[i0:i1], x[:i1], sigma)
            k[:, i0:i1][np.diag_indices(i1 - i0)] = 1.0
            return k
    else:
        # float32 arithmetic throughout (for the preconditioner, which needs no more; NumPy's
        # float32 exp is vectorized): 2-3x faster than the float64 rows
        x32 = x.astype(np.float32, copy=False)
        sq = np.einsum("ij,ij->i", x32, x32, dtype=np.float64).astype(np.float32)

        def rows(i0, i1):
            k = x32[i0:i1] @ x32[:i1].T
            k *= -2.0
            k += sq[i0:i1, None]
            k += sq[None, :i1]
            np.maximum(k, 0.0, out=k)
            k *= np.float32(c)
            np.exp(k, out=k)
            k[:, i0:i1][np.diag_indices(i1 - i0)] = 1.0
            return k
    return rows


class DenseKernel:
    """K in memory (float64), for the direct solver and small problems; x: features or Distances."""

    def __init__(self, x, sigma):
        x = _inputs(x)
        self.n, self.sigma = x.n if _is_dists(x) else x.shape[0], sigma
        if _is_dists(x):
            self.k = np.tril(x.train).astype(np.float64)
            self.k += np.tril(self.k, -1).T
            self.k *= -0.5 / (sigma * sigma)
            np.exp(self.k, out=self.k)
        else:
            self.k = rbf(x, x, sigma, np.float64)
        np.fill_diagonal(self.k, 1.0)

    def matvec(self, v):
        return self.k @ v


class KernelOperator:
    """K as an operator for large n: K V recomputed in row blocks (from the features, or from the
    stored squared distances), K itself never stored.

    Block i is K[rows_i, :end_i] (the lower triangle), used twice: B V and B^T V.  Entries are
    float64 (from features, the cross term of the distances is float32 BLAS), products float64."""

    def __init__(self, x, sigma, block=2048):
        x = _inputs(x)
        self.n, self.sigma = x.n if _is_dists(x) else x.shape[0], sigma
        self.rows = kernel_rows(x, sigma)
        self.bounds = list(range(0, self.n, block)) + [self.n]

    def row_blocks(self):
        for i0, i1 in zip(self.bounds[:-1], self.bounds[1:]):
            yield i0, i1, self.rows(i0, i1)

    def matvec(self, v):
        v = np.asarray(v, np.float64)
        out = np.zeros(v.shape, np.float64)
        for i0, i1, blk in self.row_blocks():
            out[i0:i1] += blk @ v[:i1]
            if i0:
                out[:i0] += blk[:, :i0].T @ v[i0:i1]
        return out


class Float32Cholesky:
    """Lower Cholesky factor L of K + jitter I in float32, K computed and factored in place.

    Blocked right-looking Cholesky on the lower triangle of one n x n float32 array: per block
    column, LAPACK spotrf on the diagonal block, a triangular solve for the panel, and the
    trailing update of the lower triangle as matrix products (where the time goes: n^3 / 3
    flops at GEMM speed).  Only the lower triangle is ever written, so about 2 n^2 bytes are
    resident (7.2 GB for n = 60,000).  x: features or Distances.  Raises np.linalg.LinAlgError if
    K + jitter I is not positive definite in float32."""

    def __init__(self, x, sigma, jitter=0.0, block=2048, progress=_log):
        from scipy.linalg import blas, lapack
        x = _inputs(x)
        n = self.n = x.n if _is_dists(x) else x.shape[0]
        t = time.time()
        a = self.a = lazy_zeros((n, n), np.float32)
        rows = kernel_rows(x, sigma, np.float32)
        for i0 in range(0, n, block):
            i1 = min(i0 + block, n)
            a[i0:i1, :i1] = rows(i0, i1)
            a[np.arange(i0, i1), np.arange(i0, i1)] = 1.0 + jitter
        if progress:
            progress(f"  kernel matrix (lower triangle, float32) {time.time() - t:.0f} s")
        t, total = time.time(), n ** 3 / 3
        buf = np.empty(block * n, np.float32)
        last = 0.0
        for k0 in range(0, n, block):
            k1 = min(k0 + block, n)
            diag, info = lapack.spotrf(np.array(a[k0:k1, k0:k1], order="F"), lower=1, clean=1, overwrite_a=1)
            if info:
                raise np.linalg.LinAlgError(
                    f"K + {jitter:g} I is not positive definite in float32 (pivot {k0 + info - 1})")
            a[k0:k1, k0:k1] = diag
            if k1 == n:
                break
            # panel: L21 = A21 L11^-T
            panel = blas.strsm(1.0, diag, np.array(a[k1:, k0:k1], order="F"), side=1, lower=1, trans_a=1,
                               overwrite_b=1)
            a[k1:, k0:k1] = panel
            # trailing lower triangle: A22 -= L21 L21^T, one block row at a time
            for j0 in range(k1, n, block):
                j1 = min(j0 + block, n)
                tmp = buf[:(j1 - j0) * (j1 - k1)].reshape(j1 - j0, j1 - k1)
                np.matmul(panel[j0 - k1:j1 - k1], panel[:j1 - k1].T, out=tmp)
                a[j0:j1, k1:j1] -= tmp
            done = 1 - (n - k1) ** 3 / n ** 3
            if progress and (done - last >= 0.1):
                last = done
                el = time.time() - t
                progress(f"  float32 Cholesky {100 * done:.0f}% ({el:.0f} s, {done * total / el / 1e9:.0f} GFLOP/s, "
                         f"~{el * (1 / done - 1):.0f} s left)")
        if progress:
            progress(f"  float32 Cholesky done: {time.time() - t:.0f} s")

    def solve(self, r):
        """(L L^T)^-1 r in float32 (the CG preconditioner).  a.T is L^T, Fortran-ordered: no copy."""
        from scipy.linalg import blas
        z = np.array(r, np.float32, order="F")
        z = blas.strsm(1.0, self.a.T, z, side=0, lower=0, trans_a=1, overwrite_b=1)   # L z1 = r
        z = blas.strsm(1.0, self.a.T, z, side=0, lower=0, trans_a=0, overwrite_b=1)   # L^T z = z1
        return np.asarray(z, np.float64)


class LargeKernel:
    """The `mixed` solver's state: the exact operator and the float32 factor of K + jitter I."""

    def __init__(self, x, sigma, jitter=0.0, block=2048, progress=_log):
        self.op = KernelOperator(x, sigma, block)
        self.n = self.op.n
        while True:
            try:
                self.factor = Float32Cholesky(x, sigma, jitter, block, progress)
                break
            except np.linalg.LinAlgError as e:
                if jitter >= 1e-2:
                    raise
                jitter = max(10 * jitter, 1e-6)
                if progress:
                    progress(f"  {e}; retrying with jitter {jitter:g}")
        self.jitter = jitter

    def matvec(self, v):
        return self.op.matvec(v)


# --------------------------------------------------------------------------- solvers
class Solution(NamedTuple):
    alpha: np.ndarray         # [n, C]
    fitted: np.ndarray        # K alpha [n, C] (without the ridge term): the fit at the training points
    residual_max: float       # max |K alpha + ridge alpha - Y|
    residual_rel: float       # ||K alpha + ridge alpha - Y||_F / ||Y||_F
    iterations: int
    seconds: float


def _solution(y, alpha, fitted, ridge, iterations, t):
    r = fitted + ridge * alpha - y
    return Solution(alpha, fitted, float(np.abs(r).max()), float(np.linalg.norm(r) / (np.linalg.norm(y) or 1.0)),
                    iterations, time.time() - t)


def solve_direct(kmat: DenseKernel, y, ridge=0.0) -> Solution:
    import scipy.linalg
    t = time.time()
    a = kmat.k.copy()  # factored in place: K and its factor, 16 n^2 bytes (memory_estimate)
    a[np.diag_indices(kmat.n)] += ridge
    try:
        factor = scipy.linalg.cho_factor(a, lower=True, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError as e:
        raise np.linalg.LinAlgError(
            f"the kernel matrix{' + ridge I' if ridge else ''} is not positive definite in float64 ({e}): "
            "identical samples, or a bandwidth so large that distinct samples look alike; remove duplicates, "
            "use a smaller bandwidth, a ridge term or the mixed solver (which adds a jitter)") from None
    alpha = scipy.linalg.cho_solve(factor, y, check_finite=False)
    return _solution(y, alpha, kmat.matvec(alpha), ridge, 0, t)


def pcg(matvec: Callable, y, precond: Optional[Callable] = None, ridge=0.0, tol=1e-4, max_abs_tol=None,
        maxiter=1000, progress=_log, every=10) -> Solution:
    """Block-diagonal CG (each column of y is its own CG run, sharing the matrix products).

    Stops when every column has ||r|| <= tol ||y|| and, if given, max |r| <= max_abs_tol.  The
    residual is y - (K alpha + ridge alpha) with K alpha summed from the iterations' products
    (sum step_i K p_i = K sum step_i p_i up to float64 rounding), not the usual recursively
    updated r, which drifts from the true residual; so no extra product is needed at the end."""
    t = time.time()
    y = np.asarray(y, np.float64)
    precond = precond or (lambda v: v)
    alpha = np.zeros_like(y)
    r = y.copy()
    z = precond(r)
    p = z.copy()
    rz = np.einsum("ij,ij->j", r, z)
    # a zero column (a class that no training label names) is solved by alpha = 0 at once: its
    # relative residual counts as 0 and its steps are 0, not 0 / 0
    ynorm = np.linalg.norm(y, axis=0)
    ynorm[ynorm == 0] = 1.0
    fitted = np.zeros_like(y)  # K alpha, accumulated from the products K p (one product per iteration)
    it = 0
    for it in range(1, maxiter + 1):
        kp = matvec(p)
        q = kp + ridge * p
        pq = np.einsum("ij,ij->j", p, q)
        step = np.divide(rz, pq, out=np.zeros_like(rz), where=pq != 0)
        alpha += step * p
        fitted += step * kp
        r = y - fitted - ridge * alpha
        rel = float(np.max(np.linalg.norm(r, axis=0) / ynorm))
        done = rel <= tol and (max_abs_tol is None or float(np.abs(r).max()) <= max_abs_tol)
        if progress and (it % every == 0 or done):
            progress(f"  cg iteration {it}: max relative residual {rel:.2e}, max |r| {np.abs(r).max():.2e} "
                     f"({time.time() - t:.0f} s)")
        if done:
            break
        z = precond(r)
        rz_new = np.einsum("ij,ij->j", r, z)
        p = z + np.divide(rz_new, rz, out=np.zeros_like(rz), where=rz != 0) * p
        rz = rz_new
    return _solution(y, alpha, fitted, ridge, it, t)


def interpolate(x, y, sigma, ridge=0.0, method="auto", tol=1e-4, max_abs_tol=1e-3, maxiter=100,
                kmat=None, progress=_log):
    """Fit alpha for features x [n, ...] (or their squared distances, a Distances) and targets
    y [n, C].  Returns (kmat, Solution); pass kmat back in to solve other targets without
    recomputing K (or its factor).  For another ridge, a `mixed` kmat still works, but CG
    converges slowly if the ridge differs much from the one it was factored with (kmat.jitter):
    build a new one."""
    x = _inputs(x)
    n = x.n if _is_dists(x) else x.shape[0]
    y = np.asarray(y, np.float64)
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"targets must be [n, C] with n = {n}, got {y.shape}")
    if not sigma > 0 or not math.isfinite(sigma):
        raise ValueError(f"bandwidth must be finite and > 0, got {sigma}"
                         + (" (the median distance of identical samples is 0)" if sigma == 0 else ""))
    if ridge < 0 or not math.isfinite(ridge):
        raise ValueError(f"ridge must be finite and >= 0, got {ridge}")
    if method == "auto":
        method = "direct" if n <= 12000 else "mixed"
    if method not in ("direct", "mixed"):
        raise ValueError(f"method must be auto, direct or mixed, not {method!r}")
    if kmat is None:
        # mixed: factor K + ridge I, the matrix of the system itself (a factor of K alone is a
        # poor preconditioner for it when the ridge exceeds K's small eigenvalues)
        kmat = DenseKernel(x, sigma) if method == "direct" else LargeKernel(x, sigma, ridge, progress=progress)
    if method == "direct":
        return kmat, solve_direct(kmat, y, ridge)
    # CG on the exact K, preconditioned by the float32 factor of K + jitter I: mixed-precision
    # iterative refinement that converges in a few iterations when K is well conditioned.
    return kmat, pcg(kmat.matvec, y, kmat.factor.solve, ridge, tol, max_abs_tol, maxiter, progress, every=1)


def predict(x_train, alpha, x, sigma, block=2048) -> np.ndarray:
    """k(x, X) alpha for features x [m, ...] and training features x_train; or, with x_train None,
    for x the squared distances [m, n] of the m points to the training points (Distances.test)."""
    if x_train is None:
        c = -0.5 / (sigma * sigma)
        return np.concatenate([np.exp(np.multiply(x[i:i + block], c, dtype=np.float64)) @ alpha
                               for i in range(0, x.shape[0], block)])
    x_train = _features(x_train)
    x = _features(x)
    return np.concatenate([rbf(x[i:i + block], x_train, sigma) @ alpha for i in range(0, x.shape[0], block)])


def rkhs_norm(alpha, k_alpha) -> float:
    """sqrt(trace(alpha^T K alpha)), from alpha and K alpha (Solution.fitted)."""
    return float(math.sqrt(max(np.einsum("ij,ij->", alpha, k_alpha), 0.0)))




# --------------------------------------------------------------------------- validation
# Bandwidths tried: these factors of the median pairwise distance (powers of sqrt(2), 1/8 to 2).
BANDWIDTH_GRID = (0.125, 0.177, 0.25, 0.354, 0.5, 0.707, 1.0, 1.414, 2.0)
RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # ridges tried for the regularized row (besides 0)
VAL_N = 5000         # held-out training images, at most ...
VAL_FRACTION = 0.2   # ... and at most this fraction of n
VAL_FIT_N = 10000    # training images the validation fits use, at most
MIN_VAL = 20         # a smaller default validation split is too noisy to choose by: defaults instead
DEFAULT_RIDGE = 1e-3


def validation_split(n, val_n, fit_n, seed):
    """Disjoint sorted index sets (validation, fit) of val_n and fit_n of the n training images."""
    idx = np.random.default_rng([seed, 2]).permutation(n)
    return np.sort(idx[:val_n]), np.sort(idx[val_n:val_n + fit_n])


def validate(x, labels, num_classes, val_idx, fit_idx, sigmas, ridges, progress=_log) -> list:
    """Validation error of the kernel predictor fit to the training images fit_idx (their labels)
    and evaluated on the training images val_idx, for every bandwidth in sigmas and ridge in
    ridges (0: the interpolant): [{sigma, ridge, val_error}], val_error None where K + ridge I is
    not positive definite in float64.  val_idx None: the leave-one-out error over fit_idx instead,
    exact and from the one solve (the residual of image i left out is alpha_i / [(K + ridge I)^-1]_ii).
    x: features or the Distances of the training images (the test images play no part); float64
    Cholesky solves."""
    import scipy.linalg
    loo = val_idx is None
    val_idx = fit_idx if loo else val_idx
    if _is_dists(x):
        d_ff, d_vf = x.gather(fit_idx, fit_idx), None if loo else x.gather(val_idx, fit_idx)
    else:
        x = _features(x)
        d_ff, d_vf = sq_dists(x[fit_idx], x[fit_idx]), None if loo else sq_dists(x[val_idx], x[fit_idx])
    labels = np.asarray(labels)
    y, want = np.eye(num_classes)[labels[fit_idx]], labels[val_idx]
    rows, t = [], time.time()
    for sigma in sigmas:
        c = -0.5 / (sigma * sigma)
        k_ff = np.multiply(d_ff, c)
        np.exp(k_ff, out=k_ff)
        np.fill_diagonal(k_ff, 1.0)
        k_vf = None if loo else np.exp(d_vf * c)
        errors = []
        for ridge in ridges:
            a = k_ff.copy()
            a[np.diag_indices_from(a)] += ridge
            try:
                factor = scipy.linalg.cho_factor(a, lower=True, overwrite_a=True, check_finite=False)
                alpha = scipy.linalg.cho_solve(factor, y, check_finite=False)
                if loo:
                    inv, info = scipy.linalg.lapack.dpotri(factor[0], lower=1, overwrite_c=1)
                    pred = y - alpha / np.diag(inv)[:, None]
                else:
                    pred = k_vf @ alpha
                err = float(np.mean(np.argmax(pred, 1) != want))
            except np.linalg.LinAlgError:
                err = None
            errors.append(err)
            rows.append(dict(sigma=float(sigma), ridge=float(ridge), val_error=err))
        if progress:
            ok = [e for e in errors if e is not None]
            progress(f"  sigma {sigma:.4g}: {len(ridges)} fits, lowest validation error "
                     f"{'-' if not ok else f'{min(ok):.4f}'} ({time.time() - t:.0f} s)")
    return rows


def best(rows, interpolating: bool) -> Optional[dict]:
    """The row of lowest validation error among the interpolants (ridge 0) or among the ridge
    rows; ties go to the smaller bandwidth (the better conditioned K), then the larger ridge."""
    rows = [r for r in rows if (r["ridge"] == 0) == interpolating and r["val_error"] is not None]
    return min(rows, key=lambda r: (r["val_error"], r["sigma"], -r["ridge"])) if rows else None


def _curve_table(rows, median) -> list:
    """The validation curve as lines: one per bandwidth, a column per ridge."""
    ridges = sorted({r["ridge"] for r in rows})
    lines = ["validation error by bandwidth (rows) and ridge (columns):",
             "    factor     sigma" + "".join(f"{'ridge ' + format(r, 'g'):>13}" for r in ridges)]
    for sigma in sorted({r["sigma"] for r in rows}):
        err = {r["ridge"]: r["val_error"] for r in rows if r["sigma"] == sigma}
        factor = f"{sigma / median:10.3f}" if median else "         -"
        lines.append(f"{factor} {sigma:9.4g}" + "".join(
            f"{'-' if err.get(r) is None else format(err[r], '.4f'):>13}" for r in ridges))
    return lines


# --------------------------------------------------------------------------- the experiment
# experiments/kernel.py is its command line: each argument below is the flag of the same name, and
# errors name the flags (they reach the user as one line `error: ...`, see rethinkgen_tf.entry).
def _quiet(msg):
    pass


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (max RSS), GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def feature_blocks(x, xt, dataset="fashion_mnist", features="raw", preprocess="auto", conv_filters=kf.FILTERS,
                   conv_kernel=kf.PATCH, conv_pool=kf.POOL, conv_threshold=kf.THRESHOLD, conv_two_sided=False,
                   conv_whiten=True, conv_standardize=True, conv_block=kf.FILTER_BLOCK, seed=0):
    """The kernel's inputs for training images x and test images xt (pixels 0..255), as blocks:
    (features, blocks, dim, standardize, settings): features(b) [len(x) + len(xt), d_b] float32 is
    block b (training images first), standardize whether kernel_distances.accumulate standardizes
    each feature, settings the choices made (for the summary and the state's configuration).

    raw: one block, kernel_features.raw_features with `preprocess` ("auto": standardize on
    CIFAR-10, scale on MNIST-format data).  random_conv: kernel_features.RandomConvFeatures (its
    statistics from x only) in blocks of conv_block filters."""
    images = np.concatenate([x, xt])
    if features == "raw":
        pre = preprocess if preprocess != "auto" else ("standardize" if dataset == "cifar10" else "scale")
        return (lambda b: kf.raw_features(images, pre)), 1, int(np.prod(x.shape[1:])), False, dict(preprocess=pre)
    try:
        fm = kf.RandomConvFeatures(x, conv_filters, conv_kernel, conv_pool, conv_threshold, conv_two_sided,
                                conv_whiten, seed=seed)
    except ValueError as e:
        raise ValueError(f"--conv_kernel={conv_kernel}, --conv_pool={conv_pool}: {e}") from None

    def block(b):
        return fm.transform(images, b * conv_block, min((b + 1) * conv_block, conv_filters))
    settings = dict(conv_filters=conv_filters, conv_kernel=conv_kernel, conv_pool=conv_pool,
                    conv_threshold=conv_threshold, conv_two_sided=conv_two_sided, conv_whiten=conv_whiten,
                    conv_standardize=conv_standardize, conv_block=conv_block)
    return block, -(-conv_filters // conv_block), fm.dim, conv_standardize, settings


def _check_args(features, preprocess, method, bandwidth, bandwidth_factor, ridge, val_n, val_fit_n, val_loo,
                bandwidth_grid, ridge_grid, conv, checkpoint_minutes):
    """The arguments' values, before any work: ValueError naming the flag."""
    if features not in ("raw", "random_conv"):
        raise ValueError(f"--features must be raw or random_conv, not {features!r}")
    if preprocess not in ("auto", "scale", "standardize"):
        raise ValueError(f"--preprocess must be auto, scale or standardize, not {preprocess!r}")
    if method not in ("auto", "direct", "mixed"):
        raise ValueError(f"--method must be auto, direct or mixed, not {method!r}")
    for name, v in (("bandwidth", bandwidth), ("bandwidth_factor", bandwidth_factor)):
        if v is not None and not 0 < v < math.inf:
            raise ValueError(f"--{name} must be finite and > 0")
    if ridge is not None and not 0 <= ridge < math.inf:
        raise ValueError(f"--ridge must be finite and >= 0, got {ridge}")
    for name, grid in (("bandwidth_grid", bandwidth_grid), ("ridge_grid", ridge_grid)):
        try:
            ok = bool(grid) and all(0 < float(v) < math.inf for v in grid)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"--{name} must be a non-empty list of finite numbers > 0, got {list(grid or [])}")
    if val_n is not None and val_n < 0:
        raise ValueError(f"--val_n must be >= 0, got {val_n}")
    if val_loo and val_n:
        raise ValueError(f"--val_n={val_n} and --val_loo exclude each other: a held-out split or leave-one-out")
    if val_fit_n < 1:
        raise ValueError(f"--val_fit_n must be >= 1, got {val_fit_n}")
    for name in ("conv_filters", "conv_kernel", "conv_pool", "conv_block"):
        if conv[name] < 1:
            raise ValueError(f"--{name} must be >= 1, got {conv[name]}")
    if not math.isfinite(conv["conv_threshold"]):
        raise ValueError(f"--conv_threshold must be finite, got {conv['conv_threshold']}")
    if not 0 <= checkpoint_minutes < math.inf:
        raise ValueError(f"--checkpoint_minutes must be finite and >= 0, got {checkpoint_minutes}")


def _check_curve(curve_filters, features, conv_filters, conv_block, out) -> list:
    """curve_filters, sorted: ValueError naming --curve_filters unless each is a multiple of
    --conv_block below --conv_filters, with random_conv features and a state directory."""
    try:
        fs = sorted({int(f) for f in curve_filters or ()})
    except (TypeError, ValueError):
        raise ValueError(f"--curve_filters must be a list of filter counts, got {list(curve_filters)}") from None
    if not fs:
        return []
    if features != "random_conv":
        raise ValueError("--curve_filters needs --features=random_conv")
    bad = [f for f in fs if f < 1 or f >= conv_filters or f % conv_block]
    if bad:
        raise ValueError(f"--curve_filters: {', '.join(map(str, bad))} not a multiple of --conv_block={conv_block} "
                         f"below --conv_filters={conv_filters}")
    if not out:
        raise ValueError("--curve_filters needs --out (each point's summary and state are named after it)")
    return fs


def _start_from(source, state_dir, config, blocks, n, t, standardize, log):
    """kernel_experiment's start_from: a state_dir without a checkpoint begins as the smaller
    run's finished state in `source` (checked to be the same run but for fewer, whole blocks)."""
    from rethinkgen_tf import kernel_distances as kd
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


def _curve(curve_filters, skipped, curve_outs, state_dir, point_kw, summary, log) -> list:
    """kernel_experiment, step 4: each curve point's row (its summary read from its out when there,
    else computed from its snapshot state), then the largest run's row."""
    from rethinkgen_tf import kernel_distances as kd
    from rethinkgen_tf import results
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
            point = kernel_experiment(**dict(point_kw, conv_filters=f, out=p,
                                             state_dir=os.path.join(state_dir, f"curve{f}")))
        rows.append(_curve_row(f, point, p))
        log(f"curve: {f} filters: test error {rows[-1]['test_error']:.4f}")
    rows.append(_curve_row(summary["conv_filters"], summary))
    return rows


_SAME_RUN = ("dataset", "n", "test_n", "features", "preprocess", "seed", "data_sha1", "conv_kernel", "conv_pool",
             "conv_threshold", "conv_two_sided", "conv_whiten", "conv_standardize", "conv_block")


def _read_summary(path, needs, what) -> dict:
    """The kernel experiment's summary (its --out) in `path`, holding the keys `needs`; else a
    ValueError of one line: `what`, then why."""
    from rethinkgen_tf import kernel_distances as kd
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
STANDARD_SIZES = {"mnist": (60000, 10000), "fashion_mnist": (60000, 10000), "cifar10": (50000, 10000)}
_PIXELS = {"mnist": (28, 28), "fashion_mnist": (28, 28), "cifar10": (32, 32, 3)}
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
        dim_block = int(np.prod(shape if shape is not None else _PIXELS.get(dataset, (32, 32, 3))))
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


def kernel_experiment(dataset="fashion_mnist", data_dir=None, n=None, test_n=None, features="raw",
                      preprocess="auto", conv_filters=kf.FILTERS, conv_kernel=kf.PATCH, conv_pool=kf.POOL,
                      conv_threshold=kf.THRESHOLD, conv_two_sided=False, conv_whiten=True, conv_standardize=True,
                      conv_block=kf.FILTER_BLOCK,
                      bandwidth=None, bandwidth_factor=None, ridge=None, val_n=None, val_fit_n=VAL_FIT_N,
                      val_loo=False, bandwidth_grid=BANDWIDTH_GRID, ridge_grid=RIDGE_GRID, method="auto", tol=1e-4,
                      max_abs_tol=1e-3, maxiter=100, random_labels=True, seed=0, out=None, state_dir=None,
                      keep_state=False, checkpoint_minutes=10.0, curve_filters=(), start_from=None,
                      curve_with=(), plot_only=False, progress: Optional[Callable] = _log) -> dict:
    """experiments/kernel.py: minimum-norm Gaussian-kernel interpolation of a random subset of n
    training images (seed seed + 1, kept in index order; None: all) of `dataset` (read from
    data_dir, None: tensorflow-datasets), tested on test_n test images.

    1. Features (feature_blocks) folded block by block into squared distances
       (kernel_distances.accumulate), checkpointed in state_dir (default: out + ".state"; None
       without out) every checkpoint_minutes, resumed by a rerun; removed at the end unless
       keep_state.
    2. Bandwidth and ridge chosen on a validation split of the training images (validate): val_n
       of them held out (None: min(5,000, n / 5); 0, or a default below 20: no search, the
       defaults instead: bandwidth_factor 0.25 for raw MNIST-format pixels and 1 otherwise,
       ridge 1e-3), fit on up to val_fit_n of the others (val_loo: no held-out split, the
       leave-one-out error over up to val_fit_n training images instead), for sigma = each factor
       of bandwidth_grid times the median pairwise distance and ridge 0 (interpolation) and each of
       ridge_grid.  `bandwidth` (sigma) or `bandwidth_factor` fix the bandwidth, `ridge` the ridge
       (0: no ridge row); what is fixed is not searched.
    3. The interpolant on all n images with the chosen bandwidth (interpolate: method, tol,
       max_abs_tol, maxiter), for the one-hot true labels and, if random_labels, uniform random
       labels (seed `seed`) together; then, unless the ridge is 0, (K + ridge I) alpha = Y for the
       true labels with the chosen (bandwidth, ridge).
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
    random, true_ridge}: train_error, test_error, rkhs_norm, max_abs_residual); writes it as JSON
    to `out` if given (atomically), once before the ridge solve and once at the end.  Checks the
    arguments and `out` before any work."""
    call = dict(locals())  # the arguments (nothing else is bound yet), for the curve points' runs
    from rethinkgen_tf import results
    from rethinkgen_tf.data.sources import load_subsets
    from rethinkgen_tf.kernel_distances import StateLock, accumulate
    log = progress or _quiet
    if plot_only:
        return _redraw_curve(out, curve_with, log)
    conv = dict(conv_filters=conv_filters, conv_kernel=conv_kernel, conv_pool=conv_pool,
                conv_threshold=conv_threshold, conv_two_sided=conv_two_sided, conv_whiten=conv_whiten,
                conv_standardize=conv_standardize, conv_block=conv_block)
    _check_args(features, preprocess, method, bandwidth, bandwidth_factor, ridge, val_n, val_fit_n, val_loo,
                bandwidth_grid, ridge_grid, conv, checkpoint_minutes)
    curve_filters = _check_curve(curve_filters, features, conv_filters, conv_block, out)
    if start_from is not None and features != "random_conv":
        raise ValueError("--start_from needs --features=random_conv")
    if start_from is not None and not (out or state_dir):
        raise ValueError("--start_from needs --out or --state_dir (the state it continues in)")
    if start_from is not None and not os.path.isfile(os.path.join(start_from, "config.json")):
        raise ValueError(f"--start_from={start_from} holds no state (config.json); pass the --state_dir of a "
                         "finished run kept with --keep_state")
    if curve_with and (features != "random_conv" or not out):
        raise ValueError("--curve_with needs --features=random_conv and --out (the curve's figure is named after it)")
    others = _read_curve_with(curve_with)
    results.check_out(out)
    bandwidth_grid, ridge_grid = [float(v) for v in bandwidth_grid], [float(v) for v in ridge_grid]  # flags: str
    if state_dir is None and out:
        state_dir = str(out) + ".state"
    curve_outs = {f: _curve_path(out, f) for f in curve_filters}
    for p in curve_outs.values():
        results.check_out(p)
    if state_dir and os.path.exists(state_dir) and not os.path.isdir(state_dir):
        raise ValueError(f"--state_dir={state_dir} is a file; pass a directory")
    t_all = time.time()
    # random subsets (seed + 1), kept in index order
    if data_dir is None and dataset in STANDARD_SIZES:  # tensorflow-datasets: the sizes are known
        n0, t0 = STANDARD_SIZES[dataset]
        _check_memory(min(n or n0, n0), min(test_n or t0, t0), features, method, val_fit_n, conv, dataset)
    x, y, xt, yt, names = load_subsets(dataset, data_dir, n, test_n, seed + 1)
    k, n, t = len(names), x.shape[0], xt.shape[0]
    for name, asked, got, split in (("n", call["n"], n, "training"), ("test_n", test_n, t, "test")):
        if asked is not None and asked > got:
            log(f"--{name}={asked} is more than the {got} {split} images: using all {got}")
    log(_check_memory(n, t, features, method, val_fit_n, conv, dataset, x.shape[1:]))
    if n < 2 and bandwidth is None:
        raise ValueError(f"{n} training image has no median distance to set the bandwidth from; pass --bandwidth")
    if val_n is not None and val_n and val_n > n - 1:
        raise ValueError(f"--val_n={val_n} leaves no training image of the {n} to fit the validation models to")
    log(f"{dataset}: {n} train, {t} test, features={features}")
    block, blocks, dim, standardize, settings = feature_blocks(x, xt, dataset, features, preprocess, seed=seed,
                                                               **conv)
    config = dict(version=1, dataset=dataset, data_sha1=_data_sha1(x, y, xt, yt), seed=seed, features=features,
                  **settings)
    summary = dict(dataset=dataset, n=n, test_n=t, features=features, seed=seed, data_sha1=config["data_sha1"],
                   **settings, dim=dim, method=method, state_dir=state_dir, results={})
    if others:
        _check_same_run(summary, others, curve_with)  # another run's summary: one line, before any work
    with StateLock(state_dir) if state_dir else contextlib.nullcontext():
        t0 = time.time()
        log(f"squared distances: {blocks} block(s) of {dim}-dimensional features"
            + (f" ({conv_block} filters each)" if features == "random_conv" else ""))
        if start_from is not None:
            _start_from(start_from, state_dir, config, blocks, n, t, standardize, log)
        todo = [f for f in curve_filters if not os.path.exists(curve_outs[f])]
        snapshots = {f // conv_block: (os.path.join(state_dir, f"curve{f}"), dict(config, conv_filters=f))
                     for f in todo}
        dists = accumulate(block, blocks, n, t, standardize, state_dir, config, 60.0 * checkpoint_minutes,
                           progress=progress, snapshots=snapshots)
        skipped = [f for f in todo if f // conv_block in dists.skipped_snapshots]
        summary["accumulate"] = dict(blocks=blocks, resumed_after=dists.blocks_resumed, seconds=time.time() - t0,
                                     **dists.timing)
        log(f"distances done ({time.time() - t0:.0f} s, peak {peak_rss_gib():.2f} GiB)")
        med = dists.median_distance(seed=seed) if n > 1 else None  # n = 1: the bandwidth is given
        if med == 0 and bandwidth is None:
            why = (f"--conv_threshold={conv_threshold:g} leaves (almost) every feature 0: lower it"
                   if features == "random_conv" else "remove duplicate images")
            raise ValueError(f"most training images have the same features (median pairwise distance 0), so "
                             f"the bandwidth cannot be set from it; {why}, or pass --bandwidth")
        summary["median_distance"] = med
        choice = _choose(dists, y, k, med, dataset, features, bandwidth, bandwidth_factor, ridge, val_n, val_fit_n,
                         val_loo, bandwidth_grid, ridge_grid, seed, log, progress)
        summary.update(choice)
        solve_kw = dict(method=method, tol=tol, max_abs_tol=max_abs_tol, maxiter=maxiter, progress=progress)
        _solve(dists, y, yt, k, summary, random_labels, seed, solve_kw, out, t_all, log)
        if curve_filters:
            del dists  # 2 n^2 + 4 n t bytes: each curve point loads its own
            point_kw = dict(call, ridge=0.0, keep_state=False, curve_filters=(), start_from=None, curve_with=())
            summary["curve"] = _curve(curve_filters, skipped, curve_outs, state_dir, point_kw, summary, log)
        if curve_filters or curve_with:
            summary["curve"] = merge_curves(summary, others, curve_with)
            summary["curve_figure"] = _curve_figure(summary, out, log)
        summary.update(total_seconds=time.time() - t_all, peak_rss_gib=peak_rss_gib())
        log(f"total {summary['total_seconds']:.0f} s, peak memory (max RSS) {summary['peak_rss_gib']:.2f} GiB")
        if out:
            results.write_json(out, summary)  # atomic: no half-written file on interruption
            log(f"wrote {out}")
        if state_dir and not keep_state:
            shutil.rmtree(state_dir, ignore_errors=True)
            log(f"removed {state_dir} (--keep_state keeps it for reruns with other bandwidths and ridges)")
    return summary


def _choose(dists, y, k, med, dataset, features, bandwidth, bandwidth_factor, ridge, val_n, val_fit_n, val_loo,
            bandwidth_grid, ridge_grid, seed, log, progress) -> dict:
    """The bandwidth of the interpolant and the (bandwidth, ridge) of the ridge row: what is fixed by
    an argument, the rest chosen on the validation split (kernel_experiment, step 2).  Returns the
    summary's sigma, bandwidth_factor, bandwidth (the choices and their sources), ridge and
    validation (None without a search)."""
    n = dists.n
    if bandwidth is not None:
        fixed, source = bandwidth, "--bandwidth"
    elif bandwidth_factor is not None:
        fixed, source = bandwidth_factor * med, "--bandwidth_factor"
    else:
        fixed, source = None, "validation"
    default_n = min(VAL_N, int(VAL_FRACTION * n))
    v = val_n if val_n is not None else (default_n if default_n >= MIN_VAL else 0)
    validation = None
    if val_loo:
        v = 0
    if (v or (val_loo and n > 1)) and (fixed is None or ridge is None):
        t = time.time()
        fit_n = min(val_fit_n, n - v)
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
            factor = 0.25 if dataset != "cifar10" and features == "raw" else 1.0
            fixed, source = factor * med, "default"
    if ridge == 0:
        ridge_row = None
    elif validation is not None and validation["ridge"] is not None:
        ridge_row = dict(sigma=validation["ridge"]["sigma"], ridge=validation["ridge"]["ridge"],
                         source="validation" if ridge is None else "--ridge")  # its bandwidth: chosen either way
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
    kmat, sol = interpolate(dists, targets, sigma, **solve_kw)
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
    _, sr = interpolate(dists, targets[:, :k], row["sigma"], ridge=row["ridge"], kmat=kmat, **solve_kw)
    r = _evaluate(sr, slice(0, k), targets, y, predict(None, sr.alpha, dists.test, row["sigma"]), yt)
    r.update(ridge=row["ridge"], sigma=row["sigma"], iterations=sr.iterations, seconds=time.time() - t)
    r["max_abs_residual"] = sr.residual_max  # of (K + ridge I) alpha = Y
    summary["results"]["true_ridge"] = r
    log(f"ridge {row['ridge']:g}, sigma {row['sigma']:.4g}: train error {r['train_error']:.4f}, test error "
        f"{r['test_error']:.4f}, RKHS norm {r['rkhs_norm']:.4g} ({r['seconds']:.0f} s)")
