"""Per-example records (examples.npz, rethinkgen_tf.dynamics): what a run records, that a
killed run's records equal an uninterrupted run's, the metrics.csv columns by example group,
the Keras callback on a user's model, the size of full records, and the pictures.

The tiny problem of tests/test_train.py: 256 train / 64 test random 12x12x3 images, half
the labels corrupted, MLP 1x64.
"""
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny import ARRAYS, DATA, SETUP, strip

from rethinkgen_tf import dynamics, results, suite
from rethinkgen_tf.data import load
from rethinkgen_tf.train import RESULT_NEUTRAL, TrainConfig, run

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("train_eval_acc_clean", "train_eval_acc_noisy", "train_eval_acc_noisy_orig")



def cfg(**kw):
    return TrainConfig(**{"model": "mlp_1x64", "epochs": 4, "verbose": 0, **kw})


def same_rows(a, b):
    """Equal metrics rows, NaN equal to NaN, timing aside."""
    assert len(a) == len(b)
    for ra, rb in zip(strip(a), strip(b)):
        assert ra.keys() == rb.keys()
        for k in ra:
            assert ra[k] == rb[k] or (ra[k] != ra[k] and rb[k] != rb[k]), k


def same_arrays(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Uninterrupted runs of the tiny problem, one per recording mode."""
    out = {}
    for mode in ("default", "full", "none"):
        path = tmp_path_factory.mktemp(mode)
        run(cfg(record_examples=mode), DATA, path, data=load(DATA, ARRAYS))
        out[mode] = path
    return out


def labels_of(data, n=None):
    """(training labels, original labels) of the re-evaluated training set, from the data
    layer itself."""
    ys = [(y.numpy(), t.numpy()) for _, y, t in data.train_eval]
    y, t = np.concatenate([a for a, _ in ys]), np.concatenate([b for _, b in ys])
    return (y, t) if n is None else (y[:n], t[:n])


# ---------------------------------------------------------------- what a run records


def test_summarize_counts_first_fits_and_forgetting_events():
    c = np.array([[0, 1, 1, 0, 0],
                  [1, 0, 1, 0, 1],
                  [1, 1, 1, 0, 0],
                  [0, 1, 1, 0, 1]], bool)
    first, forgot = dynamics.summarize(c)
    assert first.tolist() == [1, 0, 0, -1, 1]
    assert forgot.tolist() == [1, 1, 0, 0, 1]
    # rows are evaluated epochs: with gaps the file stores the epoch, not the row
    rec = dynamics.Records("default", index=range(5))
    for e, row in zip((1, 2, 5, 7), c):
        rec.add(e, np.where(row, 3, 4), np.stack([np.full(5, 3), np.full(5, 3)], 1))
    a = rec.arrays()
    assert a["first_fit_epoch"].tolist() == [2, 1, 1, -1, 2]
    assert a["forgetting_events"].tolist() == [1, 1, 0, 0, 1]
    assert a["epochs"].tolist() == [1, 2, 5, 7]
    np.testing.assert_array_equal(dynamics.unpack(a), c)


@pytest.mark.slow
def test_examples_file_holds_what_the_model_predicts(runs):
    a = dynamics.load(runs["default"])
    assert set(a) == {"index", "label", "label_orig", "corrupted", "epochs", "correct",
                      "correct_orig", "first_fit_epoch", "forgetting_events"}
    for k, v in a.items():
        assert v.dtype == np.dtype(results.EXAMPLE_ARRAYS[k][0]), k
    data = load(DATA, ARRAYS)
    y, y_orig = labels_of(data)
    np.testing.assert_array_equal(a["index"], np.arange(256))
    np.testing.assert_array_equal(a["label"], y)
    np.testing.assert_array_equal(a["label_orig"], y_orig)
    np.testing.assert_array_equal(a["corrupted"], y != y_orig)
    assert 0.3 < a["corrupted"].mean() < 0.6  # p (1 - 1/K) = 0.45
    assert a["epochs"].tolist() == [1, 2, 3, 4]
    assert a["correct"].shape == (4, 32) and a["correct"].dtype == np.uint8
    correct = dynamics.unpack(a)
    first, forgot = dynamics.summarize(correct)
    np.testing.assert_array_equal(a["first_fit_epoch"], np.where(first >= 0, first + 1, -1))
    np.testing.assert_array_equal(a["forgetting_events"], forgot)
    # the last row is what the final weights predict, computed here independently
    from rethinkgen_tf import models
    model = models.build("mlp_1x64", data.input_shape, 10)
    model.load_weights(str(runs["default"] / "model.weights.h5"))
    x = np.concatenate([b[0].numpy() for b in data.train_eval])
    pred = np.argmax(model.predict(x, verbose=0), -1)
    np.testing.assert_array_equal(correct[-1], pred == y)
    np.testing.assert_array_equal(dynamics.unpack(a, "correct_orig")[-1], pred == y_orig)


@pytest.mark.slow
def test_metrics_columns_by_group_equal_the_records(runs):
    rows = results.read_metrics(runs["default"])
    assert list(rows[0]) == results.METRIC_COLUMNS
    g = dynamics.group_accuracy(dynamics.load(runs["default"]))
    for i, row in enumerate(rows):  # exact: both are counts over counts
        assert row["train_eval_acc"] == g["all"][i]
        assert row["train_eval_acc_clean"] == g["clean"][i]
        assert row["train_eval_acc_noisy"] == g["noisy"][i]
        assert row["train_eval_acc_noisy_orig"] == g["noisy_orig"][i]
    # memorization: corrupted examples are fit on their random labels, not their true ones
    assert rows[-1]["train_eval_acc_noisy"] > 0.8 and rows[-1]["train_eval_acc_noisy_orig"] < 0.2
    # TensorBoard gets the same scalars
    import tensorflow as tf
    tags = {}
    for f in (runs["default"] / "tb").iterdir():
        for e in tf.compat.v1.train.summary_iterator(str(f)):
            for v in e.summary.value:
                tags.setdefault(v.tag, []).append(e.step)
    for k in GROUPS:
        assert tags[k] == [8, 16, 24, 32], k


@pytest.mark.slow
def test_recording_does_not_change_the_run(runs):
    """none / default / full: the same metrics bit for bit (the group columns included),
    the same weights; none writes no file."""
    same_rows(results.read_metrics(runs["none"]), results.read_metrics(runs["default"]))
    same_rows(results.read_metrics(runs["full"]), results.read_metrics(runs["default"]))
    assert not (runs["none"] / "examples.npz").exists()
    assert (runs["none"] / "metrics.csv").read_text().splitlines()[0].count("noisy") == 2
    full, default = dynamics.load(runs["full"]), dynamics.load(runs["default"])
    same_arrays({k: v for k, v in full.items() if k != "p_label"}, default)


@pytest.mark.slow
def test_full_records_the_probability_of_the_training_label(runs):
    a = dynamics.load(runs["full"])
    p = a["p_label"]
    assert p.dtype == np.float16 and p.shape == (4, 256)
    assert np.all((p >= 0) & (p <= 1))
    correct = dynamics.unpack(a)
    assert np.all(correct[p > 0.5])  # a probability above 1/2 is the argmax
    rows = results.read_metrics(runs["full"])
    for i, row in enumerate(rows):  # mean cross-entropy = mean -log p (float16 rounding)
        assert np.mean(-np.log(p[i].astype(np.float64))) == pytest.approx(row["train_eval_loss"],
                                                                          rel=2e-3)
    conf, var = dynamics.data_map(a)
    assert conf.shape == var.shape == (256,) and np.all(var >= 0)
    with pytest.raises(KeyError):
        dynamics.data_map(dynamics.load(runs["default"]))


@pytest.mark.slow
def test_train_eval_size_records_the_first_n(tmp_path):
    """--train_eval_size=100 with batches of 32: exactly the first 100 are re-evaluated
    (the last batch cut to 4) and recorded."""
    run(cfg(epochs=2, train_eval_size=100), DATA, tmp_path, data=load(DATA, ARRAYS))
    a = dynamics.load(tmp_path)
    assert a["index"].tolist() == list(range(100)) and a["correct"].shape == (2, 13)
    y, y_orig = labels_of(load(DATA, ARRAYS), 100)
    np.testing.assert_array_equal(a["corrupted"], y != y_orig)
    rows = results.read_metrics(tmp_path)
    g = dynamics.group_accuracy(a)
    assert [r["train_eval_acc"] for r in rows] == g["all"].tolist()
    assert [r["train_eval_acc_noisy"] for r in rows] == g["noisy"].tolist()


@pytest.mark.slow
def test_a_run_without_corruption_has_nan_for_the_corrupted_groups(tmp_path):
    data = dataclasses.replace(DATA, corrupt=0.0)
    run(cfg(epochs=1), data, tmp_path, data=load(data, ARRAYS))
    row = results.read_metrics(tmp_path)[0]
    assert row["train_eval_acc_clean"] == row["train_eval_acc"]
    assert np.isnan(row["train_eval_acc_noisy"]) and np.isnan(row["train_eval_acc_noisy_orig"])
    assert not dynamics.load(tmp_path)["corrupted"].any()


@pytest.mark.slow
def test_old_metrics_files_without_the_new_columns_are_read(runs, tmp_path):
    old = [c for c in results.METRIC_COLUMNS if c not in GROUPS]
    rows = results.read_metrics(runs["default"])
    lines = [",".join(old)] + [",".join(repr(r[c]) for c in old) for r in rows]
    (tmp_path / "metrics.csv").write_text("\n".join(lines) + "\n")
    back = results.read_metrics(tmp_path)
    assert list(back[0]) == old and strip(back) == strip([{c: r[c] for c in old} for r in rows])
    results.write_metrics(tmp_path, back)  # rewritten with every column, NaN for the new
    again = results.read_metrics(tmp_path)
    assert list(again[0]) == results.METRIC_COLUMNS
    assert all(np.isnan(r[k]) for r in again for k in GROUPS)


def test_record_examples_is_result_neutral():
    assert "record_examples" in RESULT_NEUTRAL
    p = suite.point(cfg(), DATA)
    for mode in ("none", "full"):
        q = suite.Point(p.tags, dataclasses.replace(p.train, record_examples=mode), p.data)
        assert suite.config_key(q) == suite.config_key(p)
    with pytest.raises(ValueError, match="record_examples"):
        cfg(record_examples="all")


# ---------------------------------------------------------------- kill -9 and resume


DRIVER = SETUP + """
import os, signal, sys, keras
from pathlib import Path
from rethinkgen_tf import entry, results
from rethinkgen_tf.train import TrainConfig, run
run_dir, phase, arg = sys.argv[1], sys.argv[2], int(sys.argv[3])
kill = lambda: os.kill(os.getpid(), signal.SIGKILL)
cbs = []
class At(keras.callbacks.Callback):  # SIGKILL at optimizer step `arg`
    def on_train_batch_end(self, batch, logs=None):
        if self.model.optimizer.iterations.numpy() == arg: kill()
if phase == "mid_epoch":
    cbs.append(At())
elif phase == "after_examples":  # epoch `arg`'s examples.npz written, its checkpoint not
    write = results.write_examples
    def write_then_kill(path, arrays):
        write(path, arrays)
        if len(arrays["epochs"]) == arg: kill()
    results.write_examples = write_then_kill
elif phase == "mid_examples":  # epoch `arg`'s temporary file written, not yet renamed
    replace = os.replace
    def kill_before(a, b):
        if Path(b).name == "examples.npz" and results.read_metrics(run_dir)[-1]["epoch"] == arg:
            kill()
        return replace(a, b)
    os.replace = kill_before
with entry.errors():
    run(TrainConfig(model="mlp_1x64", epochs=4, verbose=0, record_examples=sys.argv[4]), DATA,
        run_dir, data=load(DATA, ARRAYS), callbacks=cbs)
"""


def python(code, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("phase, arg, mode", [
    ("mid_epoch", 20, "default"),  # in epoch 3: the file holds epochs 1-2, epoch 3 is redone
    ("mid_epoch", 20, "full"),
    ("after_examples", 2, "default"),  # epoch 2 recorded, not checkpointed: row dropped, redone
    ("mid_examples", 3, "default"),  # epoch 3's temporary file left behind: removed, redone
])
def test_kill_9_then_rerun_gives_the_uninterrupted_records(runs, tmp_path, phase, arg, mode):
    p = python(DRIVER, tmp_path, phase, arg, mode)
    assert p.returncode == -9, p.stderr
    assert results.load_result(tmp_path) is None
    killed = dynamics.load(tmp_path)
    if phase == "after_examples":  # the file holds an epoch past the checkpoint
        assert killed["epochs"].tolist() == [1, 2] and \
            results.read_json(tmp_path / "backup" / "training_metadata.json")["epoch"] == 1
    if phase == "mid_examples":
        assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".examples.npz.tmp")]
    run(cfg(record_examples=mode), DATA, tmp_path, data=load(DATA, ARRAYS))
    same_arrays(dynamics.load(tmp_path), dynamics.load(runs[mode]))
    # the same bytes, too: the writer fixes member order and timestamps
    assert (tmp_path / "examples.npz").read_bytes() == (runs[mode] / "examples.npz").read_bytes()
    same_rows(results.read_metrics(tmp_path), results.read_metrics(runs[mode]))
    assert not [f for f in tmp_path.rglob("*") if results.TMP_TAG in f.name]


@pytest.mark.slow
def test_a_damaged_examples_file_stops_a_resume_with_one_line(tmp_path):
    p = python(DRIVER, tmp_path, "mid_epoch", 20, "default")
    assert p.returncode == -9, p.stderr
    (tmp_path / "examples.npz").write_bytes(b"PK\x03\x04 not a zip")
    p = python(DRIVER, tmp_path, "none", 0, "default")
    lines = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert p.returncode == 1 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "examples.npz is damaged" in lines[0] and "--overwrite" in lines[0], lines[0]


# ---------------------------------------------------------------- size


@pytest.mark.slow
def test_full_records_of_50000_examples_over_200_epochs_stay_under_25_mb(tmp_path):
    """Uncompressed .npz: the size is the arrays' bytes plus ~330 bytes per array, known
    in advance and cheap to rewrite every epoch (compression would save little on
    p_label's float16 mantissas and cost CPU per epoch)."""
    n, epochs = 50_000, 200
    bound = dynamics.size_bytes(n, epochs, "full")
    assert bound < 25e6
    rng = np.random.default_rng(0)
    rec = dynamics.Records("full", index=range(n))
    y = rng.integers(0, 10, n)
    labels = np.stack([y, np.where(rng.random(n) < 0.5, rng.integers(0, 10, n), y)], 1)
    for e in range(1, epochs + 1):
        rec.add(e, rng.integers(0, 10, n), labels, rng.random(n))
    a = rec.arrays()
    assert a["p_label"].shape == (200, 50_000) and a["correct"].shape == (200, 6250)
    data_bytes = sum(v.nbytes for v in a.values())
    assert data_bytes == 2 * n * epochs + 2 * epochs * 6250 + n * (4 * 5 + 1) + 4 * epochs
    rec.save(tmp_path / "examples.npz")
    size = os.path.getsize(tmp_path / "examples.npz")
    assert data_bytes < size <= bound < 25e6, (data_bytes, size, bound)
    assert dynamics.size_bytes(n, epochs, "default") < 4e6  # no p_label: 3.6 MB


# ---------------------------------------------------------------- any Keras model


@pytest.mark.slow
def test_the_callback_records_a_users_own_model_in_a_plain_fit(tmp_path):
    import keras
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 20)).astype(np.float32)
    y_true = (x[:, 0] > 0).astype(np.int32) + 2 * (x[:, 1] > 0)
    noisy = rng.random(300) < 0.3
    y = np.where(noisy, rng.integers(0, 4, 300), y_true).astype(np.int32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(4, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    rec = dynamics.ExampleRecorder((x, y, y_true), tmp_path / "examples.npz", record="full",
                                   from_logits=False)
    h = model.fit(x, y, epochs=3, batch_size=32, verbose=0,
                  callbacks=[rec, keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))])
    a = dynamics.load(tmp_path)
    np.testing.assert_array_equal(a["corrupted"], y != y_true)
    assert a["epochs"].tolist() == [1, 2, 3] and a["p_label"].shape == (3, 300)
    probs = model.predict(x, verbose=0)
    np.testing.assert_array_equal(dynamics.unpack(a)[-1], probs.argmax(-1) == y)
    np.testing.assert_allclose(a["p_label"][-1], probs[np.arange(300), y], rtol=2e-3, atol=1e-4)
    g = dynamics.group_accuracy(a)
    for k, col in (("clean", "train_eval_acc_clean"), ("noisy", "train_eval_acc_noisy"),
                   ("noisy_orig", "train_eval_acc_noisy_orig")):
        assert h.history[col] == g[k].tolist(), col
    assert "train_eval_acc_noisy" in (tmp_path / "log.csv").read_text().splitlines()[0]
    # a restart that continues with initial_epoch keeps the earlier epochs' rows
    rec = dynamics.ExampleRecorder((x, y, y_true), tmp_path / "examples.npz", record="full",
                                   from_logits=False)
    model.fit(x, y, initial_epoch=2, epochs=4, batch_size=32, verbose=0, callbacks=[rec])
    b = dynamics.load(tmp_path)
    assert b["epochs"].tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(b["correct"][:2], a["correct"][:2])
    # a fresh fit on other data into the same file starts its records afresh
    rec = dynamics.ExampleRecorder((x[:100], y[:100], y_true[:100]), tmp_path / "examples.npz",
                                   from_logits=False)
    model.fit(x[:100], y[:100], epochs=1, verbose=0, callbacks=[rec])
    c = dynamics.load(tmp_path)
    assert c["epochs"].tolist() == [1] and len(c["index"]) == 100 and "p_label" not in c
    # without original labels: nothing counts as corrupted
    rec = dynamics.ExampleRecorder((x, y), tmp_path / "two.npz", from_logits=False)
    h = model.fit(x, y, epochs=1, verbose=0, callbacks=[rec])
    assert not dynamics.load(tmp_path / "two.npz")["corrupted"].any()
    assert np.isnan(h.history["train_eval_acc_noisy"][0])


# ---------------------------------------------------------------- pictures


def cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "experiments.dynamics", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_dynamics_pictures_from_saved_records(runs, tmp_path):
    p = cli(f"--run_dir={runs['full']}", f"--run_dir={runs['default']}",
            f"--out={tmp_path / 'both'}")
    assert p.returncode == 0, p.stderr
    for ext in ("png", "pdf"):
        assert os.path.getsize(tmp_path / f"both.{ext}") > 10_000
    assert '"data_map"' in p.stdout and '"never_fit"' in p.stdout


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["missing", "damaged", "truncated"])
def test_dynamics_errors_are_one_line_naming_the_file(runs, tmp_path, damage):
    d = tmp_path / "run"
    d.mkdir()
    if damage == "damaged":
        (d / "examples.npz").write_text("garbage")
    elif damage == "truncated":
        (d / "examples.npz").write_bytes((runs["full"] / "examples.npz").read_bytes()[:5000])
    p = cli(f"--run_dir={d}")
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith("error:"), p.stderr
    assert str(d / "examples.npz") in lines[0], lines[0]
    assert ("does not exist" if damage == "missing" else "is damaged") in lines[0]


@pytest.mark.slow
def test_figure1_draws_the_records_of_its_corrupted_runs(runs, tmp_path):
    from rethinkgen_tf import plots
    pairs = []
    for p, d in ((0.0, runs["none"]), (0.5, runs["default"]), (0.5, None)):
        model = "mlp_1x64" if d is not None else "mlp_1x512"
        pt = suite.point(cfg(), DATA, part="bc", model=model, corrupt=p)
        pairs.append((pt, None if d is None else {**results.load_result(d), "run_dir": str(d)}))
    out = plots.figure1(pairs, tmp_path)
    dyn = out["dynamics"]
    assert set(dyn["mlp_1x64"]) == {0.5}  # p = 0 has no corrupted examples to show
    assert dyn["mlp_1x64"][0.5]["final_noisy"] == results.read_metrics(
        runs["default"])[-1]["train_eval_acc_noisy"]
    assert all(os.path.getsize(f) > 1000 for f in dyn["files"])
    assert Path(dyn["files"][0]).name == "figure1_dynamics.png"
