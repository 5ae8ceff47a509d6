"""Run directories: what one training run leaves on disk, its name, and how to read it back.

    run_dir/
      config.json     resolved TrainConfig and DataConfig, and the data's fingerprint
                      (data_fingerprint: a resume onto other data is refused); written
                      once the data has loaded
      metrics.csv     one row per finished epoch (columns: METRIC_COLUMNS)
      examples.npz    per-example records of the re-evaluated training set (EXAMPLE_ARRAYS;
                      rethinkgen_tf.dynamics), rewritten after each epoch's metrics row
      tb/             TensorBoard event files (the same scalars, x axis = step)
      backup/         latest checkpoint while training (removed when finished)
      model.weights.h5  final weights (none for a diverged run)
      result.json     written atomically last; its presence means the run ended:
                      "status" is "finished", or "diverged" (the training loss became NaN
                      or inf in epoch "diverged_epoch"; metrics.csv stops the epoch before)
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
import re
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
    "train_eval_acc_clean",       # ... training labels, examples whose label is not corrupted
    "train_eval_acc_noisy",       # ... training labels, examples whose label is corrupted (NaN: none)
    "train_eval_acc_noisy_orig",  # ... the corrupted examples on their original labels
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
    """Writes `text` (str, or bytes) to `path` so readers see the old or the new
    file, never half.

    On failure (e.g. a full disk) the temporary file is removed and the old
    file, if any, is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_TAG}{os.getpid()}")
    try:
        with open(tmp, "wb" if isinstance(text, (bytes, bytearray, memoryview)) else "w") as f:
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


def path_problem(path):
    """What is wrong with a path to write under, as the end of a sentence (None: nothing found):
    a name that is not UTF-8 (TensorFlow's file functions and our printed lines need UTF-8), or
    a symbolic link on the way that leads nowhere (dangling, or a loop)."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return f"the name {shown} is not valid UTF-8; choose a UTF-8 path"
    p = Path(os.path.abspath(text))
    for q in (p, *p.parents):
        if q.is_symlink() and not q.exists():
            return (f"{q} is a symbolic link to {os.readlink(q)}, which does not exist (or loops); "
                    "fix or remove the link, or choose another path")
    return None


def check_out(out):
    """An --out (a file to write, or None) must be writable: ValueError (one line) now rather than
    after the work."""
    if out:
        if path_problem(out):
            raise ValueError(f"--out={out}: {path_problem(out)}")
        path = os.path.abspath(out)
        if os.path.isdir(path):
            raise ValueError(f"--out={out} is a directory; pass a file name")
        if not os.path.isdir(os.path.dirname(path)):
            raise ValueError(f"--out={out}: directory {os.path.dirname(path)} does not exist")


def run_name(cfg, data):
    """e.g. cifar10_mlp_1x512_labels_s0, cifar10_inception_corrupt0.5_wd0.0005_s0."""
    # a model given by reference (module:function) as a plain name: mynets.tiny-build
    parts = [data.dataset, re.sub(r"[^A-Za-z0-9_.-]+", "-", cfg.model)]
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
    if path.name == EXAMPLES_FILE:
        return examples_advice(path)
    if path.name == "result.json":
        return "delete it to recompute the result from the run's checkpoint, or rerun with --overwrite"
    return f"rerun with --overwrite to retrain the run in {path.parent}, or delete that directory"


# result.json's "status": a run that ends writes one of these, and either means done
# (a suite does not train it again unless --overwrite).  "diverged": its loss became
# non-finite; "diverged_epoch" is that epoch, and metrics.csv holds the epochs before it.
DONE = ("finished", "diverged")


def load_result(run_dir):
    """The run's result dict (status "finished" or "diverged": see `diverged`), or None if
    it has not ended; StateError if damaged."""
    path = Path(run_dir) / "result.json"
    if not path.exists():
        return None
    res = read_json(path)
    if res.get("status") not in DONE or "config" not in res:
        raise StateError(f"{path} is damaged (not a finished run's result); {_advice(path)}")
    return res


def diverged(res):
    """Whether a result (load_result's dict, or None) is of a run whose loss became
    non-finite: it holds no final numbers to show."""
    return bool(res) and res.get("status") == "diverged"


def collect(root):
    """All ended results under `root` (recursively; finished or diverged), each with its
    run_dir."""
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


EXAMPLES_FILE = "examples.npz"
# The arrays of examples.npz: name -> (dtype, shape); n re-evaluated examples, E evaluated
# epochs, B = ceil(n / 8).  p_label only with record_examples="full".
EXAMPLE_ARRAYS = {
    "index": ("int32", "n"),               # example indices (into the source's split), index order
    "label": ("int32", "n"),               # the training label
    "label_orig": ("int32", "n"),          # the original label
    "corrupted": ("bool", "n"),            # label != label_orig
    "epochs": ("int32", "E"),              # the epoch of each row below (1-based, increasing)
    "correct": ("uint8", "EB"),            # np.packbits(pred == label, axis=-1) per epoch
    "correct_orig": ("uint8", "EB"),       # np.packbits(pred == label_orig, axis=-1) per epoch
    "first_fit_epoch": ("int32", "n"),     # first evaluated epoch correct on label, -1 if never
    "forgetting_events": ("int32", "n"),   # correct -> incorrect between consecutive rows
    "p_label": ("float16", "En"),          # softmax probability of the training label (full)
}
OPTIONAL_EXAMPLE_ARRAYS = ("p_label",)


def write_examples(path, arrays):
    """Writes examples.npz atomically: an uncompressed .npz (np.load reads it) whose bytes
    are a function of the arrays alone (fixed member order and timestamps), so a resumed
    run's file is byte-identical to an uninterrupted one's."""
    import io
    import zipfile

    import numpy as np
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name in EXAMPLE_ARRAYS:
            if name not in arrays:
                continue
            dtype = EXAMPLE_ARRAYS[name][0]
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arrays[name], dtype=dtype),
                                          allow_pickle=False)
    atomic_write(path, buf.getbuffer())


def read_examples(path):
    """The arrays of an examples.npz (a path, or a run directory holding one), checked:
    StateError (one line naming the file) if it is missing, damaged or inconsistent."""
    import numpy as np
    path = Path(path)
    if path.is_dir():
        path = path / EXAMPLES_FILE
    if not path.is_file():
        raise StateError(f"{path} does not exist: the run recorded no per-example data "
                         "(it ran with --record_examples=none, or before the records existed)")
    bad = f"{path} is damaged ({{}}); {_advice(path)}"
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile, numpy format and OS errors vary with the damage
        raise StateError(bad.format(f"{type(e).__name__}: {str(e)[:60]}")) from None
    missing = [k for k in EXAMPLE_ARRAYS if k not in arrays and k not in OPTIONAL_EXAMPLE_ARRAYS]
    if missing:
        raise StateError(bad.format(f"no {', '.join(missing)}"))
    n, e = len(arrays["index"]), len(arrays["epochs"])
    sizes = {"n": (n,), "E": (e,), "EB": (e, -(-n // 8)), "En": (e, n)}
    for k, a in arrays.items():
        if k in EXAMPLE_ARRAYS:
            dtype, shape = EXAMPLE_ARRAYS[k]
            if a.dtype != np.dtype(dtype) or a.shape != sizes[shape]:
                raise StateError(bad.format(f"{k} is {a.dtype} {a.shape}, not {dtype} {sizes[shape]}"))
    if e and (arrays["epochs"][0] < 1 or np.any(np.diff(arrays["epochs"]) <= 0)):
        raise StateError(bad.format("epochs do not increase"))
    return arrays


def examples_advice(path):
    """What to do about an examples file (`path`) that is damaged or does not fit the run: the end
    of its StateError message.  Retraining is the one remedy that cannot mix two runs' data."""
    return f"rerun with --overwrite to retrain the run in {Path(path).parent} from the start"


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
        from rethinkgen_tf.ops import tf_ops
    except Exception as e:  # ops module missing or broken: record why
        return {"native": False, "error": repr(e)}
    return {"native": bool(getattr(tf_ops, "NATIVE", False)),
            "build": getattr(tf_ops, "BUILD", None)}
