"""Edges of a training run (issue 22): divergence, resuming onto changed data, the
per-example recorder's inputs, and a number of epochs that must not cost memory or time
before the first one."""
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import ARRAYS, DATA, write_class_folders

from rethinkgen_tf import dynamics, results
from rethinkgen_tf.data import load
from rethinkgen_tf.data.pipeline import epoch_seed, shuffle_seed_for_epoch
from rethinkgen_tf.train import TrainConfig, run

ROOT = Path(__file__).resolve().parents[1]


class Counter(keras.callbacks.Callback):
    """Counts the epochs a run trains."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.n += 1


class Poison(keras.callbacks.Callback):
    """Sets every weight to NaN after optimizer step `step`."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            for w in self.model.trainable_variables:
                w.assign(tf.fill(w.shape, float("nan")))


class Stop(keras.callbacks.Callback):
    """Raises after epoch `epoch`'s checkpoint (callbacks run after the run's own)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise RuntimeError("stopped")


def cfg(**kw):
    return TrainConfig(**{"model": "mlp_1x64", "epochs": 3, "verbose": 0, **kw})


# ---------------------------------------------------------------- divergence


def test_a_huge_learning_rate_ends_the_run_as_diverged(tmp_path):
    data = load(DATA, ARRAYS)
    r = run(cfg(learning_rate=1e9), DATA, tmp_path, data=data)
    assert r["status"] == "diverged" and r["diverged_epoch"] == 1, r
    assert r["diverged_value"] in ("NaN", "inf") and r["epochs"] == 0 and r["final"] is None
    assert results.load_result(tmp_path) == r
    assert results.read_metrics(tmp_path) == []
    # no final weights of NaN, no checkpoint left behind
    assert not (tmp_path / "model.weights.h5").exists() and not (tmp_path / "backup").exists()
    # a rerun reports it without training; --overwrite trains again
    counter = Counter()
    assert run(cfg(learning_rate=1e9), DATA, tmp_path, data=data, callbacks=[counter]) == r
    assert counter.n == 0
    r2 = run(cfg(learning_rate=0.01, overwrite=True), DATA, tmp_path, data=data)
    assert r2["status"] == "finished" and r2["epochs"] == 3
    assert (tmp_path / "model.weights.h5").exists()


def test_divergence_in_a_later_epoch_keeps_the_epochs_before(tmp_path):
    # 8 steps per epoch: NaN weights from step 10 make epoch 2's training loss NaN
    r = run(cfg(), DATA, tmp_path, data=load(DATA, ARRAYS), callbacks=[Poison(10)])
    assert r["status"] == "diverged" and r["diverged_epoch"] == 2
    assert r["diverged_what"] == "training loss" and r["diverged_value"] == "NaN"
    rows = results.read_metrics(tmp_path)
    assert [row["epoch"] for row in rows] == [1] and r["final"] == rows[0] and r["epochs"] == 1
    assert np.isfinite(rows[0]["train_loss"]) and np.isfinite(rows[0]["test_acc"])
    assert results.read_examples(tmp_path)["epochs"].tolist() == [1]


def test_weights_gone_bad_in_the_last_step_count_as_diverged(tmp_path):
    # the NaN comes after epoch 1's last step: its training loss is finite, the
    # re-evaluation is not
    r = run(cfg(), DATA, tmp_path, data=load(DATA, ARRAYS), callbacks=[Poison(8)])
    assert r["status"] == "diverged" and r["diverged_epoch"] == 1
    assert r["diverged_what"] == "re-evaluated training loss"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny CIFAR-10 in class folders: 10 classes x (3 train, 2 test) 32x32 PNGs."""
    return write_class_folders(tmp_path_factory.mktemp("folders"))


def cifar(folders, out, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "experiments.cifar", f"--data_dir={folders}", "--model=mlp_1x32",
         "--epochs=2", "--batch_size=8", f"--output_dir={out}", "--run_name=r", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def error_line(p):
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, p.stderr
    return lines[0]


@pytest.mark.slow
def test_the_command_line_says_diverged_in_one_line_and_exits_1(folders, tmp_path):
    p = cifar(folders, tmp_path, "--learning_rate=1e9")
    line = error_line(p)
    assert "diverged" in line and "epoch 1" in line and "--learning_rate (now 1e+09)" in line, line
    assert "test acc" not in p.stdout
    assert results.load_result(tmp_path / "r")["status"] == "diverged"
    again = cifar(folders, tmp_path, "--learning_rate=1e9")  # not retrained: the same line
    assert error_line(again) == line and "diverged already" in again.stderr
    ok = cifar(folders, tmp_path, "--learning_rate=0.01", "--overwrite")
    assert ok.returncode == 0 and "test acc" in ok.stdout, ok.stderr


# ---------------------------------------------------------------- changed data


def changed_arrays():
    x = ARRAYS[0].copy()
    x[3, 0, 0, 0] ^= 1  # one byte of one training image
    return (x, *ARRAYS[1:])


def stopped_after_epoch_1(run_dir):
    with pytest.raises(RuntimeError, match="stopped"):
        run(cfg(), DATA, run_dir, data=load(DATA, ARRAYS), callbacks=[Stop(1)])
    assert results.read_json(run_dir / "backup" / "training_metadata.json")["epoch"] == 1


def test_the_fingerprint_is_of_the_data_used():
    a, b = load(DATA, ARRAYS).fingerprint, load(DATA, changed_arrays()).fingerprint
    assert a == load(DATA, ARRAYS).fingerprint  # the same in every load
    assert a["train"] != b["train"] and a["test"] == b["test"]
    # the randomized labels are part of it: another label seed is other training data
    other = load(dataclasses.replace(DATA, seed=1), ARRAYS).fingerprint
    assert other["train"] != a["train"] and other["test"] == a["test"]


def test_label_corruption_one_trains_on_the_random_labels_bit_for_bit():
    # docs/runplan.md shows (a)'s random-labels run as p = 1 of (b, c) on this ground
    labels = load(dataclasses.replace(DATA, randomize="labels", corrupt=0.0), ARRAYS)
    p1 = load(dataclasses.replace(DATA, randomize="none", corrupt=1.0), ARRAYS)
    assert labels.fingerprint == p1.fingerprint
    p08 = load(dataclasses.replace(DATA, randomize="none", corrupt=0.8), ARRAYS)
    assert p08.fingerprint["train"] != p1.fingerprint["train"]


def test_a_resume_onto_changed_data_is_refused_in_one_line(tmp_path):
    stopped_after_epoch_1(tmp_path)
    config = results.read_json(tmp_path / "config.json")
    assert config["data_fingerprint"] == load(DATA, ARRAYS).fingerprint
    with pytest.raises(ValueError) as e:
        run(cfg(), DATA, tmp_path, data=load(DATA, changed_arrays()))
    msg = str(e.value)
    assert "\n" not in msg and "has changed since" in msg and "training set fingerprint" in msg
    assert "test set" not in msg and "--overwrite" in msg
    assert results.read_json(tmp_path / "config.json") == config  # nothing touched
    # the unchanged data resumes after epoch 1
    counter = Counter()
    r = run(cfg(), DATA, tmp_path, data=load(DATA, ARRAYS), callbacks=[counter])
    assert counter.n == 2 and r["status"] == "finished" and r["epochs"] == 3


def test_overwrite_starts_again_on_the_new_data(tmp_path):
    stopped_after_epoch_1(tmp_path)
    counter = Counter()
    r = run(cfg(overwrite=True), DATA, tmp_path, data=load(DATA, changed_arrays()),
            callbacks=[counter])
    assert counter.n == 3 and r["epochs"] == 3
    assert r["config"]["data_fingerprint"] == load(DATA, changed_arrays()).fingerprint


def test_a_run_directory_without_a_fingerprint_resumes_and_gets_one(tmp_path):
    stopped_after_epoch_1(tmp_path)
    config = results.read_json(tmp_path / "config.json")
    del config["data_fingerprint"]  # as written before fingerprints existed
    (tmp_path / "config.json").write_text(json.dumps(config))
    counter = Counter()
    run(cfg(), DATA, tmp_path, data=load(DATA, ARRAYS), callbacks=[counter])
    assert counter.n == 2
    assert results.read_json(tmp_path / "config.json")["data_fingerprint"] == \
        load(DATA, ARRAYS).fingerprint


def test_the_examples_file_advice_does_not_mix_two_runs():
    advice = results.examples_advice(Path("runs/x/examples.npz"))
    assert "--overwrite" in advice and "delete" not in advice and "keep training" not in advice


# ---------------------------------------------------------------- ExampleRecorder inputs


def recorder(tmp_path, data, **kw):
    return dynamics.ExampleRecorder(data, tmp_path / "examples.npz", **kw)


@pytest.mark.parametrize("case, says", [
    ("float labels", "training labels are float"),
    ("float original labels", "original labels are float"),
    ("negative labels", "class labels are >= 0"),
    ("nan image", "1 images hold NaN or inf values (the first: example 2)"),
    ("inf image", "hold NaN or inf"),
    ("lengths", "one entry per example"),
    ("duplicate index", "index holds 1 duplicates (e.g. 4)"),
    ("float index", "index is float64"),
    ("short index", "9 indices for 10 examples"),
    ("dataset float labels", "training labels are float32"),
])
def test_the_recorder_refuses_inputs_it_would_record_wrongly(tmp_path, case, says):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    y = rng.integers(0, 3, 10)
    kw = {}
    data = (x, y, y)
    if case == "float labels":
        data = (x, y + 0.7, y)
    elif case == "float original labels":
        data = (x, y, y.astype(np.float32))
    elif case == "negative labels":
        data = (x, y - 1, y)
    elif case in ("nan image", "inf image"):
        x = x.copy()
        x[2, 1] = np.nan if case == "nan image" else np.inf
        data = (x, y, y)
    elif case == "lengths":
        data = (x, y[:9], y)
    elif case == "duplicate index":
        kw["index"] = [0, 1, 2, 3, 4, 4, 6, 7, 8, 9]
    elif case == "float index":
        kw["index"] = np.arange(10.0)
    elif case == "short index":
        kw["index"] = np.arange(9)
    elif case == "dataset float labels":
        data = tf.data.Dataset.from_tensor_slices((x, y.astype(np.float32))).batch(4)
    with pytest.raises(ValueError) as e:
        recorder(tmp_path, data, **kw)
    assert says in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not (tmp_path / "examples.npz").exists()


def test_the_recorder_takes_good_inputs(tmp_path):
    x = np.zeros((10, 4), np.float32)
    y = np.arange(10) % 3
    rec = recorder(tmp_path, (x, y.astype(np.int32), y), index=np.arange(100, 110))
    assert rec.records.given.tolist() == list(range(100, 110))
    recorder(tmp_path, (np.zeros((10, 2, 2, 3), np.uint8), y))  # integer images: nothing to check


# ---------------------------------------------------------------- epochs


def test_the_epoch_seed_tensor_is_numpys_seed_sequence():
    for shuffle_seed in (0, 1, 12345, 2**32 - 1, 2**32, 2**40 + 7, 2**63 - 1):
        for e in (0, 1, 2, 199, 10**9, 2**32 - 1):
            assert int(epoch_seed(shuffle_seed, tf.constant(e, tf.int64))) == \
                shuffle_seed_for_epoch(shuffle_seed, e), (shuffle_seed, e)


def collect(ds, batches=None):
    ds = ds if batches is None else ds.take(batches)
    return [np.concatenate(p) for p in zip(*[[t.numpy() for t in b] for b in ds])]


@pytest.mark.parametrize("global_seed", [None, 0, 3])
def test_each_epoch_is_in_the_order_of_its_seed(global_seed):
    # the order a Dataset.shuffle with the epoch's seed as a Python int gives (what each
    # epoch was built from before the epochs became lazy), under any global seed
    if global_seed is not None:
        tf.random.set_seed(global_seed)
    try:
        config = dataclasses.replace(DATA, shuffle_seed=5)
        data = load(config, ARRAYS)
        images = collect(data.train_eval)[0]
        n = len(images)
        for e in (0, 3):
            s = shuffle_seed_for_epoch(5, e)
            order = np.array(list(tf.data.Dataset.range(n).shuffle(
                n, seed=s, reshuffle_each_iteration=False).as_numpy_iterator()))
            np.testing.assert_array_equal(collect(data.train_epochs(e, e + 1))[0], images[order])
    finally:
        if global_seed is not None:
            tf.random.set_seed(None)


def test_a_billion_epochs_start_at_once_with_the_same_first_epoch():
    data = load(DATA, ARRAYS)
    steps = -(-data.num_train // DATA.batch_size)
    out = {}

    def build():  # in a thread: the epoch-by-epoch build of old never returned
        t0 = time.perf_counter()
        out["first"] = collect(data.train_epochs(0, 10**9), steps)
        out["seconds"] = time.perf_counter() - t0

    t = threading.Thread(target=build, daemon=True)
    t.start()
    t.join(60)
    assert "seconds" in out and out["seconds"] < 10, out.get("seconds")
    two = collect(data.train_epochs(0, 2))
    for a, b in zip(out["first"], two):
        np.testing.assert_array_equal(a, b[:len(a)])
    with pytest.raises(ValueError, match="epochs"):
        data.train_epochs(0, 2**32 + 1)
    with pytest.raises(ValueError, match="epochs"):  # before the data loads
        TrainConfig(model="mlp_1x64", epochs=2**32 + 1)
