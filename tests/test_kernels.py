"""Kernel interpolation: kernel matrices, the direct and mixed-precision solvers, random conv features,
the blockwise distance accumulation and its checkpoints, the validation choice, the experiment."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from test_entry_points import _PARSE, write_idx_dataset  # flag parsing in a child; synthetic MNIST-format files

from rethinkgen_tf import kernels, results
from rethinkgen_tf.data.sources import load_subsets
from rethinkgen_tf.kernels import distances as kernel_distances
from rethinkgen_tf.kernels import features as kernel_features

FASHION = os.environ.get("RETHINKGEN_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")


def _experiment(*args, progress=None, **kw):
    """kernel_experiment of the KernelConfig of these arguments."""
    return kernels.kernel_experiment(kernels.KernelConfig(*args, **kw), progress=progress)


def _data(n=400, d=10, k=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    labels = rng.integers(0, k, n)
    return x, labels, np.eye(k)[labels]


def test_rbf_and_median():
    x, _, _ = _data(50)
    brute = np.exp(-((x[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1) / (2 * 1.7 ** 2))
    np.testing.assert_allclose(kernels.rbf(x, x, 1.7, np.float64), brute, atol=1e-12)
    np.testing.assert_allclose(kernels.rbf(x, x, 1.7), brute, atol=1e-5)
    d = np.sqrt(((x[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1))
    assert kernels.median_distance(x, sample=50) == pytest.approx(np.median(d[np.triu_indices(50, 1)]), rel=1e-6)


def test_operator_matvec_matches_dense():
    x, _, _ = _data(333)
    dense = kernels.DenseKernel(x, 2.0)
    op = kernels.KernelOperator(x, 2.0, block=64)
    v = np.random.default_rng(1).standard_normal((333, 3))
    np.testing.assert_allclose(op.matvec(v), dense.matvec(v), atol=1e-5)


@pytest.mark.parametrize("n, block", [(300, 64), (256, 64), (50, 128)])
def test_float32_cholesky_in_place(n, block):
    x, _, _ = _data(n)
    dense = kernels.DenseKernel(x, 2.0)
    f = kernels.Float32Cholesky(x, 2.0, jitter=1e-3, block=block, progress=None)
    lower = np.tril(f.a).astype(np.float64)
    np.testing.assert_allclose(lower @ lower.T, dense.k + 1e-3 * np.eye(n), atol=1e-5)
    r = np.random.default_rng(2).standard_normal((n, 2))
    np.testing.assert_allclose(f.solve(r), np.linalg.solve(dense.k + 1e-3 * np.eye(n), r),
                               rtol=1e-2, atol=1e-3 * np.abs(np.linalg.solve(dense.k, r)).max())


def test_float32_cholesky_not_positive_definite():
    x, _, _ = _data(40)
    x = np.vstack([x, x[:1]])  # a duplicate point: K is singular
    with pytest.raises(np.linalg.LinAlgError, match="positive definite"):
        kernels.Float32Cholesky(x, 50.0, block=16, progress=None)


def test_direct_interpolates():
    x, labels, y = _data()
    kmat, sol = kernels.interpolate(x, y, 2.0, method="direct", progress=None)
    assert sol.residual_max < 1e-8
    assert np.all(np.argmax(sol.fitted, 1) == labels)
    np.testing.assert_allclose(sol.fitted, kmat.matvec(sol.alpha))
    norm = kernels.rkhs_norm(sol.alpha, sol.fitted)
    assert norm == pytest.approx(np.sqrt(np.sum(sol.alpha * y)), rel=1e-6)
    # prediction at the training points is the fit
    np.testing.assert_allclose(kernels.predict(x, sol.alpha, x, 2.0), y, atol=1e-3)


@pytest.mark.parametrize("ridge", [0.0, 1e-2])
def test_mixed_matches_direct(ridge):
    x, _, y = _data(600)
    _, ref = kernels.interpolate(x, y, 2.0, ridge=ridge, method="direct", progress=None)
    kmat, sol = kernels.interpolate(x, y, 2.0, ridge=ridge, method="mixed", tol=1e-9, max_abs_tol=1e-8,
                                    progress=None)
    assert isinstance(kmat, kernels.LargeKernel)
    # float64 accuracy from a float32 factor, in a few refinement iterations
    assert sol.residual_max < 1e-8 and sol.iterations < 15
    # the same alpha as a float64 solve with the operator's own K, to float64 accuracy ...
    k_op = kmat.op.matvec(np.eye(600))
    exact = np.linalg.solve(k_op + ridge * np.eye(600), y)
    np.testing.assert_allclose(sol.alpha, exact, atol=1e-7 * np.abs(exact).max())
    # ... and as the direct solver, up to the operator's float32 cross term |x_i|^2 + |x_j|^2 - 2 x_i.x_j
    np.testing.assert_allclose(sol.alpha, ref.alpha, atol=1e-4 * np.abs(ref.alpha).max())
    # the factor is reused for another right-hand side or ridge
    _, again = kernels.interpolate(x, y[:, :1], 2.0, ridge=ridge, method="mixed", kmat=kmat, progress=None)
    assert again.residual_max < 1e-3


def test_mixed_adds_jitter_when_float32_needs_it():
    x, labels, y = _data(200)
    # a near-duplicate (|x_i - x_j|^2 / 2 sigma^2 = 1.25e-10): K is positive definite in float64, its
    # float32 copy is singular
    x = np.vstack([x, x[:1] + np.float32(1e-5)])
    y = np.vstack([y, y[:1]])
    kmat, sol = kernels.interpolate(x, y, 2.0, method="mixed", tol=1e-6, max_abs_tol=1e-4, progress=None)
    assert kmat.jitter > 0
    assert sol.residual_max < 1e-4


def test_bad_input():
    x, _, y = _data(20)
    with pytest.raises(ValueError, match="targets"):
        kernels.interpolate(x, y[:19], 1.0, progress=None)
    with pytest.raises(ValueError, match="bandwidth"):
        kernels.interpolate(x, y, 0.0, progress=None)
    with pytest.raises(ValueError, match="method"):
        kernels.interpolate(x, y, 1.0, method="lu", progress=None)
    with pytest.raises(ValueError, match="n >= 1"):
        kernels.rbf(np.zeros((0, 3)), x[:, :3], 1.0)


def test_fashion_mnist_subset():
    from rethinkgen_tf.data.sources import load_arrays
    if not os.path.isdir(FASHION):
        pytest.skip(f"Fashion-MNIST not found at {FASHION} (apt-get install dataset-fashion-mnist)")
    x, y, _ = load_arrays("fashion_mnist", FASHION)
    xt, yt, _ = load_arrays("fashion_mnist", FASHION, "test")
    x = x[:1500].reshape(1500, -1) / 255.0
    xt = xt[:500].reshape(500, -1) / 255.0
    sigma = 0.25 * kernels.median_distance(x)
    yr = np.random.default_rng(0).integers(0, 10, 1500)
    kmat, sol = kernels.interpolate(x, np.hstack([np.eye(10)[y[:1500]], np.eye(10)[yr]]), sigma, progress=None)
    fit = sol.fitted
    assert np.all(np.argmax(fit[:, :10], 1) == y[:1500]) and np.all(np.argmax(fit[:, 10:], 1) == yr)
    pred = kernels.predict(x, sol.alpha, xt, sigma)
    assert np.mean(np.argmax(pred[:, :10], 1) != yt[:500]) < 0.3      # true labels generalize
    assert np.mean(np.argmax(pred[:, 10:], 1) != yt[:500]) > 0.75     # random labels: chance
    assert kernels.rkhs_norm(sol.alpha[:, 10:], fit[:, 10:]) > kernels.rkhs_norm(sol.alpha[:, :10], fit[:, :10])


@pytest.mark.slow
def test_kernel_experiment_smoke(tmp_path):
    import json
    import subprocess
    import sys
    if not os.path.isdir(FASHION):
        pytest.skip(f"Fashion-MNIST not found at {FASHION} (apt-get install dataset-fashion-mnist)")
    out = tmp_path / "k.json"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # one bandwidth for both rows (the validation would choose the ridge row's own), so that the norms compare
    subprocess.run([sys.executable, "-m", "experiments.kernel", f"--data_dir={FASHION}", "--n=500",
                    "--test_n=300", "--method=mixed", "--bandwidth_factor=0.25", f"--out={out}"],
                   check=True, cwd=repo, capture_output=True)
    r = json.loads(out.read_text())["results"]
    assert r["true"]["train_error"] == 0 and r["random"]["train_error"] == 0
    assert r["true"]["test_error"] < 0.4 and r["random"]["test_error"] > 0.7
    assert r["true_ridge"]["rkhs_norm"] < r["true"]["rkhs_norm"]




# ---------------------------------------- features (rethinkgen_tf/kernels/features.py)
def _images(n=6, size=12, channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels)).astype(np.uint8)


def test_raw_features():
    imgs = _images(3, 28, 1)[..., 0]
    f = kernel_features.raw_features(imgs)
    assert f.shape == (3, 784) and f.dtype == np.float32
    np.testing.assert_array_equal(f, imgs.reshape(3, -1).astype(np.float32) / 255.0)
    g = kernel_features.raw_features(imgs, "standardize")
    np.testing.assert_allclose(g.mean(1), 0, atol=1e-6)
    np.testing.assert_allclose(g.std(1), 1, rtol=1e-5)
    import tensorflow as tf  # the same as the training pipeline's per-image standardization
    ref = tf.image.per_image_standardization(tf.constant(imgs[..., None], tf.float32) / 255.0).numpy()
    np.testing.assert_allclose(g, ref.reshape(3, -1), atol=1e-5)
    with pytest.raises(ValueError, match="--preprocess"):
        kernel_features.raw_features(imgs, "zca")


def test_random_conv_features():
    imgs = _images()
    fm = kernel_features.RandomConvFeatures(imgs, filters=8, patch=3, pool=2, threshold=0.5)
    f = fm.transform(imgs)
    assert f.shape == (6, 2 * 2 * 8) == (6, fm.dim) and f.dtype == np.float32 and np.all(f >= 0)
    # deterministic for a seed, different for another
    again = kernel_features.RandomConvFeatures(imgs, filters=8, patch=3, pool=2, threshold=0.5).transform(imgs)
    np.testing.assert_array_equal(f, again)
    two = fm.transform(imgs, batch=2, threads=1)   # the number of threads changes nothing
    np.testing.assert_array_equal(fm.transform(imgs, batch=2, threads=3), two)
    np.testing.assert_allclose(two, f, rtol=1e-6)    # the batch size, float32 rounding
    other = kernel_features.RandomConvFeatures(imgs, filters=8, patch=3, pool=2, threshold=0.5, seed=1)
    assert not np.array_equal(f, other.transform(imgs))
    # filter blocks are the features of those filters; a layer's first filters are a smaller layer's
    full = f.reshape(6, 2, 2, 8, 1)
    block = fm.transform(imgs, 3, 7).reshape(6, 2, 2, 4, 1)
    np.testing.assert_allclose(block, full[:, :, :, 3:7], rtol=1e-5)
    small = kernel_features.RandomConvFeatures(imgs, filters=3, patch=3, pool=2, threshold=0.5).transform(imgs)
    np.testing.assert_allclose(small.reshape(6, 2, 2, 3, 1), full[:, :, :, :3], rtol=1e-5)
    # two-sided: max(0, z - t) and max(0, -z - t); pooling sums over regions; one channel
    two = kernel_features.RandomConvFeatures(imgs, filters=8, patch=3, pool=3, threshold=0.0, two_sided=True)
    assert two.transform(imgs).shape == (6, 3 * 3 * 8 * 2)
    g = kernel_features.RandomConvFeatures(imgs[..., :1], filters=8, patch=3, pool=2, seed=1)
    assert g.transform(imgs[..., :1]).shape == (6, 32) and g.transform(imgs[:2, ..., 0]).shape == (2, 32)
    with pytest.raises(ValueError, match="need kernel"):
        kernel_features.RandomConvFeatures(imgs, patch=12, pool=2)
    with pytest.raises(ValueError, match="set up for"):
        fm.transform(imgs[..., :1])
    with pytest.raises(ValueError, match="6 training image.* 54 10x10 patches, fewer than the 300 dimensions"):
        kernel_features.RandomConvFeatures(imgs, patch=10, pool=2)
    assert kernel_features.RandomConvFeatures(imgs, patch=10, pool=2, whiten=False).dim == 4 * 1024


def test_random_conv_features_by_hand():
    """One filter, one image: normalize, whiten, project, threshold, pool, written out literally."""
    imgs = _images(4, 7, 2)
    fm = kernel_features.RandomConvFeatures(imgs, filters=2, patch=3, pool=2, threshold=0.3, two_sided=True)
    side, d = 5, 3 * 3 * 2
    out = np.zeros((2, 2, 2, 2))
    for r in range(side):
        for c in range(side):
            p = imgs[1, r:r + 3, c:c + 3].transpose(2, 0, 1).reshape(d).astype(np.float64)
            p = (p - p.mean()) / np.sqrt(p.var() + kernel_features.PATCH_NORM_EPS)
            z = p @ fm.weights - fm.offset
            region = (int(r >= 2), int(c >= 2))   # regions of 5 positions: [0, 2), [2, 5)
            out[region][:, 0] += np.maximum(z - 0.3, 0)
            out[region][:, 1] += np.maximum(-z - 0.3, 0)
    np.testing.assert_allclose(fm.transform(imgs[1:2])[0], out.reshape(-1), rtol=1e-4, atol=1e-4)


def test_zca_whitens_the_patches():
    """Responses of unit filters in the whitened space have covariance w_i . w_j on the patches' support
    (normalized patches sum to 0: the orthogonal complement of the constant patch), not the pixels'."""
    imgs = _images(40, 10, 1, seed=3)
    fm = kernel_features.RandomConvFeatures(imgs, filters=4, patch=2, pool=1, zca_eps=1e-9, filters_from="gaussian")
    p = kernel_features._normalize(kernel_features._patches(imgs.astype(np.float32), 2).reshape(-1, 4).copy())
    z = p.astype(np.float64) @ fm.weights - fm.offset
    w = np.random.default_rng(0).standard_normal((4, 4))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    support = np.eye(4) - 1 / 4
    # the statistics are of 100,000 patches drawn with replacement from these 3,240: close, not equal
    np.testing.assert_allclose(np.cov(z, rowvar=False), w @ support @ w.T, atol=0.03)
    np.testing.assert_allclose(z.mean(0), 0, atol=0.03)
    raw = kernel_features.RandomConvFeatures(imgs, filters=4, patch=2, pool=1, whiten=False, filters_from="gaussian")
    assert np.abs(np.cov(p.astype(np.float64) @ raw.weights, rowvar=False) - w @ support @ w.T).max() > 0.1


# ---------------------------------------- distances (rethinkgen_tf/kernels/distances.py)
def _blocks(n=37, t=11, dims=(5, 7, 3), seed=0):
    rng = np.random.default_rng(seed)
    fs = [rng.standard_normal((n + t, d)).astype(np.float32) * rng.uniform(0.5, 20, d).astype(np.float32) + 3
          for d in dims]
    return fs, n, t


def _reference(fs, n, standardize):
    f = np.hstack(fs).astype(np.float64)
    f -= f[:n].mean(0)
    if standardize:
        f /= f[:n].std(0)
    return kernels.sq_dists(f[:n], f[:n], np.float64), kernels.sq_dists(f[n:], f[:n], np.float64)


@pytest.mark.parametrize("standardize", [False, True])
def test_blockwise_distances_equal_one_shot(standardize):
    fs, n, t = _blocks()
    d = kernel_distances.accumulate(lambda b: fs[b], len(fs), n, t, standardize, row_block=8, progress=None)
    ref_tr, ref_te = _reference(fs, n, standardize)
    scale = ref_tr.max()
    lower = np.tril_indices(n)
    np.testing.assert_allclose(d.train[lower], ref_tr[lower], atol=1e-5 * scale)
    np.testing.assert_allclose(d.test, ref_te, atol=1e-5 * scale)
    assert np.all(np.diag(d.train) == 0) and np.all(d.train[np.triu_indices(n, 1)] == 0)   # lower triangle only
    np.testing.assert_allclose(d.gather([3, 30, 5], [30, 1]), ref_tr[np.ix_([3, 30, 5], [30, 1])], atol=1e-5 * scale)
    # the one-block accumulation of the concatenation: the same to float32 round-off
    one = kernel_distances.accumulate(lambda b: np.hstack(fs), 1, n, t, standardize, progress=None)
    np.testing.assert_allclose(one.train, d.train, atol=1e-5 * scale)


def test_solvers_on_distances_match_features():
    x, _, y = _data(300)
    fs, n = [x[:, :4], x[:, 4:]], 300
    d = kernel_distances.accumulate(lambda b: np.vstack([fs[b], fs[b][:7]]), 2, n, 7, progress=None)
    np.testing.assert_allclose(kernels.DenseKernel(d, 2.0).k, kernels.DenseKernel(x, 2.0).k, atol=1e-6)
    v = np.random.default_rng(1).standard_normal((n, 3))
    np.testing.assert_allclose(kernels.KernelOperator(d, 2.0, block=64).matvec(v),
                               kernels.DenseKernel(x, 2.0).matvec(v), atol=1e-4)
    f_d = kernels.Float32Cholesky(d, 2.0, jitter=1e-3, block=64, progress=None)
    f_x = kernels.Float32Cholesky(x, 2.0, jitter=1e-3, block=64, progress=None)
    np.testing.assert_allclose(np.tril(f_d.a), np.tril(f_x.a), atol=1e-4)
    for method in ("direct", "mixed"):
        _, sol = kernels.interpolate(d, y, 2.0, method=method, tol=1e-9, max_abs_tol=1e-8, progress=None)
        _, ref = kernels.interpolate(x, y, 2.0, method="direct", progress=None)
        assert sol.residual_max < 1e-8
        np.testing.assert_allclose(sol.alpha, ref.alpha, atol=1e-3 * np.abs(ref.alpha).max())
        np.testing.assert_allclose(kernels.predict(None, sol.alpha, d.test, 2.0), y[:7], atol=1e-4)
    assert d.median_distance(sample=300) == pytest.approx(kernels.median_distance(x, sample=300), rel=1e-5)


def _accumulate(state, fs, n, t, fail_at=None, config=None, every=0.0):
    def features(b):
        if b == fail_at:
            raise KeyboardInterrupt
        return fs[b]
    with kernel_distances.StateLock(state):
        return kernel_distances.accumulate(features, len(fs), n, t, True, state, config or {"c": 1}, every,
                                           progress=None)


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    fs, n, t = _blocks(dims=(5, 7, 3, 4, 6))
    ref = kernel_distances.accumulate(lambda b: fs[b], len(fs), n, t, True, progress=None)
    state = tmp_path / "state"
    with pytest.raises(KeyboardInterrupt):
        _accumulate(state, fs, n, t, fail_at=3)                    # blocks 0-2 done and checkpointed
    lines = []
    with kernel_distances.StateLock(state):
        d = kernel_distances.accumulate(lambda b: fs[b] if b >= 3 else pytest.fail(f"block {b} again"), len(fs),
                                        n, t, True, state, {"c": 1}, 0.0, progress=lines.append)
    assert d.blocks_resumed == 3 and any("resuming" in line and "3/5 blocks" in line for line in lines)
    np.testing.assert_array_equal(d.train, ref.train)
    np.testing.assert_array_equal(d.test, ref.test)
    # a finished state: nothing is computed again
    d = _accumulate(state, [None] * 5, n, t)
    assert d.blocks_resumed == 5
    np.testing.assert_array_equal(d.train, ref.train)
    # without intermediate checkpoints a rerun starts over, with the same result
    state2 = tmp_path / "state2"
    with pytest.raises(KeyboardInterrupt):
        _accumulate(state2, fs, n, t, fail_at=4, every=1e9)
    assert not (state2 / kernel_distances.PROGRESS).exists()
    np.testing.assert_array_equal(_accumulate(state2, fs, n, t, every=1e9).train, ref.train)


_KILLED = """
import os, signal, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_kernels import _blocks
from rethinkgen_tf.kernels import distances as kernel_distances
fs, n, t = _blocks(dims=(5, 7, 3, 4, 6))
where = sys.argv[3]
if where == "save":   # killed while writing the second checkpoint: its data written, progress.json not yet
    calls = []
    real = os.replace
    def replace(a, b):   # results.atomic_write's, which writes config.json and progress.json
        if str(b).endswith(kernel_distances.PROGRESS):
            calls.append(a)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        real(a, b)
    kernel_distances.os.replace = replace
def features(b):
    if where == "block" and b == 3:
        os.kill(os.getpid(), signal.SIGKILL)   # kill -9 in the middle of the run
    return fs[b]
kernel_distances.accumulate(features, 5, n, t, True, sys.argv[2], {"c": 1}, 0.0, progress=None)
"""


@pytest.mark.parametrize("where", ["block", "save"])
def test_resume_after_kill_9(tmp_path, where):
    fs, n, t = _blocks(dims=(5, 7, 3, 4, 6))
    ref = kernel_distances.accumulate(lambda b: fs[b], len(fs), n, t, True, progress=None)
    state = tmp_path / "state"
    here = os.path.dirname(os.path.abspath(__file__))
    p = subprocess.run([sys.executable, "-c", _KILLED, here, str(state), where], capture_output=True, text=True,
                       cwd=os.path.dirname(here))
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    files = {f.name for f in state.iterdir()}
    if where == "save":   # the interrupted checkpoint's file is there, progress.json names the one before
        assert {"dists.bin.1", "dists.bin.2"} <= files and any(results.TMP_TAG in f for f in files)
    d = _accumulate(state, fs, n, t)
    assert d.blocks_resumed == (3 if where == "block" else 1)
    assert {f.name for f in state.iterdir()} == {".lock", "config.json", "progress.json", "dists.bin.5"}
    np.testing.assert_array_equal(d.train, ref.train)
    np.testing.assert_array_equal(d.test, ref.test)


def test_bad_states_are_one_line(tmp_path):
    fs, n, t = _blocks()
    state = tmp_path / "state"
    _accumulate(state, fs, n, t, config={"c": 1, "filters": 8})
    with pytest.raises(ValueError, match=r"another configuration \(filters: 8 there, 16 now\)") as e:
        _accumulate(state, fs, n, t, config={"c": 1, "filters": 16})
    assert "\n" not in str(e.value)
    path = state / "dists.bin.3"
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 4)
    with pytest.raises(results.StateError, match="damaged") as e:
        _accumulate(state, fs, n, t, config={"c": 1, "filters": 8})
    assert "\n" not in str(e.value)
    path.write_bytes(b"garbage")
    with pytest.raises(results.StateError, match="not a checkpoint"):
        _accumulate(state, fs, n, t, config={"c": 1, "filters": 8})
    (state / kernel_distances.PROGRESS).write_text("{")
    with pytest.raises(results.StateError):
        _accumulate(state, fs, n, t, config={"c": 1, "filters": 8})
    with kernel_distances.StateLock(state):     # another process (or open file) holds the state
        with pytest.raises(ValueError, match="in use by process") as e:
            _accumulate(state, fs, n, t, config={"c": 1, "filters": 8})
    assert "\n" not in str(e.value)


# ---------------------------------------- validation
def test_validate_and_best():
    x, labels, _ = _data(120, d=6)
    val, fit = kernels.validation_split(120, 30, 60, seed=4)
    assert len(set(val) | set(fit)) == 90 and not set(val) & set(fit)
    rows = kernels.validate(x, labels, 4, val, fit, [1.0, 3.0], [0.0, 0.1], progress=None)
    assert [(r["sigma"], r["ridge"]) for r in rows] == [(1.0, 0.0), (1.0, 0.1), (3.0, 0.0), (3.0, 0.1)]
    for r in rows:   # each is the error of that solve, by hand
        k = np.exp(-kernels.sq_dists(x[fit], x[fit], np.float64) / (2 * r["sigma"] ** 2)) + r["ridge"] * np.eye(60)
        alpha = np.linalg.solve(k, np.eye(4)[labels[fit]])
        pred = np.exp(-kernels.sq_dists(x[val], x[fit], np.float64) / (2 * r["sigma"] ** 2)) @ alpha
        assert r["val_error"] == np.mean(np.argmax(pred, 1) != labels[val])
    rows = [dict(sigma=1.0, ridge=0.0, val_error=0.5), dict(sigma=2.0, ridge=0.0, val_error=0.4),
            dict(sigma=3.0, ridge=0.0, val_error=0.4), dict(sigma=1.0, ridge=0.1, val_error=None),
            dict(sigma=1.0, ridge=0.01, val_error=0.3), dict(sigma=1.0, ridge=1.0, val_error=0.3)]
    assert kernels.best(rows, True)["sigma"] == 2.0                       # ties: the smaller bandwidth
    assert kernels.best(rows, False)["ridge"] == 1.0                      # ties: the larger ridge
    assert kernels.best(rows[:3], False) is None
    # leave-one-out: each image's error from the fit to the others, by hand
    loo = kernels.validate(x, labels, 4, None, fit, [2.0], [0.0, 0.1], progress=None)
    for r in loo:
        wrong = 0
        for i in range(60):
            rest = np.delete(fit, i)
            k = np.exp(-kernels.sq_dists(x[rest], x[rest], np.float64) / 8) + r["ridge"] * np.eye(59)
            f = np.exp(-kernels.sq_dists(x[fit[i:i + 1]], x[rest], np.float64) / 8) @ np.linalg.solve(
                k, np.eye(4)[labels[rest]])
            wrong += np.argmax(f) != labels[fit[i]]
        assert r["val_error"] == wrong / 60
    # a duplicate point makes K singular: no interpolant, the ridge still solves
    xd = np.vstack([x, x[:1]])
    rows = kernels.validate(xd, np.append(labels, labels[0]), 4, np.arange(10), np.append(np.arange(10, 60), 120),
                            [1e3], [0.0, 0.1], progress=None)
    assert rows[0]["val_error"] is None and rows[1]["val_error"] is not None


def test_snapshots_are_the_smaller_runs_finished_state(tmp_path):
    """A snapshot of the first k blocks is the finished state of the k-block configuration: a run
    of it resumes with nothing left to do and gets the k-block accumulation, bit for bit."""
    fs, n, t = _blocks(dims=(5, 7, 3, 4, 6))
    snap = tmp_path / "snap2"
    lines = []
    with kernel_distances.StateLock(tmp_path / "state"):
        kernel_distances.accumulate(lambda b: fs[b], 5, n, t, True, tmp_path / "state", {"c": 5}, 1e9,
                                    progress=lines.append, snapshots={2: (snap, {"c": 2})})
    assert any("snapshot: the first 2 blocks" in line for line in lines)
    ref = kernel_distances.accumulate(lambda b: fs[b], 2, n, t, True, progress=None)
    d = _accumulate(snap, [None] * 2, n, t, config={"c": 2})     # no block is computed again
    assert d.blocks_resumed == 2
    np.testing.assert_array_equal(d.train, ref.train)
    np.testing.assert_array_equal(d.test, ref.test)
    # the larger run's own state is refused there (another configuration)
    with pytest.raises(ValueError, match="another configuration"):
        _accumulate(snap, fs, n, t, config={"c": 5})
    # a run resumed past a snapshot's block count cannot write it: said, and listed
    lines = []
    with kernel_distances.StateLock(tmp_path / "state"):
        d = kernel_distances.accumulate(lambda b: pytest.fail("all done"), 5, n, t, True, tmp_path / "state",
                                        {"c": 5}, 1e9, progress=lines.append,
                                        snapshots={2: (snap, {"c": 2}), 3: (tmp_path / "snap3", {"c": 3})})
    assert d.skipped_snapshots == [3] and not (tmp_path / "snap3").exists()
    assert any("first 3 blocks: cannot be written" in line for line in lines)


def _classes(n, seed, size=8):
    """Images of 3 classes (a bright square in one of three places), noisy."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.integers(0, 120, (n, size, size)).astype(np.float64)
    for i, c in enumerate(y):
        x[i, 2 * c:2 * c + 3, 2:5] += 120
    return x.astype(np.uint8), y


def _fake_data(monkeypatch, n=150, test_n=40, test_seed=9, permute_test=False):
    x, y = _classes(n, 1)
    xt, yt = _classes(test_n, test_seed)
    if permute_test:
        yt = np.random.default_rng(0).permutation(yt)
    import rethinkgen_tf.data.sources as sources
    monkeypatch.setattr(sources, "load_subsets", lambda *a, **k: (x, y, xt, yt, ["a", "b", "c"]))


@pytest.mark.parametrize("features", ["raw", "random_conv"])
def test_validation_never_sees_the_test_split(monkeypatch, features):
    kw = dict(features=features, n=150, conv_filters=6, conv_kernel=3, conv_block=4, random_labels=False,
              bandwidth_grid=(0.125, 0.25, 0.5, 1.0), ridge_grid=(1e-2, 1.0), progress=None)
    _fake_data(monkeypatch)
    s = _experiment("mnist", "unused", **kw)
    v = s["validation"]
    assert (v["val_n"], v["fit_n"], len(v["curve"])) == (30, 120, 4 * 3)
    assert s["bandwidth_source"] == "validation" and s["sigma"] == v["interpolation"]["sigma"]
    assert s["ridge"]["source"] == "validation" and s["results"]["true_ridge"]["ridge"] == v["ridge"]["ridge"]
    assert v["interpolation"]["val_error"] == min(r["val_error"] for r in v["curve"] if r["ridge"] == 0)
    # permuted test labels, other test images: the same choice, the same curve
    _fake_data(monkeypatch, permute_test=True)
    p = _experiment("mnist", "unused", **kw)
    assert p["validation"]["curve"] == v["curve"] and (p["sigma"], p["ridge"]) == (s["sigma"], s["ridge"])
    assert p["results"]["true"]["test_error"] != s["results"]["true"]["test_error"]
    _fake_data(monkeypatch, test_seed=5)
    o = _experiment("mnist", "unused", **kw)
    assert o["validation"]["curve"] == v["curve"] and (o["sigma"], o["ridge"]) == (s["sigma"], s["ridge"])


def test_fixed_parameters_skip_their_search(monkeypatch):
    _fake_data(monkeypatch)
    kw = dict(n=150, random_labels=False, bandwidth_grid=(0.25, 0.5), ridge_grid=(1e-2, 1.0), progress=None)
    s = _experiment("mnist", "unused", bandwidth_factor=0.3, **kw)   # the ridge is still chosen
    assert s["bandwidth_source"] == "--bandwidth_factor" and s["sigma"] == pytest.approx(0.3 * s["median_distance"])
    assert {r["sigma"] for r in s["validation"]["curve"]} == {s["sigma"]} and s["ridge"]["source"] == "validation"
    s = _experiment("mnist", "unused", ridge=0.5, **kw)             # the bandwidth is still chosen
    assert {r["ridge"] for r in s["validation"]["curve"]} == {0.0, 0.5} and s["ridge"]["source"] == "--ridge"
    assert s["bandwidth_source"] == "validation" and s["results"]["true_ridge"]["ridge"] == 0.5
    s = _experiment("mnist", "unused", bandwidth=3.0, ridge=0.0, **kw)   # nothing to choose
    assert s["validation"] is None and s["sigma"] == 3.0 and set(s["results"]) == {"true"}
    s = _experiment("mnist", "unused", val_loo=True, val_fit_n=100, **kw)   # leave-one-out
    v = s["validation"]
    assert (v["method"], v["val_n"], v["fit_n"], len(v["curve"])) == ("leave-one-out", 0, 100, 2 * 3)
    assert s["sigma"] == v["interpolation"]["sigma"]
    with pytest.raises(ValueError, match="--val_n=5 and --val_loo exclude each other"):
        _experiment("mnist", "unused", val_loo=True, val_n=5, **kw)
    s = _experiment("mnist", "unused", val_n=0, **kw)               # no search: the defaults
    assert s["validation"] is None and s["bandwidth_source"] == "default" and s["ridge"]["ridge"] == 1e-3


def test_experiment_resumes_with_the_same_result(monkeypatch, tmp_path):
    _fake_data(monkeypatch)
    kw = dict(n=150, features="random_conv", conv_filters=10, conv_kernel=3, conv_block=3, checkpoint_minutes=0.0,
              bandwidth_grid=(0.5, 1.0), ridge_grid=(0.1,), progress=None)
    ref = _experiment("mnist", "unused", out=str(tmp_path / "ref.json"), **kw)
    assert not (tmp_path / "ref.json.state").exists()                  # removed at the end
    transform = kernel_features.RandomConvFeatures.transform

    def interrupted(self, images, f0=0, f1=None, **k):
        if f0 == 6:
            raise KeyboardInterrupt
        return transform(self, images, f0, f1, **k)
    monkeypatch.setattr(kernel_features.RandomConvFeatures, "transform", interrupted)
    out = tmp_path / "k.json"
    with pytest.raises(KeyboardInterrupt):
        _experiment("mnist", "unused", out=str(out), **kw)
    assert (tmp_path / "k.json.state" / kernel_distances.PROGRESS).exists() and not out.exists()
    monkeypatch.setattr(kernel_features.RandomConvFeatures, "transform", transform)
    # another configuration in that state directory: one line
    with pytest.raises(ValueError, match="another configuration .*conv_filters: 10 there, 11 now"):
        _experiment("mnist", "unused", out=str(out), **dict(kw, conv_filters=11))
    s = _experiment("mnist", "unused", out=str(out), keep_state=True, **kw)
    assert s["accumulate"]["resumed_after"] == 2 and s["accumulate"]["blocks"] == 4
    timings = ("resumed_after", "state_dir", "peak_rss_gib")   # and every *seconds

    def same(a, b):
        if isinstance(a, dict):
            return set(a) == set(b) and all(k.endswith("seconds") or k in timings or same(a[k], b[k]) for k in a)
        return a == b
    assert same(s, ref)
    assert (tmp_path / "k.json.state").is_dir()                      # --keep_state
    # a rerun with another ridge reuses the finished distances
    r = _experiment("mnist", "unused", out=str(out), ridge=0.0, **kw)
    assert r["accumulate"]["resumed_after"] == 4 and r["results"]["true"] == ref["results"]["true"]


def test_filter_curve_equals_separate_runs(monkeypatch, tmp_path):
    """--curve_filters: each point is the run with that many filters, from one accumulation; the
    curve is saved and drawn; a rerun reads finished points instead of computing them again."""
    _fake_data(monkeypatch)
    kw = dict(n=150, features="random_conv", conv_kernel=3, conv_block=3, bandwidth_grid=(0.5, 1.0),
              ridge_grid=(0.1,), progress=None)
    out = tmp_path / "c12.json"
    s = _experiment("mnist", "unused", conv_filters=12, curve_filters=["6", "3"], out=str(out), **kw)
    assert [r["filters"] for r in s["curve"]] == [3, 6, 12]
    assert not (tmp_path / "c12.json.state").exists()
    for row in s["curve"][:2]:
        f = row["filters"]
        alone = _experiment("mnist", "unused", conv_filters=f, ridge=0.0, **kw)
        assert (row["sigma"], row["test_error"], row["random_test_error"]) == (
            alone["sigma"], alone["results"]["true"]["test_error"], alone["results"]["random"]["test_error"])
        assert row["out"] == str(tmp_path / f"c12.curve{f}.json") and os.path.exists(row["out"])
    assert s["curve"][2]["test_error"] == s["results"]["true"]["test_error"] and "ridge_test_error" in s["curve"][2]
    assert (tmp_path / "c12.curve.png").stat().st_size > 0 and results.read_json(out)["curve"] == s["curve"]
    # a rerun (the state kept) computes no curve point again
    calls = []
    real = kernels.experiment.kernel_experiment
    monkeypatch.setattr(kernels.experiment, "kernel_experiment", lambda *a, **k: calls.append(a) or real(*a, **k))
    real = _experiment
    again = real("mnist", "unused", conv_filters=12, curve_filters=[3, 6], out=str(out), **kw)
    assert calls == [] and again["curve"] == s["curve"]
    for bad, match in [(dict(curve_filters=[4]), "4 not a multiple of --conv_block=3"),
                       (dict(curve_filters=[12]), "below --conv_filters=12"),
                       (dict(curve_filters=[3], features="raw"), "needs --features=random_conv"),
                       (dict(curve_filters=["x"]), "--curve_filters must be a list")]:
        with pytest.raises(ValueError, match=match):
            real("mnist", "unused", **dict(kw, conv_filters=12, out=str(out), **bad))
    with pytest.raises(ValueError, match="needs --out"):
        real("mnist", "unused", conv_filters=12, curve_filters=[3], **kw)


def test_start_from_a_smaller_run(monkeypatch, tmp_path):
    """--start_from: a larger run continues from a smaller run's kept state, with the result of a
    run from block 0; a state that is not this run with fewer whole blocks is one line."""
    _fake_data(monkeypatch)
    kw = dict(n=150, features="random_conv", conv_kernel=3, conv_block=3, bandwidth_grid=(0.5, 1.0),
              ridge_grid=(0.1,), random_labels=False, progress=None)
    _experiment("mnist", "unused", conv_filters=6, out=str(tmp_path / "c6.json"), keep_state=True, **kw)
    _experiment("mnist", "unused", conv_filters=4, out=str(tmp_path / "c4.json"), keep_state=True, **kw)
    ref = _experiment("mnist", "unused", conv_filters=12, **kw)
    s = _experiment("mnist", "unused", conv_filters=12, out=str(tmp_path / "c12.json"),
                                  start_from=str(tmp_path / "c6.json.state"), **kw)
    def timeless(r):
        return {k: {kk: v for kk, v in row.items() if kk != "seconds"} for k, row in r.items()}
    assert s["accumulate"]["resumed_after"] == 2 and s["sigma"] == ref["sigma"]
    assert timeless(s["results"]) == timeless(ref["results"])
    assert (tmp_path / "c6.json.state" / "config.json").exists()      # the source is left as it was
    for extra, source, match in [
            (dict(conv_filters=12, seed=1), "c6.json.state", "not this run with fewer filters: it differs in seed$"),
            (dict(conv_filters=12), "c4.json.state", "its 4 filters are not fewer than 12 in whole blocks of 3"),
            (dict(conv_filters=6), "c6.json.state", "its 6 filters are not fewer than 6"),
            (dict(conv_filters=12), "missing", "holds no state"),
            (dict(conv_filters=12, features="raw"), "c6.json.state", "needs --features=random_conv")]:
        with pytest.raises(ValueError, match=match) as e:
            _experiment("mnist", "unused", **dict(kw, **extra), out=str(tmp_path / "x.json"),
                                      start_from=str(tmp_path / source))
        assert "\n" not in str(e.value)


def test_curve_with_joins_runs_of_other_filter_counts(monkeypatch, tmp_path):
    """--curve_with: the curve of a larger run (say the one --start_from continues from a kept
    smaller run) joins the smaller run's points, in the summary and the figure, with or without
    running (--plot_only); a summary of another run is one line, before any work."""
    _fake_data(monkeypatch)
    kw = dict(n=150, features="random_conv", conv_kernel=3, conv_block=3, bandwidth_grid=(0.5, 1.0),
              ridge_grid=(0.1,), progress=None)
    c6 = str(tmp_path / "c6.json")
    small = _experiment("mnist", "unused", conv_filters=6, curve_filters=[3], out=c6, **kw)
    big = tmp_path / "c12.json"
    s = _experiment("mnist", "unused", conv_filters=12, out=str(big), curve_with=[c6], **kw)
    assert [r["filters"] for r in s["curve"]] == [3, 6, 12]
    assert s["curve"][:2] == small["curve"]
    assert s["curve"][2]["test_error"] == s["results"]["true"]["test_error"]
    assert (tmp_path / "c12.curve.png").stat().st_size > 0 and results.read_json(big)["curve"] == s["curve"]
    # --plot_only: no run, the same curve from the saved summaries (here a summary without a curve)
    saved = results.read_json(big)
    del saved["curve"], saved["curve_figure"]
    results.write_json(big, saved)
    (tmp_path / "c12.curve.png").unlink()
    import rethinkgen_tf.data.sources as sources
    monkeypatch.setattr(sources, "load_subsets", lambda *a, **k: pytest.fail("--plot_only read the data"))
    p = _experiment(out=str(big), curve_with=[c6], plot_only=True, progress=None)
    assert p["curve"] == s["curve"] and (tmp_path / "c12.curve.png").stat().st_size > 0
    assert results.read_json(big)["curve"] == s["curve"]
    # another run (seed), not a summary, no --out, raw features: one line each
    _fake_data(monkeypatch)
    _experiment("mnist", "unused", conv_filters=6, seed=1, out=str(tmp_path / "s1.json"), ridge=0.0,
                              random_labels=False, **kw)
    (tmp_path / "junk.json").write_text("{")
    for extra, match in [(dict(curve_with=[str(tmp_path / "s1.json")]), "s1.json is not this run with other "
                          "filter counts: it differs in seed$"),
                         (dict(curve_with=[str(tmp_path / "junk.json")]), "junk.json is not the summary"),
                         (dict(curve_with=[str(tmp_path / "none.json")]), "none.json is not the summary"),
                         (dict(curve_with=[c6], out=None), "needs --features=random_conv and "
                          "--out"),
                         (dict(curve_with=[c6], features="raw"), "needs --features")]:
        args = dict(dict(kw, conv_filters=12, out=str(tmp_path / "x.json")), **extra)
        with pytest.raises(ValueError, match=match) as e:
            _experiment("mnist", "unused", **args)
        assert "\n" not in str(e.value) and not (tmp_path / "x.json.state").exists()
    for extra, match in [(dict(out=None), "--plot_only needs --out"),
                         (dict(out=str(tmp_path / "none.json")), "none.json is not a kernel experiment's summary")]:
        with pytest.raises(ValueError, match=match):
            _experiment(**dict(dict(curve_with=[], plot_only=True, progress=None), **extra))


# ---------------------------------------- the experiment (experiments/kernel.py)
def test_feature_blocks():
    x, xt = _images(5, 12), _images(3, 12, seed=1)
    f, blocks, dim, standardize, settings = kernels.feature_blocks(x, xt, "cifar10")
    assert (blocks, dim, standardize, settings) == (1, 432, False, {"preprocess": "standardize"})
    np.testing.assert_array_equal(f(0), kernel_features.raw_features(np.concatenate([x, xt]), "standardize"))
    assert kernels.feature_blocks(x, xt, "mnist")[4] == {"preprocess": "scale"}
    f, blocks, dim, standardize, settings = kernels.feature_blocks(
        x, xt, "cifar10", "random_conv", conv_filters=10, conv_kernel=3, conv_block=4, seed=2)
    assert (blocks, dim, standardize, settings["conv_filters"], settings["conv_pool"]) == (3, 90, True, 10, 3)
    fm = kernel_features.RandomConvFeatures(x, 10, 3, 3, seed=2)
    np.testing.assert_array_equal(f(2), fm.transform(np.concatenate([x, xt]), 8, 10))
    with pytest.raises(ValueError, match="--conv_kernel=12, --conv_pool=3: .*need kernel"):
        kernels.feature_blocks(x, xt, "cifar10", "random_conv", conv_kernel=12)


def test_kernel_experiment_summary_and_json(tmp_path):
    data = str(write_idx_dataset(tmp_path / "idx", n=20, test_n=8))
    out = tmp_path / "k.json"
    lines = []
    s = _experiment("fashion_mnist", data, n=16, test_n=6, seed=2, out=str(out), progress=lines.append)
    assert (s["dataset"], s["n"], s["test_n"], s["features"], s["dim"]) == ("fashion_mnist", 16, 6, "raw", 784)
    assert (s["method"], s["solver"], s["jitter"], s["iterations"]) == ("auto", "direct", 0.0, 0)
    # 16 images are too few to hold out a validation split: the defaults, said so
    assert s["validation"] is None and any("too small to hold out" in line for line in lines)
    assert s["sigma"] == pytest.approx(0.25 * s["median_distance"])   # raw MNIST-format pixels: factor 0.25
    assert s["bandwidth_source"] == "default" and s["preprocess"] == "scale"
    assert set(s["results"]) == {"true", "random", "true_ridge"} and "conv_filters" not in s
    for name in ("true", "random"):
        assert s["results"][name]["train_error"] == 0.0 and s["results"][name]["max_abs_residual"] < 1e-6
    ridge = s["results"]["true_ridge"]
    assert ridge["ridge"] == 1e-3 and ridge["rkhs_norm"] < s["results"]["true"]["rkhs_norm"]
    assert json.loads(out.read_text()) == s          # the JSON is the returned summary
    assert f"wrote {out}" in lines and any(l.startswith("solved K alpha = Y for ['true', 'random']") for l in lines)
    assert not os.path.exists(s["state_dir"]) and s["state_dir"] == f"{out}.state"
    # the subsets (seed + 1), the median (seed) and the random labels (seed), recomputed here from the features
    x, y, xt, yt, _ = load_subsets("fashion_mnist", data, 16, 6, 3)
    f, ft = x.reshape(16, -1).astype(np.float32) / 255.0, xt.reshape(6, -1).astype(np.float32) / 255.0
    assert s["median_distance"] == pytest.approx(kernels.median_distance(f, seed=2), rel=1e-6)
    yr = np.random.default_rng(2).integers(0, 10, 16)
    _, sol = kernels.interpolate(f, np.hstack([np.eye(10)[y], np.eye(10)[yr]]), s["sigma"], progress=None)
    pred = kernels.predict(f, sol.alpha, ft, s["sigma"])
    assert s["results"]["true"]["test_error"] == float(np.mean(np.argmax(pred[:, :10], 1) != yt))
    assert s["results"]["random"]["test_error"] == float(np.mean(np.argmax(pred[:, 10:], 1) != yt))
    assert s["results"]["random"]["rkhs_norm"] == pytest.approx(
        kernels.rkhs_norm(sol.alpha[:, 10:], sol.fitted[:, 10:]), rel=1e-5)


def test_kernel_experiment_options(tmp_path):
    data = str(write_idx_dataset(tmp_path / "idx", n=12, test_n=4))
    s = _experiment("mnist", data, n=1, test_n=3, method="direct", bandwidth=5.0, ridge=0.0,
                                  random_labels=False, progress=None)
    assert (s["sigma"], s["n"], s["median_distance"]) == (5.0, 1, None)
    assert set(s["results"]) == {"true"} and s["results"]["true"]["train_error"] == 0.0
    s = _experiment("mnist", data, n=10, test_n=3, method="mixed", bandwidth_factor=2.0, tol=1e-9,
                                  max_abs_tol=1e-8, maxiter=20, progress=None)
    assert s["solver"] == "mixed" and s["sigma"] == pytest.approx(2.0 * s["median_distance"])
    assert 1 <= s["iterations"] <= 20 and s["max_abs_residual"] <= 1e-8
    assert s["results"]["true"]["train_error"] == 0.0 and s["results"]["true_ridge"]["iterations"] >= 1


def test_kernel_experiment_writes_before_the_ridge_solve(tmp_path, monkeypatch):
    data = str(write_idx_dataset(tmp_path / "idx", n=10, test_n=3))
    solve = kernels.solvers.interpolate

    def interrupted_ridge(*args, ridge=0.0, **kw):
        if ridge:
            raise KeyboardInterrupt
        return solve(*args, ridge=ridge, **kw)

    monkeypatch.setattr(kernels.solvers, "interpolate", interrupted_ridge)
    out = tmp_path / "k.json"
    with pytest.raises(KeyboardInterrupt):
        _experiment("mnist", data, n=10, test_n=3, out=str(out), progress=None)
    s = json.loads(out.read_text())
    assert set(s["results"]) == {"true", "random"} and "total_seconds" not in s and s["solver"] == "direct"


def test_kernel_experiment_checks_before_work(tmp_path):
    missing = str(tmp_path / "missing")   # no data: each check below must come before loading it
    (tmp_path / "a_file").write_text("x")
    for kw, match in [(dict(out=str(tmp_path)), "--out=.* is a directory"),
                      (dict(out=str(tmp_path / "no" / "k.json")), "directory .* does not exist"),
                      (dict(method="lu"), "--method"), (dict(features="pixels"), "--features"),
                      (dict(preprocess="zca"), "--preprocess"),
                      (dict(bandwidth=0.0), "--bandwidth must"),
                      (dict(bandwidth_factor=float("inf")), "--bandwidth_factor"),
                      (dict(ridge=-1.0), "--ridge"), (dict(ridge=float("nan")), "--ridge"),
                      (dict(bandwidth_grid=()), "--bandwidth_grid"), (dict(ridge_grid=(0.0,)), "--ridge_grid"),
                      (dict(val_n=-1), "--val_n"), (dict(val_fit_n=0), "--val_fit_n"),
                      (dict(conv_filters=0), "--conv_filters"), (dict(conv_block=0), "--conv_block"),
                      (dict(conv_threshold=float("nan")), "--conv_threshold"),
                      (dict(checkpoint_minutes=-1.0), "--checkpoint_minutes"),
                      (dict(state_dir=str(tmp_path / "a_file")), "--state_dir=.* is a file")]:
        with pytest.raises(ValueError, match=match) as e:
            _experiment("mnist", missing, progress=None, **kw)
        assert "\n" not in str(e.value)
    data = str(write_idx_dataset(tmp_path / "idx", n=4, test_n=2))
    with pytest.raises(ValueError, match="1 training image has no median distance.*--bandwidth"):
        _experiment("mnist", data, n=1, progress=None)
    with pytest.raises(ValueError, match="--val_n=4 leaves no training image"):
        _experiment("mnist", data, n=4, val_n=4, progress=None)


def test_new_flags_are_checked_in_one_line():
    """The flags of the validation, the conv design and the checkpoints: a bad value is one line naming it."""
    bad = [["--bandwidth_grid=abc"], ["--bandwidth_grid=0.5,-1"], ["--ridge_grid=0,1"], ["--ridge_grid="],
           ["--val_n=-1"], ["--val_fit_n=0"], ["--conv_block=0"], ["--conv_threshold=nan"],
           ["--checkpoint_minutes=-1"], ["--checkpoint_minutes=inf"], ["--preprocess=zca"], ["--ridge=nan"],
           ["--curve_filters=1k"], ["--curve_filters=0"]]
    good = [["--bandwidth_grid=0.5"], ["--ridge_grid=1e-3,1"], ["--val_n=0"], ["--val_loo"], ["--conv_two_sided"],
            ["--noconv_whiten"], ["--conv_threshold=0"], ["--checkpoint_minutes=0"], ["--keep_state"],
            ["--state_dir=/tmp/x"], ["--preprocess=scale"], ["--curve_filters=1024,4096"], ["--start_from=/tmp/s"],
            ["--curve_with=a.json,b.json"], ["--plot_only"]]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, "-c", _PARSE, "experiments.kernel", json.dumps(bad + good)], cwd=repo,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    errors = json.loads(p.stdout.strip().splitlines()[-1])
    for args, err in zip(bad, errors):
        assert err is not None and args[0].split("=")[0] in err and "\n" not in err, (args, err)
    assert errors[len(bad):] == [None] * len(good)


# ---------------------------------------- patch filters, filter seeds, held-out design runs, linear rows
def test_patch_filters_are_whitened_training_patches():
    """Each patch filter is a patch of a training image, normalized and whitened as every patch is
    and scaled to unit length; the filters come from the training images alone."""
    imgs, other = _images(8, 10), _images(5, 10, seed=7)
    fm = kernel_features.RandomConvFeatures(imgs, filters=5, patch=3, pool=2, filters_from="patches", seed=0)
    img, row, col = fm.patch_origins(8, 5)
    assert img.max() < 8 and max(row.max(), col.max()) < 10 - 3 + 1
    views = kernel_features._patches(imgs, 3)
    for i in range(5):   # by hand: normalize, whiten (minus the patches' mean), unit length
        p = kernel_features._normalize(views[img[i], row[i], col[i]].reshape(1, 27).astype(np.float32))[0]
        u = fm.zca @ (p.astype(np.float64) - fm.mean)
        u /= np.linalg.norm(u)
        np.testing.assert_allclose(fm.weights[:, i], fm.zca @ u, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(fm.offset[i], fm.mean @ fm.zca @ u, rtol=1e-4, atol=1e-5)
        # the filter's response to its own patch is that patch's whitened length: the largest of any unit filter
        assert p.astype(np.float64) @ fm.weights[:, i] - fm.offset[i] == pytest.approx(
            np.linalg.norm(fm.zca @ (p - fm.mean)), rel=1e-4)
    g = kernel_features.RandomConvFeatures(imgs, filters=5, patch=3, pool=2, filters_from="gaussian", seed=0)
    np.testing.assert_array_equal(g.zca, fm.zca)   # the whitening sample is apart from the filters' draw
    # the test images play no part: a layer is made from training images only, and other images
    # transformed by it change nothing of it
    fm.transform(other)
    again = kernel_features.RandomConvFeatures(imgs, filters=5, patch=3, pool=2, filters_from="patches", seed=0)
    np.testing.assert_array_equal(again.weights, fm.weights)
    assert not np.array_equal(g.weights, fm.weights)
    with pytest.raises(ValueError, match="filters_from must be one of patches, gaussian"):
        kernel_features.RandomConvFeatures(imgs, filters=5, patch=3, pool=2, filters_from="zca")


@pytest.mark.parametrize("filters_from", ["patches", "gaussian"])
def test_filters_prefix_and_filter_seed(filters_from):
    """The first F filters of a larger layer are a smaller layer's (curves and --start_from rely on it);
    a filter seed fixes the filters; the whitening sample is the data seed's, apart from them."""
    imgs = _images(8, 10)
    kw = dict(patch=3, pool=2, filters_from=filters_from)
    big = kernel_features.RandomConvFeatures(imgs, filters=40, **kw, filter_seed=5)
    small = kernel_features.RandomConvFeatures(imgs, filters=7, **kw, filter_seed=5)
    np.testing.assert_array_equal(big.weights[:, :7], small.weights)
    np.testing.assert_array_equal(big.offset[:7], small.offset)
    if filters_from == "patches":
        assert [a[:7].tolist() for a in big.patch_origins(8, 40)] == [a.tolist() for a in small.patch_origins(8, 7)]
    same = kernel_features.RandomConvFeatures(imgs, filters=7, **kw, filter_seed=5)
    np.testing.assert_array_equal(same.weights, small.weights)
    other = kernel_features.RandomConvFeatures(imgs, filters=7, **kw, filter_seed=6)
    assert not np.allclose(other.weights, small.weights)
    # filter_seed None is the data seed: the layers of the runs made before the flag existed
    np.testing.assert_array_equal(kernel_features.RandomConvFeatures(imgs, filters=7, **kw, seed=5).weights,
                                  kernel_features.RandomConvFeatures(imgs, filters=7, **kw, seed=5,
                                                                     filter_seed=5).weights)


def test_feature_blocks_keep_the_identity_of_gaussian_runs():
    """A Gaussian run's settings (its summary's and its state's identity) are those of the runs made
    before patch filters and filter seeds existed; patch filters and a filter seed are named."""
    x, xt = _images(5, 12), _images(3, 12, seed=1)
    old = {"conv_filters", "conv_kernel", "conv_pool", "conv_threshold", "conv_two_sided", "conv_whiten",
           "conv_standardize", "conv_block"}
    common = dict(conv_filters=10, conv_kernel=3, conv_block=4)
    assert set(kernels.feature_blocks(x, xt, "cifar10", "random_conv", conv_filters_from="gaussian",
                                      **common)[4]) == old
    s = kernels.feature_blocks(x, xt, "cifar10", "random_conv", conv_filters_from="patches", conv_filter_seed=3,
                               **common)[4]
    assert (s["conv_filters_from"], s["conv_filter_seed"]) == ("patches", 3)
    # a filter seed equal to --seed (its default) is the run without one: the same state and summary
    same = [kernels.feature_blocks(x, xt, "cifar10", "random_conv", conv_filters_from="patches",
                                   seed=2, **k, **common) for k in ({}, dict(conv_filter_seed=2))]
    assert same[0][4] == same[1][4] and "conv_filter_seed" not in same[1][4]
    np.testing.assert_array_equal(same[0][0](1), same[1][0](1))
    # the test images never shape the features: other test images, the same training features
    f1 = kernels.feature_blocks(x, xt, "cifar10", "random_conv", conv_filters_from="patches", **common)[0]
    f2 = kernels.feature_blocks(x, _images(3, 12, seed=9), "cifar10", "random_conv", conv_filters_from="patches",
                                **common)[0]
    for b in range(3):
        np.testing.assert_array_equal(f1(b)[:5], f2(b)[:5])
    # a curve joined with a Gaussian record (no conv_filters_from key) from a patch run: one line
    summary = dict(features="random_conv", conv_filters_from="patches")
    with pytest.raises(ValueError, match="differs in conv_filters_from"):
        kernels.experiment._check_same_run(summary, [dict(features="random_conv")], ["old.json"])
    kernels.experiment._check_same_run(dict(features="random_conv", conv_filters_from="gaussian"),
                                       [dict(features="random_conv")], ["old.json"])


def _fake_arrays(monkeypatch, n=150, test_seed=9):
    """load_arrays of synthetic classes; reading the test split fails (the held-out mode must not)."""
    x, y = _classes(n, 1)
    import rethinkgen_tf.data.sources as sources

    def load_arrays(dataset, data_dir=None, split="train"):
        if split != "train":
            raise AssertionError("the held-out mode read the test split")
        return x, y, ["a", "b", "c"]
    monkeypatch.setattr(sources, "load_arrays", load_arrays)
    monkeypatch.setattr(sources, "load_subsets", lambda *a, **k: pytest.fail("the held-out mode loaded test data"))
    return x, y


def test_holdout_scores_held_out_training_images_never_the_test_split(monkeypatch):
    x, y = _fake_arrays(monkeypatch)
    cfg = kernels.KernelConfig("mnist", "unused", n=100, holdout=40, features="random_conv", conv_filters=6,
                               conv_kernel=3, conv_block=3, conv_filters_from="patches", random_labels=False,
                               bandwidth_grid=(0.5, 1.0), ridge_grid=(0.1,))
    import rethinkgen_tf.data.sources as sources
    xf, yf, xh, yh, _ = kernels.experiment._holdout_subsets(sources, cfg)
    assert (len(xf), len(xh)) == (100, 40)
    # disjoint, and together the seeded subset of 140 training images
    sub, _ = sources.random_subset(x, y, 140, cfg.seed + 1)
    rows = {r.tobytes() for r in sub}
    assert {r.tobytes() for r in xf} | {r.tobytes() for r in xh} == rows
    assert not {r.tobytes() for r in xf} & {r.tobytes() for r in xh}
    s = kernels.kernel_experiment(cfg, progress=None)
    assert (s["n"], s["test_n"], s["holdout"]) == (100, 40, 40)
    with pytest.raises(ValueError, match="--holdout=5: .*no --test_n"):
        kernels.KernelConfig(holdout=5, test_n=10)
    with pytest.raises(ValueError, match="--holdout=150 leaves none of the 150"):
        kernels.kernel_experiment(cfg.replace(holdout=150), progress=None)


def test_centered_gram_and_linear_fit():
    rng = np.random.default_rng(0)
    f, g = rng.standard_normal((30, 50)), rng.standard_normal((7, 50))
    m = f.mean(0)
    d_ff = kernels.sq_dists(f, f, np.float64)
    d_gf = kernels.sq_dists(g, f, np.float64)
    np.testing.assert_allclose(kernels.centered_gram(d_ff, d_ff, d_ff, d_ff.mean()), (f - m) @ (f - m).T,
                               atol=1e-9)
    np.testing.assert_allclose(kernels.centered_gram(d_gf, d_gf, d_ff, d_ff.mean()), (g - m) @ (f - m).T,
                               atol=1e-9)
    # 50 features > 30 images: the linear interpolant fits every label; the ridge row is (K + r I)^-1 (Y - mean)
    y = np.eye(3)[rng.integers(0, 3, 30)]
    k = (f - m) @ (f - m).T
    alphas, ym, rank = kernels.linear_fit(k, y, [0.0, 2.0])
    assert rank == 29
    np.testing.assert_allclose(k @ alphas[0.0] + ym, y, atol=1e-8)
    np.testing.assert_allclose(alphas[2.0], np.linalg.solve(k + 2.0 * np.eye(30), y - ym), atol=1e-10)
    # fewer features than images: no interpolation (the least-squares fit of rank 10)
    alphas, ym, rank = kernels.linear_fit((f[:, :10] - m[:10]) @ (f[:, :10] - m[:10]).T, y, [0.0])
    assert rank == 10 and np.abs((f[:, :10] - m[:10]) @ (f[:, :10] - m[:10]).T @ alphas[0.0] + ym - y).max() > 0.1


def test_linear_rows_in_the_summary(monkeypatch):
    """Random conv features with more features than images: the linear kernel interpolates too; its
    ridge is chosen on the validation split (not the test images)."""
    _fake_data(monkeypatch)
    kw = dict(n=150, features="random_conv", conv_filters=6, conv_kernel=3, conv_block=3, random_labels=False,
              bandwidth_grid=(0.5, 1.0), ridge_grid=(0.1,), linear_ridge_grid=(1e-3, 1e-1), progress=None)
    s = _experiment("mnist", "unused", **kw)
    lin = s["linear"]
    assert s["dim"] == 6 * 9 and lin["interpolates"] is False     # 54 features < 150 images
    kw["conv_filters"] = 24
    s = _experiment("mnist", "unused", **kw)
    lin = s["linear"]
    assert s["dim"] == 216 and lin["interpolates"] and lin["interpolation"]["train_error"] == 0.0
    assert lin["interpolation"]["max_abs_residual"] < 1e-3
    v = lin["validation"]
    assert (v["val_n"], v["fit_n"], [r["ridge"] for r in v["curve"]]) == (30, 120, [1e-3, 1e-1])
    assert lin["ridge"]["ridge"] == v["ridge"]["ridge"] and lin["ridge"]["train_error"] <= 0.5
    _fake_data(monkeypatch, test_seed=5)     # other test images: the same validation, another test error
    o = _experiment("mnist", "unused", **kw)["linear"]
    assert o["validation"] == v
    assert not _experiment("mnist", "unused", **dict(kw, linear=False)).get("linear")


def test_ridge_scaling_applies_the_validated_ridge_at_the_fit_size(monkeypatch):
    _fake_data(monkeypatch)
    kw = dict(n=150, random_labels=False, bandwidth_grid=(0.25, 0.5), ridge_grid=(1e-2, 1.0), progress=None)
    plain = _experiment("mnist", "unused", **kw)
    scaled = _experiment("mnist", "unused", ridge_scaling="n", **kw)
    v = scaled["validation"]
    assert v["curve"] == plain["validation"]["curve"] and v["fit_n"] == 120
    assert scaled["ridge"]["validated_ridge"] == v["ridge"]["ridge"] == plain["ridge"]["ridge"]
    assert scaled["results"]["true_ridge"]["ridge"] == pytest.approx(v["ridge"]["ridge"] * 150 / 120)
    assert "ridge_scaling" not in plain and scaled["ridge_scaling"] == "n"


def test_kernel_config_is_frozen_and_checked():
    import dataclasses
    cfg = kernels.KernelConfig(bandwidth_grid=["0.5", "1"], curve_filters=["6", "3"], features="random_conv",
                               conv_block=3, out="x.json")
    assert cfg.bandwidth_grid == (0.5, 1.0) and cfg.curve_filters == (3, 6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n = 5
    for kw, match in [(dict(conv_filters_from="zca"), "--conv_filters_from must be patches or gaussian"),
                      (dict(ridge_scaling="sqrt"), "--ridge_scaling must be none or n"),
                      (dict(conv_filter_seed=-1), "--conv_filter_seed must be >= 0"),
                      (dict(linear_ridge_grid=()), "--linear_ridge_grid"),
                      (dict(holdout=0), "--holdout=0")]:
        with pytest.raises(ValueError, match=match) as e:
            kernels.KernelConfig(**kw)
        assert "\n" not in str(e.value)
    with pytest.raises(TypeError, match="takes a KernelConfig"):
        kernels.kernel_experiment(dict(dataset="mnist"))


def test_the_command_line_fills_every_config_field():
    """experiments/kernel.py builds the KernelConfig field by field: every field has its flag."""
    code = ("import dataclasses, json, sys\nfrom absl import flags\nimport experiments.kernel as k\n"
            "flags.FLAGS(['k', '--conv_filters_from=gaussian', '--conv_filter_seed=3', '--holdout=7', "
            "'--ridge_scaling=n', '--nolinear', '--linear_ridge_grid=0.5', '--curve_filters=512', "
            "'--features=random_conv', '--out=o.json'])\n"
            "c = k.config_from_flags()\n"
            "print(json.dumps({f.name: f.name in flags.FLAGS for f in dataclasses.fields(c)}))\n"
            "print(json.dumps(dataclasses.asdict(c)))")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    have, cfg = (json.loads(line) for line in p.stdout.strip().splitlines()[-2:])
    assert all(have.values()), [k for k, v in have.items() if not v]
    assert (cfg["conv_filters_from"], cfg["conv_filter_seed"], cfg["holdout"], cfg["ridge_scaling"],
            cfg["linear"], cfg["linear_ridge_grid"], cfg["curve_filters"]) == ("gaussian", 3, 7, "n", False, [0.5],
                                                                              [512])
