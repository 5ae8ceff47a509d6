"""Run directories: what one training run leaves on disk, and how to read it back.

    run_dir/
      config.json     resolved TrainConfig and DataConfig (written first)
      metrics.csv     one row per finished epoch (columns: METRIC_COLUMNS)
      tb/             TensorBoard event files (the same scalars, x axis = step)
      backup/         latest checkpoint while training (removed when finished)
      model.weights.h5  final weights
      result.json     written atomically last; its presence means "finished"
"""

import csv
import json
import os
import platform
import sys
from pathlib import Path

METRIC_COLUMNS = [
    "epoch",                # epochs finished (1-based)
    "step",                 # optimizer steps finished
    "lr",                   # learning rate used during this epoch
    "train_loss",           # running mean over the epoch, training mode, incl. weight decay
    "train_acc",            # running mean over the epoch, training mode (augmented batches)
    "train_eval_loss",      # whole training set, inference mode, labels it is trained on
    "train_eval_acc",       # ... the paper's "train accuracy"
    "train_eval_acc_orig",  # whole training set, inference mode, original labels
    "test_loss",
    "test_acc",             # true test labels
    "train_eval_top5",      # top-5 accuracy of the re-evaluated training set
    "test_top5",            # top-5 test accuracy
    "epoch_time",           # seconds of training in this epoch
    "images_per_sec",       # training images per second in this epoch
    "eval_time",            # seconds for the two evaluations
    "wall_time",            # cumulative seconds of the run (training + evaluation)
]


def atomic_write(path, text):
    """Writes `text` to `path` so readers see the old or the new file, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path):
    with open(path) as f:
        return json.load(f)


def load_result(run_dir):
    """The run's result dict, or None if it has not finished."""
    path = Path(run_dir) / "result.json"
    return read_json(path) if path.exists() else None


def collect(root):
    """All finished results under `root` (recursively), each with its run_dir."""
    return [{**read_json(p), "run_dir": str(p.parent)}
            for p in sorted(Path(root).glob("**/result.json"))]


def read_metrics(run_dir):
    """Rows of metrics.csv as dicts of floats (epoch and step as ints)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return []
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [{k: int(v) if k in ("epoch", "step") else float(v) for k, v in r.items()}
            for r in rows]


def write_metrics(run_dir, rows):
    """Rewrites metrics.csv atomically with `rows`."""
    lines = [",".join(METRIC_COLUMNS)]
    lines += [",".join(repr(r.get(c, float("nan"))) for c in METRIC_COLUMNS) for r in rows]
    atomic_write(Path(run_dir) / "metrics.csv", "\n".join(lines) + "\n")


def tested(rows):
    """The rows whose epoch evaluated the test set (with test_every > 1 the
    others hold NaN)."""
    return [r for r in rows if r["test_acc"] == r["test_acc"]]


def time_to_overfit(rows, threshold=1.0):
    """(epoch, step) of the first epoch whose re-evaluated train accuracy on the
    labels trained on reaches `threshold`, else (None, None).

    The whole training set is re-evaluated once per epoch, so the step is the
    step count at the end of that epoch (an upper bound on the exact step).
    """
    for r in rows:
        if r["train_eval_acc"] >= threshold:
            return r["epoch"], r["step"]
    return None, None


def versions():
    import keras
    import numpy
    import tensorflow as tf

    out = {"python": sys.version.split()[0], "platform": platform.platform(),
           "tensorflow": tf.__version__, "keras": keras.__version__,
           "numpy": numpy.__version__}
    try:
        from importlib.metadata import version
        out["rethinkgen_tf"] = version("rethinkgen_tf")
    except Exception:
        pass
    return out


def op_build():
    """Which randomization op the data layer used (compiled or TF fallback)."""
    try:
        from rethinkgen_tf import ops
    except Exception as e:  # ops module missing or broken: record why
        return {"native": False, "error": repr(e)}
    return {"native": bool(getattr(ops, "NATIVE", False)),
            "build": getattr(ops, "BUILD", None)}
