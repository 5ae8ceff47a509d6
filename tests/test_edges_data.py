"""Hostile and odd data directories (issue 22): a pickle batch that would run code, FIFOs and
devices where files belong, a directory holding two layouts, advice naming flags that do not
exist, and the decoded-image cache (keyed by content, bounded)."""
import contextlib
import logging
import os
import pickle
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image

from rethinkgen_tf.data import DataError, sources
from rethinkgen_tf.data.sources import CIFAR10_CLASSES, load_arrays, load_subsets


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RETHINKGEN_DATA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RETHINKGEN_DATA_CACHE_MB", raising=False)


def one_line_error(pattern, fn, *args):
    with pytest.raises(DataError, match=pattern) as e:
        fn(*args)
    assert "\n" not in str(e.value), str(e.value)
    return str(e.value)


def batches(n=3, seed=0):
    """{file name: (data uint8 [n, 3072], labels int64 [n])} of a tiny CIFAR-10 pickle set."""
    rng = np.random.default_rng(seed)
    return {name: (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n))
            for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]}


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 strings (SHORT_BINSTRING), as the original CIFAR-10 download does:
    read back with encoding='bytes', they come back as bytes."""
    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + obj)
        self.memoize(obj)
    dispatch[bytes] = save_bytes


def dump(obj, path, protocol=pickle.DEFAULT_PROTOCOL):
    with open(path, "wb") as f:
        if protocol == "py2":
            _Py2Pickler(f, protocol=2).dump(obj)
        else:
            pickle.dump(obj, f, protocol=protocol)


def write_pickle_set(d, sets, protocol=pickle.DEFAULT_PROTOCOL, as_list=False, str_keys=False, meta=True):
    os.makedirs(d, exist_ok=True)
    key = (lambda k: k) if str_keys else (lambda k: k.encode())
    for name, (x, y) in sets.items():
        data = x.tolist() if as_list else x
        labels = [int(v) for v in y] if as_list else y
        dump({key("batch_label"): b"training batch", key("data"): data, key("labels"): labels,
              key("filenames"): [f"{name}_{i}.png".encode() for i in range(len(y))]},
             os.path.join(d, name), protocol)
    if meta:
        dump({key("label_names"): [c.encode() for c in CIFAR10_CLASSES], key("num_vis"): 3072},
             os.path.join(d, "batches.meta"), protocol)


def expected(sets, split):
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    x = np.concatenate([sets[n][0] for n in names]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, np.concatenate([sets[n][1] for n in names])


def write_folders(root, split, classes, n=2, size=(8, 8), seed=0):
    rng = np.random.default_rng(seed)
    for c in classes:
        os.makedirs(os.path.join(root, split, c), exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(
                os.path.join(root, split, c, f"{i}.png"))


# --------------------------------------------------------------------------- 1: pickles that run code
class _Payload:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


def _payloads(marker):
    return {"os.system": _Payload(os.system, f"touch {marker}"),
            "builtins.exec": _Payload(exec, f"open({str(marker)!r}, 'w').close()"),
            "builtins.eval": _Payload(eval, f"open({str(marker)!r}, 'w').close()")}


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("how", ["os.system", "builtins.exec", "builtins.eval"])
@pytest.mark.parametrize("where", ["whole", "inside", "meta"])
def test_hostile_pickle_runs_nothing(tmp_path, protocol, how, where):
    d = tmp_path / "cifar-10-batches-py"
    write_pickle_set(str(d), batches())
    marker = tmp_path / "marker"
    payload = _payloads(marker)[how]
    target = d / ("batches.meta" if where == "meta" else "data_batch_1")
    if where == "whole":
        dump(payload, target, protocol)
    elif where == "inside":  # a valid batch with the payload as one more entry
        x, y = batches()["data_batch_1"]
        dump({b"data": x, b"labels": list(map(int, y)), b"extra": payload}, target, protocol)
    else:
        dump({b"label_names": payload}, target, protocol)
    msg = one_line_error(r"refused to unpickle", load_arrays, "cifar10", str(tmp_path))
    assert not marker.exists(), "the pickle's payload ran"
    assert f"{target}: refused to unpickle " in msg
    assert "dicts, lists, strings, bytes, numbers and arrays" in msg
    module, name = how.split(".")
    assert f".{name}" in msg  # os.system pickles as posix.system
    assert not marker.exists()


def test_hostile_pickle_other_globals(tmp_path):
    """Globals a NumPy pickle never names are refused, those of NumPy's other modules included."""
    d = tmp_path / "p"
    write_pickle_set(str(d), batches())
    for obj, shown in ((np.load, "numpy.load"), (shutil.rmtree, "shutil.rmtree"), (getattr, "builtins.getattr")):
        dump({b"data": _Payload(obj, str(tmp_path / "x")), b"labels": []}, d / "data_batch_4")
        msg = one_line_error("refused to unpickle", load_arrays, "cifar10", str(d))
        assert f"data_batch_4: refused to unpickle {shown}:" in msg
    assert os.path.isdir(d)


@pytest.mark.parametrize("protocol,str_keys", [(2, False), (4, False), (5, False), ("py2", False),  # bytes keys
                                               (2, True), (4, True), (5, True)])  # str keys (Python 3 only)
@pytest.mark.parametrize("as_list", [False, True], ids=["arrays", "lists"])
def test_valid_pickle_batches_still_load(tmp_path, protocol, as_list, str_keys):
    sets = batches()
    write_pickle_set(str(tmp_path / "cifar-10-batches-py"), sets, protocol, as_list, str_keys)
    for split in ("train", "test"):
        x, y, names = load_arrays("cifar10", str(tmp_path), split)
        ex, ey = expected(sets, split)
        assert x.dtype == np.uint8 and y.dtype == np.int64 and names == CIFAR10_CLASSES
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)


def test_numpy_scalar_labels_load(tmp_path):
    """Labels as a list of NumPy integers (numpy's scalar global) load too."""
    sets = batches()
    d = tmp_path / "p"
    os.makedirs(d)
    for name, (x, y) in sets.items():
        dump({b"data": x, b"labels": [np.int64(v) for v in y]}, d / name)
    np.testing.assert_array_equal(load_arrays("cifar10", str(d))[1], expected(sets, "train")[1])


def test_pickle_data_out_of_byte_range_is_refused(tmp_path):
    sets = batches()
    sets["data_batch_2"] = (sets["data_batch_2"][0].astype(np.int64) * 2, sets["data_batch_2"][1])
    write_pickle_set(str(tmp_path), sets, as_list=True)
    one_line_error(r"data_batch_2 holds int64 data .*not records of 3072 bytes", load_arrays, "cifar10", str(tmp_path))


# --------------------------------------------------------------------------- 2: FIFOs and devices
def load_guarded(fifo, fn, *args, timeout=30):
    """fn(*args) in a thread: its error, or a test failure when it blocks (then a writer opens the
    FIFO so the blocked reader sees end-of-file and the thread ends)."""
    out = {}

    def target():
        try:
            out["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 (handed to the test)
            out["error"] = e
    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        for _ in range(50):
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            t.join(0.1)
            if not t.is_alive():
                break
        pytest.fail(f"loading blocked on the FIFO {fifo}")
    return out.get("error")


def check_refused(err, path, kind="a FIFO"):
    assert isinstance(err, DataError), repr(err)
    msg = str(err)
    assert "\n" not in msg
    assert f"{path} is {kind}" in msg and "not a regular file" in msg, msg


def write_bins(d, n=2):
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rec = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))], 1)
        rec.astype(np.uint8).tofile(os.path.join(d, name))
    with open(os.path.join(d, "batches.meta.txt"), "w") as f:
        f.write("\n".join(CIFAR10_CLASSES) + "\n")


def write_idx(path, arr):
    import gzip
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


@pytest.mark.parametrize("layout,name", [("pickle", "data_batch_2"), ("pickle", "batches.meta"),
                                         ("bin", "data_batch_2.bin"), ("bin", "batches.meta.txt"),
                                         ("idx", "train-images-idx3-ubyte.gz"),
                                         ("idx", "train-labels-idx1-ubyte"),
                                         ("folder", "train/b/1.png")])
def test_fifo_is_refused(tmp_path, layout, name):
    d = tmp_path / "d"
    if layout == "pickle":
        write_pickle_set(str(d), batches())
    elif layout == "bin":
        write_bins(str(d))
    elif layout == "idx":
        os.makedirs(d)
        write_idx(str(d / "train-images-idx3-ubyte.gz"), np.zeros((2, 28, 28)))
        write_idx(str(d / "train-labels-idx1-ubyte.gz"), np.zeros(2))
    else:
        write_folders(str(d), "train", ["a", "b"])
    target = d / name
    if target.exists():
        os.remove(target)
    if layout == "idx" and name.endswith("ubyte"):  # the uncompressed name is read when no .gz exists
        os.remove(d / (name + ".gz"))
    os.mkfifo(target)
    dataset = {"idx": "mnist", "folder": "folder"}.get(layout, "cifar10")
    check_refused(load_guarded(str(target), load_arrays, dataset, str(d), "train"), target)


def test_devices_and_directories_are_refused(tmp_path):
    d = tmp_path / "d"
    write_bins(str(d))
    os.remove(d / "data_batch_3.bin")
    os.symlink("/dev/null", d / "data_batch_3.bin")  # a symlink to a device: followed, then refused
    check_refused(load_guarded(str(d / "data_batch_3.bin"), load_arrays, "cifar10", str(d)),
                  d / "data_batch_3.bin", "a character device")
    os.remove(d / "data_batch_3.bin")
    os.makedirs(d / "data_batch_3.bin")
    check_refused(load_guarded(str(d / "data_batch_3.bin"), load_arrays, "cifar10", str(d)),
                  d / "data_batch_3.bin", "a directory")


def test_symlinks_to_regular_files_load(tmp_path):
    sets = batches()
    write_pickle_set(str(tmp_path / "real"), sets)
    os.makedirs(tmp_path / "links")
    for name in os.listdir(tmp_path / "real"):
        os.symlink(tmp_path / "real" / name, tmp_path / "links" / name)
    np.testing.assert_array_equal(load_arrays("cifar10", str(tmp_path / "links"))[0], expected(sets, "train")[0])


def test_regular_file_check_after_open(tmp_path, monkeypatch):
    """A FIFO swapped in between the check and the open: the open does not block, the check on
    the open file refuses it."""
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    real = sources._check_regular
    monkeypatch.setattr(sources, "_check_regular",  # the check by path passes, as if done before the swap
                        lambda path, mode=None: None if mode is None else real(path, mode))
    err = load_guarded(str(fifo), sources._read_regular, str(fifo), timeout=10)
    check_refused(err, fifo)


# --------------------------------------------------------------------------- 3: two layouts in one data_dir
def test_two_layouts_say_which_is_used(tmp_path, caplog):
    sets = batches()
    write_pickle_set(str(tmp_path / "cifar-10-batches-py"), sets)
    write_folders(str(tmp_path / "jpeg"), "train", CIFAR10_CLASSES, n=1, size=(32, 32))
    with caplog.at_level(logging.WARNING):
        x, _, _ = load_arrays("cifar10", str(tmp_path), "train")
        load_arrays("cifar10", str(tmp_path), "test")
    np.testing.assert_array_equal(x, expected(sets, "train")[0])  # the pickles, as before
    text = caplog.text
    assert text.count("holds 2 layouts") == 1  # once, not once per split
    assert f"{tmp_path} holds 2 layouts; using the python pickle batches in {tmp_path / 'cifar-10-batches-py'}" in text
    assert f"the class folders in {tmp_path / 'jpeg'}" in text and "--data_dir" in text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # one layout: nothing to say
        load_arrays("cifar10", str(tmp_path / "jpeg"), "train")
        load_arrays("cifar10", str(tmp_path / "cifar-10-batches-py"), "train")
    assert "layouts" not in caplog.text


def test_binary_and_folder_layouts_say_which_is_used(tmp_path, caplog):
    write_bins(str(tmp_path / "cifar-10-batches-bin"), n=3)
    write_folders(str(tmp_path), "train", CIFAR10_CLASSES, n=1, size=(32, 32))
    with caplog.at_level(logging.WARNING):
        assert load_arrays("cifar10", str(tmp_path), "train")[0].shape == (15, 32, 32, 3)  # 5 batches of 3
    assert "using the binary batches in" in caplog.text and f"the class folders in {tmp_path}" in caplog.text


# --------------------------------------------------------------------------- 4: advice names existing flags only
def test_class_count_advice_names_no_missing_flag(tmp_path):
    """experiments.cifar takes --dataset=cifar10 only, kernel and expressivity cifar10 | mnist |
    fashion_mnist: the advice for a folder with other classes names no --dataset value."""
    write_folders(str(tmp_path), "train", ["cat", "dog", "frog"], size=(32, 32))
    write_folders(str(tmp_path), "test", ["cat", "dog", "frog"], size=(32, 32))
    for fn, args in ((load_arrays, ("cifar10", str(tmp_path))), (load_subsets, ("cifar10", str(tmp_path)))):
        msg = one_line_error("has 3 class folders", fn, *args)
        assert "--dataset" not in msg
        assert "DataConfig(dataset='folder'" in msg


# --------------------------------------------------------------------------- 5: the decoded-image cache
def cache_entries(tmp_path):
    d = tmp_path / "cache" / "arrays"
    return sorted(n for n in os.listdir(d) if n.endswith(".npz")) if d.is_dir() else []


def no_decoding(monkeypatch):
    def fail(item):
        raise AssertionError(f"decoded {item[0]} again")
    monkeypatch.setattr(sources, "_decode", fail)


def test_copies_of_a_dataset_share_one_cache_entry(tmp_path, monkeypatch):
    write_folders(str(tmp_path / "a"), "train", ["x", "y"])
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    xa, ya, _ = load_arrays("folder", str(tmp_path / "a"))
    assert len(cache_entries(tmp_path)) == 1
    with monkeypatch.context() as m:
        no_decoding(m)
        xb, yb, _ = load_arrays("folder", str(tmp_path / "b"))  # found by content: not decoded
        xa2, _, _ = load_arrays("folder", str(tmp_path / "a"))  # found through the path index
    assert len(cache_entries(tmp_path)) == 1
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(xa, xa2)
    # changed content: a new entry with the new images, not the cached ones
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(tmp_path / "b" / "train" / "y" / "0.png")
    xb2, _, _ = load_arrays("folder", str(tmp_path / "b"))
    assert (xb2[2] == 7).all() and len(cache_entries(tmp_path)) == 2


def test_cache_is_bounded_least_recently_used_first(tmp_path, monkeypatch):
    for i, name in enumerate("abc"):
        write_folders(str(tmp_path / name), "train", ["x", "y"], size=(16, 16), seed=i)
    (tmp_path / "cache" / "arrays").mkdir(parents=True)
    legacy = tmp_path / "cache" / "arrays" / ("0" * 40 + ".npz")  # a path-keyed entry of an older version
    legacy.write_bytes(b"\0" * 100_000)
    os.utime(legacy, (1, 1))
    load_arrays("folder", str(tmp_path / "a"))
    (entry,) = set(cache_entries(tmp_path)) - {legacy.name}
    size = os.path.getsize(tmp_path / "cache" / "arrays" / entry)
    monkeypatch.setenv("RETHINKGEN_DATA_CACHE_MB", repr(2.5 * size / 2**20))  # room for two entries
    time.sleep(0.05)
    load_arrays("folder", str(tmp_path / "b"))
    assert not legacy.exists() and len(cache_entries(tmp_path)) == 2
    time.sleep(0.05)
    with monkeypatch.context() as m:
        no_decoding(m)
        load_arrays("folder", str(tmp_path / "a"))  # a hit: a is now the most recently used
    time.sleep(0.05)
    load_arrays("folder", str(tmp_path / "c"))
    assert len(cache_entries(tmp_path)) == 2
    assert sum(os.path.getsize(tmp_path / "cache" / "arrays" / e) for e in cache_entries(tmp_path)) <= 2.5 * size
    with monkeypatch.context() as m:  # b went, a and c stayed
        no_decoding(m)
        load_arrays("folder", str(tmp_path / "a"))
        load_arrays("folder", str(tmp_path / "c"))
        with pytest.raises(AssertionError, match="decoded"):
            load_arrays("folder", str(tmp_path / "b"))


def test_cache_bound_zero_and_too_small(tmp_path, monkeypatch):
    write_folders(str(tmp_path / "a"), "train", ["x", "y"])
    monkeypatch.setenv("RETHINKGEN_DATA_CACHE_MB", "0")  # off
    load_arrays("folder", str(tmp_path / "a"))
    assert cache_entries(tmp_path) == []
    monkeypatch.setenv("RETHINKGEN_DATA_CACHE_MB", "0.0001")  # 104 bytes: smaller than the entry
    load_arrays("folder", str(tmp_path / "a"))
    assert cache_entries(tmp_path) == []
    for bad in ("lots", "-1", "nan", "inf"):
        monkeypatch.setenv("RETHINKGEN_DATA_CACHE_MB", bad)
        one_line_error(r"RETHINKGEN_DATA_CACHE_MB=.* must be a number of megabytes >= 0",
                       load_arrays, "folder", str(tmp_path / "a"))
