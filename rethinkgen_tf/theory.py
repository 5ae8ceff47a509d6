"""Finite-sample expressivity (Zhang et al. 2017, Section 4) and Rademacher estimates.

Theorem 1: for n distinct samples z_1..z_n in R^d and any targets y, the
depth-two ReLU network

    c(z) = sum_j w_j * relu(<a, z> - b_j)

represents y exactly on the sample.  `fit_theorem1` picks a (a random unit
direction, best of a few draws by the smallest gap between sorted projections),
puts the knots b_j inside the gaps (x_{j-1}, x_j) of the sorted projections
x_1 < ... < x_n, and solves the lower-triangular system A w = y
(A_ij = x_i - b_j for j <= i, else 0) in O(n) time and memory with the slope
recurrence below, in float64.  `build_model` turns the solution into a Keras
model with exactly d + n + n*K weights (K outputs; 2n + d for one output);
`build_deep_model` is the depth-k corollary with the same weights spread over
k - 1 ReLU layers of width ceil(n / (k-1)) + 1 + 2K.  See docs/theory.md.

The experiment of experiments/expressivity.py is `expressivity_experiment` (a random subset of a
dataset -> `theorem1_experiment`, then `rademacher_experiment`): plain arguments in, the summary
dict out (and its JSON, if asked).

O(n) solve.  c is piecewise linear with slope S_i = w_1 + ... + w_i on
(b_i, b_{i+1}), so with x_{i-1} < b_i < x_i:

    y_1 = S_1 (x_1 - b_1)
    y_i - y_{i-1} = S_{i-1} (b_i - x_{i-1}) + S_i (x_i - b_i)

gives S_i, then w_i = S_i - S_{i-1}.  An error in S_{i-1} reaches S_i times
r_i = (b_i - x_{i-1}) / (x_i - b_i); b_i = x_{i-1} + knot * (x_i - x_{i-1})
makes r_i = knot / (1 - knot) for every i, so knot < 0.5 damps errors
(default 0.1; knot=0.5 is the midpoint choice; knot > 0.5 is refused: with
r_i > 1 the recurrence amplifies rounding errors geometrically).  Lemma 1: A is lower
triangular with diagonal x_i - b_i, so its smallest eigenvalue is
min_i (x_i - b_i) = (1 - knot) * min gap.
"""
from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

from rethinkgen_tf.data import datasets


class Theorem1Fit(NamedTuple):
    a: np.ndarray        # [d] projection direction (unit norm), float64
    b: np.ndarray        # [n] knots, increasing, float64
    w: np.ndarray        # [n, K] output weights, float64
    x: np.ndarray        # [n] sorted projections x_1 < ... < x_n
    order: np.ndarray    # [n] sample index of the i-th smallest projection
    min_gap: float       # min_i (x_i - x_{i-1}) (with a of unit norm)
    lambda_min: float    # Lemma 1: smallest eigenvalue of A = min_i (x_i - b_i)
    residual: float      # max_i |(A w)_i - y_i|, A w evaluated with prefix sums in float64
    scalar: bool         # targets were 1-D: outputs have shape [N] instead of [N, 1]

    @property
    def num_weights(self) -> int:
        """d + n + n*K: the paper's count 2n + d per output, a and b shared across outputs."""
        return self.a.size + self.b.size + self.w.size


# --------------------------------------------------------------------------- input checks
def _samples(z) -> np.ndarray:
    z = np.asarray(z)
    if z.ndim < 1:
        raise ValueError("samples must have shape [n, ...], got a scalar")
    if z.shape[0] == 0:
        raise ValueError("no samples (n = 0): Theorem 1 needs at least one sample")
    z = z.reshape(z.shape[0], -1).astype(np.float64)
    if z.shape[1] == 0:
        raise ValueError(f"samples have no features (shape {z.shape})")
    if not np.all(np.isfinite(z)):
        raise ValueError("samples contain NaN or infinity")
    return z


def _targets(y, n) -> tuple[np.ndarray, bool]:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"targets must have shape [n] or [n, K] with n = {n} (the number of samples), "
                         f"got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("targets contain NaN or infinity")
    return (y[:, None], True) if y.ndim == 1 else (y, False)


def one_hot(labels, num_classes=None) -> np.ndarray:
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    k = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must lie in [0, {k})")
    return np.eye(k)[labels]


def check_distinct(z, y=None) -> None:
    """Raise ValueError naming a pair of identical samples (O(n log n): rows whose projections
    on a random direction tie are compared exactly)."""
    z = _samples(z)
    proj = z @ np.random.default_rng(12345).standard_normal(z.shape[1])
    order = np.argsort(proj, kind="stable")
    x = proj[order]
    tol = 1e-9 * max(1.0, float(np.max(np.abs(x))))
    for c in np.flatnonzero(np.diff(x) <= tol):
        i, j = sorted((int(order[c]), int(order[c + 1])))
        if not np.array_equal(z[i], z[j]):
            continue
        if y is None:
            why = "remove the duplicates first (the construction needs distinct samples)"
        elif not np.array_equal(np.asarray(y)[i], np.asarray(y)[j]):
            why = "their targets differ, so no function of the input can fit both"
        else:
            why = "their targets agree; remove the duplicates first (the construction needs distinct samples)"
        raise ValueError(f"samples {i} and {j} are identical: {why}")


# --------------------------------------------------------------------------- Theorem 1
def choose_direction(z, seed=0, tries=8):
    """A unit direction a with distinct projections <a, z_i>; best of `tries` Gaussian draws
    by the smallest gap between sorted projections.  Returns (a, sorted x, order, min_gap)."""
    z = _samples(z)
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(max(1, tries)):
        a = rng.standard_normal(z.shape[1])
        a /= np.linalg.norm(a)
        proj = z @ a
        order = np.argsort(proj, kind="stable")
        x = proj[order]
        gap = float(np.min(np.diff(x))) if x.size > 1 else math.inf
        # a gap below the rounding error of the projection does not separate two samples
        tol = 64 * np.finfo(np.float64).eps * max(1.0, float(np.max(np.abs(x))))
        if gap > tol and (best is None or gap > best[3]):
            best = (a, x, order, gap)
    if best is None:
        check_distinct(z)  # names identical samples if that is the cause
        raise ValueError(f"no direction out of {tries} separates the projections of the samples "
                         "by more than their rounding error; pass more tries or rescale the data")
    return best


def solve_lower(x, b, y):
    """Solve A w = y, A_ij = x_i - b_j (j <= i), in O(n) with the slope recurrence.  y: [n, K]."""
    n = x.size
    s = np.empty_like(y)
    s[0] = y[0] / (x[0] - b[0])
    left = b[1:] - x[:-1]      # b_i - x_{i-1}
    right = x[1:] - b[1:]      # x_i - b_i
    dy = np.diff(y, axis=0)
    for i in range(1, n):
        s[i] = (dy[i - 1] - s[i - 1] * left[i - 1]) / right[i - 1]
    w = np.diff(s, axis=0, prepend=np.zeros((1, y.shape[1])))
    return w


def apply_lower(x, b, w):
    """A w in O(n): (A w)_i = x_i S_i - T_i with S, T the prefix sums of w and b*w."""
    return x[:, None] * np.cumsum(w, axis=0) - np.cumsum(b[:, None] * w, axis=0)


def dense_matrix(x, b):
    """The n x n matrix A_ij = max(x_i - b_j, 0), for checks on small n."""
    return np.maximum(x[:, None] - b[None, :], 0.0)


def fit_theorem1(z, y, seed=0, knot=0.1, tries=8) -> Theorem1Fit:
    """The Theorem 1 network for samples z [n, ...] and targets y [n] or [n, K] (e.g. one-hot)."""
    z = _samples(z)
    y, scalar = _targets(y, z.shape[0])
    if not 0.0 < knot <= 0.5:
        raise ValueError(f"knot must lie in (0, 0.5], got {knot}: the O(n) recurrence multiplies errors by "
                         "knot / (1 - knot) per sample, which explodes for knot > 0.5")
    a, x, order, gap = choose_direction(z, seed, tries)
    n = x.size
    if n == 1:
        b = x - 1.0
    else:
        gaps = np.diff(x)
        b = np.concatenate([[x[0] - (1 - knot) * gaps[0]], x[:-1] + knot * gaps])
        gap = float(gaps.min())
    ys = y[order]
    w = solve_lower(x, b, ys)
    resid = float(np.max(np.abs(apply_lower(x, b, w) - ys)))
    lam = float(np.min(x - b))
    return Theorem1Fit(a, b, w, x, order, float(gap) if n > 1 else math.inf, lam, resid, scalar)


def predict_numpy(fit: Theorem1Fit, z, block=512) -> np.ndarray:
    """Evaluate the network literally, sum_j w_j relu(<a, z> - b_j), in float64 blocks."""
    z = _samples(z)
    if z.shape[1] != fit.a.size:
        raise ValueError(f"samples have {z.shape[1]} features, the network {fit.a.size}")
    t = z @ fit.a
    out = np.empty((t.size, fit.w.shape[1]))
    for i in range(0, t.size, block):
        out[i:i + block] = np.maximum(t[i:i + block, None] - fit.b[None, :], 0.0) @ fit.w
    return out[:, 0] if fit.scalar else out


def predict_fast(fit: Theorem1Fit, z) -> np.ndarray:
    """Same function in O(log n) per sample: c(t) = S_k t - T_k, k = #{j : b_j < t}."""
    z = _samples(z)
    t = z @ fit.a
    s = np.vstack([np.zeros((1, fit.w.shape[1])), np.cumsum(fit.w, axis=0)])
    tt = np.vstack([np.zeros((1, fit.w.shape[1])), np.cumsum(fit.b[:, None] * fit.w, axis=0)])
    k = np.searchsorted(fit.b, t, side="left")
    out = s[k] * t[:, None] - tt[k]
    return out[:, 0] if fit.scalar else out


def weight_norms(fit: Theorem1Fit) -> dict:
    return {"a_l2": float(np.linalg.norm(fit.a)), "b_l2": float(np.linalg.norm(fit.b)),
            "b_max_abs": float(np.max(np.abs(fit.b))),
            "w_l2": float(np.linalg.norm(fit.w)), "w_max_abs": float(np.max(np.abs(fit.w))),
            "w_l1": float(np.sum(np.abs(fit.w)))}


# --------------------------------------------------------------------------- Keras models
def _keras():
    import keras
    return keras


def _layers():
    keras = _keras()
    from keras import ops

    class Knots(keras.layers.Layer):
        """relu(t - b_j) for j = 1..n: n weights b (the unit's weight on t is the constant 1)."""

        def __init__(self, n, **kw):
            super().__init__(**kw)
            self.n = int(n)

        def build(self, input_shape):
            self.b = self.add_weight(shape=(self.n,), initializer="zeros", name="b")

        def call(self, t):
            return ops.relu(t - self.b)

        def get_config(self):
            return {**super().get_config(), "n": self.n}

    class DeepKnots(keras.layers.Layer):
        """One ReLU layer of the depth-k network: [u, s+, s-, relu(u - c_j) for this block].

        first=True: input is t = <a, z>; pre-activations [t - t0, 0, 0, t - t0 - c_j].
        Otherwise: input is the previous layer [u, s+ (K), s- (K), h (m_prev)];
        s = s+ - s- + h @ w_prev, pre-activations [u, s, -s, u - c_j].
        Weights: c (this block's knots, m) and w_prev (the previous block's output
        weights, m_prev x K), plus t0 in the first layer; the carries are constant +-1.
        """

        def __init__(self, m, k, m_prev=0, first=False, **kw):
            super().__init__(**kw)
            self.m, self.k, self.m_prev, self.first = int(m), int(k), int(m_prev), bool(first)

        def build(self, input_shape):
            self.c = self.add_weight(shape=(self.m,), initializer="zeros", name="c")
            if self.first:
                self.t0 = self.add_weight(shape=(), initializer="zeros", name="t0")
            else:
                self.w_prev = self.add_weight(shape=(self.m_prev, self.k), initializer="zeros", name="w_prev")

        def call(self, h):
            if self.first:
                u = h - self.t0
                s = ops.zeros_like(ops.repeat(u, self.k, axis=-1))
            else:
                u = h[:, :1]
                sp, sn = h[:, 1:1 + self.k], h[:, 1 + self.k:1 + 2 * self.k]
                s = sp - sn + ops.matmul(h[:, 1 + 2 * self.k:], self.w_prev)
            return ops.relu(ops.concatenate([u, s, -s, u - self.c], axis=-1))

        def get_config(self):
            return {**super().get_config(), "m": self.m, "k": self.k, "m_prev": self.m_prev,
                    "first": self.first}

    class DeepOutput(keras.layers.Layer):
        """Linear output s+ - s- + h @ w_last (weights: the last block's w, m x K)."""

        def __init__(self, m, k, **kw):
            super().__init__(**kw)
            self.m, self.k = int(m), int(k)

        def build(self, input_shape):
            self.w_last = self.add_weight(shape=(self.m, self.k), initializer="zeros", name="w_last")

        def call(self, h):
            k = self.k
            return h[:, 1:1 + k] - h[:, 1 + k:1 + 2 * k] + ops.matmul(h[:, 1 + 2 * k:], self.w_last)

        def get_config(self):
            return {**super().get_config(), "m": self.m, "k": self.k}

    return Knots, DeepKnots, DeepOutput


def build_model(fit: Theorem1Fit, input_shape=None, dtype="float64"):
    """Keras model of the depth-two network: Flatten -> Dense(1, no bias) [d weights a]
    -> Knots [n weights b] -> Dense(K, no bias) [n*K weights w].  Output [N, K]."""
    keras = _keras()
    Knots, _, _ = _layers()
    d, (n, k) = fit.a.size, fit.w.shape
    input_shape = (d,) if input_shape is None else tuple(input_shape)
    if int(np.prod(input_shape)) != d:
        raise ValueError(f"input_shape {input_shape} has {int(np.prod(input_shape))} features, the network {d}")
    inp = keras.Input(input_shape, dtype=dtype)
    proj = keras.layers.Dense(1, use_bias=False, dtype=dtype, name="project")
    knots = Knots(n, dtype=dtype, name="knots")
    out = keras.layers.Dense(k, use_bias=False, dtype=dtype, name="output")
    model = keras.Model(inp, out(knots(proj(keras.layers.Flatten(dtype=dtype)(inp)))), name="theorem1")
    proj.set_weights([fit.a[:, None]])
    knots.set_weights([fit.b])
    out.set_weights([fit.w])
    return model


def build_deep_model(fit: Theorem1Fit, depth, input_shape=None, dtype="float64"):
    """Depth-k corollary: the same function with k - 1 ReLU layers of width ceil(n/(k-1)) + 1 + 2K.

    Layer l holds the knots of block l; a carried input u = t - t0 >= 0 (t0 below every knot,
    so relu(u) = u wherever any knot is active) and the running sum s as (relu(s), relu(-s))
    pass through the ReLUs exactly.  Weights: d + n + n*K + 1 (t0)."""
    keras = _keras()
    _, DeepKnots, DeepOutput = _layers()
    depth = int(depth)
    if depth < 2:
        raise ValueError(f"depth must be >= 2, got {depth}")
    d, (n, k) = fit.a.size, fit.w.shape
    layers_n = depth - 1
    if layers_n > n:
        raise ValueError(f"depth {depth} needs at least {layers_n} samples (one knot per ReLU layer), got n = {n}")
    bounds = np.linspace(0, n, layers_n + 1).round().astype(int)
    t0 = float(fit.b[0] - 1.0 - abs(fit.b[0]))
    input_shape = (d,) if input_shape is None else tuple(input_shape)
    inp = keras.Input(input_shape, dtype=dtype)
    proj = keras.layers.Dense(1, use_bias=False, dtype=dtype, name="project")
    h = proj(keras.layers.Flatten(dtype=dtype)(inp))
    layers = []
    for l in range(layers_n):
        m = bounds[l + 1] - bounds[l]
        m_prev = bounds[l] - bounds[l - 1] if l else 0
        layer = DeepKnots(m, k, m_prev, first=(l == 0), dtype=dtype, name=f"relu{l + 1}")
        h = layer(h)
        layers.append(layer)
    out = DeepOutput(bounds[-1] - bounds[-2], k, dtype=dtype, name="output")
    model = keras.Model(inp, out(h), name=f"theorem1_depth{depth}")
    proj.set_weights([fit.a[:, None]])
    for l, layer in enumerate(layers):
        c = fit.b[bounds[l]:bounds[l + 1]] - t0
        if l == 0:
            layer.set_weights([c, np.array(t0)])
        else:
            layer.set_weights([c, fit.w[bounds[l - 1]:bounds[l]]])
    out.set_weights([fit.w[bounds[-2]:]])
    return model


def keras_predict(model, z, batch_size=256, dtype="float64"):
    """model(batch) over z in batches.  (model.predict casts float64 inputs to keras floatx,
    float32, which destroys the float64 model's exactness.)"""
    z = np.asarray(z)
    outs = [np.asarray(model(z[i:i + batch_size].astype(dtype), training=False))
            for i in range(0, z.shape[0], batch_size)]
    return np.concatenate(outs, axis=0)


# --------------------------------------------------------------------------- Rademacher complexity
def rademacher_estimate(fit_predict: Callable, x, num_draws=3, seed=0, progress=print) -> dict:
    """Empirical Rademacher complexity (1/n) E_sigma sup_h sum_i sigma_i h(x_i) of a class of
    {-1, +1}-valued functions, estimated by fitting random signs.

    fit_predict(x, sigma) trains a model of the class on labels sigma in {-1, +1}^n and returns
    its outputs on x; h = sign(output).  The fitted h is one member of the class, so
    (1/n) sum sigma_i h(x_i) = 2 * (training accuracy) - 1 is a lower bound on the sup for that
    sigma; the mean over draws estimates (a lower bound on) the complexity.  1 means the class
    fits every sign pattern tried.
    """
    x = np.asarray(x)
    n = x.shape[0]
    if n == 0:
        raise ValueError("no samples (n = 0)")
    if num_draws < 1:
        raise ValueError(f"num_draws must be >= 1, got {num_draws} (the estimate is a mean over draws)")
    rng = np.random.default_rng(seed)
    values = []
    for r in range(num_draws):
        sigma = rng.choice(np.array([-1.0, 1.0]), size=n)
        out = np.asarray(fit_predict(x, sigma), dtype=np.float64).reshape(n)
        h = np.where(out >= 0, 1.0, -1.0)
        values.append(float(np.mean(sigma * h)))
        if progress:
            progress(f"  rademacher draw {r + 1}/{num_draws}: (1/n) sum sigma_i h(x_i) = {values[-1]:.4f}")
    return {"estimate": float(np.mean(values)), "draws": values, "n": int(n)}


def theorem1_fit_predict(x, sigma):
    """fit_predict for rademacher_estimate with the Theorem 1 class (always fits: estimate 1)."""
    return predict_fast(fit_theorem1(x, sigma), x)


def keras_fit_predict(build: Callable, epochs=100, batch_size=128, learning_rate=0.01, seed=0,
                      progress=print):
    """fit_predict that trains build() -> keras.Model (2 softmax outputs) with SGD+momentum on the
    labels (sigma+1)/2 until 100% training accuracy or `epochs`; returns logit(1) - logit(0)."""
    keras = _keras()

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs and logs.get("accuracy", 0) >= 1.0:
                self.model.stop_training = True
            if progress and (epoch % 10 == 9 or (logs and logs.get("accuracy", 0) >= 1.0)):
                progress(f"    epoch {epoch + 1}: loss {logs['loss']:.4f} accuracy {logs['accuracy']:.4f}")

    def fit_predict(x, sigma):
        keras.utils.set_random_seed(seed)
        model = build()
        model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        labels = ((np.asarray(sigma) + 1) // 2).astype(np.int64)
        model.fit(x, labels, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[Stop()])
        logits = np.asarray(model.predict(x, batch_size=512, verbose=0))
        return logits[:, 1] - logits[:, 0]

    return fit_predict


# --------------------------------------------------------------------------- the experiment
# experiments/expressivity.py is its command line: each argument below is the flag of the same name,
# and errors name the flags (they reach the user as one line `error: ...`, see rethinkgen_tf.entry).
# the paper's inputs (CIFAR-10 at 28x28), for the datasets whose image size is known before reading
RADEMACHER_CROP = {d.name: d.crop for d in datasets.ALL if d.image_size is not None}


def _log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _quiet(msg):
    pass


def _accuracy(pred, labels):
    return float(np.mean(np.argmax(pred, axis=1) == labels))


def theorem1_experiment(x, y, xt, yt, num_classes, labels="random", seed=0, knot=0.1, tries=8, depth=0,
                        keras=True, progress: Optional[Callable] = _log) -> dict:
    """The Theorem 1 network for the training images x [n, ...] (true labels y) with `labels`
    ("random": uniform over the num_classes classes, seed `seed`; "true": y) as one-hot targets,
    without any training.  Returns its summary: n, d, num_classes, labels, weights (d + n + n*K),
    min_gap, lambda_min (Lemma 1), residual_recurrence (of the O(n) solve), solve_seconds,
    residual_network_float64, train/test accuracy of the float64 NumPy network (test: xt against
    the true labels yt), norms; with keras, train/test accuracy of the Keras model in float64 and
    float32; with depth >= 2, "deep": the depth-k network's depth, weights, widths, train_acc and
    max_diff_vs_depth2."""
    log = progress or _quiet
    n = x.shape[0]
    k = num_classes
    if labels == "random":
        targets = np.random.default_rng(seed).integers(0, k, n)
    elif labels == "true":
        targets = y
    else:
        raise ValueError(f"--labels must be random or true, not {labels!r}")
    log(f"checking {n} samples are distinct")
    check_distinct(x, targets)
    t = time.time()
    fit = fit_theorem1(x, one_hot(targets, k), seed=seed, knot=knot, tries=tries)
    solve_s = time.time() - t
    d = fit.a.size
    log(f"Theorem 1 network: n={n} d={d} K={k}: {fit.num_weights} weights (= d + n + n*K; "
        f"{2 * n + d} = 2n + d per output); O(n) solve {solve_s:.2f} s")
    log(f"min gap {fit.min_gap:.3e}, Lemma 1 smallest eigenvalue {fit.lambda_min:.3e}, "
        f"max |A w - y| {fit.residual:.3e}")
    t = time.time()
    p = predict_numpy(fit, x)
    r = dict(n=n, d=d, num_classes=k, labels=labels, weights=fit.num_weights, min_gap=fit.min_gap,
             lambda_min=fit.lambda_min, residual_recurrence=fit.residual, solve_seconds=solve_s,
             residual_network_float64=float(np.max(np.abs(p - one_hot(targets, k)))),
             train_acc_numpy_float64=_accuracy(p, targets),
             test_acc_numpy_float64=_accuracy(predict_numpy(fit, xt), yt),
             norms=weight_norms(fit))
    log(f"float64 NumPy network: max |c(z_i) - y_i| = {r['residual_network_float64']:.3e}, "
        f"train acc {r['train_acc_numpy_float64']:.4f} ({labels} labels), "
        f"test acc {r['test_acc_numpy_float64']:.4f} (true test labels) [{time.time() - t:.1f} s]")
    log(f"weight norms: {r['norms']}")
    if keras:
        for dtype in ("float64", "float32"):
            t = time.time()
            model = build_model(fit, x.shape[1:], dtype=dtype)
            assert model.count_params() == fit.num_weights
            r[f"train_acc_keras_{dtype}"] = _accuracy(keras_predict(model, x, dtype=dtype), targets)
            r[f"test_acc_keras_{dtype}"] = _accuracy(keras_predict(model, xt, dtype=dtype), yt)
            log(f"Keras {dtype} model ({model.count_params()} params): train acc "
                f"{r[f'train_acc_keras_{dtype}']:.4f}, test acc {r[f'test_acc_keras_{dtype}']:.4f} "
                f"[{time.time() - t:.1f} s]")
    if depth:
        t = time.time()
        model = build_deep_model(fit, depth, x.shape[1:])
        pd = keras_predict(model, x)
        r["deep"] = dict(depth=depth, weights=model.count_params(),
                         widths=[int(l.output.shape[-1]) for l in model.layers[3:-1]],
                         train_acc=_accuracy(pd, targets),
                         max_diff_vs_depth2=float(np.max(np.abs(pd - p))))
        log(f"depth-{depth} Keras float64 model: {r['deep']}  [{time.time() - t:.1f} s]")
    return r


def check_rademacher_models(names: Sequence[str], dataset) -> None:
    """Builds each model (rethinkgen_tf.models names) once on the input shape that
    rademacher_experiment gives it (a few seconds), so that a bad name or a model that cannot
    take these inputs stops the run before any work (ValueError naming --rademacher_models)."""
    from rethinkgen_tf import models
    if not names:
        return
    if dataset not in RADEMACHER_CROP:
        raise ValueError(f"--dataset={dataset}: Rademacher estimates are for {sorted(RADEMACHER_CROP)}")
    record = datasets.BY_NAME[dataset]
    side = record.crop or record.image_size
    shape = (side, side, record.channels)
    for name in names:
        if not models.known(name):
            raise ValueError(f"--rademacher_models: unknown model {name!r}; known: {models.NAMES}")
        try:
            models.build(name, shape, 2)
        except ValueError as e:
            raise ValueError(f"--rademacher_models: {name} on {shape[0]}x{shape[1]}x{shape[2]} images: "
                             f"{e}") from e
        if models.family(name) not in models.DEFAULT_LEARNING_RATE:  # no silent learning rate
            raise ValueError(f"--rademacher_models: {name} has no built-in learning rate; the "
                             "estimates train the CIFAR-10 families' models (inception, alexnet, "
                             "mlp_NxW, wrn_D_K, linear)")


def rademacher_experiment(x, dataset, model_names: Sequence[str] = (), n=1000, draws=3, epochs=100, seed=0,
                          progress: Optional[Callable] = _log) -> dict:
    """Empirical Rademacher complexity (rademacher_estimate) of each model in model_names and of
    the Theorem 1 class, on n random images of x (raw pixels 0..255; seed seed + 1, as the
    subsets of expressivity_experiment).  The models see the paper's inputs (per-image
    standardized, CIFAR-10 center-cropped to 28x28: RADEMACHER_CROP) and train with their
    family's default learning rate for at most `epochs` epochs per draw; the Theorem 1 class
    sees the raw pixels.  Returns {name: {estimate, draws, n, seconds}, "theorem1": {estimate,
    draws, n}}."""
    from rethinkgen_tf import models
    from rethinkgen_tf.data.preprocess import preprocess
    from rethinkgen_tf.data.sources import random_subset
    log = progress or _quiet
    # random images (seed + 1, as the n subset; CIFAR-10 class folders are class-sorted)
    x, _ = random_subset(x, np.zeros(x.shape[0]), n, seed + 1)
    n = x.shape[0]
    crop = RADEMACHER_CROP[dataset]
    xs = np.asarray(preprocess(x, crop=crop, standardize=True))
    res = {}
    for name in model_names:
        lr = models.DEFAULT_LEARNING_RATE[models.family(name)]  # checked up front
        log(f"Rademacher estimate of {name} on {n} images (lr {lr}, <= {epochs} epochs)")
        fp = keras_fit_predict(lambda: models.build(name, xs.shape[1:], 2), epochs=epochs,
                               learning_rate=lr, seed=seed, progress=progress)
        t = time.time()
        res[name] = rademacher_estimate(fp, xs, draws, seed, progress=progress)
        res[name]["seconds"] = time.time() - t
        log(f"{name}: empirical Rademacher complexity >= {res[name]['estimate']:.4f}")
    res["theorem1"] = rademacher_estimate(theorem1_fit_predict, x.reshape(n, -1), draws, seed, progress=None)
    log(f"Theorem 1 class: {res['theorem1']['estimate']:.4f}")
    return res


def expressivity_experiment(dataset="cifar10", data_dir=None, n=None, test_n=None, labels="random", seed=0,
                            knot=0.1, tries=8, depth=0, keras=True, rademacher_models: Sequence[str] = (),
                            rademacher_n=1000, rademacher_draws=3, rademacher_epochs=100, out=None,
                            progress: Optional[Callable] = _log) -> dict:
    """experiments/expressivity.py: the Theorem 1 network (theorem1_experiment) for a random subset
    of n training and test_n test images (seed seed + 1, kept in index order; None: all) of
    `dataset` (read from data_dir, None: tensorflow-datasets), then, if rademacher_models names
    any, the Rademacher estimates (rademacher_experiment).  Returns the summary {dataset, seed,
    knot, theorem1[, rademacher]} and writes it as JSON to `out` if given (atomically).

    Checks what it can before any work: out is a writable file name, each Rademacher model
    builds on its inputs, and there are at least depth - 1 training images."""
    from rethinkgen_tf import results
    from rethinkgen_tf.data.sources import load_subsets
    log = progress or _quiet
    if not 0.0 < knot <= 0.5:
        raise ValueError(f"--knot must lie in (0, 0.5], got {knot}")
    if depth == 1 or depth < 0:
        raise ValueError(f"--depth must be 0 (skip) or >= 2, got {depth}")
    results.check_out(out)
    if rademacher_models:
        check_rademacher_models(rademacher_models, dataset)
    # random subsets (seed + 1), kept in index order
    x, y, xt, yt, names = load_subsets(dataset, data_dir, n, test_n, seed + 1)
    log(f"{dataset}: {x.shape[0]} train, {xt.shape[0]} test images {x.shape[1:]}, raw pixels 0..255")
    if depth > x.shape[0] + 1:
        raise ValueError(f"--depth={depth} needs at least depth - 1 = {depth - 1} training images "
                         f"(one knot per ReLU layer), got {x.shape[0]}")
    summary = {"dataset": dataset, "seed": seed, "knot": knot}
    summary["theorem1"] = theorem1_experiment(x, y, xt, yt, len(names), labels=labels, seed=seed, knot=knot,
                                              tries=tries, depth=depth, keras=keras, progress=progress)
    if rademacher_models:
        summary["rademacher"] = rademacher_experiment(x, dataset, rademacher_models, rademacher_n,
                                                      rademacher_draws, rademacher_epochs, seed, progress)
    if out:
        results.write_json(out, summary)  # atomic: no half-written file on interruption
        log(f"wrote {out}")
    return summary
