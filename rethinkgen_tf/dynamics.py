"""Per-example records: which training examples are fit when, and which are forgotten.

After every epoch the whole training set is re-evaluated (evaluate.make_evaluate); with
per-example recording on, the run directory's `examples.npz` holds, for every
re-evaluated example (the arrays and their dtypes: results.EXAMPLE_ARRAYS):

    index, label, label_orig, corrupted      what the example is
    epochs, correct, correct_orig            per evaluated epoch: correct on its training
                                             / original label, bit-packed along examples
    first_fit_epoch, forgetting_events       summaries of `correct`
    p_label                                  (record_examples="full") float16 [epochs, n]:
                                             the probability given to the training label

Read it with `load(run_dir)`; `unpack(arrays)` gives the boolean matrices,
`group_accuracy(arrays)` the per-epoch accuracy of clean and corrupted examples,
`data_map(arrays)` the mean confidence and its variability across epochs.
`python -m experiments.dynamics --run_dir=DIR` draws them.

`ExampleRecorder` does the same for any Keras model in any `fit` loop:

    rec = ExampleRecorder((x_train, y_noisy, y_true), "runs/mine/examples.npz")
    model.fit(x_train, y_noisy, epochs=20, callbacks=[rec])

Modes (`TrainConfig.record_examples`, `--record_examples`): "default" records
everything but p_label, "full" adds it, "none" writes no file (the metrics.csv
columns train_eval_acc_clean/noisy/noisy_orig are computed in every mode).
"""
import math
import warnings
from pathlib import Path

import keras
import numpy as np

from rethinkgen_tf import results
from rethinkgen_tf.evaluate import check_mode, group_columns, make_evaluate

FILE = results.EXAMPLES_FILE


def summarize(correct):
    """(first_fit_epoch row, forgetting_events) of a bool matrix [rows, n]: the first row
    at which each example is correct (-1 if never), and how many times it goes from correct
    to incorrect between consecutive rows."""
    correct = np.asarray(correct, bool)
    if correct.shape[0] == 0:
        n = correct.shape[1]
        return np.full(n, -1, np.int64), np.zeros(n, np.int64)
    first = np.where(correct.any(0), correct.argmax(0), -1)
    forgot = (correct[:-1] & ~correct[1:]).sum(0)
    return first, forgot


def unpack(arrays, name="correct"):
    """The bool matrix [evaluated epochs, n] of a bit-packed array of `arrays`."""
    n = len(arrays["index"])
    return np.unpackbits(arrays[name], axis=-1, count=n).astype(bool)


def _mean(correct, mask):
    """Per-row accuracy of the examples in mask (NaN if there are none)."""
    k = int(mask.sum())
    if k == 0:
        return np.full(correct.shape[0], np.nan)
    return correct[:, mask].sum(1) / k


def group_accuracy(arrays):
    """Per evaluated epoch: {"epochs", "all", "clean", "noisy", "noisy_orig"}: accuracy on
    the training labels of all, the uncorrupted and the corrupted examples, and of the
    corrupted ones on their original labels (NaN where a group is empty).  The same numbers
    as metrics.csv's train_eval_acc, train_eval_acc_clean, _noisy and _noisy_orig."""
    correct, orig = unpack(arrays), unpack(arrays, "correct_orig")
    noisy = arrays["corrupted"].astype(bool)
    return {"epochs": arrays["epochs"], "all": _mean(correct, np.ones_like(noisy)),
            "clean": _mean(correct, ~noisy), "noisy": _mean(correct, noisy),
            "noisy_orig": _mean(orig, noisy)}


def data_map(arrays):
    """(confidence, variability) per example: the mean and the standard deviation across
    evaluated epochs of p_label (Swayamdipta et al. 2020's data map); KeyError without
    p_label (record_examples="full").  Epochs without p_label (NaN) are left out."""
    p = arrays["p_label"].astype(np.float32)
    with warnings.catch_warnings():  # an example with no p_label at all: NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(p, 0), np.nanstd(p, 0)


def load(path):
    """The checked arrays of examples.npz (a path, or a run directory holding one);
    results.StateError (one line naming the file) if it is missing or damaged."""
    return results.read_examples(path)


class Records:
    """The per-example records of one run, in memory; `arrays()` is the file's content.

    add(epoch, pred, labels[, p_label]) appends one evaluated epoch (rows of that epoch
    or later, left by an interrupted process, are dropped first); truncate(epoch) keeps
    the rows up to `epoch` (a resume from the checkpoint of that epoch)."""

    def __init__(self, mode="default", index=None, previous=None, path=None):
        self.mode = check_mode(mode)
        self.given = None if index is None else np.asarray(index, np.int64)
        self.index, self.path = self.given, path
        self.label = self.label_orig = None
        self.epochs, self.correct, self.correct_orig, self.p_label = [], [], [], []
        if previous is not None:
            self._adopt(previous)

    def _adopt(self, a):
        self.label, self.label_orig = a["label"], a["label_orig"]
        if self.given is not None and not np.array_equal(self.given, a["index"]):
            raise results.StateError(
                f"{self.path or FILE} holds records of other examples than this run re-evaluates; "
                f"{results.examples_advice(self.path or FILE)}")
        self.index = a["index"].astype(np.int64)
        self.epochs = [int(e) for e in a["epochs"]]
        self.correct, self.correct_orig = list(a["correct"]), list(a["correct_orig"])
        if self.mode == "full":  # epochs recorded without p_label: NaN
            self.p_label = list(a["p_label"]) if "p_label" in a else \
                [np.full(len(self.index), np.nan, np.float16) for _ in self.epochs]

    def truncate(self, epoch):
        keep = sum(e <= epoch for e in self.epochs)
        for rows in (self.epochs, self.correct, self.correct_orig, self.p_label):
            del rows[keep:]
        return self

    def add(self, epoch, pred, labels, p_label=None):
        """pred: [n] predicted classes; labels: [n, k] (training label, original label)."""
        pred, labels = np.asarray(pred), np.asarray(labels)
        if labels.ndim == 1:
            labels = labels[:, None]
        label, label_orig = labels[:, 0], labels[:, -1]
        self.truncate(epoch - 1)
        if not self.epochs:  # nothing kept from an earlier file: this data defines the records
            self.index = self.given if self.given is not None else np.arange(len(pred))
        if len(self.index) != len(pred):
            raise ValueError(f"{len(pred)} examples evaluated but {len(self.index)} indices given")
        if self.label is not None and self.epochs and not (
                np.array_equal(self.label, label) and np.array_equal(self.label_orig, label_orig)):
            raise results.StateError(
                f"{self.path or FILE} holds records of examples with other labels than this run's; "
                f"{results.examples_advice(self.path or FILE)}")
        self.label, self.label_orig = label.astype(np.int32), label_orig.astype(np.int32)
        self.epochs.append(int(epoch))
        self.correct.append(np.packbits(pred == label))
        self.correct_orig.append(np.packbits(pred == label_orig))
        if self.mode == "full":
            self.p_label.append(np.full(len(pred), np.nan, np.float16) if p_label is None
                                else np.asarray(p_label).astype(np.float16))
        return self

    def arrays(self):
        n = len(self.index)
        b = -(-n // 8)
        correct = np.asarray(self.correct, np.uint8).reshape(-1, b)
        first, forgot = summarize(np.unpackbits(correct, axis=-1, count=n).astype(bool))
        epochs = np.asarray(self.epochs, np.int32)
        first_epoch = np.full(n, -1, np.int32)
        first_epoch[first >= 0] = epochs[first[first >= 0]]
        out = {"index": self.index, "label": self.label, "label_orig": self.label_orig,
               "corrupted": self.label != self.label_orig, "epochs": epochs,
               "correct": correct,
               "correct_orig": np.asarray(self.correct_orig, np.uint8).reshape(-1, b),
               "first_fit_epoch": first_epoch, "forgetting_events": forgot}
        if self.mode == "full":
            out["p_label"] = np.asarray(self.p_label, np.float16).reshape(-1, n)
        return {k: np.asarray(v, results.EXAMPLE_ARRAYS[k][0]) for k, v in out.items()}

    def save(self, path=None):
        results.write_examples(path or self.path, self.arrays())


def size_bytes(n, epochs, mode="full"):
    """The size of examples.npz for n examples and `epochs` evaluated epochs: the array
    bytes plus, per array, its .npy header (128 bytes) and zip entries (zip64: about 200)."""
    b = math.ceil(n / 8)
    per = {"n": n, "E": epochs, "EB": epochs * b, "En": epochs * n}
    total = 0
    for k, (dtype, shape) in results.EXAMPLE_ARRAYS.items():
        if k in results.OPTIONAL_EXAMPLE_ARRAYS and mode != "full":
            continue
        total += per[shape] * np.dtype(dtype).itemsize + 128 + 200
    return total


# ---------------------------------------------------------------- any Keras model


class ExampleRecorder(keras.callbacks.Callback):
    """A Keras callback that re-evaluates a training set after every epoch and writes
    examples.npz (the same file as a run of rethinkgen_tf.train), for any model and any
    `fit` loop.

        rec = ExampleRecorder((x, y_train, y_orig), "out/examples.npz", record="full")
        model.fit(x, y_train, epochs=20, callbacks=[rec, keras.callbacks.CSVLogger("m.csv")])

    data: a batched tf.data.Dataset of (images, training labels[, original labels]) in
    index order, or a tuple of arrays (batched here by `batch_size`).  Without original
    labels no example counts as corrupted.  index: the examples' indices (default 0..n-1).
    from_logits: whether the model outputs logits (False: probabilities).  ValueError
    (one line) for labels that are not integers >= 0 (float labels would be truncated),
    images that are not finite (arrays only: a dataset's images are not read up front),
    arrays of different lengths, and an index that is not distinct integers >= 0, one per
    example.

    It adds to the epoch's logs (so History, CSVLogger and TensorBoard placed after it
    in `callbacks` record them) the columns of metrics.csv: train_eval_loss,
    train_eval_acc, train_eval_acc_orig (with original labels), train_eval_acc_clean,
    train_eval_acc_noisy, train_eval_acc_noisy_orig.  An existing file at `path` is
    continued: the rows of the epochs being trained again are replaced (fit with
    initial_epoch=k after a restart keeps epochs 1..k).
    """

    def __init__(self, data, path, record="default", index=None, batch_size=256,
                 from_logits=True, jit_compile=False):
        super().__init__()
        import tensorflow as tf
        if check_mode(record) == "none":
            raise ValueError("ExampleRecorder(record='none') would record nothing; "
                             "leave the callback out instead")
        if not isinstance(data, tf.data.Dataset):
            data = tuple(np.asarray(a) for a in data)
            _check_arrays(data)
            n = len(data[0])
            data = tf.data.Dataset.from_tensor_slices(data).batch(batch_size)
        else:
            n = None
        if not isinstance(data.element_spec, tuple) or len(data.element_spec) < 2:
            raise ValueError("ExampleRecorder: data must hold (images, training labels"
                             "[, original labels])")
        for name, spec in zip(LABEL_NAMES, data.element_spec[1:]):
            if not spec.dtype.is_integer:
                raise ValueError(f"ExampleRecorder: the {name} are {spec.dtype.name}; pass "
                                 "integer class labels (e.g. y.astype('int64'))")
        if index is not None:
            _check_index(index, n)
        self.data, self.path = data, Path(path)
        self.from_logits, self.jit_compile = from_logits, jit_compile
        previous = load(self.path) if self.path.exists() else None
        self.records = Records(record, index, previous, self.path)
        self._evaluate = None

    def on_epoch_end(self, epoch, logs=None):
        if self._evaluate is None:
            self._evaluate = make_evaluate(self.model, self.jit_compile, self.from_logits)
        r = self._evaluate(self.data, self.records.mode)
        self.records.add(epoch + 1, r["pred"], r["labels"], r.get("p_label"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records.save(self.path)
        if logs is not None:
            logs["train_eval_loss"] = float(r["loss"][0])
            logs["train_eval_acc"] = float(r["acc"][0])
            if len(r["acc"]) > 1:
                logs["train_eval_acc_orig"] = float(r["acc"][1])
            logs.update(group_columns(r))


LABEL_NAMES = ("training labels", "original labels")


def _check_arrays(arrays):
    """ValueError (one line) unless `arrays` are (images, labels[, original labels]) that
    ExampleRecorder can record: the same length, integer labels >= 0, finite images."""
    if len(arrays) < 2:
        raise ValueError("ExampleRecorder: data must hold (images, training labels"
                         "[, original labels])")
    images, labels = arrays[0], arrays[1:]
    lengths = [len(a) if a.ndim else None for a in arrays]
    if len(set(lengths)) > 1 or lengths[0] is None:
        raise ValueError(f"ExampleRecorder: images and labels must have one entry per example; "
                         f"got lengths {lengths}")
    for name, y in zip(LABEL_NAMES, labels):
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"ExampleRecorder: the {name} are {y.dtype} of shape {y.shape}; "
                             "pass one integer class label per example (e.g. y.astype('int64'))")
        if y.size and y.min() < 0:
            raise ValueError(f"ExampleRecorder: the {name} hold {y.min()}; class labels are >= 0")
    if np.issubdtype(images.dtype, np.inexact):
        bad = ~np.isfinite(images.reshape(len(images), -1)).all(axis=1)
        if bad.any():
            raise ValueError(f"ExampleRecorder: {int(bad.sum())} images hold NaN or inf values "
                             f"(the first: example {int(np.argmax(bad))}); pass finite images")
    elif not (np.issubdtype(images.dtype, np.integer) or images.dtype == np.bool_):
        raise ValueError(f"ExampleRecorder: the images are {images.dtype}; pass numbers")


def _check_index(index, n):
    """ValueError (one line) unless `index` is n (if known) distinct integers >= 0."""
    index = np.asarray(index)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"ExampleRecorder: index is {index.dtype} of shape {index.shape}; "
                         "pass one integer index per example")
    if n is not None and len(index) != n:
        raise ValueError(f"ExampleRecorder: {len(index)} indices for {n} examples; pass one "
                         "per example")
    if index.size and index.min() < 0:
        raise ValueError(f"ExampleRecorder: index holds {index.min()}; indices are >= 0")
    values, counts = np.unique(index, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"ExampleRecorder: index holds {int((counts > 1).sum())} duplicates "
                         f"(e.g. {values[counts > 1][0]}); each example needs its own index")
