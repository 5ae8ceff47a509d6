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
blocks (`distances.Distances`, see rethinkgen_tf/kernels/distances.py); every matrix and
solver takes either.

`validate` fits the kernel predictor to part of the training images and scores it on others;
the experiment (rethinkgen_tf/kernels/experiment.py) chooses the bandwidth and the ridge by it.
"""
from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple, Optional

import numpy as np

from rethinkgen_tf.kernels.distances import Distances, lazy_zeros


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
    """Features [n, ...] as [n, d], or accumulated squared distances (distances.Distances) as they are."""
    return x if _is_dists(x) else _features(x)


def kernel_rows(x, sigma, dtype=np.float64) -> Callable:
    """rows(i0, i1) -> K[i0:i1, :i1], a block row of the lower triangle (the diagonal block whole,
    unit diagonal), in `dtype`.  x: features [n, d] (float32 cross terms of the distances) or a
    distances.Distances (its lower triangle; the diagonal block is mirrored)."""
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
