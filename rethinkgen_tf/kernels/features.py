"""The kernel experiment's feature maps (paper Section 5; the design and the validation
measurements behind each choice: docs/theory.md, "Random convolutional features").

- `raw_features(images, preprocess)`: pixels scaled to [0, 1] ("scale") or per-image standardized
  ("standardize": minus the image's mean, over its standard deviation, as
  tf.image.per_image_standardization).
- `RandomConvFeatures`: one random convolutional layer in the manner of a single-layer
  random-feature network.  Each p x p (x channels) patch, stride 1, is brightness- and
  contrast-normalized ((patch - its mean) / sqrt(its variance + 10), pixels 0..255), then
  ZCA-whitened with statistics of random training patches; the filters are unit vectors in that
  whitened space (folded back into pixel space, so the layer is one matrix product per image
  batch): whitened training patches (`filters_from="patches"`: a patch of a random training
  image, normalized and whitened as every patch is, scaled to unit length; the filters of the
  single-layer random-feature networks) or independent Gaussian directions
  (`filters_from="gaussian"`); the response z goes through a threshold max(0, z - alpha) (or the
  two-sided pair max(0, z - alpha), max(0, -z - alpha)), and is sum-pooled over a pool x pool grid
  of image regions.  `transform(images, f0, f1)` computes the features of filters f0..f1 only:
  the kernel's squared distances are a sum over feature blocks (rethinkgen_tf.kernels.distances),
  so no more than one filter block is ever in memory.

Everything is NumPy (BLAS matrix products on all cores; bit-for-bit deterministic for a seed).
The filters are drawn in one stream from `filter_seed` (default: `seed`), filter by filter, so
the first F filters of a larger layer are the F filters of a smaller one: runs at 1,024 and
32,000 filters share their first 1,024 filters.  The whitening sample is a draw of its own from
`seed`, and the patch filters' draw (image, row, column of each) is apart from it.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

PREPROCESS = ("scale", "standardize")
FILTERS_FROM = ("patches", "gaussian")  # the filters: whitened training patches, or Gaussian directions
DEFAULT_FILTERS_FROM = "patches"        # chosen on validation (docs/theory.md, "Patch filters")
# The design's defaults, each chosen on validation (docs/theory.md, "Random convolutional features")
FILTERS, PATCH, POOL, THRESHOLD = 1024, 6, 3, 0.5
FILTER_BLOCK = 256     # filters per block of the distance accumulation
PATCH_NORM_EPS = 10.0  # added to the patch variance (pixels 0..255): flat patches are not blown up
ZCA_SAMPLE = 100_000   # random training patches for the whitening statistics
BATCH = 64             # images per matrix product (46,656 patches of 32x32 images with p = 6)
THREADS = 2            # Python threads over the batches (see transform)


def raw_features(images, preprocess="scale") -> np.ndarray:
    """Images [N, ...] (pixels 0..255) -> float32 [N, dim]: scaled to [0, 1], or per-image
    standardized (mean 0, standard deviation max(std, 1 / sqrt(dim)), on the [0, 1] scale)."""
    x = np.asarray(images)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"images must have shape [N, ...] with N >= 1, got {x.shape}")
    x = x.reshape(x.shape[0], -1).astype(np.float32) / np.float32(255.0)
    if preprocess == "scale":
        return x
    if preprocess != "standardize":
        raise ValueError(f"--preprocess must be one of {', '.join(PREPROCESS)}, not {preprocess!r}")
    x -= x.mean(1, keepdims=True)
    x /= np.maximum(np.sqrt(np.mean(x * x, 1, keepdims=True)), np.float32(1.0 / math.sqrt(x.shape[1])))
    return x


def _images(images) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"images must have shape [N, H, W] or [N, H, W, C] with N >= 1, got {x.shape}")
    return x


def _patches(x, patch):
    """All patch x patch windows of images x [N, H, W, C]: a view [N, H', W', C, patch, patch]."""
    return np.lib.stride_tricks.sliding_window_view(x, (patch, patch), axis=(1, 2))


def _normalize(p):
    """Brightness and contrast normalization of patches p [m, d] (float32, pixels 0..255), in place."""
    p -= p.mean(1, keepdims=True)
    p /= np.sqrt(np.mean(p * p, 1, keepdims=True) + np.float32(PATCH_NORM_EPS))
    return p


def _bounds(side, pool):
    """Start offsets of `pool` near-equal regions of `side` positions (27 -> [0, 13] for pool 2)."""
    return np.array([i * side // pool for i in range(pool)])


class RandomConvFeatures:
    """The random convolutional layer above, its statistics from `train_images` [N, H, W(, C)]
    (pixels 0..255; only training images: the test images never shape the features).

    filters: number of random filters; patch: their size; pool: sum-pooling grid (2: the four image
    quadrants; 3: nine regions); threshold: alpha; two_sided: both signs of each response (2
    features per filter and region); whiten: ZCA whitening (False: the normalized patches as they
    are); zca_eps: added to the eigenvalues of the patch covariance before inverting their square
    roots; filters_from: "patches" (whitened training patches) or "gaussian" (Gaussian directions);
    seed: the whitening sample's draw; filter_seed: the filters' draw (None: seed)."""

    def __init__(self, train_images, filters=FILTERS, patch=PATCH, pool=POOL, threshold=THRESHOLD, two_sided=False,
                 whiten=True, zca_eps=0.1, seed=0, filters_from=DEFAULT_FILTERS_FROM,
                 filter_seed=None):
        x = _images(train_images)
        if filters_from not in FILTERS_FROM:
            raise ValueError(f"filters_from must be one of {', '.join(FILTERS_FROM)}, not {filters_from!r}")
        if min(filters, patch, pool) < 1:
            raise ValueError(f"filters, patch size and pool must be >= 1, got {filters}, {patch}, {pool}")
        if not math.isfinite(threshold):
            raise ValueError(f"the threshold must be finite, got {threshold}")
        self.side = min(x.shape[1:3]) - patch + 1  # positions of the valid convolution per axis
        if self.side < pool:
            raise ValueError(f"a {patch}x{patch} convolution of {x.shape[1]}x{x.shape[2]} images leaves "
                             f"{max(self.side, 0)}x{max(self.side, 0)} positions, fewer than the {pool}x{pool} "
                             f"pooling grid; need kernel + pool <= {min(x.shape[1:3]) + 1}")
        d = patch * patch * x.shape[3]
        if whiten and x.shape[0] * self.side * self.side < d:
            raise ValueError(f"{x.shape[0]} training image(s) have {x.shape[0] * self.side * self.side} "
                             f"{patch}x{patch} patches, fewer than the {d} dimensions of a patch: too few to whiten; "
                             "use a smaller patch, more images or no whitening")
        self.shape = x.shape[1:]
        self.filters, self.patch, self.pool, self.threshold = filters, patch, pool, float(threshold)
        self.sides = 2 if two_sided else 1
        # whitening statistics: ZCA_SAMPLE random training patches (image, row, column), normalized
        rng = np.random.default_rng([seed, 1])
        m = min(ZCA_SAMPLE, x.shape[0] * self.side * self.side)
        idx = (rng.integers(0, x.shape[0], m), rng.integers(0, self.side, m), rng.integers(0, self.side, m))
        views = _patches(x[:, :self.side + patch - 1, :self.side + patch - 1], patch)
        p = _normalize(views[idx].reshape(m, d).astype(np.float32)).astype(np.float64)
        mean = p.mean(0)
        if whiten:
            e, u = np.linalg.eigh(np.cov(p, rowvar=False) if m > 1 else np.zeros((d, d)))
            w_zca = (u / np.sqrt(np.maximum(e, 0.0) + zca_eps)) @ u.T
        else:
            w_zca = np.eye(d)
        self.zca, self.mean = w_zca, mean   # the whitening W [d, d] and the patches' mean [d], float64
        # unit vectors w in the whitened space; z = w . W (p - mean) = (W w) . p - (W w) . mean
        self.filters_from = filters_from
        self.filter_seed = seed if filter_seed is None else filter_seed
        if filters_from == "gaussian":
            w = np.random.default_rng(self.filter_seed).standard_normal((filters, d))
        else:
            w = (_normalize(views[self.patch_origins(x.shape[0], filters)].reshape(filters, d).astype(np.float32))
                 .astype(np.float64) - mean) @ w_zca
        w /= np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
        self.weights = (w_zca @ w.T).astype(np.float32)                 # [d, filters], pixel space
        self.offset = (mean @ w_zca @ w.T).astype(np.float32)           # [filters]
        self.bounds = _bounds(self.side, pool)

    def patch_origins(self, n_images, filters):
        """(image, row, column) of each patch filter: one uniform draw [filters, 3] from filter_seed,
        row by row, so the first F of a larger draw are the draw of F."""
        u = np.random.default_rng([self.filter_seed, 4]).random((filters, 3))
        idx = np.minimum((u * [n_images, self.side, self.side]).astype(np.int64), [n_images - 1, self.side - 1,
                                                                                   self.side - 1])
        return idx[:, 0], idx[:, 1], idx[:, 2]

    @property
    def dim(self) -> int:
        return self.features_per_filter * self.filters

    @property
    def features_per_filter(self) -> int:
        return self.pool * self.pool * self.sides

    def transform(self, images, f0=0, f1: Optional[int] = None, batch=BATCH, threads=THREADS) -> np.ndarray:
        """Features of filters f0..f1 (default: all) of images [N, H, W(, C)], float32
        [N, pool * pool * sides * (f1 - f0)].  `threads` Python threads take turns over the image
        batches (the same result for any number): the matrix products run on all cores either
        way, and the element-wise passes (NumPy, one core each) overlap them."""
        x = _images(images)
        if x.shape[1:] != self.shape:
            raise ValueError(f"images are {x.shape[1:]}, the features were set up for {self.shape}")
        f1 = self.filters if f1 is None else f1
        w, off = self.weights[:, f0:f1], self.offset[f0:f1]
        nf, s, t = f1 - f0, self.side, np.float32(self.threshold)
        x = x[:, :s + self.patch - 1, :s + self.patch - 1]
        out = np.empty((x.shape[0], self.pool, self.pool, nf, self.sides), np.float32)
        # pooling: rows by a matrix product with the 0/1 matrix of the row regions (one pass over the
        # responses), then columns by a sum over the small result
        rows = np.zeros((self.pool, s), np.float32)
        for r, (a, b) in enumerate(zip(self.bounds, [*self.bounds[1:], s])):
            rows[r, a:b] = 1.0
        starts = range(0, x.shape[0], batch)

        def work(k):
            z = np.empty((min(batch, x.shape[0]) * s * s, nf), np.float32)  # reused: no page faults per batch
            h = np.empty_like(z) if self.sides == 2 else z
            for i in starts[k::threads]:
                b = x[i:i + batch]
                m = b.shape[0] * s * s
                p = _normalize(_patches(b.astype(np.float32), self.patch).reshape(m, -1))
                np.matmul(p, w, out=z[:m])
                if self.sides == 2:  # max(0, -(z - offset) - alpha), before z is overwritten
                    np.subtract(off - t, z[:m], out=h[:m])
                np.subtract(z[:m], off + t, out=z[:m])                  # max(0, (z - offset) - alpha)
                for side, resp in enumerate((z, h)[:self.sides]):
                    np.maximum(resp[:m], 0.0, out=resp[:m])
                    pooled = np.matmul(rows, resp[:m].reshape(b.shape[0], s, s * nf))
                    out[i:i + batch, ..., side] = np.add.reduceat(pooled.reshape(b.shape[0], self.pool, s, nf),
                                                                  self.bounds, 2)
        threads = max(1, min(threads, len(starts)))
        if threads == 1:
            work(0)
        else:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, range(threads)))
        return out.reshape(x.shape[0], -1)
