"""Kernel interpolation: kernel matrices, the direct and PCG solvers, random conv features."""
import os

import numpy as np
import pytest

from rethinkgen_tf import kernels

FASHION = os.environ.get("RETHINKGEN_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")


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


def test_packed_matvec_matches_dense():
    x, _, _ = _data(333)
    dense = kernels.DenseKernel(x, 2.0)
    packed = kernels.PackedKernel(x, 2.0, block=64, progress=None)
    assert packed.nbytes == 4 * sum((min(i + 64, 333) - i) * min(i + 64, 333) for i in range(0, 333, 64))
    v = np.random.default_rng(1).standard_normal((333, 3))
    np.testing.assert_allclose(packed.matvec(v), dense.matvec(v), atol=1e-4)


def test_direct_interpolates():
    x, labels, y = _data()
    kmat, sol = kernels.interpolate(x, y, 2.0, method="direct", progress=None)
    assert sol.residual_max < 1e-8
    assert np.all(np.argmax(kmat.matvec(sol.alpha), 1) == labels)
    norm = kernels.rkhs_norm(kmat, sol.alpha)
    assert norm == pytest.approx(np.sqrt(np.sum(sol.alpha * y)), rel=1e-6)
    # prediction at the training points is the fit
    np.testing.assert_allclose(kernels.predict(x, sol.alpha, x, 2.0), y, atol=1e-3)


@pytest.mark.parametrize("ridge", [0.0, 1e-2])
def test_pcg_matches_direct(ridge):
    x, _, y = _data(600)
    _, ref = kernels.interpolate(x, y, 2.0, ridge=ridge, method="direct", progress=None)
    kmat, sol = kernels.interpolate(x, y, 2.0, ridge=ridge, method="pcg", rank=100, tol=1e-6, max_abs_tol=1e-5,
                                    progress=None)
    assert isinstance(kmat, kernels.PackedKernel)
    assert sol.residual_rel < 1e-4 and sol.iterations < 200
    np.testing.assert_allclose(sol.alpha, ref.alpha, atol=1e-2 * np.abs(ref.alpha).max())


def test_nystrom_preconditioner():
    x, _, _ = _data(300)
    kmat = kernels.DenseKernel(x, 3.0)
    pre = kernels.nystrom(kmat, 60)
    np.testing.assert_allclose(pre.u.T @ pre.u, np.eye(pre.u.shape[1]), atol=1e-6)
    assert np.all(np.diff(pre.lam) <= 1e-9)
    # P^-1 K has a smaller condition number than K
    pk = pre.precondition(kmat.k)
    ev = np.sort(np.abs(np.linalg.eigvals(pk)))
    ek = np.linalg.eigvalsh(kmat.k)
    assert ev[-1] / ev[0] < ek[-1] / ek[0] / 10


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


def test_random_conv_features():
    imgs = np.random.default_rng(0).integers(0, 256, (5, 12, 12, 3)).astype(np.uint8)
    f = kernels.random_conv_features(imgs, filters=8, kernel=3, pool=2, progress=None)
    assert f.shape == (5, 2 * 2 * 8) and f.dtype == np.float32 and np.all(f >= 0)
    np.testing.assert_array_equal(f, kernels.random_conv_features(imgs, filters=8, kernel=3, pool=2, progress=None))
    g = kernels.random_conv_features(imgs[..., :1], filters=8, kernel=3, pool=2, seed=1, progress=None)
    assert g.shape == (5, 32)


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
    fit = kmat.matvec(sol.alpha)
    assert np.all(np.argmax(fit[:, :10], 1) == y[:1500]) and np.all(np.argmax(fit[:, 10:], 1) == yr)
    pred = kernels.predict(x, sol.alpha, xt, sigma)
    assert np.mean(np.argmax(pred[:, :10], 1) != yt[:500]) < 0.3      # true labels generalize
    assert np.mean(np.argmax(pred[:, 10:], 1) != yt[:500]) > 0.75     # random labels: chance
    assert kernels.rkhs_norm(kmat, sol.alpha[:, 10:]) > kernels.rkhs_norm(kmat, sol.alpha[:, :10])


def test_kernel_experiment_smoke(tmp_path):
    import json
    import subprocess
    import sys
    if not os.path.isdir(FASHION):
        pytest.skip(f"Fashion-MNIST not found at {FASHION} (apt-get install dataset-fashion-mnist)")
    out = tmp_path / "k.json"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-m", "experiments.kernel", f"--data_dir={FASHION}", "--n=500",
                    "--test_n=300", "--method=pcg", "--rank=100", f"--out={out}"],
                   check=True, cwd=repo, capture_output=True)
    r = json.loads(out.read_text())["results"]
    assert r["true"]["train_error"] == 0 and r["random"]["train_error"] == 0
    assert r["true"]["test_error"] < 0.4 and r["random"]["test_error"] > 0.7
    assert r["true_ridge"]["rkhs_norm"] < r["true"]["rkhs_norm"]
