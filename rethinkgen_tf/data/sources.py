"""Dataset sources, decoded into memory in a fixed, documented index order.

`load_arrays(dataset, data_dir, split)` returns ``(images uint8 [N,H,W,C],
labels int64 [N], class_names)``.  The position of an example in these arrays
is its *example index*, the only input (besides the seed) of its
randomization.  Index order per layout:

- CIFAR-10 python pickles / binary batches: data_batch_1..5 (train) or
  test_batch, concatenated, records in file order.
- Class folders (``<dir>/<split>/<class>/<file>``): class folders sorted by
  name, then files sorted by name within a class.  Class k is the k-th sorted
  folder name.
- MNIST / Fashion-MNIST IDX files: record order of the file.
- tensorflow-datasets: the order of ``tfds.load(..., shuffle_files=False)``.

ImageNet is streamed, never loaded whole: see `rethinkgen_tf.data.imagenet`.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import gzip
import hashlib
import importlib
import io
import json
import os
import pickle
import socket
import stat
import threading
import time
import urllib.parse
import urllib.request

import numpy as np
from absl import logging

from rethinkgen_tf import results  # TF-free: the package's one atomic writer (write_json)

from . import datasets

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")
# Views of the dataset records (data.datasets) that the readers below look up by name.
SMALL_DATASETS = tuple(d.name for d in datasets.ALL if d.in_memory)
CIFAR10_CLASSES = list(datasets.BY_NAME["cifar10"].class_names)
MNIST_CLASSES = list(datasets.BY_NAME["mnist"].class_names)
FASHION_MNIST_CLASSES = list(datasets.BY_NAME["fashion_mnist"].class_names)
TEST_SPLIT_NAMES = ("test", "val", "validation")
NUM_CLASSES = {d.name: d.num_classes for d in datasets.ALL if d.num_classes is not None}
# Hosts tensorflow-datasets downloads from (used when the builder lists no URLs).
TFDS_HOSTS = {d.name: d.tfds_host for d in datasets.ALL if d.tfds_host}
REACH_TIMEOUT_S = 3.0

_HOW_TO = {d.name: d.how_to for d in datasets.ALL if d.how_to}


class DataError(ValueError):
    """A dataset could not be read; the message says which file and what to do."""


def _one_line(text, limit=400):
    """An exception's text on one line (tracebacks and tfds messages span several)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_labels(y, num_classes, path):
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = np.unique(y[(y < 0) | (y >= num_classes)])
        raise DataError(f"{path} has labels {', '.join(map(str, bad[:5]))}{' ...' if len(bad) > 5 else ''} "
                        f"outside 0..{num_classes - 1}: the file is damaged or not of this dataset; "
                        "replace it with a fresh copy")


SUBSET_MODES = ("first", "balanced", "random")


def select_subset(y, n, mode="first", num_classes=None, seed=0, what="train_size"):
    """Indices, in index order, of the n-example subset of a split with labels y; all of them for n None.

    The one subset rule of the package (the pipelines' train_size/test_size and the
    experiments' --n/--test_n):
    - "first": the first n examples; n must be in 1..len(y).  Warns when they miss classes
      (class-folder sources list a split class by class: pass balanced, or use "random").
    - "balanced": the first n // K examples of each class (one more for the first n % K
      classes), K = num_classes; n must be in 1..len(y).
    - "random": n examples drawn without replacement by np.random.default_rng(seed), sorted;
      n >= len(y) gives all of them.
    """
    if mode not in SUBSET_MODES:
        raise ValueError(f"subset mode must be one of {SUBSET_MODES}, not {mode!r}")
    if n is None:
        return np.arange(len(y))
    if mode == "random":
        if n >= len(y):
            return np.arange(len(y))
        return np.sort(np.random.default_rng(seed).choice(len(y), n, replace=False))
    if n < 1 or n > len(y):
        raise DataError(f"{what}={n} must be between 1 and the {len(y)} examples of the split")
    if mode == "first":
        present = len(np.unique(y[:n]))
        if present < min(num_classes, n):
            # class-ordered sources (one folder per class) put whole classes first
            logging.warning("%s=%d: the first %d examples hold only %d of the %d classes "
                            "(the source is ordered by class); pass --balanced for the first "
                            "n/K of each class", what, n, n, present, num_classes)
        return np.arange(n)
    per, extra = divmod(n, num_classes)
    picks = []
    for k in range(num_classes):
        want = per + (k < extra)
        idx = np.flatnonzero(y == k)[:want]
        if len(idx) < want:
            raise DataError(f"balanced {what}={n} needs {want} examples of class {k}, only {len(idx)} exist")
        picks.append(idx)
    return np.sort(np.concatenate(picks))


def random_subset(x, y, n, seed):
    """n examples drawn without replacement (seeded), kept in index order; all if n is None
    (select_subset's mode "random").

    Not the first n: class-folder datasets (CIFAR-10 JPEG) list each split
    class by class, so the first n would hold one or two classes."""
    idx = select_subset(y, n, "random", seed=seed)
    if len(idx) == x.shape[0]:
        return x, y
    return x[idx], y[idx]


def load_subsets(dataset, data_dir=None, n=None, test_n=None, seed=0):
    """Training and test arrays of a small dataset, each a seeded random subset
    (random_subset) of n / test_n examples, None for all: x, y, x_test, y_test, names."""
    x, y, names = load_arrays(dataset, data_dir, "train")
    xt, yt, _ = load_arrays(dataset, data_dir, "test")
    return (*random_subset(x, y, n, seed), *random_subset(xt, yt, test_n, seed), names)


def load_arrays(dataset, data_dir=None, split="train"):
    """Decoded images, labels and class names of a small dataset, in index order.

    dataset: cifar10 | mnist | fashion_mnist | folder.  data_dir None reads
    through tensorflow-datasets (not for "folder").  split: train | test.
    """
    if dataset not in SMALL_DATASETS:
        raise DataError(f"load_arrays reads {SMALL_DATASETS}, not {dataset!r} "
                        "(ImageNet is streamed: use rethinkgen_tf.data.load)")
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', not {split!r}")
    if data_dir is None:
        if dataset == "folder":
            raise DataError("dataset='folder' needs data_dir=<dir with train/<class>/* and test/<class>/*>")
        return _load_tfds(dataset, split)
    data_dir = os.path.abspath(os.path.expanduser(str(data_dir)))
    if os.path.isfile(data_dir):
        raise DataError(f"{dataset}: --data_dir {data_dir} is a file, not a directory: pass the directory "
                        "that holds the dataset (extract an archive first)")
    if not os.path.isdir(data_dir):
        raise DataError(f"{dataset}: data directory {data_dir} does not exist")
    try:
        reader = datasets.BY_NAME[dataset].reader
        if reader == "cifar10":
            x, y, names = _load_cifar10_dir(data_dir, split)
        elif reader == "idx":
            x, y = _load_idx_dir(data_dir, split, dataset)
            names = list(datasets.BY_NAME[dataset].class_names)
        else:
            x, y, names = _load_class_split(data_dir, split, dataset)
    except OSError as e:  # permissions, I/O errors: name the file
        raise DataError(f"{dataset}: cannot read {e.filename or data_dir}: "
                        f"{_one_line(e.strerror or e)}; check the file's permissions or replace it") from e
    return x, y, names


def load_npz(path):
    """(x_train, y_train, x_test, y_test) from a .npz file holding arrays of those names
    (what --dataset=numpy --data_dir=FILE.npz reads); DataError, one line, if not."""
    path = os.path.expanduser(str(path))
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f]
            if missing:
                raise DataError(f"{path} has no {', '.join(missing)}: a --dataset=numpy file is "
                                "a .npz with x_train, y_train, x_test, y_test (np.savez)")
            return tuple(f[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    except DataError:
        raise
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path} as a .npz of x_train, y_train, x_test, y_test "
                        f"({type(e).__name__}: {str(e)[:160]})") from None


def _load_class_split(root, split, dataset):
    """One split of a class-folder tree <root>/{train,test}/<class>/<image>, checked against the
    other split's classes and, for a known dataset, its number of classes."""
    split_dir = _split_dir(root, split, dataset)
    classes = class_folder_names(split_dir)
    want = NUM_CLASSES.get(dataset)
    if want is not None and len(classes) != want:
        shown = ", ".join(classes[:12]) + (" ..." if len(classes) > 12 else "")
        raise DataError(f"{dataset}: {split_dir} has {len(classes)} class folders ({shown}), but {dataset} has "
                        f"{want} classes: give all {want} class folders (a class-folder dataset with other classes "
                        "loads through the Python API as DataConfig(dataset='folder', data_dir=...))")
    if split == "test" and os.path.isdir(os.path.join(root, "train")):
        train_dir = os.path.join(root, "train")
        train_classes = class_folder_names(train_dir)
        if train_classes != classes:
            def names(c):
                return ", ".join(c[:5]) + (" ..." if len(c) > 5 else "") if c else "-"
            missing = sorted(set(train_classes) - set(classes))
            extra = sorted(set(classes) - set(train_classes))
            raise DataError(f"{dataset}: the class folders of {split_dir} differ from those of {train_dir} "
                            f"(missing in test: {names(missing)}; only in test: {names(extra)}): a class's label "
                            "is its position among the sorted folder names, so both splits need the same class folders")
    return load_class_folders(split_dir, cache=True)


# --------------------------------------------------------------------------- regular files only
_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def _check_regular(path, mode=None):
    """Raises DataError unless path (symlinks followed) is a regular file: reading a FIFO, a device
    or a socket would block forever or read endless data.  mode: an st_mode already at hand."""
    mode = os.stat(path).st_mode if mode is None else mode
    if not stat.S_ISREG(mode):
        kind = next((k for test, k in _FILE_KINDS if test(mode)), "a special file")
        raise DataError(f"{path} is {kind}, not a regular file: a dataset reads only regular files; "
                        "replace it with the dataset's file")


def _open_regular(path):
    """path opened for binary reading, refused unless it is a regular file.  Checked before the
    open (a device is never opened) and after it on the open file: the open itself does not block
    (O_NONBLOCK) should a FIFO be swapped in between."""
    _check_regular(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_regular(path, os.fstat(fd).st_mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_regular(path):
    with _open_regular(path) as f:
        return f.read()


# --------------------------------------------------------------------------- CIFAR-10
_CIFAR_LAYOUTS = {"pickle": "the python pickle batches", "bin": "the binary batches", "folders": "the class folders"}
_ANNOUNCED = set()  # (data_dir, layouts) whose choice was logged


def _cifar10_layouts(data_dir):
    """[(kind, dir)] of the CIFAR-10 layouts in data_dir and one level down, in the order of
    preference: pickle batches, binary batches (in data_dir, then in cifar-10-batches-py/-bin),
    then class folders (data_dir/train, then <sub>/train for the subfolders sorted by name)."""
    found = []
    if os.path.exists(os.path.join(data_dir, "data_batch_1")):
        found.append(("pickle", data_dir))
    if os.path.exists(os.path.join(data_dir, "data_batch_1.bin")):
        found.append(("bin", data_dir))
    for kind, sub in (("pickle", "cifar-10-batches-py"), ("bin", "cifar-10-batches-bin")):
        if os.path.isdir(os.path.join(data_dir, sub)):
            found.append((kind, os.path.join(data_dir, sub)))
    subs = sorted(d for d in os.listdir(data_dir) if d not in ("cifar-10-batches-py", "cifar-10-batches-bin"))
    for root in (data_dir, *(os.path.join(data_dir, d) for d in subs)):
        if os.path.isdir(os.path.join(root, "train")):
            found.append(("folders", root))
    return found


def _load_cifar10_dir(data_dir, split):
    layouts = _cifar10_layouts(data_dir)
    if not layouts:
        raise DataError(f"cifar10: no known layout in {data_dir}: expected cifar-10-batches-py/data_batch_1..5, "
                        f"cifar-10-batches-bin/data_batch_1..5.bin or train/<class>/*.png; {_HOW_TO['cifar10']}")
    kind, root = layouts[0]
    if len(layouts) > 1 and (data_dir, tuple(layouts)) not in _ANNOUNCED:  # once per process, not per split
        _ANNOUNCED.add((data_dir, tuple(layouts)))
        others = "; ".join(f"{_CIFAR_LAYOUTS[k]} in {d}" for k, d in layouts[1:])
        logging.warning("cifar10: %s holds %d layouts; using %s in %s. Also there: %s (to use one of those, "
                        "pass its folder as --data_dir)", data_dir, len(layouts), _CIFAR_LAYOUTS[kind], root, others)
    if kind == "pickle":
        return _load_cifar_pickle(root, split)
    if kind == "bin":
        return _load_cifar_bin(root, split)
    x, y, names = _load_class_split(root, split, "cifar10")
    if x.shape[1:] != (32, 32, 3):
        raise DataError(f"cifar10: images in {root} are {x.shape[1:]}, expected 32x32 RGB")
    return x, y, names


def _cifar_files(data_dir, split, suffix):
    files = [f"data_batch_{i}{suffix}" for i in range(1, 6)] if split == "train" else [f"test_batch{suffix}"]
    paths = [os.path.join(data_dir, f) for f in files]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise DataError(f"cifar10: missing {', '.join(missing)}; {_HOW_TO['cifar10']}")
    return paths


class _Refused(pickle.UnpicklingError):
    """A pickle asked for a global that a CIFAR batch never holds."""


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """_codecs.encode as pickles of protocol 0-2 use it to rebuild bytes (latin-1 only)."""
    if encoding not in ("latin1", "latin-1") or errors != "strict" or not isinstance(text, str):
        raise _Refused(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


def _numpy_globals():
    """The globals a NumPy array pickle names (numpy.core before NumPy 2, numpy._core after;
    each written name maps to this NumPy's object), and nothing else."""
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): _latin1_encode}
    for core in ("numpy._core", "numpy.core"):
        try:
            multiarray = importlib.import_module(core + ".multiarray")
            numeric = importlib.import_module(core + ".numeric")
            break
        except ImportError:
            continue
    for core in ("numpy._core", "numpy.core"):
        allowed[(core + ".multiarray", "_reconstruct")] = multiarray._reconstruct  # ndarray, protocol <= 4
        allowed[(core + ".multiarray", "scalar")] = multiarray.scalar              # a NumPy number
        allowed[(core + ".numeric", "_frombuffer")] = numeric._frombuffer           # ndarray, protocol 5
    return allowed


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR batch holds (dicts, lists, strings, bytes, numbers, NumPy arrays)
    and refuses every other global: a pickle that names os.system, builtins.exec or any other
    callable never gets to call it."""
    _allowed = None

    def find_class(self, module, name):
        if _BatchUnpickler._allowed is None:
            _BatchUnpickler._allowed = _numpy_globals()
        obj = self._allowed.get((module, name))
        if obj is None:
            raise _Refused(f"{module}.{name}")
        return obj

    def persistent_load(self, pid):
        raise _Refused("a persistent id")


_FRESH_BATCH = "replace it with a fresh copy (extract cifar-10-python.tar.gz again)"
_FRESH_META = "replace it with a fresh copy or delete it (the class names are then the standard ones)"


def _unpickle_batch(path, advice=_FRESH_BATCH):
    """The object in the CIFAR pickle file path (a batch or batches.meta), unpickled with
    _BatchUnpickler (Python 2 strings as bytes, as in the original download); one DataError line
    naming the file and ending in advice otherwise."""
    what = "pickle batch" if advice is _FRESH_BATCH else "pickle file"
    with _open_regular(path) as f:
        try:
            return _BatchUnpickler(f, encoding="bytes").load()
        except _Refused as e:
            raise DataError(f"cifar10: {path}: refused to unpickle {e}: a CIFAR batch holds only dicts, lists, "
                            f"strings, bytes, numbers and arrays, so this file is not one and may be hostile; "
                            f"do not use it: {advice}") from None
        except Exception as e:
            raise DataError(f"cifar10: cannot read {what} {path}: {_one_line(repr(e))}; {advice}") from e


def _key(d, name):
    """d[b'name'] (the original batches, read with encoding='bytes') or d['name'] (batches written
    by Python 3 with str keys)."""
    for k in (name.encode(), name):
        if k in d:
            return d[k]
    raise KeyError(name.encode())


def _load_cifar_pickle(data_dir, split):
    xs, ys = [], []
    for path in _cifar_files(data_dir, split, ""):
        d = _unpickle_batch(path)
        try:
            if not isinstance(d, dict):
                raise TypeError(f"a {type(d).__name__}, not a dict")
            data, labels = np.asarray(_key(d, "data")), np.asarray(_key(d, "labels"))
            if labels.dtype.kind not in "iu":
                raise TypeError(f"labels of type {labels.dtype}")
            labels = labels.astype(np.int64)
        except Exception as e:
            raise DataError(f"cifar10: cannot read pickle batch {path}: {_one_line(repr(e))}; {_FRESH_BATCH}") from e
        if data.dtype != np.uint8 and data.dtype.kind in "iu" and data.size and 0 <= data.min() and data.max() <= 255:
            data = data.astype(np.uint8)  # python lists of byte values
        if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
            raise DataError(f"cifar10: {path} holds {data.dtype} data of shape {data.shape}, not records of "
                            "3072 bytes (32x32x3 uint8): the file is damaged or not a CIFAR-10 batch; "
                            "replace it with a fresh copy")
        if labels.shape != (len(data),):
            raise DataError(f"cifar10: {path} has {len(data)} images but {labels.size} labels: the file is "
                            "damaged; replace it with a fresh copy")
        _check_labels(labels, 10, f"cifar10: {path}")
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(labels)
    names = list(CIFAR10_CLASSES)
    meta = os.path.join(data_dir, "batches.meta")
    if os.path.exists(meta):
        d = _unpickle_batch(meta, _FRESH_META)
        try:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in _key(d, "label_names")]
        except Exception as e:
            raise DataError(f"cifar10: cannot read {meta}: {_one_line(repr(e))}; {_FRESH_META}") from e
        _check_names(names, meta)
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys), names


def _check_names(names, meta):
    if len(names) != 10:
        raise DataError(f"cifar10: {meta} names {len(names)} classes, but cifar10 has 10: replace it with a "
                        "fresh copy or delete it (the class names are then the standard ones)")


def _load_cifar_bin(data_dir, split):
    xs, ys = [], []
    for path in _cifar_files(data_dir, split, ".bin"):
        raw = np.frombuffer(_read_regular(path), np.uint8)
        if raw.size == 0:
            raise DataError(f"cifar10: {path} is empty; replace it with a fresh copy")
        if raw.size % 3073:
            raise DataError(f"cifar10: {path} is truncated ({raw.size} bytes, not a multiple of 3073)")
        raw = raw.reshape(-1, 3073)
        _check_labels(raw[:, 0], 10, f"cifar10: {path}")
        ys.append(raw[:, 0].astype(np.int64))
        xs.append(raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    names = list(CIFAR10_CLASSES)
    meta = os.path.join(data_dir, "batches.meta.txt")
    if os.path.exists(meta):
        try:
            names = [line.strip() for line in _read_regular(meta).decode().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cifar10: cannot read {meta}: {_one_line(e)}; replace it with a fresh copy "
                            "or delete it (the class names are then the standard ones)") from e
        _check_names(names, meta)
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys), names


# --------------------------------------------------------------------------- MNIST IDX
def _read_idx(path):
    try:
        with _open_regular(path) as f:
            raw = gzip.GzipFile(fileobj=f).read() if path.endswith(".gz") else f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    start = 4 + 4 * ndim
    if len(raw) - start != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: header says {dims}, file has {len(raw) - start} data bytes")
    return np.frombuffer(raw, np.uint8, offset=start).reshape(dims)


def _load_idx_dir(data_dir, split, dataset):
    prefix = "train" if split == "train" else "t10k"
    arrays = []
    paths = []
    for kind, ndim, what in (("images-idx3-ubyte", 3, "images [N, H, W]"), ("labels-idx1-ubyte", 1, "labels [N]")):
        cands = [os.path.join(data_dir, f"{prefix}-{kind}{ext}") for ext in (".gz", "")]
        path = next((p for p in cands if os.path.exists(p)), None)
        if path is None:
            raise DataError(f"{dataset}: {cands[0]} not found; {_HOW_TO[dataset]}")
        a = _read_idx(path)
        if a.ndim != ndim:
            raise DataError(f"{dataset}: {path} has shape {a.shape}, but it should hold {what}: "
                            "the file is damaged or misnamed; replace it with a fresh copy")
        arrays.append(a)
        paths.append(path)
    x, y = arrays
    if len(x) != len(y):
        raise DataError(f"{dataset}: {len(x)} images but {len(y)} labels in {data_dir}")
    if len(x) == 0:
        raise DataError(f"{dataset}: no examples in {paths[0]}; replace it with a fresh copy")
    y = y.astype(np.int64)
    _check_labels(y, NUM_CLASSES[dataset], f"{dataset}: {paths[1]}")
    return np.ascontiguousarray(x[..., None]), y


# --------------------------------------------------------------------------- class folders
def _split_dir(root, split, dataset):
    names = ("train",) if split == "train" else TEST_SPLIT_NAMES
    for n in names:
        if os.path.isdir(os.path.join(root, n)):
            return os.path.join(root, n)
    raise DataError(f"{dataset}: no {' or '.join(names)} folder in {root}; a class-folder dataset is laid out as "
                    f"{root}/train/<class>/<image> and {root}/test/<class>/<image>")


def class_folder_names(split_dir):
    """The sorted class folder names of <split_dir>/<class>/<image>."""
    if not os.path.isdir(split_dir):
        raise DataError(f"image folder {split_dir} does not exist")
    classes = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    if not classes:
        raise DataError(f"{split_dir} has no class folders; expected {split_dir}/<class>/<image>")
    return classes


def list_class_folders(split_dir):
    """[(path, class_index)] in index order, and the sorted class names."""
    classes = class_folder_names(split_dir)
    files = []
    for k, c in enumerate(classes):
        names = sorted(f for f in os.listdir(os.path.join(split_dir, c)) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not names:
            raise DataError(f"class folder {os.path.join(split_dir, c)} has no images "
                            f"({', '.join(IMAGE_EXTENSIONS)}); remove it or add images")
        files += [(os.path.join(split_dir, c, f), k) for f in names]
    return files, classes


def _decode(item):
    """(path, the file's bytes) -> uint8 [H, W] or [H, W, 3]."""
    from PIL import Image
    path, blob = item
    try:
        with Image.open(io.BytesIO(blob)) as im:
            im.load()
            return np.asarray(im.convert("L" if im.mode in ("L", "1", "I;16", "I") else "RGB"))
    except Exception as e:
        raise DataError(f"cannot decode image file {path}: {_one_line(e)}; replace or remove it") from e


def _cache_dir():
    return os.path.expanduser(os.environ.get("RETHINKGEN_DATA_CACHE", "~/.cache/rethinkgen_tf"))


ARRAY_CACHE_MB = 1024     # default bound of $RETHINKGEN_DATA_CACHE/arrays (RETHINKGEN_DATA_CACHE_MB)
ARRAY_INDEX_MAX = 4096    # entries of $RETHINKGEN_DATA_CACHE/arrays-index (about 100 bytes each)
_ARRAYS_FORMAT = 2        # part of the content key: a new format never reads an old entry


def array_cache_limit():
    """The size bound of the decoded-image cache in bytes: $RETHINKGEN_DATA_CACHE_MB megabytes
    (default ARRAY_CACHE_MB; 0 turns the cache off)."""
    raw = os.environ.get("RETHINKGEN_DATA_CACHE_MB", "").strip()
    if not raw:
        return ARRAY_CACHE_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not 0 <= mb < float("inf"):
        raise DataError(f"RETHINKGEN_DATA_CACHE_MB={raw!r} must be a number of megabytes >= 0 (the size bound "
                        f"of the decoded-image cache, default {ARRAY_CACHE_MB}; 0 turns it off)")
    return int(mb * (1 << 20))


def read_cache_json(path, parse):
    """parse(the JSON object cached at path), or None when there is none or it is damaged.

    A damaged file (not JSON, truncated, or rejected by parse with ValueError, TypeError or
    KeyError) counts as absent, with a warning: the caller recomputes the value and
    rewrites the file with write_cache_json."""
    try:
        with open(path) as f:
            obj = json.load(f)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        return parse(obj)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, TypeError, KeyError) as e:  # UnicodeDecodeError is a ValueError
        logging.warning("ignoring the damaged cache file %s (%s); computing it again",
                        path, _one_line(repr(e), 200))
        return None


def write_cache_json(path, obj):
    """Writes obj to the cache file path atomically (results.write_json: readers, other processes
    sharing the cache included, see the old file or the new one, never half of one).  The cache
    only saves time: a read-only or full disk gives a warning, not an error."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        results.write_json(path, obj)
    except OSError as e:
        logging.warning("cannot write the cache file %s (%s); set RETHINKGEN_DATA_CACHE to a writable "
                        "directory to keep it", path, _one_line(e, 200))


def _content_key(files, blobs):
    """The decoded arrays' cache key: a hash of the files' bytes and labels in index order (not
    of their paths: copies of a dataset share one entry), the decoder's version and the format."""
    import PIL
    h = hashlib.sha256(f"rethinkgen_tf arrays {_ARRAYS_FORMAT} PIL {PIL.__version__}\n".encode())
    for (_, k), blob in zip(files, blobs):
        h.update(f"{k} {len(blob)}\n".encode())
        h.update(blob)
    return h.hexdigest()


def _read_cached_arrays(path, n):
    """(x, y) of the cache entry path, or None when it is absent or damaged (with a warning: the
    caller decodes again and overwrites it).  A hit marks the entry as recently used."""
    try:
        with np.load(path) as z:
            x, y = z["x"], z["y"]
        if not len(x) == len(y) == n:
            raise ValueError(f"{len(x)} images and {len(y)} labels for {n} files")
    except FileNotFoundError:
        return None
    except Exception as e:
        logging.warning("ignoring the damaged cache file %s (%s); decoding the images again", path, _one_line(e, 200))
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # the least recently used entries go first
    return x, y


def _prune(directory, suffix, keep, limit_bytes=None, limit_count=None):
    """Deletes the least recently used files of directory ending in suffix (never keep) until
    they total at most limit_bytes and number at most limit_count.  Stale temporary files of
    killed writers (older than a day) go too.  Other processes may prune at the same time."""
    entries = []
    now = time.time()
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        with contextlib.suppress(OSError):
            st = os.stat(path)
            if name.endswith(".tmp") and now - st.st_mtime > 86400:
                os.remove(path)
            elif name.endswith(suffix) and stat.S_ISREG(st.st_mode):
                entries.append((st.st_mtime_ns, name, st.st_size, path))
    entries.sort()
    total = sum(e[2] for e in entries)
    count = len(entries)
    for _, _, size, path in entries:
        if (limit_bytes is None or total <= limit_bytes) and (limit_count is None or count <= limit_count):
            break
        if path == keep:
            continue
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        total, count = total - size, count - 1


def _write_cached_arrays(path, x, y, limit):
    """Stores (x, y) as the cache entry path, then deletes the least recently used entries beyond
    limit bytes.  An entry larger than limit is not stored.  The cache only saves time: a
    read-only or full disk gives a warning, not an error."""
    directory = os.path.dirname(path)
    if x.nbytes + y.nbytes > limit:
        logging.info("not caching %.0f MB of decoded images: more than RETHINKGEN_DATA_CACHE_MB=%g",
                     (x.nbytes + y.nbytes) / 2**20, limit / 2**20)
        return False
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        os.makedirs(directory, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, x=x, y=y)
        os.replace(tmp, path)
        _prune(directory, ".npz", keep=path, limit_bytes=limit)
        return True
    except OSError as e:  # the cache only saves time: read-only or full disks do not stop a run
        logging.warning("cannot write the decoded-image cache %s (%s); set RETHINKGEN_DATA_CACHE to a "
                        "writable directory to skip decoding next time", path, _one_line(e, 200))
        with contextlib.suppress(OSError):
            os.remove(tmp)
        return False


def _write_index(index_path, content):
    write_cache_json(index_path, {"content": content})
    with contextlib.suppress(OSError):
        _prune(os.path.dirname(index_path), ".json", keep=index_path, limit_count=ARRAY_INDEX_MAX)


def load_class_folders(split_dir, cache=False, threads=4):
    """Decode <split_dir>/<class>/<image> into (uint8 [N,H,W,C], int64 [N], classes).

    Grayscale files give C=1 (if every file is grayscale), else RGB.  All images must have the
    same size, and every file must be a regular file (a FIFO or a device is refused).  With
    cache=True the decoded arrays are kept under $RETHINKGEN_DATA_CACHE (default
    ~/.cache/rethinkgen_tf) as arrays/<content key>.npz, keyed by the files' bytes and labels (copies
    of a dataset share one entry), the least recently used deleted beyond
    $RETHINKGEN_DATA_CACHE_MB (default ARRAY_CACHE_MB; 0: no cache).  arrays-index/ maps the file
    paths, sizes and modification times to the content key, so a hit reads no image file.
    """
    files, classes = list_class_folders(split_dir)
    stamp = hashlib.sha256()
    for p, _ in files:
        st = os.stat(p)
        _check_regular(p, st.st_mode)
        stamp.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    limit = array_cache_limit() if cache else 0
    arrays_dir = os.path.join(_cache_dir(), "arrays")
    index_path = os.path.join(_cache_dir(), "arrays-index", stamp.hexdigest() + ".json")
    if limit:
        content = read_cache_json(index_path, lambda o: str(o["content"]))
        hit = content and _read_cached_arrays(os.path.join(arrays_dir, content + ".npz"), len(files))
        if hit:
            with contextlib.suppress(OSError):
                os.utime(index_path)
            return (*hit, classes)
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        blobs = list(pool.map(_read_regular, [p for p, _ in files]))
        if limit:
            content = _content_key(files, blobs)
            hit = _read_cached_arrays(os.path.join(arrays_dir, content + ".npz"), len(files))
            if hit:  # another copy of the same images
                _write_index(index_path, content)
                return (*hit, classes)
        images = list(pool.map(_decode, [(p, b) for (p, _), b in zip(files, blobs)]))
    del blobs
    gray = all(im.ndim == 2 for im in images)
    images = [im[..., None] if gray else (np.repeat(im[..., None], 3, -1) if im.ndim == 2 else im) for im in images]
    shape0 = images[0].shape
    for (p, _), im in zip(files, images):
        if im.shape[:2] != shape0[:2]:
            raise DataError(f"image {p} is {im.shape[1]}x{im.shape[0]}, but {files[0][0]} is "
                            f"{shape0[1]}x{shape0[0]}: all images of a class-folder dataset must have one size "
                            "(resize them first)")
    x = np.stack(images)
    y = np.array([k for _, k in files], np.int64)
    if limit and _write_cached_arrays(os.path.join(arrays_dir, content + ".npz"), x, y, limit):
        _write_index(index_path, content)
    return x, y, classes


# --------------------------------------------------------------------------- tensorflow-datasets
def _reachable(host, port, timeout=REACH_TIMEOUT_S):
    """Whether a TCP connection to host:port opens within timeout seconds (DNS included: a
    resolver that hangs counts as unreachable, a name that does not resolve too)."""
    ok = []

    def connect():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass
    t = threading.Thread(target=connect, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok)


def _download_hosts(builder, dataset):
    """(host, port, via) for each server the builder downloads from; via names the proxy if one is used."""
    urls = sorted((getattr(builder, "url_infos", None) or {}).keys()) or [TFDS_HOSTS[dataset]]
    proxies = urllib.request.getproxies()
    hosts = {}
    for url in urls:
        u = urllib.parse.urlsplit(url)
        target = (u.hostname, u.port or (443 if u.scheme == "https" else 80), "")
        proxy = proxies.get(u.scheme)
        if proxy and not urllib.request.proxy_bypass(u.hostname):
            p = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
            target = (p.hostname, p.port or (443 if p.scheme == "https" else 80), f" (through the proxy {proxy})")
        hosts[u.hostname] = target
    return hosts


def _check_can_download(tfds, dataset):
    """Before tfds downloads a dataset that is not prepared: fail at once if its server cannot be
    reached.  tfds' requests session retries 10 times with backoff (about 3.5 minutes) when offline."""
    builder = tfds.builder(dataset)
    for name, (host, port, via) in _download_hosts(builder, dataset).items():
        if not _reachable(host, port):
            raise DataError(f"{dataset}: tensorflow-datasets has no prepared copy in {builder.data_dir} "
                            f"and cannot download one: {name}{via} is unreachable within {REACH_TIMEOUT_S:g} s. "
                            f"Without internet, provide a local copy: {_HOW_TO[dataset]}")


def _load_tfds(dataset, split):
    import tensorflow_datasets as tfds
    kwargs = dict(split=split, as_supervised=True, shuffle_files=False)
    try:
        from absl import logging
        level = logging.get_verbosity()
        logging.set_verbosity(logging.ERROR)  # the probe's log lines are not the user's news
        try:  # a copy prepared earlier in the tfds data dir ($TFDS_DATA_DIR, ~/tensorflow_datasets)
            ds = tfds.load(dataset, download=False, **kwargs)
        except AssertionError:  # not prepared: tfds must download it
            _check_can_download(tfds, dataset)
            logging.set_verbosity(level)
            ds = tfds.load(dataset, **kwargs)
        finally:
            logging.set_verbosity(level)
        batches = list(tfds.as_numpy(ds.batch(4096)))
        x, y = (np.concatenate([b[j] for b in batches]) for j in (0, 1))
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{dataset}: could not load it through tensorflow-datasets ({type(e).__name__}: "
                        f"{_one_line(e, 300)}). Without internet, provide a local copy: {_HOW_TO[dataset]}") from e
    names = datasets.BY_NAME[dataset].class_names
    return np.asarray(x, np.uint8), np.asarray(y, np.int64), list(names)
