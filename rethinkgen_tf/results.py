"""Run directories: what one training run leaves on disk, its name, and how to read it back.

    run_dir/
      config.json     resolved TrainConfig and DataConfig (written first)
      metrics.csv     one row per finished epoch (columns: METRIC_COLUMNS)
      tb/             TensorBoard event files (the same scalars, x axis = step)
      backup/         latest checkpoint while training (removed when finished)
      model.weights.h5  final weights
      result.json     written atomically last; its presence means "finished"
      result.old.json the previous result while an --overwrite run retrains
      .lock           held (flock) by the one process writing the directory

Every file is written atomically (a temporary name, then a rename), so a kill
at any instant leaves the old or the new file.  Readers check what they read:
a damaged file raises `StateError`, one line naming the file and what to do.
"""

import csv
import errno
import fcntl
import json
import os
import platform
import shutil
import sys
import time
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


class StateError(ValueError):
    """A file of a run directory is damaged or inconsistent (one-line message)."""


class RunLocked(ValueError):
    """Another live process holds the run directory's lock."""

    def __init__(self, run_dir, pid):
        self.run_dir, self.pid = run_dir, pid
        super().__init__(
            f"{run_dir} is in use by process {pid or '(unknown)'}, which is training it; "
            "wait for it to finish (rerunning then prints its result) or stop it and rerun "
            "to resume, or choose another --output_dir/--run_name")


TMP_TAG = ".tmp"  # temporary files are named .<name>.tmp<pid>


def atomic_write(path, text):
    """Writes `text` to `path` so readers see the old or the new file, never half.

    On failure (e.g. a full disk) the temporary file is removed and the old
    file, if any, is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_TAG}{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_strays(directory):
    """Removes temporary files (and directories) that a killed writer left in
    `directory`.  Call only while holding the directory's lock."""
    directory = Path(directory)
    if directory.is_dir():
        for f in directory.iterdir():
            if f.name.startswith(".") and TMP_TAG in f.name:
                if f.is_dir():
                    shutil.rmtree(f, ignore_errors=True)
                else:
                    f.unlink(missing_ok=True)


def write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def run_name(cfg, data):
    """e.g. cifar10_mlp_1x512_labels_s0, cifar10_inception_corrupt0.5_wd0.0005_s0."""
    parts = [data.dataset, cfg.model]
    if data.randomize != "none":
        parts.append(data.randomize)
    if data.corrupt:
        parts.append(f"corrupt{data.corrupt:g}")
    if cfg.batchnorm is False:
        parts.append("nobn")
    if cfg.weight_decay:
        parts.append(f"wd{cfg.weight_decay:g}")
    if cfg.dropout:
        parts.append(f"dropout{cfg.dropout:g}")
    if data.augment != "none":
        parts.append(data.augment)
    if data.train_size:
        parts.append(f"n{data.train_size}")
    return "_".join(parts + [f"s{cfg.seed}"])


def read_json(path):
    """The JSON object in `path`; StateError (one line) if it is damaged."""
    try:
        with open(path) as f:
            obj = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise StateError(f"{path} is damaged ({type(e).__name__}: {str(e)[:80]}); "
                         f"{_advice(path)}") from None
    if not isinstance(obj, dict):
        raise StateError(f"{path} is damaged (not a JSON object); {_advice(path)}")
    return obj


def _advice(path):
    path = Path(path)
    if path.name == "result.json":
        return "delete it to recompute the result from the run's checkpoint, or rerun with --overwrite"
    return f"rerun with --overwrite to retrain the run in {path.parent}, or delete that directory"


def load_result(run_dir):
    """The run's result dict, or None if it has not finished; StateError if damaged."""
    path = Path(run_dir) / "result.json"
    if not path.exists():
        return None
    res = read_json(path)
    if res.get("status") != "finished" or "config" not in res:
        raise StateError(f"{path} is damaged (not a finished run's result); {_advice(path)}")
    return res


def collect(root):
    """All finished results under `root` (recursively), each with its run_dir."""
    return [{**load_result(p.parent), "run_dir": str(p.parent)}
            for p in sorted(Path(root).glob("**/result.json"))]


def read_metrics(run_dir):
    """Rows of metrics.csv as dicts of floats (epoch and step as ints).

    StateError if the file is damaged: an unknown header, a value that is not
    a number, a short row, or epochs that do not run 1, 2, 3, ..."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return []
    bad = f"{path} is damaged ({{}}); {_advice(path)}"
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            body = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise StateError(bad.format(type(e).__name__)) from None
    if not header or "epoch" not in header or "step" not in header \
            or not set(header) <= set(METRIC_COLUMNS):
        raise StateError(bad.format("unknown header"))
    rows = []
    for n, values in enumerate(body, 1):
        if len(values) != len(header):
            raise StateError(bad.format(f"row {n} has {len(values)} of {len(header)} values"))
        try:
            row = {k: int(v) if k in ("epoch", "step") else float(v)
                   for k, v in zip(header, values)}
        except ValueError:
            raise StateError(bad.format(f"row {n} holds a value that is not a number")) from None
        if row["epoch"] != n:
            raise StateError(bad.format(f"row {n} is epoch {row['epoch']}"))
        rows.append(row)
    return rows


class RunLock:
    """The one-writer lock of a run directory: flock on run_dir/.lock.

    The kernel releases it when the holder exits or is killed (kill -9
    included), so it never goes stale; the file holds the holder's PID for
    messages.  flock works across processes on one machine and, on Linux
    NFS mounts, across machines.

        with RunLock(run_dir):            # RunLocked if another process holds it
        with RunLock(run_dir, wait=True): # blocks until it is free
    """

    def __init__(self, run_dir, wait=False):
        self.run_dir, self.wait, self.fd = Path(run_dir), wait, None

    def __enter__(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunLocked(self.run_dir, holder(self.run_dir)) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # releases the lock; the file stays (unlinking would race)
            self.fd = None


def holder(run_dir):
    """The PID written by the lock's holder, or None."""
    try:
        return int((Path(run_dir) / ".lock").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


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
    out["onednn"] = onednn()
    return out


def onednn():
    """Whether TensorFlow's oneDNN CPU kernels are on in this process (they change
    the floating-point order of CPU results; BUILD.md), or None if unknown."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except Exception:  # a private module: absent in other TensorFlow builds
        return None


def op_build():
    """Which randomization op the data layer used (compiled or TF fallback)."""
    try:
        from rethinkgen_tf import ops
    except Exception as e:  # ops module missing or broken: record why
        return {"native": False, "error": repr(e)}
    return {"native": bool(getattr(ops, "NATIVE", False)),
            "build": getattr(ops, "BUILD", None)}
