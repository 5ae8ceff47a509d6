"""Theorem 1 network, its O(n) solve, the depth-k corollary and the Rademacher estimate."""
import os

import numpy as np
import pytest

from rethinkgen_tf import theory

FASHION = os.environ.get("RETHINKGEN_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")


def _data(n=300, d=7, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((n, k)) * 10


def test_exact_real_targets_and_weight_count():
    z, y = _data()
    f = theory.fit_theorem1(z, y[:, 0])
    assert f.num_weights == 2 * 300 + 7
    np.testing.assert_allclose(theory.predict_numpy(f, z), y[:, 0], atol=1e-8)
    np.testing.assert_allclose(theory.predict_fast(f, z), y[:, 0], atol=1e-8)
    model = theory.build_model(f)
    assert model.count_params() == 2 * 300 + 7
    assert sum(int(np.prod(w.shape)) for w in model.weights) == 2 * 300 + 7
    out = theory.keras_predict(model, z)
    assert out.shape == (300, 1)
    np.testing.assert_allclose(out[:, 0], y[:, 0], atol=1e-8)


def test_multi_output_one_hot_classes():
    rng = np.random.default_rng(1)
    z = rng.integers(0, 256, (500, 4, 4, 3)).astype(np.uint8)   # image-shaped input
    labels = rng.integers(0, 10, 500)
    f = theory.fit_theorem1(z, theory.one_hot(labels, 10))
    model = theory.build_model(f, z.shape[1:])
    assert model.count_params() == 48 + 500 + 500 * 10 == f.num_weights
    pred = theory.keras_predict(model, z)
    np.testing.assert_allclose(pred, theory.one_hot(labels, 10), atol=1e-6)
    assert np.all(np.argmax(pred, 1) == labels)


def test_linear_time_solve_matches_dense():
    z, y = _data(n=200)
    for knot in (0.1, 0.3, 0.5):
        f = theory.fit_theorem1(z, y, knot=knot)
        a = theory.dense_matrix(f.x, f.b)
        assert np.all(np.triu(a, 1) == 0)                       # lower triangular
        assert np.all(np.diag(a) > 0)
        assert f.lambda_min == pytest.approx(np.min(np.diag(a)))  # Lemma 1: eigenvalues = diagonal
        np.testing.assert_allclose(a @ f.w, y[f.order], atol=1e-8)
        w_dense = np.linalg.solve(a, y[f.order])
        np.testing.assert_allclose(a @ w_dense, y[f.order], atol=1e-6)
        assert f.residual < 1e-8
        assert np.all(np.diff(f.b) > 0) and np.all(f.b < f.x) and np.all(f.b[1:] > f.x[:-1])


def test_small_and_single_sample():
    f = theory.fit_theorem1(np.array([[3.0, -1.0]]), np.array([2.5]))
    assert theory.predict_numpy(f, np.array([[3.0, -1.0]]))[0] == pytest.approx(2.5)
    f = theory.fit_theorem1(np.array([[0.0], [1.0]]), np.array([1.0, -1.0]))
    np.testing.assert_allclose(theory.predict_numpy(f, np.array([[0.0], [1.0]])), [1.0, -1.0])


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_deep_corollary_exact(depth):
    z, y = _data(n=101)
    f = theory.fit_theorem1(z, y)
    model = theory.build_deep_model(f, depth)
    assert model.count_params() == f.num_weights + 1           # + t0
    np.testing.assert_allclose(theory.keras_predict(model, z), y, atol=1e-8)
    zt = np.random.default_rng(5).standard_normal((50, 7)) * 2
    np.testing.assert_allclose(theory.keras_predict(model, zt), theory.predict_numpy(f, zt), atol=1e-7)
    relu_layers = [l for l in model.layers if l.name.startswith("relu")]
    assert len(relu_layers) == depth - 1
    assert max(l.output.shape[-1] for l in relu_layers) == -(-101 // (depth - 1)) + 1 + 2 * 3


def test_bad_input():
    z, y = _data(n=10)
    with pytest.raises(ValueError, match="n = 0"):
        theory.fit_theorem1(np.zeros((0, 3)), np.zeros(0))
    with pytest.raises(ValueError, match="shape"):
        theory.fit_theorem1(z, y[:9])
    with pytest.raises(ValueError, match="shape"):
        theory.fit_theorem1(z, np.zeros((10, 2, 2)))
    dup = z.copy()
    dup[7] = dup[2]
    with pytest.raises(ValueError, match="samples 2 and 7 are identical.*no function"):
        theory.check_distinct(dup, y)
    with pytest.raises(ValueError, match="samples 2 and 7 are identical"):
        theory.fit_theorem1(dup, y)
    with pytest.raises(ValueError, match="knot"):
        theory.fit_theorem1(z, y, knot=0.9)
    f = theory.fit_theorem1(z, y)
    with pytest.raises(ValueError, match="depth"):
        theory.build_deep_model(f, 1)
    with pytest.raises(ValueError, match="features"):
        theory.predict_numpy(f, np.zeros((3, 6)))


def test_rademacher_estimate():
    z, _ = _data(n=200)
    r = theory.rademacher_estimate(theory.theorem1_fit_predict, z, num_draws=3, progress=None)
    assert r["estimate"] == 1.0 and len(r["draws"]) == 3
    const = theory.rademacher_estimate(lambda x, s: np.ones(len(x)), z, num_draws=20, progress=None)
    assert abs(const["estimate"]) < 0.1   # a class with one function: E sigma_i = 0


def test_rademacher_keras_mlp():
    import keras
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 20)).astype(np.float32)

    def build():
        return keras.Sequential([keras.Input((20,)), keras.layers.Dense(256, activation="relu"),
                                 keras.layers.Dense(2)])

    fp = theory.keras_fit_predict(build, epochs=300, batch_size=64, learning_rate=0.05, progress=None)
    r = theory.rademacher_estimate(fp, x, num_draws=1, progress=None)
    assert r["estimate"] == 1.0


def test_fashion_mnist_random_labels_fit_exactly():
    from rethinkgen_tf.data.sources import load_arrays
    if not os.path.isdir(FASHION):
        pytest.skip(f"Fashion-MNIST not found at {FASHION} (apt-get install dataset-fashion-mnist)")
    x, _, _ = load_arrays("fashion_mnist", FASHION)
    x = x[:3000]
    labels = np.random.default_rng(0).integers(0, 10, len(x))
    f = theory.fit_theorem1(x, theory.one_hot(labels, 10))
    model = theory.build_model(f, x.shape[1:])
    assert model.count_params() == 784 + 3000 * 11
    assert np.mean(np.argmax(theory.keras_predict(model, x), 1) == labels) == 1.0


def test_expressivity_experiment_smoke(tmp_path):
    import json
    import subprocess
    import sys
    if not os.path.isdir(FASHION):
        pytest.skip(f"Fashion-MNIST not found at {FASHION} (apt-get install dataset-fashion-mnist)")
    out = tmp_path / "s.json"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-m", "experiments.expressivity", "--dataset=fashion_mnist",
                    f"--data_dir={FASHION}", "--n=400", "--test_n=200", "--depth=3", f"--out={out}"],
                   check=True, cwd=repo, capture_output=True)
    r = json.loads(out.read_text())["theorem1"]
    assert r["weights"] == 784 + 400 * 11 and r["train_acc_numpy_float64"] == 1.0
    assert r["train_acc_keras_float64"] == 1.0 and r["deep"]["train_acc"] == 1.0
