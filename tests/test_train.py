"""Training loop tests: run directories, resume after kill -9, strategies, real data.

Small synthetic data through the real data layer (dataset="numpy"); the
real-data test reads a CIFAR-10 subset from ../shared/data/cifar10-jpeg.tar.gz.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny import ARRAYS, DATA, SETUP, TIMING, strip

from rethinkgen_tf import results
from rethinkgen_tf.data import DataConfig, load
from rethinkgen_tf.train import TrainConfig, run

ROOT = Path(__file__).resolve().parents[1]
CIFAR_TGZ = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
CFG = TrainConfig(model="mlp_1x64", epochs=4, verbose=0)


def same(rows_a, rows_b):
    assert strip(rows_a) == strip(rows_b)


def test_config_defaults_and_validation():
    assert TrainConfig(model="inception").resolved().learning_rate == 0.1
    assert TrainConfig(model="wrn_28_10").resolved().learning_rate == 0.1
    r = TrainConfig(model="alexnet").resolved()
    assert (r.learning_rate, r.lr_decay, r.momentum, r.epochs) == (0.01, 0.95, 0.9, 100)
    for name in ("mlp_1x512", "mlp_3x512"):  # a slower decay: random labels are fit at full scale
        r = TrainConfig(model=name).resolved()
        assert (r.learning_rate, r.lr_decay, r.momentum, r.epochs) == (0.01, 0.985, 0.9, 200)
    assert TrainConfig(model="inception").resolved().lr_decay == 0.95
    assert TrainConfig(model="mlp_1x512", lr_decay=0.95).resolved().lr_decay == 0.95
    assert TrainConfig(model="alexnet", learning_rate=0.5).resolved().learning_rate == 0.5
    for bad in [dict(model="nope"), dict(epochs=-1), dict(strategy="x"), dict(dropout=1.0),
                dict(lr_decay=0.0), dict(weight_decay=-1.0)]:
        with pytest.raises(ValueError):
            TrainConfig(**bad).validate()


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """An uninterrupted default-strategy run of CFG on DATA."""
    path = tmp_path_factory.mktemp("ref")
    return path, run(CFG, DATA, path, data=load(DATA, ARRAYS))


@pytest.mark.slow
def test_run_directory(ref, tmp_path):
    data = load(DATA, ARRAYS)
    shutil.copytree(ref[0], tmp_path, dirs_exist_ok=True)
    r = ref[1]
    files = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "metrics.csv", "result.json", "tb", "model.weights.h5"} <= files
    assert "backup" not in files or not any((tmp_path / "backup").iterdir())
    rows = results.read_metrics(tmp_path)
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert [row["step"] for row in rows] == [8, 16, 24, 32]
    # the MLP default schedule: lr 0.01 x 0.985 per epoch
    np.testing.assert_allclose([row["lr"] for row in rows], 0.01 * 0.985 ** np.arange(4), rtol=1e-6)
    assert list(rows[0]) == results.METRIC_COLUMNS
    assert r == results.load_result(tmp_path)
    assert r["final"] == rows[-1] and r["params"] == 12 * 12 * 3 * 64 + 64 + 650
    assert r["config"]["train"]["learning_rate"] == 0.01
    assert r["config"]["data"]["corrupt"] == 0.5 and "tensorflow" in r["versions"]
    assert "native" in r["op"]
    # The randomized labels differ from the original ones on about p*(1-1/K) of examples.
    assert rows[-1]["train_eval_acc"] != rows[-1]["train_eval_acc_orig"]
    assert list((tmp_path / "tb").iterdir())
    # Finished: not redone (same dict back), unless overwrite.
    assert run(CFG, DATA, tmp_path, data=data) == r
    r2 = run(TrainConfig(model="mlp_1x64", epochs=1, overwrite=True), DATA, tmp_path, data=data)
    assert r2["epochs"] == 1 and len(results.read_metrics(tmp_path)) == 1
    # An unfinished run dir with another config is not silently mixed in.
    (tmp_path / "result.json").unlink()
    with pytest.raises(ValueError, match="different config"):
        run(TrainConfig(model="mlp_1x64", epochs=5), DATA, tmp_path, data=data)


@pytest.mark.slow
def test_time_to_overfit_and_stop(tmp_path):
    rows = [{"epoch": e, "step": 10 * e, "train_eval_acc": a}
            for e, a in [(1, 0.5), (2, 0.999), (3, 1.0), (4, 1.0)]]
    assert results.time_to_overfit(rows) == (3, 30)
    assert results.time_to_overfit(rows, 0.99) == (2, 20)
    assert results.time_to_overfit(rows[:2]) == (None, None)
    cfg = TrainConfig(model="mlp_1x64", epochs=30, stop_on_overfit=True, verbose=0,
                      overfit_threshold=0.6)
    r = run(cfg, DATA, tmp_path, data=load(DATA, ARRAYS))
    assert r["overfit_epoch"] == r["epochs"] < 30 and r["final"]["train_eval_acc"] >= 0.6



@pytest.mark.slow
def test_test_every_skips_test_evaluations_but_not_the_model(ref, tmp_path):
    """test_every=3 over 4 epochs: the test set at epoch 3 and at the last; the same
    trained model (every other column equal to the uninterrupted run's)."""
    r = run(TrainConfig(model="mlp_1x64", epochs=4, verbose=0, test_every=3), DATA, tmp_path,
            data=load(DATA, ARRAYS))
    rows, ref_rows = results.read_metrics(tmp_path), results.read_metrics(ref[0])
    for row, ref_row in zip(rows, ref_rows):
        tested = row["epoch"] in (3, 4)
        for k in ("test_loss", "test_acc", "test_top5"):
            assert np.isnan(row[k]) != tested
            if tested:
                assert row[k] == ref_row[k]
        assert {k: v for k, v in row.items() if k not in TIMING and not k.startswith("test")} == \
            {k: v for k, v in ref_row.items() if k not in TIMING and not k.startswith("test")}
    assert r["final"]["test_acc"] == ref[1]["final"]["test_acc"]
    assert r["best_test_epoch"] in (3, 4)
    with pytest.raises(ValueError, match="test_every"):
        TrainConfig(test_every=0).validate()


def test_bn_momentum_reaches_the_batch_norm_layers():
    from rethinkgen_tf import models
    m = models.build("mlp_1x64", (12, 12, 3), 10, batchnorm=True, bn_momentum=0.5)
    assert [l.momentum for l in m.layers if "batch_normalization" in l.name] == [0.5]
    m = models.build("mlp_1x64", (12, 12, 3), 10, batchnorm=True)
    assert [l.momentum for l in m.layers if "batch_normalization" in l.name] == [0.997]
    with pytest.raises(ValueError, match="bn_momentum"):
        TrainConfig(bn_momentum=1.0).validate()


KILL = SETUP + """
import os, signal, sys, keras
from rethinkgen_tf.train import TrainConfig, run

class Kill(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if self.model.optimizer.iterations.numpy() == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)

run(TrainConfig(model="mlp_1x64", epochs=4, verbose=0), DATA, sys.argv[1],
    data=load(DATA, ARRAYS), callbacks=[Kill()])
"""


def _python(code, *args, env=None, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.slow
def test_resume_after_kill_9(ref, tmp_path):
    # Killed by SIGKILL in the middle of epoch 2 (step 12 of 32) ...
    p = _python(KILL, tmp_path, 12)
    out = p.communicate(timeout=300)[0]
    assert p.returncode == -9, out
    assert results.load_result(tmp_path) is None
    assert len(results.read_metrics(tmp_path)) == 1
    # ... and resumed: bit-identical metrics to the uninterrupted run.
    r = run(CFG, DATA, tmp_path, data=load(DATA, ARRAYS))
    same(results.read_metrics(tmp_path), results.read_metrics(ref[0]))
    same([r["final"]], [ref[1]["final"]])


MIRRORED = SETUP + """
import json, sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from rethinkgen_tf.train import TrainConfig, run
r = run(TrainConfig(model="mlp_1x64", epochs=2, verbose=0, strategy=sys.argv[2]), DATA,
        sys.argv[1], data=load(DATA, ARRAYS))
print("RESULT", json.dumps([r["num_replicas"], r["final"]]))
"""


def _result(p):
    out = p.communicate(timeout=300)[0]
    assert p.returncode == 0, out
    return json.loads(out.split("RESULT ")[-1])


@pytest.mark.slow
def test_mirrored_two_cpus_matches_single_device(ref, tmp_path):
    n, final = _result(_python(MIRRORED, tmp_path, "mirrored"))
    assert n == 2
    for k in ("step", "lr", "train_eval_acc", "train_eval_loss", "test_acc"):
        assert final[k] == pytest.approx(results.read_metrics(ref[0])[1][k], rel=1e-4, abs=1e-4), k


MULTI = SETUP + """
import json, sys
from rethinkgen_tf.train import TrainConfig, make_strategy, run
make_strategy("multi_worker")
r = run(TrainConfig(model="mlp_1x64", epochs=2, verbose=0, strategy="multi_worker"), DATA,
        sys.argv[1], data=load(DATA, ARRAYS))
print("RESULT", json.dumps([r["num_replicas"], r["final"]]))
"""


@pytest.mark.slow
def test_multi_worker_two_processes(ref, tmp_path):
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = [_python(MULTI, tmp_path, env={"TF_CONFIG": json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": i}})}) for i in range(2)]
    (n0, chief), (n1, worker) = [_result(p) for p in procs]
    assert n0 == n1 == 2
    assert results.load_result(tmp_path)["num_replicas"] == 2
    assert results.load_result(tmp_path / "worker1") is not None
    for k in ("train_eval_acc", "train_eval_acc_orig", "test_acc", "step"):
        assert chief[k] == worker[k], k
        assert chief[k] == pytest.approx(results.read_metrics(ref[0])[1][k], rel=1e-4, abs=1e-4), k


@pytest.mark.skipif(not CIFAR_TGZ.exists(), reason=f"needs {CIFAR_TGZ}")
@pytest.mark.slow
def test_cifar_random_labels_memorized_true_labels_generalize(tmp_path):
    """Same model, same hyperparameters: random labels are fit to 100% with test
    accuracy at chance; true labels give test accuracy well above chance."""
    # The first 50 images per class of each split (0000.jpg..0049.jpg): 500 + 500.
    subprocess.run(["tar", "-xzf", CIFAR_TGZ, "-C", tmp_path, "--wildcards",
                    "*/00[0-4][0-9].jpg"], check=True)
    cfg = TrainConfig(model="mlp_1x512", epochs=12, verbose=0)
    out = {}
    for randomize in ("none", "labels"):
        dc = DataConfig(data_dir=str(tmp_path / "cifar10-jpeg"), randomize=randomize,
                        batch_size=32)
        out[randomize] = run(cfg, dc, tmp_path / randomize)["final"]
    assert out["labels"]["train_eval_acc"] == 1.0
    assert out["labels"]["train_eval_acc_orig"] < 0.25
    assert out["labels"]["test_acc"] < 0.16  # chance 0.10, 500 test images
    assert out["none"]["train_eval_acc"] == 1.0
    assert out["none"]["test_acc"] > 0.25


def test_config_from_an_older_version_still_resumes():
    """A run directory written before a setting existed is the same run if the
    new setting holds its default; any real change is a different run."""
    from rethinkgen_tf.train import _differs
    old = {"train": {"model": "mlp_1x512", "lr_decay": 0.95, "overwrite": False},
           "data": {"seed": 0}}
    new = {"train": {"model": "mlp_1x512", "lr_decay": 0.95, "optimizer": "sgd",
                     "max_steps": None, "overwrite": True},
           "data": {"seed": 0, "test_images": "auto"}}
    assert not _differs(old, new)
    assert _differs(old, {**new, "train": {**new["train"], "optimizer": "rmsprop"}})
    assert _differs(old, {**new, "data": {"seed": 1, "test_images": "auto"}})
    assert _differs(new, old)  # a setting the old file has and the new lacks
