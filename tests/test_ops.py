"""The randomization op: exactness against the NumPy reference, invariance,
statistics, bad input.  Four implementations are compared: the compiled
TensorFlow op, the pure-TensorFlow fallback, the pybind11 module and the
NumPy reference."""
import os
import re
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from rethinkgen_tf import ops
from rethinkgen_tf.ops import _tf_impl, tf_ops
from rethinkgen_tf.ops import reference as ref

native_numpy = pytest.importorskip("rethinkgen_tf.ops.native_numpy")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_compiled_op_is_loaded():
    assert ops.NATIVE, ops.BUILD


def test_package_names_are_their_modules_names():
    """rethinkgen_tf.ops reads each public name from the module that holds it, and refuses to
    set one there (the functions read their own module's NATIVE)."""
    assert ops.corrupt_labels is tf_ops.corrupt_labels and ops.NATIVE is tf_ops.NATIVE
    assert ops.derive_seed is ref.derive_seed and ops.cpu_path() == tf_ops.cpu_path()
    assert {"corrupt_labels", "permute_pixels", "gaussian_images", "NATIVE", "BUILD",
            "derive_seed", "LIBRARY_PATH"} <= set(dir(ops))
    with pytest.raises(AttributeError, match="tf_ops.NATIVE"):
        ops.NATIVE = not tf_ops.NATIVE
    assert ops.NATIVE is tf_ops.NATIVE
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        ops.no_such_name


def test_numpy_modules_import_without_tensorflow():
    """The package loads no module of its own: the NumPy reference, the NumPy module of the
    compiled kernels and the TF-free public names work where TensorFlow is absent."""
    r = _run("""
        import sys
        import numpy as np
        import rethinkgen_tf.ops as rops
        from rethinkgen_tf.ops import native_numpy, reference
        lab, idx = np.arange(20) % 4, np.arange(20)
        assert (native_numpy.corrupt_labels(lab, idx, 0.5, 4, 1)
                == reference.corrupt_labels(lab, idx, 0.5, 4, 1)).all()
        assert rops.derive_seed is reference.derive_seed and rops.PIXEL_UNITS == ("position", "value")
        assert "tensorflow" not in sys.modules, "TensorFlow was imported"
        print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]


# ---- Philox known-answer vectors (Random123's kat_vectors, philox4x32_10) ----
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,want", KAT)
def test_philox_known_answers(ctr, key, want):
    assert tuple(ref.philox4x32(np.array(ctr, np.uint32), key)) == want
    got = native_numpy.philox4x32(np.array([ctr], np.uint32), *key)[0]
    assert tuple(int(v) for v in got) == want
    c = [tf.constant([v], tf.uint64) for v in ctr]
    k = [tf.constant(v, tf.uint64) for v in key]
    assert tuple(int(v.numpy()[0]) for v in _tf_impl.philox(*c, *k)) == want


# ---- the four implementations agree ------------------------------------
def _fallback_labels(labels, indices, p, k, seed, mode):
    return _tf_impl.corrupt_labels(tf.constant(labels), tf.constant(indices),
                                   tf.constant(p, tf.float64), tf.constant(k, tf.int64),
                                   tf.constant(seed, tf.int64), mode).numpy()


@pytest.mark.parametrize("mode", ["uniform", "permute"])
@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_labels_bit_exact(mode, p, dtype):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 777).astype(dtype)
    indices = rng.permutation(5000)[:777].astype(np.int64) + 2**33  # beyond 32 bits
    want = ref.corrupt_labels(labels, indices, p, 10, 12345, mode)
    np.testing.assert_array_equal(ops.corrupt_labels(labels, indices, p, 10, 12345, mode), want)
    np.testing.assert_array_equal(native_numpy.corrupt_labels(labels, indices, p, 10, 12345, mode), want)
    np.testing.assert_array_equal(_fallback_labels(labels, indices, p, 10, 12345, mode), want)
    if mode == "permute":
        np.testing.assert_array_equal(np.bincount(want, minlength=10), np.bincount(labels, minlength=10))


IMAGE_DTYPES = [np.uint8, np.float16, ml_dtypes.bfloat16, np.float32, np.float64]


@pytest.mark.parametrize("mode", ["shared", "per_example"])
@pytest.mark.parametrize("unit", ["position", "value"])
@pytest.mark.parametrize("dtype", IMAGE_DTYPES)
def test_pixels_bit_exact(mode, unit, dtype):
    rng = np.random.default_rng(2)
    images = (rng.random((6, 7, 5, 3)) * 255).astype(dtype)
    indices = np.array([0, 3, 9, 2**40, 17, 5])
    want = ref.permute_pixels(images, indices, -7, mode, unit)
    got = ops.permute_pixels(images, indices, -7, mode, unit).numpy()
    assert got.dtype == images.dtype
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
    np.testing.assert_array_equal(
        native_numpy.permute_pixels(images, indices, -7, mode, unit).view(np.uint8), want.view(np.uint8))
    fb = _tf_impl.permute_pixels(tf.constant(images), tf.constant(indices), tf.constant(-7, tf.int64),
                                 mode, unit).numpy()
    np.testing.assert_array_equal(fb.view(np.uint8), want.view(np.uint8))


def test_pixels_imagenet_size_and_batch_shapes():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 299, 299, 3), dtype=np.uint8)
    want = ref.permute_pixels(images, np.array([4, 11]), 5)
    np.testing.assert_array_equal(ops.permute_pixels(images, [4, 11], 5), want)
    # A single image with a scalar index, and a 2-D batch.
    np.testing.assert_array_equal(ops.permute_pixels(images[1], 11, 5), want[1])
    grid = np.stack([images, images])
    got = ops.permute_pixels(grid, [[4, 11], [4, 11]], 5).numpy()
    np.testing.assert_array_equal(got[1], want)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("shape", [(28, 28, 3), (5, 7, 1), (3, 3, 5), (1, 1, 1)])
def test_gaussian_bit_exact(dtype, shape):
    indices = np.array([0, 1, 2**35 + 3, 999])
    mean, std = np.linspace(-1, 1, shape[-1]), np.linspace(0.5, 2, shape[-1])
    want = ref.gaussian_images(indices, 9, shape, mean, std, dtype)
    tf_dtype = tf.as_dtype(dtype)
    got = ops.gaussian_images(indices, 9, shape, mean, std, tf_dtype).numpy()
    assert got.shape == (4,) + shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
    np.testing.assert_array_equal(
        native_numpy.gaussian_images(indices, 9, shape, mean, std, dtype).view(np.uint8),
        want.view(np.uint8))
    fb = _tf_impl.gaussian_images(tf.constant(indices), tf.constant(9, tf.int64),
                                  tf.constant(shape, tf.int64), tf.constant(mean, tf.float32),
                                  tf.constant(std, tf.float32), tf_dtype).numpy()
    np.testing.assert_array_equal(fb.view(np.uint8), want.view(np.uint8))


# ---- the CPU paths (generic, AVX2): same bits, chosen once per library ----
# Sizes around the vector loops' widths: 16 labels per AVX2 step, 64 lanes
# per Philox batch (labels, Fisher-Yates draws: 2 per block), 8/32 values per
# AVX2 register group, 2048-value Gaussian chunks; each with a tail.
TAIL_LABELS = [1, 15, 16, 17, 63, 64, 65, 129, 1000]
TAIL_UNITS = [(1, 1), (1, 3), (2, 64), (1, 129), (16, 16), (13, 11)]      # (H, W): P = H*W
TAIL_VALUES = [(1, 1, 1), (1, 7, 1), (1, 1, 9), (31, 1, 1), (33, 1, 1), (1, 257, 1),
               (3, 683, 1), (1, 1025, 2), (2049, 1, 1), (1, 1367, 3)]   # H*W*C values


@pytest.mark.parametrize("mode", ["uniform", "permute"])
@pytest.mark.parametrize("dtype,idx_dtype,k", [(np.int32, np.int32, 10), (np.int64, np.int64, 10),
                                               (np.int32, np.int64, 2**31 + 5),
                                               (np.int64, np.int32, 2**32)])
def test_labels_bit_exact_on_vector_tails(mode, dtype, idx_dtype, k):
    rng = np.random.default_rng(11)
    for n in TAIL_LABELS:
        labels = rng.integers(0, min(k, 2**31 - 1), n).astype(dtype)
        top = 2**31 - 4 * n if idx_dtype == np.int32 else 2**40  # high bits set, no overflow
        indices = (rng.permutation(3 * n)[:n] + top).astype(idx_dtype)
        for p in (0.3, 1.0):
            want = ref.corrupt_labels(labels, indices, p, k, -99, mode)
            np.testing.assert_array_equal(ops.corrupt_labels(labels, indices, p, k, -99, mode), want,
                                          err_msg=f"n={n} p={p}")
            np.testing.assert_array_equal(
                native_numpy.corrupt_labels(labels, indices, p, k, -99, mode), want, err_msg=f"n={n} p={p}")


@pytest.mark.parametrize("mode", ["shared", "per_example"])
@pytest.mark.parametrize("unit", ["position", "value"])
@pytest.mark.parametrize("dtype,c", [(np.uint8, 3), (ml_dtypes.bfloat16, 1), (np.float64, 4)])
def test_pixels_bit_exact_on_vector_tails(mode, unit, dtype, c):
    rng = np.random.default_rng(12)
    for h, w in TAIL_UNITS:
        images = (rng.random((3, h, w, c)) * 255).astype(dtype)
        indices = np.array([2**33 + 1, 0, 77])
        want = ref.permute_pixels(images, indices, 31, mode, unit).view(np.uint8)
        got = ops.permute_pixels(images, indices, 31, mode, unit).numpy()
        np.testing.assert_array_equal(got.view(np.uint8), want, err_msg=f"{h}x{w}")
        np.testing.assert_array_equal(
            native_numpy.permute_pixels(images, indices, 31, mode, unit).view(np.uint8), want,
            err_msg=f"{h}x{w}")


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_gaussian_bit_exact_on_vector_tails(dtype):
    indices = np.array([5, 2**35 + 3])
    for shape in TAIL_VALUES:
        mean, std = np.linspace(-2, 2, shape[-1]), np.linspace(0.25, 3, shape[-1])
        want = ref.gaussian_images(indices, -4, shape, mean, std, dtype).view(np.uint8)
        got = ops.gaussian_images(indices, -4, shape, mean, std, tf.as_dtype(dtype)).numpy()
        np.testing.assert_array_equal(got.view(np.uint8), want, err_msg=str(shape))
        np.testing.assert_array_equal(
            native_numpy.gaussian_images(indices, -4, shape, mean, std, dtype).view(np.uint8), want,
            err_msg=str(shape))


def _cpu_has(*features):
    """True/False from /proc/cpuinfo on x86-64 Linux, else None (unknown)."""
    import platform
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return None
    return all(f in flags for f in features)


def _cpu_has_avx2():
    return _cpu_has("avx2")


def _cpu_has_avx512():
    return _cpu_has("avx2", "avx512f", "avx512bw", "avx512dq", "avx512vl")


def test_cpu_path_reported_alike():
    """Both libraries read RETHINKGEN_CPU_PATH once, by the same rule
    (csrc/rethinkgen/cpu_path.h), and report the same path."""
    from rethinkgen_tf.ops import _rethinkgen_np
    path = _rethinkgen_np.cpu_path()
    assert path in ("avx512", "avx2", "generic")
    if ops.NATIVE:
        assert tf_ops._lib.rethinkgen_cpu_path().numpy().decode() == path
    request = os.environ.get("RETHINKGEN_CPU_PATH", "auto").lower()
    avx2, avx512 = _cpu_has_avx2(), _cpu_has_avx512()
    best = "avx512" if avx512 else "avx2" if avx2 else "generic"
    if request == "generic":
        assert path == "generic"
    elif request == "avx2" and avx2:
        assert path == "avx2"
    elif request in ("avx2", "avx512", "auto") and avx2 is not None and avx512 is not None:
        assert path == (request if request == "avx512" and avx512 else best)


@pytest.mark.parametrize("path", ["generic", "avx2", "avx512"])
@pytest.mark.slow
def test_bit_exact_on_each_cpu_path(path):
    """The path is fixed when the libraries load, so each one gets a process:
    every bit-exactness test of this file (ops and native_numpy against the
    NumPy reference, all three ops) runs with RETHINKGEN_CPU_PATH=path."""
    env = dict(os.environ, RETHINKGEN_CPU_PATH=path)
    env.pop("RETHINKGEN_FORCE_FALLBACK", None)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        os.path.join(REPO, "tests", "test_ops.py"), "-k",
                        "(bit_exact and not each_cpu_path) or cpu_path_reported or compiled_op_is_loaded"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    summary = r.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed, \d+ deselected in .*", summary), summary  # none skipped
    if path == "avx2" and _cpu_has_avx2() is False:
        assert "no AVX2" in out  # the one warning of the fallback to generic
    if path == "avx512" and _cpu_has_avx512() is False:
        assert "no AVX-512" in out  # the one warning of the fallback to auto's path


@pytest.mark.slow
def test_permute_label_limit_is_one_rule():
    """Mode "permute" takes < 2^31 labels: one rule, read by the OpKernel
    template every device runs (randomize_kernels.h) and by the NumPy module,
    worded alike; checked from the shape alone, before any work.  2^31 int32
    labels and indices are mapped but never touched (no copies: DLPack)."""
    code = """
        import numpy as np, tensorflow as tf
        from rethinkgen_tf.ops import _rethinkgen_np, tf_ops
        n = 2**31
        def zeros(n):  # 64-byte aligned, as a TensorFlow tensor's buffer must be
            buf = np.zeros(4 * n + 64, np.uint8)
            off = -buf.ctypes.data % 64
            return buf[off:off + 4 * n].view(np.int32)
        try:
            lab, idx = zeros(n), zeros(n)
        except MemoryError:
            print("SKIP: no address space for 2 x 8 GiB"); raise SystemExit(0)
        def tensor(a):
            return tf.experimental.dlpack.from_dlpack(a.__dlpack__())
        want = "permute mode takes < 2^31 labels, got 2147483648"
        for fn in (tf_ops._lib.rethinkgen_corrupt_labels,
                   tf.function(tf_ops._lib.rethinkgen_corrupt_labels)):
            try:
                with tf.device("/CPU:0"):
                    fn(tensor(lab), tensor(idx), 0.5, 10, 0, mode="permute")
                raise SystemExit("the op took 2^31 labels")
            except tf.errors.InvalidArgumentError as e:
                assert want in e.message, e.message
        try:
            _rethinkgen_np.corrupt_labels(lab, idx, 0.5, 10, 0, "permute", 1)
            raise SystemExit("the NumPy module took 2^31 labels")
        except ValueError as e:
            assert str(e) == want, e
        # 2^31 - 1 labels pass the rule: the op goes on to the contents
        # (an index is reported before a label).
        lab[0], idx[0] = 99, -1
        try:
            with tf.device("/CPU:0"):
                tf_ops._lib.rethinkgen_corrupt_labels(tensor(lab[:-1]), tensor(idx[:-1]), 0.5, 10, 0,
                                                      mode="permute")
            raise SystemExit("no error")
        except tf.errors.InvalidArgumentError as e:
            assert "indices must be >= 0, got indices[0] = -1" in e.message, e.message
        print("ok")
    """
    r = _run(code)
    assert r.returncode == 0, r.stderr[-3000:]
    if "SKIP" in r.stdout:
        pytest.skip(r.stdout.strip())
    assert "ok" in r.stdout, r.stdout + r.stderr[-2000:]


@pytest.mark.slow
def test_fallback_gaussian_exact_inside_tf_function():
    """Graph optimizations (grappler) must not change the fallback's rounding."""
    idx = np.arange(40)
    f = tf.function(lambda i: _tf_impl.gaussian_images(
        i, tf.constant(9, tf.int64), tf.constant([28, 28, 3], tf.int64),
        tf.constant([0.1, 0.2, 0.3]), tf.constant([1.0, 2.0, 3.0])))
    want = ref.gaussian_images(idx, 9, (28, 28, 3), [0.1, 0.2, 0.3], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(f(tf.constant(idx)).numpy(), want)


def test_gaussian_matches_exact_math_within_few_ulp():
    """The float32 Box-Muller is within a few ulp of the same formula in float64."""
    w = ref.blocks(4, ref.PURPOSE["gaussian"], 0, np.arange(20000))
    x1, x2 = w[:, 0], w[:, 1]
    z0, z1 = ref.gaussian_pair(x1, x2)
    u1 = x1.astype(np.float32) * np.float32(2.0**-32) + np.float32(2.0**-33)
    r = np.sqrt(-2 * np.log(u1.astype(np.float64)))
    theta = 2 * np.pi * x2.astype(np.float64) / 2**32
    for got, exact in ((z0, r * np.cos(theta)), (z1, r * np.sin(theta))):
        ulp = np.spacing(np.maximum(np.abs(exact), 1.0).astype(np.float32)).astype(np.float64)
        assert np.max(np.abs(got - exact) / ulp) <= 4


# ---- invariance -------------------------------------------------------
def test_independent_of_batching_order_and_threads():
    rng = np.random.default_rng(4)
    n = 300
    labels = rng.integers(0, 7, n)
    images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    idx = np.arange(n)
    full_l = ops.corrupt_labels(labels, idx, 0.6, 7, 1).numpy()
    full_p = ops.permute_pixels(images, idx, 1).numpy()
    full_g = ops.gaussian_images(idx, 1, (8, 8, 3), [0, 1, 2], [1, 1, 1]).numpy()
    order = rng.permutation(n)
    np.testing.assert_array_equal(ops.corrupt_labels(labels[order], order, 0.6, 7, 1), full_l[order])
    np.testing.assert_array_equal(ops.permute_pixels(images[order], order, 1), full_p[order])
    np.testing.assert_array_equal(ops.gaussian_images(order, 1, (8, 8, 3), [0, 1, 2], [1, 1, 1]),
                                  full_g[order])
    for lo, hi in [(0, 1), (5, 77), (200, 300)]:
        np.testing.assert_array_equal(ops.permute_pixels(images[lo:hi], idx[lo:hi], 1), full_p[lo:hi])
    for threads in (1, 2, 3):
        np.testing.assert_array_equal(native_numpy.corrupt_labels(labels, idx, 0.6, 7, 1, threads=threads), full_l)
        np.testing.assert_array_equal(native_numpy.permute_pixels(images, idx, 1, threads=threads), full_p)
        np.testing.assert_array_equal(
            native_numpy.gaussian_images(idx, 1, (8, 8, 3), [0, 1, 2], [1, 1, 1], threads=threads), full_g)
    # Through tf.data, element by element and in batches of 7.
    ds = tf.data.Dataset.from_tensor_slices((images, idx))
    per_elem = np.stack([x.numpy() for x in ds.map(lambda x, i: ops.permute_pixels(x, i, 1))])
    np.testing.assert_array_equal(per_elem, full_p)
    batched = np.concatenate([x.numpy() for x in ds.batch(7).map(lambda x, i: ops.permute_pixels(x, i, 1))])
    np.testing.assert_array_equal(batched, full_p)


def test_seeds_and_indices_give_different_draws():
    idx = np.arange(2000)
    a = ops.gaussian_images(idx, 1, (4, 4, 1), [0.0], [1.0]).numpy().reshape(2000, -1)
    b = ops.gaussian_images(idx, 2, (4, 4, 1), [0.0], [1.0]).numpy().reshape(2000, -1)
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(a[:-1].ravel(), a[1:].ravel())[0, 1]) < 0.01
    l1 = ops.corrupt_labels(np.zeros(20000, np.int64), np.arange(20000), 1.0, 10, 1).numpy()
    l2 = ops.corrupt_labels(np.zeros(20000, np.int64), np.arange(20000), 1.0, 10, 2).numpy()
    assert 0.08 < np.mean(l1 == l2) < 0.12  # independent uniform draws agree 1/K of the time


def test_tf_function_and_no_gradient():
    @tf.function
    def f(x, i):
        return ops.permute_pixels(x, i, 3, mode="shared")
    x = tf.random.uniform((2, 4, 4, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = f(x, tf.constant([0, 1], tf.int64))
    assert tape.gradient(y, x) is None
    np.testing.assert_array_equal(y, ref.permute_pixels(x.numpy(), np.array([0, 1]), 3, "shared"))


# ---- statistics (fixed seeds) -------------------------------------------
@pytest.mark.parametrize("p,k", [(0.2, 10), (0.5, 10), (1.0, 10), (0.7, 3)])
def test_label_statistics(p, k):
    n = 200_000
    labels = np.arange(n) % k
    out = ops.corrupt_labels(labels, np.arange(n), p, k, 11).numpy()
    changed = np.mean(out != labels)
    expected = p * (1 - 1 / k)
    assert abs(changed - expected) < 5 * np.sqrt(expected * (1 - expected) / n) + 1e-9
    # Among examples of class 0, the corrupted ones' new classes are uniform.
    w = ref.blocks(11, ref.PURPOSE["label_corrupt"], np.arange(n), 0)
    chosen = w[:, 0] < ref.corrupt_threshold(p)
    counts = np.bincount(out[chosen], minlength=k)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_permutation_statistics():
    n, hw = 20_000, 16
    images = np.broadcast_to(np.arange(hw, dtype=np.float32).reshape(1, 4, 4, 1), (n, 4, 4, 1))
    out = ops.permute_pixels(images, np.arange(n), 5).numpy().reshape(n, hw).astype(int)
    assert np.all(np.sort(out, axis=1) == np.arange(hw))  # every one is a permutation
    # Where each source position lands is uniform over positions.
    for src in (0, 7, 15):
        where = np.argmax(out == src, axis=1)
        assert stats.chisquare(np.bincount(where, minlength=hw)).pvalue > 1e-3
    # All 3! permutations of 3 items are equally likely.
    small = ops.permute_pixels(np.broadcast_to(np.arange(3, dtype=np.uint8).reshape(1, 1, 3, 1),
                                               (6000, 1, 3, 1)), np.arange(6000), 9).numpy()
    codes = small.reshape(6000, 3) @ np.array([9, 3, 1])
    assert len(np.unique(codes)) == 6
    assert stats.chisquare(np.unique(codes, return_counts=True)[1]).pvalue > 1e-3


def test_gaussian_moments_per_channel():
    mean, std = np.array([0.49, -2.0, 10.0]), np.array([0.25, 1.5, 0.01])
    x = ops.gaussian_images(np.arange(2000), 3, (16, 16, 3), mean, std).numpy().reshape(-1, 3)
    z = (x - mean) / std
    n = len(z)
    np.testing.assert_allclose(z.mean(0), 0, atol=5 / np.sqrt(n))
    np.testing.assert_allclose(z.std(0), 1, atol=5 / np.sqrt(2 * n))
    np.testing.assert_allclose(stats.skew(z), 0, atol=5 * np.sqrt(6 / n))
    np.testing.assert_allclose(stats.kurtosis(z), 0, atol=5 * np.sqrt(24 / n))
    assert stats.kstest(z[:, 1], "norm").pvalue > 1e-3
    assert np.abs(z).max() > 4  # no clipping


# ---- bad input ----------------------------------------------------------
def test_wrapper_errors():
    with pytest.raises(ValueError, match="corrupt_prob"):
        ops.corrupt_labels([1], [0], 1.5, 10, 0)
    with pytest.raises(ValueError, match="num_classes"):
        ops.corrupt_labels([1], [0], 0.5, 0, 0)
    with pytest.raises(ValueError, match="mode"):
        ops.corrupt_labels([1], [0], 0.5, 10, 0, mode="flip")
    with pytest.raises(ValueError, match="same shape"):
        ops.corrupt_labels([1, 2], [0], 0.5, 10, 0)
    with pytest.raises(ValueError, match="labels must be an int32"):
        ops.corrupt_labels([1.5], [0], 0.5, 10, 0)
    with pytest.raises(ValueError, match="shape"):
        ops.permute_pixels(np.zeros((4, 4), np.uint8), [0], 0)
    with pytest.raises(ValueError, match="indices must have shape"):
        ops.permute_pixels(np.zeros((2, 4, 4, 1), np.uint8), [0], 0)
    with pytest.raises(ValueError, match="images must be"):
        ops.permute_pixels(np.zeros((1, 4, 4, 1), np.int16), [0], 0)
    with pytest.raises(ValueError, match="unit"):
        ops.permute_pixels(np.zeros((1, 4, 4, 1), np.uint8), [0], 0, unit="channel")
    with pytest.raises(ValueError, match="length C"):
        ops.gaussian_images([0], 0, (4, 4, 3), [0.0], [1.0])
    with pytest.raises(ValueError, match="stddev"):
        ops.gaussian_images([0], 0, (4, 4, 1), [0.0], [-1.0])
    with pytest.raises(ValueError, match="positive"):
        ops.gaussian_images([0], 0, (4, 0, 1), [0.0], [1.0])
    with pytest.raises(ValueError, match="dtype"):
        ops.gaussian_images([0], 0, (4, 4, 1), [0.0], [1.0], dtype=tf.int32)


def test_op_errors_are_invalid_argument():
    lib = tf_ops._lib
    bad = [
        lambda: lib.rethinkgen_corrupt_labels([1, 11], [0, 1], 0.5, 10, 0),  # label >= K
        lambda: lib.rethinkgen_corrupt_labels([1, -1], [0, 1], 0.5, 10, 0),
        lambda: lib.rethinkgen_corrupt_labels([1], [-3], 0.5, 10, 0),  # negative index
        lambda: lib.rethinkgen_corrupt_labels([1], [0], -0.1, 10, 0),
        lambda: lib.rethinkgen_corrupt_labels([1], [0], float("nan"), 10, 0),
        lambda: lib.rethinkgen_corrupt_labels([1], [0], 0.5, 0, 0),
        lambda: lib.rethinkgen_corrupt_labels([1], [0], [0.5, 0.5], 10, 0),
        lambda: lib.rethinkgen_permute_pixels(np.zeros((2, 3, 3, 1), np.uint8), [0, -1], 0),
        lambda: lib.rethinkgen_gaussian_images([0], 0, [3, 3, 2], [0.0], [1.0]),
        lambda: lib.rethinkgen_gaussian_images([0], 0, [3, 3, 1], [0.0], [float("inf")]),
        lambda: lib.rethinkgen_gaussian_images([0], 0, [3, -3, 1], [0.0], [1.0]),
        lambda: lib.rethinkgen_gaussian_images([0], 0, [[3, 3, 1]], [0.0], [1.0]),
        lambda: lib.rethinkgen_gaussian_images([-2], 0, [3, 3, 1], [0.0], [1.0]),
    ]
    for call in bad:
        with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
            call()


def test_empty_inputs():
    assert ops.corrupt_labels(np.zeros(0, np.int64), np.zeros(0, np.int64), 0.5, 10, 0).shape == (0,)
    assert ops.corrupt_labels(np.zeros(0, np.int64), np.zeros(0, np.int64), 0.5, 10, 0,
                              mode="permute").shape == (0,)
    assert ops.permute_pixels(np.zeros((0, 4, 4, 3), np.uint8), np.zeros(0, np.int64), 0).shape == (0, 4, 4, 3)
    assert ops.gaussian_images(np.zeros(0, np.int64), 0, (4, 4, 3), [0] * 3, [1] * 3).shape == (0, 4, 4, 3)


def test_numpy_module_errors():
    with pytest.raises(ValueError, match="num_classes"):
        native_numpy.corrupt_labels(np.array([12]), np.array([0]), 0.5, 10, 0)
    with pytest.raises(ValueError, match="indices"):
        native_numpy.permute_pixels(np.zeros((1, 3, 3, 1), np.uint8), np.array([-1]), 0)
    with pytest.raises(ValueError, match="length C"):
        native_numpy.gaussian_images(np.array([0]), 0, (3, 3, 2), [0.0], [1.0])


@settings(max_examples=60, deadline=None)
@given(labels=st.lists(st.integers(-3, 12), max_size=20), k=st.integers(-1, 12),
       p=st.one_of(st.floats(-0.5, 1.5), st.just(float("nan"))), seed=st.integers(-2**63, 2**63 - 1),
       shift=st.integers(-2, 2**40), mode=st.sampled_from(["uniform", "permute"]))
def test_fuzz_labels(labels, k, p, seed, shift, mode):
    labels = np.array(labels, np.int64)
    idx = np.arange(len(labels), dtype=np.int64) + shift
    valid = 0 <= p <= 1 and k >= 1 and (len(labels) == 0 or (labels.min() >= 0 and labels.max() < k)) \
        and (len(idx) == 0 or idx.min() >= 0)
    try:
        got = tf_ops._lib.rethinkgen_corrupt_labels(labels, idx, p, k, seed, mode=mode).numpy()
    except tf.errors.InvalidArgumentError:
        assert not valid
        return
    assert valid
    np.testing.assert_array_equal(got, ref.corrupt_labels(labels, idx, p, k, seed, mode))


@settings(max_examples=40, deadline=None)
@given(dims=st.lists(st.integers(0, 5), min_size=0, max_size=5), idx_len=st.integers(0, 4),
       seed=st.integers(-2**63, 2**63 - 1), shape=st.lists(st.integers(-1, 4), min_size=0, max_size=4),
       c=st.integers(0, 3))
def test_fuzz_pixels_and_gaussian(dims, idx_len, seed, shape, c):
    images = np.zeros(dims, np.uint8)
    idx = np.arange(idx_len, dtype=np.int64)
    try:
        tf_ops._lib.rethinkgen_permute_pixels(images, idx, seed).numpy()
        assert len(dims) >= 3 and tuple(dims[:-3]) == (idx_len,)
    except (tf.errors.InvalidArgumentError, ValueError):
        pass
    try:
        out = tf_ops._lib.rethinkgen_gaussian_images(idx, seed, np.array(shape, np.int64),
                                                     np.zeros(c, np.float32), np.ones(c, np.float32)).numpy()
        assert out.shape == (idx_len,) + tuple(shape)
    except (tf.errors.InvalidArgumentError, ValueError):
        assert not (shape and min(shape) >= 1 and c == shape[-1])


# ---- other processes: SavedModel, fallback ----------------------------
def _run(code, env=None):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_saved_model_roundtrip(tmp_path):
    save = f"""
        import tensorflow as tf, numpy as np
        from rethinkgen_tf import ops
        class M(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
            def __call__(self, i):
                return ops.gaussian_images(i, 5, (4, 4, 3), [0.0, 1.0, 2.0], [1.0, 1.0, 1.0])
        tf.saved_model.save(M(), {str(tmp_path / 'm')!r})
        np.save({str(tmp_path / 'a.npy')!r}, M()(tf.constant([1, 2], tf.int64)).numpy())
    """
    assert _run(save).returncode == 0
    load = f"""
        import tensorflow as tf, numpy as np
        import rethinkgen_tf.ops.tf_ops  # registers the ops (rethinkgen_tf.ops alone imports no TF)
        m = tf.saved_model.load({str(tmp_path / 'm')!r})
        np.testing.assert_array_equal(m(tf.constant([1, 2], tf.int64)).numpy(), np.load({str(tmp_path / 'a.npy')!r}))
        print("ok")
    """
    r = _run(load)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


@pytest.mark.slow
def test_fallback_warns_once_and_matches():
    code = """
        import warnings, numpy as np
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            from rethinkgen_tf import ops
            from rethinkgen_tf.ops import reference as ref, tf_ops  # loads the op: warns
            import rethinkgen_tf.ops.tf_ops  # loaded already: no second warning
        msgs = [str(x.message) for x in w if "pure TensorFlow" in str(x.message)]
        assert len(msgs) == 1 and not ops.NATIVE, msgs
        lab = np.arange(50) % 10
        np.testing.assert_array_equal(ops.corrupt_labels(lab, np.arange(50), 0.5, 10, 3),
                                      ref.corrupt_labels(lab, np.arange(50), 0.5, 10, 3))
        im = np.arange(2 * 5 * 5 * 3, dtype=np.uint8).reshape(2, 5, 5, 3)
        np.testing.assert_array_equal(ops.permute_pixels(im, [3, 4], 1), ref.permute_pixels(im, np.array([3, 4]), 1))
        try:
            ops.corrupt_labels([12], [0], 0.5, 10, 3)
            raise SystemExit("no error")
        except Exception as e:
            assert "num_classes" in str(e), e
        print("ok")
    """
    r = _run(code, {"RETHINKGEN_FORCE_FALLBACK": "1"})
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]
