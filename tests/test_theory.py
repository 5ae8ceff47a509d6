"""Theorem 1 network, its O(n) solve, the depth-k corollary and the Rademacher estimate."""
import json
import os

import numpy as np
import pytest
from test_entry_points import write_idx_dataset  # synthetic MNIST-format files

from rethinkgen_tf import theory
from rethinkgen_tf.data.sources import load_subsets

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


@pytest.mark.slow
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


@pytest.mark.slow
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


# ---------------------------------------- the experiment (experiments/expressivity.py)
def _images(n=12, side=4, seed=0):
    """n distinct uint8 images side x side x 1 with labels i mod 3."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, side, side, 1)).astype(np.uint8), np.arange(n) % 3


@pytest.mark.parametrize("labels", ["random", "true"])
def test_theorem1_experiment(labels):
    x, y = _images()
    lines = []
    r = theory.theorem1_experiment(x, y, x, y, 3, labels=labels, seed=4, depth=3, progress=lines.append)
    assert (r["n"], r["d"], r["num_classes"], r["labels"]) == (12, 16, 3, labels)
    assert r["weights"] == 16 + 12 + 12 * 3
    assert r["train_acc_numpy_float64"] == 1.0 and r["residual_network_float64"] < 1e-8
    assert r["train_acc_keras_float64"] == 1.0 and 0.0 <= r["train_acc_keras_float32"] <= 1.0
    assert r["lambda_min"] == pytest.approx(0.9 * r["min_gap"])   # Lemma 1 with the default knot 0.1
    # the test set is the training set: the true labels are fitted, random ones (seed 4) agree by chance
    targets = np.random.default_rng(4).integers(0, 3, 12) if labels == "random" else y
    assert r["test_acc_numpy_float64"] == pytest.approx(np.mean(targets == y))
    assert r["test_acc_keras_float64"] == r["test_acc_numpy_float64"]
    assert r["deep"]["depth"] == 3 and len(r["deep"]["widths"]) == 2 and r["deep"]["train_acc"] == 1.0
    assert r["deep"]["weights"] == r["weights"] + 1 and r["deep"]["max_diff_vs_depth2"] < 1e-8
    assert set(r["norms"]) == {"a_l2", "b_l2", "b_max_abs", "w_l2", "w_max_abs", "w_l1"}
    assert any(line.startswith("Theorem 1 network: n=12 d=16 K=3") for line in lines)
    quiet = theory.theorem1_experiment(x, y, x, y, 3, labels=labels, seed=4, keras=False, progress=None)
    assert "deep" not in quiet and not any(k.startswith("train_acc_keras") for k in quiet)
    assert quiet["min_gap"] == r["min_gap"] and quiet["norms"] == r["norms"]   # same seed, same network
    with pytest.raises(ValueError, match="--labels"):
        theory.theorem1_experiment(x, y, x, y, 3, labels="maybe", progress=None)


def test_rademacher_experiment():
    x, _ = _images(n=14, side=28)
    r = theory.rademacher_experiment(x, "mnist", ["mlp_1x8"], n=10, draws=2, epochs=1, seed=1, progress=None)
    assert set(r) == {"mlp_1x8", "theorem1"}
    assert r["theorem1"] == {"estimate": 1.0, "draws": [1.0, 1.0], "n": 10}   # Theorem 1 fits every sign pattern
    m = r["mlp_1x8"]
    assert set(m) == {"estimate", "draws", "n", "seconds"} and m["n"] == 10 and len(m["draws"]) == 2
    assert m["estimate"] == pytest.approx(np.mean(m["draws"])) and -1.0 <= m["estimate"] <= 1.0
    theory.check_rademacher_models([], "folder")   # nothing to check
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        theory.check_rademacher_models(["mlp_1x8", "resnet"], "mnist")
    with pytest.raises(ValueError, match="--dataset=folder"):
        theory.check_rademacher_models(["mlp_1x8"], "folder")


def test_expressivity_experiment_summary_and_json(tmp_path):
    data = write_idx_dataset(tmp_path / "idx", n=10, test_n=5)
    out = tmp_path / "summary.json"
    lines = []
    s = theory.expressivity_experiment("mnist", str(data), n=6, test_n=4, labels="true", seed=2, knot=0.5,
                                       depth=2, keras=False, out=str(out), progress=lines.append)
    assert set(s) == {"dataset", "seed", "knot", "theorem1"}
    assert (s["dataset"], s["seed"], s["knot"]) == ("mnist", 2, 0.5)
    t = s["theorem1"]
    assert (t["n"], t["d"], t["num_classes"], t["labels"]) == (6, 28 * 28, 10, "true")
    assert t["train_acc_numpy_float64"] == 1.0 and t["deep"]["train_acc"] == 1.0
    assert t["lambda_min"] == pytest.approx(0.5 * t["min_gap"])
    assert json.loads(out.read_text()) == s          # the JSON is the returned summary
    assert lines[0] == "mnist: 6 train, 4 test images (28, 28, 1), raw pixels 0..255" and lines[-1] == f"wrote {out}"
    # the subsets (seed + 1) and the direction (seed) are those of theorem1_experiment on the same arrays
    x, y, xt, yt, names = load_subsets("mnist", str(data), 6, 4, 3)
    ref = theory.theorem1_experiment(x, y, xt, yt, len(names), labels="true", seed=2, knot=0.5, depth=2,
                                     keras=False, progress=None)
    assert {k: v for k, v in ref.items() if k != "solve_seconds"} == \
        {k: v for k, v in t.items() if k != "solve_seconds"}


def test_expressivity_experiment_checks_before_work(tmp_path):
    missing = str(tmp_path / "missing")   # no data: each check below must come before loading it
    for kw, match in [(dict(out=str(tmp_path)), "--out=.* is a directory"),
                      (dict(out=str(tmp_path / "no" / "s.json")), "directory .* does not exist"),
                      (dict(rademacher_models=["resnet"]), "unknown model"),
                      (dict(knot=0.7), "--knot"), (dict(depth=1), "--depth")]:
        with pytest.raises(ValueError, match=match):
            theory.expressivity_experiment("mnist", missing, progress=None, **kw)
    data = write_idx_dataset(tmp_path / "idx", n=6, test_n=2)
    with pytest.raises(ValueError, match="--depth=9 needs at least depth - 1 = 8 training images"):
        theory.expressivity_experiment("mnist", str(data), n=6, depth=9, progress=None)
