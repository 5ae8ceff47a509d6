"""Minimum-norm kernel interpolation (Zhang et al. 2017, Section 5; SPEC section 7).

Solve K alpha = Y for a Gaussian kernel K_ij = exp(-|x_i - x_j|^2 / (2 sigma^2)) and one-hot
targets Y [n, C]; predict f(x) = k(x, X) alpha.  alpha is the minimum-RKHS-norm interpolant,
its norm is sqrt(trace(alpha^T K alpha)) = sqrt(trace(alpha^T Y)) when K alpha = Y.  A ridge
term solves (K + ridge I) alpha = Y instead.

Two solvers (see docs/theory.md for the sizes and timings):

- ``direct``: float64 Cholesky of the dense matrix (n up to ~20,000: 8 n^2 bytes).
- ``pcg``: preconditioned conjugate gradients on a packed float32 copy of the lower triangle
  of K (2 n^2 bytes: 7.2 GB for n = 60,000), computed once in row blocks; block products
  K V use each stored block twice (B V and B^T V).  Preconditioner: rank-r Nystrom
  approximation K ~ U diag(lam) U^T from r random columns (Frangella, Tropp & Udell 2021):
  P^-1 = (lam_r + mu) U diag(1 / (lam + mu)) U^T + (I - U U^T), mu = ridge.  All right-hand
  sides (true and random labels) are solved together; progress every few iterations.
  Vectors are float64, products with the float32 matrix are float32 BLAS: the residual
  floor is about 1e-6 relative, far below what interpolation (training error 0) needs.
"""
from __future__ import annotations

import math
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


def sq_dists(a, b, dtype=np.float32) -> np.ndarray:
    """|a_i - b_j|^2 [len(a), len(b)], float64; the cross term in `dtype` BLAS."""
    a, b = _features(a), _features(b)
    na = np.einsum("ij,ij->i", a, a, dtype=np.float64)
    nb = np.einsum("ij,ij->i", b, b, dtype=np.float64)
    g = a.astype(dtype, copy=False) @ b.astype(dtype, copy=False).T
    d = na[:, None] + nb[None, :] - 2.0 * g
    return np.maximum(d, 0.0, out=d)


def rbf(a, b, sigma, dtype=np.float32) -> np.ndarray:
    d = sq_dists(a, b, dtype)
    d *= -1.0 / (2.0 * sigma * sigma)
    return np.exp(d, out=d)


def median_distance(x, sample=2000, seed=0) -> float:
    """Median pairwise Euclidean distance among `sample` random rows of x."""
    x = _features(x)
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

    def columns(self, idx):
        return self.k[:, idx]

    @property
    def nbytes(self):
        return self.k.nbytes


class PackedKernel:
    """Lower triangle of K in float32 row blocks: block i is K[rows_i, :end_i] (2 n^2 bytes)."""

    def __init__(self, x, sigma, block=2048, progress=_log):
        x = _features(x)
        self.n, self.sigma, self.x = x.shape[0], sigma, x
        self.bounds = list(range(0, self.n, block)) + [self.n]
        self.blocks = []
        t, done, total = time.time(), 0, self.n * (self.n + 1) / 2
        for i0, i1 in zip(self.bounds[:-1], self.bounds[1:]):
            blk = rbf(x[i0:i1], x[:i1], sigma).astype(np.float32)
            blk[:, i0:i1][np.diag_indices(i1 - i0)] = 1.0
            self.blocks.append(blk)
            done += (i1 - i0) * (i0 + i1) / 2
            if progress and (len(self.blocks) % 5 == 0 or i1 == self.n):
                el = time.time() - t
                progress(f"  kernel matrix rows {i1}/{self.n} ({self.nbytes / 2**30:.2f} GiB) "
                         f"{el:.0f} s, ~{el * (total / done - 1):.0f} s left")

    def matvec(self, v):
        v32 = np.asarray(v, np.float32)
        out = np.zeros(v.shape, np.float64)
        for (i0, i1), blk in zip(zip(self.bounds[:-1], self.bounds[1:]), self.blocks):
            out[i0:i1] += blk @ v32[:i1]
            if i0:
                out[:i0] += blk[:, :i0].T @ v32[i0:i1]
        return out

    def columns(self, idx):
        """K[:, idx] float64 (recomputed from x, not read from the packed triangle)."""
        return rbf(self.x, self.x[idx], self.sigma, np.float32)

    @property
    def nbytes(self):
        return sum(b.nbytes for b in self.blocks)


# --------------------------------------------------------------------------- solvers
class Solution(NamedTuple):
    alpha: np.ndarray         # [n, C]
    residual_max: float       # max |K alpha + ridge alpha - Y|
    residual_rel: float       # ||K alpha + ridge alpha - Y||_F / ||Y||_F
    iterations: int
    seconds: float


def solve_direct(kmat: DenseKernel, y, ridge=0.0) -> Solution:
    import scipy.linalg
    t = time.time()
    a = kmat.k + ridge * np.eye(kmat.n) if ridge else kmat.k
    alpha = scipy.linalg.cho_solve(scipy.linalg.cho_factor(a, lower=True, check_finite=False), y,
                                   check_finite=False)
    r = kmat.matvec(alpha) + ridge * alpha - y
    return Solution(alpha, float(np.abs(r).max()), float(np.linalg.norm(r) / np.linalg.norm(y)), 0,
                    time.time() - t)


class Nystrom(NamedTuple):
    u: np.ndarray    # [n, r] orthonormal
    lam: np.ndarray  # [r] eigenvalue estimates, decreasing

    def precondition(self, v, mu=0.0):
        uv = self.u.T @ v
        scale = (self.lam[-1] + mu) / (self.lam + mu) - 1.0
        return v + self.u @ (scale[:, None] * uv)


def nystrom(kmat, rank, seed=0) -> Nystrom:
    """Rank-r Nystrom approximation from r uniformly sampled columns (stable, shifted)."""
    import scipy.linalg
    n = kmat.n
    rank = min(rank, n)
    idx = np.sort(np.random.default_rng(seed).choice(n, rank, replace=False))
    c = np.asarray(kmat.columns(idx), np.float64)
    c[idx, np.arange(rank)] = 1.0
    w = c[idx]
    shift = 1e-7 * np.trace(w)
    chol = scipy.linalg.cholesky(w + shift * np.eye(rank), lower=True, check_finite=False)
    # F^T = L^-1 C^T, in place in c's memory (c.T is Fortran-ordered); K ~ F F^T
    ft = scipy.linalg.solve_triangular(chol, c.T, lower=True, overwrite_b=True, check_finite=False)
    s2, v = np.linalg.eigh(ft @ ft.T)               # F = U diag(s) V^T
    order = np.argsort(s2)[::-1]
    s2, v = s2[order], v[:, order]
    keep = s2 > 1e-10 * s2[0]
    s2, v = s2[keep], v[:, keep]
    u = ft.T @ (v / np.sqrt(s2))
    del c, ft
    lam = np.maximum(s2 - shift, 1e-12 * s2[0])
    return Nystrom(u, lam)


def pcg(matvec: Callable, y, precond: Optional[Callable] = None, ridge=0.0, tol=1e-4, max_abs_tol=None,
        maxiter=1000, progress=_log, every=10) -> Solution:
    """Block-diagonal CG (each column of y is its own CG run, sharing the matrix products).

    Stops when every column has ||r|| <= tol ||y|| and, if given, max |r| <= max_abs_tol."""
    t = time.time()
    y = np.asarray(y, np.float64)
    precond = precond or (lambda v: v)
    op = (lambda v: matvec(v) + ridge * v) if ridge else matvec
    alpha = np.zeros_like(y)
    r = y.copy()
    z = precond(r)
    p = z.copy()
    rz = np.einsum("ij,ij->j", r, z)
    ynorm = np.linalg.norm(y, axis=0)
    it = 0
    for it in range(1, maxiter + 1):
        q = op(p)
        step = rz / np.einsum("ij,ij->j", p, q)
        alpha += step * p
        r -= step * q
        rel = float(np.max(np.linalg.norm(r, axis=0) / ynorm))
        done = rel <= tol and (max_abs_tol is None or float(np.abs(r).max()) <= max_abs_tol)
        if progress and (it % every == 0 or done):
            progress(f"  pcg iteration {it}: max relative residual {rel:.2e}, max |r| {np.abs(r).max():.2e} "
                     f"({time.time() - t:.0f} s)")
        if done:
            break
        z = precond(r)
        rz_new = np.einsum("ij,ij->j", r, z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    r = y - op(alpha)  # true residual, not the recursively updated one
    return Solution(alpha, float(np.abs(r).max()), float(np.linalg.norm(r) / np.linalg.norm(y)), it,
                    time.time() - t)


def interpolate(x, y, sigma, ridge=0.0, method="auto", rank=2000, tol=1e-5, max_abs_tol=1e-3, maxiter=1000,
                seed=0, kmat=None, progress=_log):
    """Fit alpha for features x [n, ...] and targets y [n, C].  Returns (kmat, Solution); pass kmat
    back in to solve other targets or ridges without recomputing K."""
    x = _features(x)
    y = np.asarray(y, np.float64)
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"targets must be [n, C] with n = {x.shape[0]}, got {y.shape}")
    if not sigma > 0:
        raise ValueError(f"bandwidth must be > 0, got {sigma}")
    if method == "auto":
        method = "direct" if x.shape[0] <= 12000 else "pcg"
    if method not in ("direct", "pcg"):
        raise ValueError(f"method must be auto, direct or pcg, not {method!r}")
    if kmat is None:
        kmat = DenseKernel(x, sigma) if method == "direct" else PackedKernel(x, sigma, progress=progress)
    if method == "direct":
        return kmat, solve_direct(kmat, y, ridge)
    t = time.time()
    pre = nystrom(kmat, rank, seed)
    if progress:
        progress(f"  Nystrom preconditioner rank {pre.lam.size}: lam_1 {pre.lam[0]:.3g}, lam_r {pre.lam[-1]:.3g} "
                 f"({time.time() - t:.0f} s)")
    return kmat, pcg(kmat.matvec, y, lambda v: pre.precondition(v, ridge), ridge, tol, max_abs_tol, maxiter,
                     progress)


def predict(x_train, alpha, x, sigma, block=2048) -> np.ndarray:
    x_train = _features(x_train)
    x = _features(x)
    return np.concatenate([rbf(x[i:i + block], x_train, sigma) @ alpha for i in range(0, x.shape[0], block)])


def rkhs_norm(kmat, alpha) -> float:
    """sqrt(trace(alpha^T K alpha))."""
    return float(math.sqrt(max(np.einsum("ij,ij->", alpha, kmat.matvec(alpha)), 0.0)))


# --------------------------------------------------------------------------- preprocessing
def random_conv_features(images, filters=1024, kernel=5, pool=4, seed=0, batch=256, progress=_log):
    """A random convolutional layer: per-image standardized images -> conv (kernel x kernel,
    `filters` Gaussian filters, stride 1, valid) -> ReLU -> average pooling to a pool x pool grid
    -> flatten: [N, pool * pool * filters] float32."""
    import tensorflow as tf
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
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
