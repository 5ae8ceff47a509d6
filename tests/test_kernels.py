"""Kernel interpolation: kernel matrices, the direct and mixed-precision solvers, random conv features."""
import json
import os

import numpy as np
import pytest
from test_entry_points import write_idx_dataset  # synthetic MNIST-format files

from rethinkgen_tf import kernels
from rethinkgen_tf.data.sources import load_subsets

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
    subprocess.run([sys.executable, "-m", "experiments.kernel", f"--data_dir={FASHION}", "--n=500",
                    "--test_n=300", "--method=mixed", f"--out={out}"],
                   check=True, cwd=repo, capture_output=True)
    r = json.loads(out.read_text())["results"]
    assert r["true"]["train_error"] == 0 and r["random"]["train_error"] == 0
    assert r["true"]["test_error"] < 0.4 and r["random"]["test_error"] > 0.7
    assert r["true_ridge"]["rkhs_norm"] < r["true"]["rkhs_norm"]


# ---------------------------------------- the experiment (experiments/kernel.py)
def test_kernel_features():
    imgs = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    f = kernels.kernel_features(imgs)
    assert f.shape == (3, 784) and f.dtype == np.float32
    np.testing.assert_array_equal(f, imgs.reshape(3, -1).astype(np.float32) / 255.0)
    g = kernels.kernel_features(imgs, "random_conv", conv_filters=4, conv_kernel=5, conv_pool=2, seed=1,
                                progress=None)
    np.testing.assert_array_equal(g, kernels.random_conv_features(imgs, 4, 5, 2, 1, progress=None))
    with pytest.raises(ValueError, match="--conv_kernel=26, --conv_pool=4: .*need kernel"):
        kernels.kernel_features(imgs, "random_conv", conv_kernel=26, conv_pool=4, progress=None)
    with pytest.raises(ValueError, match="--features"):
        kernels.kernel_features(imgs, "pixels")


def test_kernel_experiment_summary_and_json(tmp_path):
    data = str(write_idx_dataset(tmp_path / "idx", n=20, test_n=8))
    out = tmp_path / "k.json"
    lines = []
    s = kernels.kernel_experiment("fashion_mnist", data, n=16, test_n=6, seed=2, out=str(out), progress=lines.append)
    assert (s["dataset"], s["n"], s["test_n"], s["features"], s["dim"]) == ("fashion_mnist", 16, 6, "raw", 784)
    assert (s["method"], s["solver"], s["jitter"], s["iterations"]) == ("auto", "direct", 0.0, 0)
    assert s["sigma"] == pytest.approx(0.25 * s["median_distance"])   # raw MNIST-format pixels: factor 0.25
    assert set(s["results"]) == {"true", "random", "true_ridge"} and "conv_filters" not in s
    for name in ("true", "random"):
        assert s["results"][name]["train_error"] == 0.0 and s["results"][name]["max_abs_residual"] < 1e-6
    ridge = s["results"]["true_ridge"]
    assert ridge["ridge"] == 1e-3 and ridge["rkhs_norm"] < s["results"]["true"]["rkhs_norm"]
    assert json.loads(out.read_text()) == s          # the JSON is the returned summary
    assert lines[-1] == f"wrote {out}" and any(l.startswith("solved K alpha = Y for ['true', 'random']") for l in lines)
    # the subsets (seed + 1), the median (seed) and the random labels (seed), recomputed here
    x, y, xt, yt, _ = load_subsets("fashion_mnist", data, 16, 6, 3)
    f, ft = x.reshape(16, -1).astype(np.float32) / 255.0, xt.reshape(6, -1).astype(np.float32) / 255.0
    assert s["median_distance"] == kernels.median_distance(f, seed=2)
    yr = np.random.default_rng(2).integers(0, 10, 16)
    _, sol = kernels.interpolate(f, np.hstack([np.eye(10)[y], np.eye(10)[yr]]), s["sigma"], progress=None)
    pred = kernels.predict(f, sol.alpha, ft, s["sigma"])
    assert s["results"]["true"]["test_error"] == float(np.mean(np.argmax(pred[:, :10], 1) != yt))
    assert s["results"]["random"]["test_error"] == float(np.mean(np.argmax(pred[:, 10:], 1) != yt))
    assert s["results"]["random"]["rkhs_norm"] == kernels.rkhs_norm(sol.alpha[:, 10:], sol.fitted[:, 10:])


def test_kernel_experiment_options(tmp_path):
    data = str(write_idx_dataset(tmp_path / "idx", n=12, test_n=4))
    s = kernels.kernel_experiment("mnist", data, n=1, test_n=3, method="direct", bandwidth=5.0, ridge=0.0,
                                  random_labels=False, progress=None)
    assert (s["sigma"], s["n"], s["median_distance"]) == (5.0, 1, None)
    assert set(s["results"]) == {"true"} and s["results"]["true"]["train_error"] == 0.0
    s = kernels.kernel_experiment("mnist", data, n=10, test_n=3, method="mixed", bandwidth_factor=2.0, tol=1e-9,
                                  max_abs_tol=1e-8, maxiter=20, progress=None)
    assert s["solver"] == "mixed" and s["sigma"] == pytest.approx(2.0 * s["median_distance"])
    assert 1 <= s["iterations"] <= 20 and s["max_abs_residual"] <= 1e-8
    assert s["results"]["true"]["train_error"] == 0.0 and s["results"]["true_ridge"]["iterations"] >= 1


def test_kernel_experiment_writes_before_the_ridge_solve(tmp_path, monkeypatch):
    data = str(write_idx_dataset(tmp_path / "idx", n=10, test_n=3))
    solve = kernels.interpolate

    def interrupted_ridge(*args, ridge=0.0, **kw):
        if ridge:
            raise KeyboardInterrupt
        return solve(*args, ridge=ridge, **kw)

    monkeypatch.setattr(kernels, "interpolate", interrupted_ridge)
    out = tmp_path / "k.json"
    with pytest.raises(KeyboardInterrupt):
        kernels.kernel_experiment("mnist", data, n=10, test_n=3, out=str(out), progress=None)
    s = json.loads(out.read_text())
    assert set(s["results"]) == {"true", "random"} and "total_seconds" not in s and s["solver"] == "direct"


def test_kernel_experiment_checks_before_work(tmp_path):
    missing = str(tmp_path / "missing")   # no data: each check below must come before loading it
    for kw, match in [(dict(out=str(tmp_path)), "--out=.* is a directory"),
                      (dict(out=str(tmp_path / "no" / "k.json")), "directory .* does not exist"),
                      (dict(method="lu"), "--method"), (dict(features="pixels"), "--features"),
                      (dict(bandwidth=0.0), "--bandwidth must"),
                      (dict(bandwidth_factor=float("inf")), "--bandwidth_factor")]:
        with pytest.raises(ValueError, match=match):
            kernels.kernel_experiment("mnist", missing, progress=None, **kw)
    data = str(write_idx_dataset(tmp_path / "idx", n=4, test_n=2))
    with pytest.raises(ValueError, match="1 training image has no median distance.*--bandwidth"):
        kernels.kernel_experiment("mnist", data, n=1, progress=None)
