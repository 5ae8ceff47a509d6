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
  recomputed from x in row blocks in float64 (nothing else stored).  This is mixed-precision
  iterative refinement: a few iterations bring the residual from float32 level to the
  tolerance.  All right-hand sides (true and random labels) are solved together.

The experiment of experiments/kernel.py is `kernel_experiment`: plain arguments in, the summary
dict out (and its JSON, if asked).
"""
from __future__ import annotations

import math
import resource
import time
from typing import Callable, NamedTuple, Optional

import numpy as np


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
class DenseKernel:
    """K in memory (float64), for the direct solver and small problems."""

    def __init__(self, x, sigma):
        self.n, self.sigma = x.shape[0], sigma
        self.k = rbf(x, x, sigma, np.float64)
        np.fill_diagonal(self.k, 1.0)

    def matvec(self, v):
        return self.k @ v


class KernelOperator:
    """K as an operator for large n: K V recomputed from x in row blocks, nothing stored.

    Block i is K[rows_i, :end_i] (the lower triangle), used twice: B V and B^T V.  Entries are
    float64 (the cross term of the distances is float32 BLAS), products float64."""

    def __init__(self, x, sigma, block=2048):
        self.x = _features(x)
        self.n, self.sigma = self.x.shape[0], sigma
        self.bounds = list(range(0, self.n, block)) + [self.n]

    def row_blocks(self):
        for i0, i1 in zip(self.bounds[:-1], self.bounds[1:]):
            blk = rbf(self.x[i0:i1], self.x[:i1], self.sigma)
            blk[:, i0:i1][np.diag_indices(i1 - i0)] = 1.0
            yield i0, i1, blk

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
    resident (7.2 GB for n = 60,000).  Raises np.linalg.LinAlgError if K + jitter I is not
    positive definite in float32."""

    def __init__(self, x, sigma, jitter=0.0, block=2048, progress=_log):
        from scipy.linalg import blas, lapack
        x = _features(x)
        n = self.n = x.shape[0]
        t = time.time()
        a = self.a = _lazy_zeros((n, n), np.float32)
        # K in float32 arithmetic throughout (a preconditioner needs no more, and NumPy's float32
        # exp is vectorized): 2-3x faster than the float64 entries of KernelOperator.
        x32 = x.astype(np.float32, copy=False)
        sq = np.einsum("ij,ij->i", x32, x32, dtype=np.float64).astype(np.float32)
        for i0 in range(0, n, block):
            i1 = min(i0 + block, n)
            blk = x32[i0:i1] @ x32[:i1].T
            blk *= -2.0
            blk += sq[i0:i1, None]
            blk += sq[None, :i1]
            np.maximum(blk, 0.0, out=blk)
            blk *= np.float32(-0.5 / (sigma * sigma))
            a[i0:i1, :i1] = np.exp(blk, out=blk)
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


def _lazy_zeros(shape, dtype):
    """A zero array whose pages become resident only when written, in 4 KiB pages.  NumPy asks
    the kernel for transparent huge pages on large arrays, and a 2 MiB page spans several rows of
    an n x n matrix, so writing the lower triangle would make all of it resident."""
    import mmap
    size = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        buf.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(buf, dtype).reshape(shape)


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
    a = kmat.k + ridge * np.eye(kmat.n) if ridge else kmat.k
    try:
        factor = scipy.linalg.cho_factor(a, lower=True, check_finite=False)
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
    """Fit alpha for features x [n, ...] and targets y [n, C].  Returns (kmat, Solution); pass kmat
    back in to solve other targets without recomputing K (or its factor).  For another ridge, a
    `mixed` kmat still works, but CG converges slowly if the ridge differs much from the one it
    was factored with (kmat.jitter): build a new one."""
    x = _features(x)
    y = np.asarray(y, np.float64)
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"targets must be [n, C] with n = {x.shape[0]}, got {y.shape}")
    if not sigma > 0 or not math.isfinite(sigma):
        raise ValueError(f"bandwidth must be finite and > 0, got {sigma}"
                         + (" (the median distance of identical samples is 0)" if sigma == 0 else ""))
    if ridge < 0 or not math.isfinite(ridge):
        raise ValueError(f"ridge must be finite and >= 0, got {ridge}")
    if method == "auto":
        method = "direct" if x.shape[0] <= 12000 else "mixed"
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
    x_train = _features(x_train)
    x = _features(x)
    return np.concatenate([rbf(x[i:i + block], x_train, sigma) @ alpha for i in range(0, x.shape[0], block)])


def rkhs_norm(alpha, k_alpha) -> float:
    """sqrt(trace(alpha^T K alpha)), from alpha and K alpha (Solution.fitted)."""
    return float(math.sqrt(max(np.einsum("ij,ij->", alpha, k_alpha), 0.0)))


# --------------------------------------------------------------------------- preprocessing
def random_conv_features(images, filters=1024, kernel=5, pool=4, seed=0, batch=256, progress=_log):
    """A random convolutional layer: per-image standardized images -> conv (kernel x kernel,
    `filters` Gaussian filters, stride 1, valid) -> ReLU -> average pooling to a pool x pool grid
    -> flatten: [N, pool * pool * filters] float32."""
    import tensorflow as tf
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"images must have shape [N, H, W] or [N, H, W, C] with N >= 1, got {x.shape}")
    if min(filters, kernel, pool) < 1:
        raise ValueError(f"filters, kernel and pool must be >= 1, got {filters}, {kernel}, {pool}")
    side = min(x.shape[1:3]) - kernel + 1  # of the valid convolution's output
    if side < pool:
        raise ValueError(f"a {kernel}x{kernel} convolution of {x.shape[1]}x{x.shape[2]} images leaves "
                         f"{max(side, 0)}x{max(side, 0)} positions, fewer than the {pool}x{pool} pooling grid; "
                         f"need kernel + pool <= {min(x.shape[1:3]) + 1}")
    c = x.shape[-1]
    w = np.random.default_rng(seed).standard_normal((kernel, kernel, c, filters)).astype(np.float32)
    w /= math.sqrt(kernel * kernel * c)
    w = tf.constant(w)
    out = []
    for i in range(0, x.shape[0], batch):
        b = tf.image.per_image_standardization(tf.cast(x[i:i + batch], tf.float32))
        h = tf.nn.relu(tf.nn.conv2d(b, w, 1, "VALID"))
        size = h.shape[1] // pool
        h = tf.nn.avg_pool2d(h, size, size, "VALID")[:, :pool, :pool]
        out.append(tf.reshape(h, (h.shape[0], -1)).numpy())
        if progress and (i // batch) % 40 == 39:
            progress(f"  random conv features {min(i + batch, x.shape[0])}/{x.shape[0]}")
    return np.concatenate(out)


# --------------------------------------------------------------------------- the experiment
# experiments/kernel.py is its command line: each argument below is the flag of the same name, and
# errors name the flags (they reach the user as one line `error: ...`, see rethinkgen_tf.entry).
def _quiet(msg):
    pass


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (max RSS), GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def kernel_features(x, features="raw", conv_filters=1024, conv_kernel=5, conv_pool=4, seed=0,
                    progress: Optional[Callable] = _log) -> np.ndarray:
    """Images x [N, H, W(, C)] (pixels 0..255) -> the kernel's inputs [N, dim]: "raw" pixels scaled
    to [0, 1], or "random_conv" features (random_conv_features with these filters, kernel, pool
    and seed)."""
    if features == "raw":
        return x.reshape(x.shape[0], -1).astype(np.float32) / 255.0
    if features != "random_conv":
        raise ValueError(f"--features must be raw or random_conv, not {features!r}")
    try:
        return random_conv_features(x, conv_filters, conv_kernel, conv_pool, seed, progress=progress)
    except ValueError as e:
        raise ValueError(f"--conv_kernel={conv_kernel}, --conv_pool={conv_pool}: {e}") from None


def kernel_experiment(dataset="fashion_mnist", data_dir=None, n=None, test_n=None, features="raw",
                      conv_filters=1024, conv_kernel=5, conv_pool=4, bandwidth=None, bandwidth_factor=None,
                      method="auto", tol=1e-4, max_abs_tol=1e-3, maxiter=100, ridge=1e-3, random_labels=True,
                      seed=0, out=None, progress: Optional[Callable] = _log) -> dict:
    """experiments/kernel.py: minimum-norm Gaussian-kernel interpolation of a random subset of n
    training images (seed seed + 1, kept in index order; None: all) of `dataset` (read from
    data_dir, None: tensorflow-datasets), tested on test_n test images.

    One kernel matrix (kernel_features; bandwidth sigma = `bandwidth`, or bandwidth_factor times
    the median pairwise distance, the factor 0.25 for raw MNIST-format pixels and 1 otherwise by
    default) is solved (interpolate: method, tol, max_abs_tol, maxiter) for the one-hot true
    labels and, if random_labels, uniform random labels (seed `seed`) together, then, if ridge,
    K + ridge I for the true labels.  Returns the summary (dataset, n, test_n, features, dim,
    median_distance, sigma, method, solver, iterations, residuals, jitter, timings, peak_rss_gib,
    results: {true, random, true_ridge}: train_error, test_error, rkhs_norm, max_abs_residual);
    writes it as JSON to `out` if given (atomically), once before the ridge solve and once at
    the end.  Checks `out` before any work."""
    from rethinkgen_tf import results
    from rethinkgen_tf.cli import check_out
    from rethinkgen_tf.data.sources import load_subsets
    log = progress or _quiet
    if features not in ("raw", "random_conv"):
        raise ValueError(f"--features must be raw or random_conv, not {features!r}")
    if method not in ("auto", "direct", "mixed"):
        raise ValueError(f"--method must be auto, direct or mixed, not {method!r}")
    for name, v in (("bandwidth", bandwidth), ("bandwidth_factor", bandwidth_factor)):
        if v is not None and not 0 < v < math.inf:
            raise ValueError(f"--{name} must be finite and > 0")
    check_out(out)
    t_all = time.time()
    # random subsets (seed + 1), kept in index order
    x, y, xt, yt, names = load_subsets(dataset, data_dir, n, test_n, seed + 1)
    k, n = len(names), x.shape[0]
    if n < 2 and bandwidth is None:
        raise ValueError(f"{n} training image has no median distance to set the bandwidth from; pass --bandwidth")
    log(f"{dataset}: {n} train, {xt.shape[0]} test, features={features}")
    t = time.time()
    conv = dict(features=features, conv_filters=conv_filters, conv_kernel=conv_kernel, conv_pool=conv_pool,
                seed=seed, progress=progress)
    f, ft = kernel_features(x, **conv), kernel_features(xt, **conv)
    log(f"features {f.shape[1]}-dimensional ({time.time() - t:.0f} s)")
    med = median_distance(f, seed=seed) if n > 1 else None  # n = 1: bandwidth is given
    factor = bandwidth_factor
    if factor is None:
        factor = 0.25 if dataset != "cifar10" and features == "raw" else 1.0
    sigma = bandwidth if bandwidth is not None else factor * med
    log(f"median distance {'-' if med is None else f'{med:.4g}'}, bandwidth sigma {sigma:.4g}")
    ys = {"true": y}
    if random_labels:
        ys["random"] = np.random.default_rng(seed).integers(0, k, n)
    targets = np.hstack([np.eye(k)[v] for v in ys.values()])
    summary = dict(dataset=dataset, n=n, test_n=int(xt.shape[0]), features=features,
                   dim=int(f.shape[1]), median_distance=med, sigma=sigma, method=method, results={})
    if features == "random_conv":
        summary.update(conv_filters=conv_filters, conv_kernel=conv_kernel, conv_pool=conv_pool)
    solve_kw = dict(method=method, tol=tol, max_abs_tol=max_abs_tol, maxiter=maxiter, progress=progress)
    t = time.time()
    kmat, sol = interpolate(f, targets, sigma, **solve_kw)
    summary.update(solve_seconds=time.time() - t, iterations=sol.iterations, max_abs_residual=sol.residual_max,
                   relative_residual=sol.residual_rel, jitter=getattr(kmat, "jitter", 0.0),
                   interpolation_seconds=time.time() - t_all)
    log(f"solved K alpha = Y for {list(ys)} labels: {sol.iterations} iterations, max |K alpha - Y| "
        f"{sol.residual_max:.2e}, relative {sol.residual_rel:.2e}, {time.time() - t:.0f} s, "
        f"peak {peak_rss_gib():.2f} GiB")
    t = time.time()
    pred_test = predict(f, sol.alpha, ft, sigma)
    fitted = sol.fitted
    for j, (name, labels) in enumerate(ys.items()):
        cols = slice(j * k, (j + 1) * k)
        a = sol.alpha[:, cols]
        r = dict(train_error=float(np.mean(np.argmax(fitted[:, cols], 1) != labels)),
                 test_error=float(np.mean(np.argmax(pred_test[:, cols], 1) != yt)),
                 rkhs_norm=rkhs_norm(a, fitted[:, cols]),
                 max_abs_residual=float(np.abs(fitted[:, cols] - targets[:, cols]).max()))
        summary["results"][name] = r
        log(f"{name} labels: train error {r['train_error']:.4f}, test error {r['test_error']:.4f} "
            f"(true test labels), RKHS norm {r['rkhs_norm']:.4g}, max |K alpha - Y| {r['max_abs_residual']:.2e}")
    log(f"evaluation {time.time() - t:.0f} s")
    summary["solver"] = "mixed" if isinstance(kmat, LargeKernel) else "direct"
    if out:  # the interpolation results are safe before the ridge solve starts
        results.write_json(out, summary)
    if ridge:
        t = time.time()
        if isinstance(kmat, LargeKernel):
            log(f"ridge {ridge}: factoring K + ridge I (as long as the first factorization)")
            kmat = None  # free the first factor before the second
        _, sr = interpolate(f, targets[:, :k], sigma, ridge=ridge, kmat=kmat, **solve_kw)
        fit_r = sr.fitted
        r = dict(ridge=ridge, train_error=float(np.mean(np.argmax(fit_r, 1) != y)),
                 test_error=float(np.mean(np.argmax(predict(f, sr.alpha, ft, sigma), 1) != yt)),
                 rkhs_norm=rkhs_norm(sr.alpha, fit_r), iterations=sr.iterations,
                 max_abs_residual=sr.residual_max, seconds=time.time() - t)
        summary["results"]["true_ridge"] = r
        log(f"ridge {ridge}: train error {r['train_error']:.4f}, test error {r['test_error']:.4f}, "
            f"RKHS norm {r['rkhs_norm']:.4g} ({r['seconds']:.0f} s)")
    summary.update(total_seconds=time.time() - t_all, peak_rss_gib=peak_rss_gib())
    log(f"total {summary['total_seconds']:.0f} s, peak memory (max RSS) {summary['peak_rss_gib']:.2f} GiB")
    if out:
        results.write_json(out, summary)  # atomic: no half-written file on interruption
        log(f"wrote {out}")
    return summary
