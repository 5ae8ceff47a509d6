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
import json
import os
import pickle
import socket
import threading
import urllib.parse
import urllib.request

import numpy as np
from absl import logging

from rethinkgen_tf import results  # TF-free: the package's one atomic writer (write_json)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")
SMALL_DATASETS = ("cifar10", "mnist", "fashion_mnist", "folder")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
TEST_SPLIT_NAMES = ("test", "val", "validation")
NUM_CLASSES = {"cifar10": 10, "mnist": 10, "fashion_mnist": 10}
# Hosts tensorflow-datasets downloads from (used when the builder lists no URLs).
TFDS_HOSTS = {"cifar10": "https://www.cs.toronto.edu/", "mnist": "https://storage.googleapis.com/",
              "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"}
REACH_TIMEOUT_S = 3.0

_HOW_TO = {
    "cifar10": "download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, extract it and pass "
               "--data_dir=<dir containing cifar-10-batches-py> (the binary version cifar-10-batches-bin and "
               "class folders <dir>/train/<class>/*.png, <dir>/test/<class>/*.png work too)",
    "mnist": "download the four IDX .gz files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
             "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into one directory and pass --data_dir=<it>",
    "fashion_mnist": "install them with `apt-get install dataset-fashion-mnist` and pass "
                     "--data_dir=/usr/share/datasets/fashion-mnist (or any directory with the four IDX .gz files)",
}


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
        if dataset == "cifar10":
            x, y, names = _load_cifar10_dir(data_dir, split)
        elif dataset in ("mnist", "fashion_mnist"):
            x, y = _load_idx_dir(data_dir, split, dataset)
            names = list(MNIST_CLASSES if dataset == "mnist" else FASHION_MNIST_CLASSES)
        else:
            x, y, names = _load_class_split(data_dir, split, dataset)
    except OSError as e:  # permissions, I/O errors: name the file
        raise DataError(f"{dataset}: cannot read {e.filename or data_dir}: "
                        f"{_one_line(e.strerror or e)}; check the file's permissions or replace it") from e
    return x, y, names


def _load_class_split(root, split, dataset):
    """One split of a class-folder tree <root>/{train,test}/<class>/<image>, checked against the
    other split's classes and, for a known dataset, its number of classes."""
    split_dir = _split_dir(root, split, dataset)
    classes = class_folder_names(split_dir)
    want = NUM_CLASSES.get(dataset)
    if want is not None and len(classes) != want:
        shown = ", ".join(classes[:12]) + (" ..." if len(classes) > 12 else "")
        raise DataError(f"{dataset}: {split_dir} has {len(classes)} class folders ({shown}), but {dataset} has "
                        f"{want} classes: give all {want} class folders, or pass --dataset=folder for a dataset "
                        "with other classes")
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


# --------------------------------------------------------------------------- CIFAR-10
def _load_cifar10_dir(data_dir, split):
    if os.path.exists(os.path.join(data_dir, "data_batch_1")):
        return _load_cifar_pickle(data_dir, split)
    if os.path.exists(os.path.join(data_dir, "data_batch_1.bin")):
        return _load_cifar_bin(data_dir, split)
    for sub in ("cifar-10-batches-py", "cifar-10-batches-bin"):
        if os.path.isdir(os.path.join(data_dir, sub)):
            return _load_cifar10_dir(os.path.join(data_dir, sub), split)
    for root in (data_dir, *(os.path.join(data_dir, d) for d in sorted(os.listdir(data_dir)))):
        if os.path.isdir(os.path.join(root, "train")):
            x, y, names = _load_class_split(root, split, "cifar10")
            if x.shape[1:] != (32, 32, 3):
                raise DataError(f"cifar10: images in {root} are {x.shape[1:]}, expected 32x32 RGB")
            return x, y, names
    raise DataError(f"cifar10: no known layout in {data_dir}: expected cifar-10-batches-py/data_batch_1..5, "
                    f"cifar-10-batches-bin/data_batch_1..5.bin or train/<class>/*.png; {_HOW_TO['cifar10']}")


def _cifar_files(data_dir, split, suffix):
    files = [f"data_batch_{i}{suffix}" for i in range(1, 6)] if split == "train" else [f"test_batch{suffix}"]
    paths = [os.path.join(data_dir, f) for f in files]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise DataError(f"cifar10: missing {', '.join(missing)}; {_HOW_TO['cifar10']}")
    return paths


def _load_cifar_pickle(data_dir, split):
    xs, ys = [], []
    for path in _cifar_files(data_dir, split, ""):
        try:
            with open(path, "rb") as f:
                d = pickle.load(f, encoding="bytes")
            data, labels = np.asarray(d[b"data"]), np.asarray(d[b"labels"], np.int64)
        except Exception as e:
            raise DataError(f"cifar10: cannot read pickle batch {path}: {_one_line(repr(e))}; replace it "
                            "with a fresh copy (extract cifar-10-python.tar.gz again)") from e
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
        try:
            with open(meta, "rb") as f:
                names = [n.decode() for n in pickle.load(f, encoding="bytes")[b"label_names"]]
        except Exception as e:
            raise DataError(f"cifar10: cannot read {meta}: {_one_line(repr(e))}; replace it with a fresh copy "
                            "or delete it (the class names are then the standard ones)") from e
        _check_names(names, meta)
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys), names


def _check_names(names, meta):
    if len(names) != 10:
        raise DataError(f"cifar10: {meta} names {len(names)} classes, but cifar10 has 10: replace it with a "
                        "fresh copy or delete it (the class names are then the standard ones)")


def _load_cifar_bin(data_dir, split):
    xs, ys = [], []
    for path in _cifar_files(data_dir, split, ".bin"):
        raw = np.fromfile(path, np.uint8)
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
            with open(meta) as f:
                names = [line.strip() for line in f if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cifar10: cannot read {meta}: {_one_line(e)}; replace it with a fresh copy "
                            "or delete it (the class names are then the standard ones)") from e
        _check_names(names, meta)
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys), names


# --------------------------------------------------------------------------- MNIST IDX
def _read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
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


def _decode(path):
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("L" if im.mode in ("L", "1", "I;16", "I") else "RGB"))
    except Exception as e:
        raise DataError(f"cannot decode image file {path}: {_one_line(e)}; replace or remove it") from e


def _cache_dir():
    return os.path.expanduser(os.environ.get("RETHINKGEN_DATA_CACHE", "~/.cache/rethinkgen_tf"))


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
    except FileNotFoundError:
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


def load_class_folders(split_dir, cache=False, threads=4):
    """Decode <split_dir>/<class>/<image> into (uint8 [N,H,W,C], int64 [N], classes).

    Grayscale files give C=1 (if every file is grayscale), else RGB.  All
    images must have the same size.  With cache=True the decoded arrays are
    kept as .npz under $RETHINKGEN_DATA_CACHE (default ~/.cache/rethinkgen_tf),
    keyed by the file list, sizes and modification times.
    """
    files, classes = list_class_folders(split_dir)
    key = hashlib.sha1()
    for p, _ in files:
        st = os.stat(p)
        key.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    cache_path = os.path.join(_cache_dir(), "arrays", key.hexdigest() + ".npz")
    if cache and os.path.exists(cache_path):
        try:
            with np.load(cache_path) as z:
                x, y = z["x"], z["y"]
            if len(x) == len(y) == len(files):
                return x, y, classes
            raise ValueError(f"{len(x)} images and {len(y)} labels for {len(files)} files")
        except Exception as e:  # a damaged cache entry: decode again and overwrite it
            logging.warning("ignoring the damaged cache file %s (%s); decoding %s again",
                            cache_path, _one_line(e, 200), split_dir)
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        images = list(pool.map(_decode, [p for p, _ in files], chunksize=256))
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
    if cache:
        tmp = cache_path + f".{os.getpid()}.tmp.npz"
        try:
            os.makedirs(os.path.dirname(cache_path), exist_ok=True)
            np.savez(tmp, x=x, y=y)
            os.replace(tmp, cache_path)
        except OSError as e:  # the cache only saves time: read-only or full disks do not stop a run
            logging.warning("cannot write the decoded-image cache %s (%s); set RETHINKGEN_DATA_CACHE to a "
                            "writable directory to skip decoding next time", cache_path, _one_line(e, 200))
            with contextlib.suppress(OSError):
                os.remove(tmp)
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
    names = {"cifar10": CIFAR10_CLASSES, "mnist": MNIST_CLASSES, "fashion_mnist": FASHION_MNIST_CLASSES}[dataset]
    return np.asarray(x, np.uint8), np.asarray(y, np.int64), list(names)
