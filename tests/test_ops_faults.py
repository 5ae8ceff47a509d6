"""Faults of the randomization ops.

1. The pure-TensorFlow fallback (what ``rethinkgen_tf.ops`` runs when the
   compiled op cannot be loaded) works in graphs (tf.function, tf.data.map,
   the Keras layer) bit for bit like the compiled op, and refuses what the
   compiled op refuses, with the same exception types.
2. ``native_numpy`` applies the op's argument rules (ValueError, the op's
   wording), bounds ``threads`` and takes the op's seed range.
3. Malformed inputs raise ValueError / InvalidArgumentError in the compiled
   op, the fallback and native_numpy; nothing crashes.

The fallback runs in this process: ``ops`` picks the implementation per call
from ``tf_ops.NATIVE`` (the module that holds it), which the `backend` fixture sets.
"""
import os
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf

from rethinkgen_tf import ops
from rethinkgen_tf.ops import _checks, _tf_impl, layers, tf_ops
from rethinkgen_tf.ops import reference as ref

native_numpy = pytest.importorskip("rethinkgen_tf.ops.native_numpy")
keras = pytest.importorskip("keras")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IAE = tf.errors.InvalidArgumentError
NAN, INF = float("nan"), float("inf")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

@pytest.fixture(params=["compiled", "fallback"])
def backend(request, monkeypatch):
    """Runs ops through the compiled op or through the pure-TF fallback."""
    if request.param == "compiled" and tf_ops._lib is None:
        pytest.skip("compiled op not built")
    monkeypatch.setattr(tf_ops, "NATIVE", request.param == "compiled")
    return request.param


def _compiled(fn, *args, **kwargs):
    """fn run eagerly with the compiled op (the expected bits)."""
    saved = tf_ops.NATIVE
    tf_ops.NATIVE = True
    try:
        return np.asarray(fn(*args, **kwargs))
    finally:
        tf_ops.NATIVE = saved


def _run(where, fn, *arrays):
    """fn(*arrays) eagerly, in a tf.function, or in a tf.data map (one element
    holding all arrays, and elementwise / in batches of 5 where given)."""
    if where == "eager":
        return np.asarray(fn(*[tf.constant(a) for a in arrays]))
    if where == "tf_function":
        return tf.function(fn)(*[tf.constant(a) for a in arrays]).numpy()
    if where == "dataset_map":
        ds = tf.data.Dataset.from_tensors(tuple(arrays)).map(fn)
        return next(iter(ds)).numpy()
    if where == "dataset_map_batched":
        n = len(arrays[0])
        ds = tf.data.Dataset.from_tensor_slices(tuple(arrays)).batch(5).map(fn)
        out = np.concatenate([x.numpy() for x in ds])
        assert len(out) == n
        return out
    raise AssertionError(where)


def _bits(x):
    return np.ascontiguousarray(x).view(np.uint8)


# ---- 1. the fallback in graphs ------------------------------------------------
WHERE = ["eager", "tf_function", "dataset_map", "dataset_map_batched"]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("mode", ["uniform", "permute"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_fallback_labels_in_graphs_equal_compiled_op(backend, where, mode, dtype):
    if mode == "permute" and where == "dataset_map_batched":
        pytest.skip("permute is a whole-column transform")
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 10, 64).astype(dtype)
    idx = rng.permutation(1000)[:64].astype(np.int64) + 2**33
    got = _run(where, lambda l, i: ops.corrupt_labels(l, i, 0.45, 10, 12345, mode), labels, idx)
    want = ref.corrupt_labels(labels, idx, 0.45, 10, 12345, mode)
    assert got.dtype == labels.dtype
    np.testing.assert_array_equal(got, want)
    if tf_ops._lib is not None:
        np.testing.assert_array_equal(
            got, _compiled(ops.corrupt_labels, labels, idx, 0.45, 10, 12345, mode))


@pytest.mark.parametrize("p", [0.0, 1e-12, 0.3, 1 - 1e-12, 1.0])
def test_fallback_threshold_from_a_graph_tensor(backend, p):
    """corrupt_prob only known when the graph runs: same threshold as ref."""
    labels, idx = np.arange(3000) % 7, np.arange(3000)
    f = tf.function(lambda q: ops.corrupt_labels(labels, idx, q, 7, 3))
    np.testing.assert_array_equal(f(tf.constant(p, tf.float64)),
                                  ref.corrupt_labels(labels, idx, p, 7, 3))


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("mode,unit", [("shared", "position"), ("per_example", "value")])
def test_fallback_pixels_in_graphs_equal_compiled_op(backend, where, mode, unit):
    rng = np.random.default_rng(8)
    images = rng.integers(0, 256, (11, 5, 4, 3)).astype(np.uint8)
    idx = np.array([0, 3, 9, 2**40, 17, 5, 1, 2, 4, 6, 8])
    got = _run(where, lambda x, i: ops.permute_pixels(x, i, -7, mode, unit), images, idx)
    want = ref.permute_pixels(images, idx, -7, mode, unit)
    np.testing.assert_array_equal(got, want)
    if tf_ops._lib is not None:
        np.testing.assert_array_equal(
            got, _compiled(ops.permute_pixels, images, idx, -7, mode, unit))


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16])
def test_fallback_gaussian_in_graphs_equal_compiled_op(backend, where, dtype):
    idx = np.array([0, 1, 2**35 + 3, 999, 5, 6, 7])
    mean, std = [0.1, -0.2, 0.3], [1.0, 2.0, 0.5]
    got = _run(where, lambda i: ops.gaussian_images(i, 9, (3, 5, 3), mean, std,
                                                    tf.as_dtype(dtype)), idx)
    want = ref.gaussian_images(idx, 9, (3, 5, 3), mean, std, dtype)
    np.testing.assert_array_equal(_bits(got), _bits(want))
    if tf_ops._lib is not None:
        compiled = _compiled(ops.gaussian_images, idx, 9, (3, 5, 3), mean, std, tf.as_dtype(dtype))
        np.testing.assert_array_equal(_bits(got), _bits(compiled))


def test_fallback_label_layer(backend):
    """RandomizeOnDevice("labels") eagerly, in a tf.function and in a Keras model."""
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 10, 40).astype(np.int64)
    idx = np.arange(40, dtype=np.int64) + 10**6
    want = ref.corrupt_labels(labels, idx, 0.4, 10, 77)
    layer = layers.RandomizeOnDevice("labels", 77, num_classes=10, corrupt_prob=0.4)
    np.testing.assert_array_equal(layer((tf.constant(labels), tf.constant(idx))), want)
    step = tf.function(lambda l, i: layer((l, i)))
    np.testing.assert_array_equal(step(tf.constant(labels), tf.constant(idx)), want)
    lab_in = keras.Input(shape=(), dtype="int64")
    idx_in = keras.Input(shape=(), dtype="int64")
    model = keras.Model([lab_in, idx_in], layer((lab_in, idx_in)))
    got = model.predict([labels, idx], batch_size=7, verbose=0)
    np.testing.assert_array_equal(got, want)


GAUSSIAN_BAD = [
    ([NAN, 0.0], [1.0, 1.0], r"mean\[0\] is not finite"),
    ([0.0, INF], [1.0, 1.0], r"mean\[1\] is not finite"),
    ([0.0, -INF], [1.0, 1.0], r"mean\[1\] is not finite"),
    ([0.0, 0.0], [1.0, -1.0], r"stddev\[1\] must be finite and >= 0, got -1"),
    ([0.0, 0.0], [NAN, 1.0], r"stddev\[0\] must be finite and >= 0, got nan"),
    ([0.0, 0.0], [INF, 1.0], r"stddev\[0\] must be finite and >= 0, got inf"),
    ([1e39, 0.0], [1.0, 1.0], r"mean\[0\] is not finite"),  # finite in float64, not float32
]


@pytest.mark.parametrize("mean,std,match", GAUSSIAN_BAD)
@pytest.mark.parametrize("where", ["eager", "tf_function", "dataset_map"])
def test_gaussian_bad_mean_stddev_refused(backend, where, mean, std, match):
    """Static values: ValueError; graph tensors: InvalidArgumentError (the op's)."""
    idx = np.array([0, 1])
    if where == "eager":
        with pytest.raises(ValueError, match=match):
            ops.gaussian_images(idx, 1, (2, 2, 2), mean, std)
        with pytest.raises(ValueError, match=match):
            ops.gaussian_images(idx, 1, (2, 2, 2), tf.constant(np.array(mean)),
                                tf.constant(np.array(std)))
        with pytest.raises(ValueError, match=match):
            tf.function(lambda i: ops.gaussian_images(i, 1, (2, 2, 2), mean, std))(idx)
        return
    with np.errstate(over="ignore"):
        m32, s32 = np.array(mean, np.float32), np.array(std, np.float32)
    with pytest.raises(IAE, match=match):
        _run(where, lambda i, m, s: ops.gaussian_images(i, 1, (2, 2, 2), m, s), idx, m32, s32)


LABEL_BAD_GRAPH = [  # (labels, indices, p, k, message): values only known in the graph
    ([1, 2], [0, 1], 1.5, 10, r"corrupt_prob must be in \[0, 1\], got 1.5"),
    ([1, 2], [0, 1], -0.5, 10, r"corrupt_prob must be in \[0, 1\], got -0.5"),
    ([1, 2], [0, 1], NAN, 10, r"corrupt_prob must be in \[0, 1\], got nan"),
    ([1, 2], [0, 1], 0.5, 0, r"num_classes must be in \[1, 2\^32\], got 0"),
    ([1, 2], [0, 1], 0.5, 2**32 + 1, r"num_classes must be in \[1, 2\^32\], got 4294967297"),
    ([1, 12], [0, 1], 0.5, 10, r"labels must be in \[0, num_classes=10\), got labels\[1\] = 12"),
    ([1, -1], [0, 1], 0.5, 10, r"labels must be in \[0, num_classes=10\), got labels\[1\] = -1"),
    ([1, 2], [0, -4], 0.5, 10, r"indices must be >= 0, got indices\[1\] = -4"),
]


@pytest.mark.parametrize("labels,indices,p,k,match", LABEL_BAD_GRAPH)
@pytest.mark.parametrize("where", ["tf_function", "dataset_map"])
@pytest.mark.parametrize("mode", ["uniform", "permute"])
def test_labels_bad_values_in_graph_are_invalid_argument(backend, where, mode, labels, indices,
                                                         p, k, match):
    args = (np.array(labels), np.array(indices), np.float64(p), np.int64(k))
    with pytest.raises(IAE, match=match):
        _run(where, lambda l, i, q, c: ops.corrupt_labels(l, i, q, c, 0, mode), *args)


# ---- 2. native_numpy: the op's rules ----------------------------------------
def _subprocess(code, env=None):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                          env=dict(os.environ, **(env or {})), capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_native_threads_too_many_is_value_error_not_abort():
    """threads=10**5 used to abort the process (SIGABRT): now a ValueError, and
    the module itself, called directly, caps its threads and finishes."""
    r = _subprocess("""
        import numpy as np
        from rethinkgen_tf.ops import _rethinkgen_np as ext, native_numpy as rn
        n = 200_000
        labels, idx = np.arange(n) % 10, np.arange(n)
        try:
            rn.corrupt_labels(labels, idx, 0.5, 10, 0, threads=10**5)
            raise SystemExit("no error")
        except ValueError as e:
            print("ValueError:", e)
        want = rn.corrupt_labels(labels, idx, 0.5, 10, 0, threads=1)
        got = ext.corrupt_labels(labels, idx, 0.5, 10, 0, "uniform", 10**5)
        assert (got == want).all()
        print("ok")
    """)
    assert r.returncode == 0, (r.returncode, r.stderr[-3000:])
    assert f"ValueError: threads must be an integer in [0, {native_numpy.MAX_THREADS}]" in r.stdout
    assert r.stdout.strip().endswith("ok")


@pytest.mark.parametrize("threads", [-1, 1.5, 2**70, "2", True, None])
def test_native_threads_refused(threads):
    msg = (rf"^threads must be an integer in \[0, {native_numpy.MAX_THREADS}\] "
           r"\(0: one per CPU core\), got ")
    with pytest.raises(ValueError, match=msg):
        native_numpy.corrupt_labels([1], [0], 0.5, 10, 0, threads=threads)
    with pytest.raises(ValueError, match=msg):
        native_numpy.permute_pixels(np.zeros((1, 2, 2, 1), np.uint8), [0], 0, threads=threads)
    with pytest.raises(ValueError, match=msg):
        native_numpy.gaussian_images([0], 0, (2, 2, 1), [0.0], [1.0], threads=threads)


@pytest.mark.parametrize("threads", [0, 1, 3, "max"])
def test_native_threads_accepted(threads):
    threads = native_numpy.MAX_THREADS if threads == "max" else threads
    assert 1 <= native_numpy.MAX_THREADS <= 4096
    idx = np.arange(50)
    np.testing.assert_array_equal(
        native_numpy.corrupt_labels(idx % 3, idx, 0.5, 3, 1, threads=threads),
        ref.corrupt_labels(idx % 3, idx, 0.5, 3, 1))


API = ["compiled", "fallback", "native"]


def _api(name, monkeypatch):
    if name == "native":
        return native_numpy
    if name == "compiled" and tf_ops._lib is None:
        pytest.skip("compiled op not built")
    monkeypatch.setattr(tf_ops, "NATIVE", name == "compiled")
    return ops


@pytest.mark.parametrize("api", API)
@pytest.mark.parametrize("seed", [-2**63, 2**63 - 1, 0, np.int64(-5), np.uint64(7), np.array(3)])
def test_seed_range_accepted(api, seed, monkeypatch):
    m = _api(api, monkeypatch)
    idx = np.array([0, 1, 2**40])
    np.testing.assert_array_equal(np.asarray(m.gaussian_images(idx, seed, (2, 3, 1), [0.0], [1.0])),
                                  ref.gaussian_images(idx, int(seed), (2, 3, 1), [0.0], [1.0]))
    lab = np.array([1, 2, 3])
    np.testing.assert_array_equal(np.asarray(m.corrupt_labels(lab, idx, 0.5, 4, seed)),
                                  ref.corrupt_labels(lab, idx, 0.5, 4, int(seed)))


BAD_SEEDS = [2**63, -2**63 - 1, 2**70, -2**70, np.uint64(2**64 - 1), 1.5, 3.0, True, "3", None,
             np.array([1, 2]), [1]]


@pytest.mark.parametrize("api", API)
@pytest.mark.parametrize("seed", BAD_SEEDS, ids=[_checks.show(s) for s in BAD_SEEDS])
def test_seed_out_of_range_one_line_value_error(api, seed, monkeypatch):
    m = _api(api, monkeypatch)
    want = f"seed must be an integer in [-2^63, 2^63 - 1], got {_checks.show(seed)}"
    calls = [lambda: m.corrupt_labels([1], [0], 0.5, 10, seed),
             lambda: m.permute_pixels(np.zeros((1, 2, 2, 1), np.uint8), [0], seed),
             lambda: m.gaussian_images([0], seed, (2, 2, 1), [0.0], [1.0])]
    for call in calls:
        with pytest.raises(ValueError) as e:
            call()
        assert str(e.value) == want


def test_seed_tensor_in_graph(backend):
    f = tf.function(lambda s: ops.gaussian_images([0, 1], s, (2, 2, 1), [0.0], [1.0]))
    np.testing.assert_array_equal(f(tf.constant(-2**63, tf.int64)),
                                  ref.gaussian_images([0, 1], -2**63, (2, 2, 1), [0.0], [1.0]))
    with pytest.raises(ValueError, match="seed must be an integer, got a float32 tensor"):
        f(tf.constant(1.0))
    with pytest.raises(ValueError, match=r"seed must be a scalar, got shape \(2,\)"):
        f(tf.constant([1, 2], tf.int64))


# Arguments the op refuses before running: the same ValueError, word for word,
# from ops (either backend) and native_numpy.
IMG = np.zeros((2, 3, 3, 1), np.uint8)
SAME_ERRORS = [
    ("permute_pixels", (np.zeros((2, 3, 3, 1), np.int32), [0, 1], 0), {},
     "images must be uint8, float16, bfloat16, float32 or float64, got int32"),
    ("permute_pixels", (np.zeros((2, 3, 3, 1), np.int16), [0, 1], 0), {}, "got int16"),
    ("permute_pixels", (np.zeros((2, 3, 3, 1), bool), [0, 1], 0), {}, "got bool"),
    ("permute_pixels", (np.zeros((2, 3, 3, 1), np.int64), [0, 1], 0), {}, "got int64"),
    ("permute_pixels", (np.zeros((3, 3), np.uint8), [0], 0), {},
     "images must have shape [..., H, W, C], got (3, 3)"),
    ("permute_pixels", (np.zeros((), np.float32), [0], 0), {},
     "images must have shape [..., H, W, C], got ()"),
    ("permute_pixels", (IMG, [0], 0), {},
     "indices must have shape images.shape[:-3] = (2,), got (1,)"),
    ("permute_pixels", (IMG, [[0, 1]], 0), {},
     "indices must have shape images.shape[:-3] = (2,), got (1, 2)"),
    ("permute_pixels", (IMG, [0.0, 1.0], 0), {},
     "indices must be an int32 or int64 tensor, got float64"),
    ("permute_pixels", (IMG, [0, 1], 0), {"mode": "all"},
     "mode must be one of ('shared', 'per_example'), got 'all'"),
    ("permute_pixels", (IMG, [0, 1], 0), {"unit": "channel"},
     "unit must be one of ('position', 'value'), got 'channel'"),
    ("corrupt_labels", ([1.5], [0], 0.5, 10, 0), {},
     "labels must be an int32 or int64 tensor, got float64"),
    ("corrupt_labels", ([True], [0], 0.5, 10, 0), {},
     "labels must be an int32 or int64 tensor, got bool"),
    ("corrupt_labels", ([1, 2], [0], 0.5, 10, 0), {},
     "labels and indices must have the same shape, got (2,) and (1,)"),
    ("corrupt_labels", ([[1, 2]], [0, 1], 0.5, 10, 0), {},
     "labels and indices must have the same shape, got (1, 2) and (2,)"),
    ("corrupt_labels", ([1], [0], 0.5, 0, 0), {},
     "num_classes must be an integer in [1, 2^32], got 0"),
    ("corrupt_labels", ([1], [0], 0.5, -3, 0), {},
     "num_classes must be an integer in [1, 2^32], got -3"),
    ("corrupt_labels", ([1], [0], 0.5, 2**32 + 1, 0), {},
     "num_classes must be an integer in [1, 2^32], got 4294967297"),
    ("corrupt_labels", ([1], [0], 0.5, 2.5, 0), {},
     "num_classes must be an integer in [1, 2^32], got 2.5"),
    ("corrupt_labels", ([1], [0], 1.5, 10, 0), {}, "corrupt_prob must be in [0, 1], got 1.5"),
    ("corrupt_labels", ([1], [0], NAN, 10, 0), {}, "corrupt_prob must be in [0, 1], got nan"),
    ("corrupt_labels", ([1], [0], [0.5, 0.5], 10, 0), {},
     "corrupt_prob must be in [0, 1], got [0.5, 0.5]"),
    ("corrupt_labels", ([1], [0], 0.5, 10, 0), {"mode": "flip"},
     "mode must be one of ('uniform', 'permute'), got 'flip'"),
    ("gaussian_images", ([0], 0, (4, 4, 1), [0.0], [1.0]), {"dtype": "int32"},
     "dtype must be float32, float16 or bfloat16, got int32"),
    ("gaussian_images", ([0], 0, (4, 0, 1), [0.0], [1.0]), {},
     "shape must be a non-empty list of positive sizes, got (4, 0, 1)"),
    ("gaussian_images", ([0], 0, (), [0.0], [1.0]), {},
     "shape must be a non-empty list of positive sizes, got ()"),
    ("gaussian_images", ([0], 0, [[3, 3, 1]], [0.0], [1.0]), {},
     "shape must be a non-empty list of positive sizes, got [[3, 3, 1]]"),
    ("gaussian_images", ([0], 0, (4, 4.5, 1), [0.0], [1.0]), {},
     "shape must be a non-empty list of positive sizes, got (4, 4.5, 1)"),
    ("gaussian_images", ([0], 0, (2**17, 2**17, 1), [0.0], [1.0]), {},
     "images have more than 2^34 values"),
    ("gaussian_images", ([0], 0, (2**40, 2**40, 2**40), [0.0], [1.0]), {},
     "images have more than 2^34 values"),
    ("gaussian_images", ([0], 0, (4, 4, 3), [0.0], [1.0]), {},
     "mean and stddev must have length C = shape[-1] = 3, got 1 and 1"),
    ("gaussian_images", ([0], 0, (4, 4, 1), [NAN], [1.0]), {}, "mean[0] is not finite"),
    ("gaussian_images", ([0], 0, (4, 4, 2), [0.0, 1.0], [1.0, -2.0]), {},
     "stddev[1] must be finite and >= 0, got -2.0"),
    ("gaussian_images", ([0.0], 0, (4, 4, 1), [0.0], [1.0]), {},
     "indices must be an int32 or int64 tensor, got float64"),
]


@pytest.mark.parametrize("api", ["compiled", "fallback"])
@pytest.mark.parametrize("fn,args,kwargs,message", SAME_ERRORS,
                         ids=[f"{c[0]}-{c[3][:40]}" for c in SAME_ERRORS])
def test_native_and_op_refuse_alike(api, fn, args, kwargs, message, monkeypatch):
    m = _api(api, monkeypatch)
    with pytest.raises(ValueError) as from_op:
        getattr(m, fn)(*args, **kwargs)
    with pytest.raises(ValueError) as from_native:
        getattr(native_numpy, fn)(*args, **kwargs)
    assert message in str(from_op.value)
    assert str(from_native.value) == str(from_op.value)
    assert "\n" not in str(from_op.value)


# ---- 3. malformed inputs: raise, never crash --------------------------------
# (name, op, args, kind).  kind says who refuses it:
#   "static": the argument's value or shape; ValueError eagerly, in a graph
#             InvalidArgumentError if only the value is unknown ("value") or
#             ValueError at trace time if the shape is known wrong ("shape");
#   "content": the tensors' contents; InvalidArgumentError in TF, always;
#   "ok": valid (including empty arrays); compared with the reference.
MALFORMED = [
    ("labels-negative-index", "corrupt_labels", ([1, 2], [0, -1], 0.5, 10, 0), "content"),
    ("labels-negative-index-permute", "corrupt_labels", ([1, 2], [0, -1], 0.5, 10, 0, "permute"),
     "content"),
    ("labels-too-big", "corrupt_labels", ([1, 10], [0, 1], 0.5, 10, 0), "content"),
    ("labels-negative", "corrupt_labels", ([-1, 2], [0, 1], 0.5, 10, 0, "permute"), "content"),
    ("labels-num-classes-0", "corrupt_labels", ([0], [0], 0.5, 0, 0), "value"),
    ("labels-num-classes-negative", "corrupt_labels", ([0], [0], 0.5, -7, 0), "value"),
    ("labels-num-classes-2^32+1", "corrupt_labels", ([0], [0], 0.5, 2**32 + 1, 0), "value"),
    ("labels-prob-negative", "corrupt_labels", ([0], [0], -0.1, 10, 0), "value"),
    ("labels-prob-nan", "corrupt_labels", ([0], [0], NAN, 10, 0), "value"),
    ("labels-prob-vector", "corrupt_labels", ([0], [0], [0.5, 0.5], 10, 0), "shape"),
    ("labels-num-classes-vector", "corrupt_labels", ([0], [0], 0.5, [10], 0), "shape"),
    ("labels-seed-vector", "corrupt_labels", ([0], [0], 0.5, 10, [1, 2]), "shape"),
    ("labels-shape-mismatch", "corrupt_labels", ([1, 2], [0, 1, 2], 0.5, 10, 0), "shape"),
    ("labels-rank-mismatch", "corrupt_labels", ([[1, 2]], [0, 1], 0.5, 10, 0), "shape"),
    ("labels-empty", "corrupt_labels", (np.zeros(0, np.int64), np.zeros(0, np.int64), 0.5, 10, 0),
     "ok"),
    ("labels-empty-permute", "corrupt_labels",
     (np.zeros((0, 3), np.int32), np.zeros((0, 3), np.int64), 0.5, 10, 0, "permute"), "ok"),
    ("labels-scalar", "corrupt_labels", (np.int64(3), np.int64(5), 1.0, 10, 1), "ok"),
    ("labels-2d", "corrupt_labels", (np.arange(6).reshape(2, 3), np.arange(6).reshape(2, 3),
                                     0.7, 6, 2), "ok"),
    ("pixels-rank-2", "permute_pixels", (np.zeros((3, 3), np.uint8), [0], 0), "shape"),
    ("pixels-rank-0", "permute_pixels", (np.zeros((), np.float32), [0], 0), "shape"),
    ("pixels-indices-shape", "permute_pixels", (IMG, [0, 1, 2], 0), "shape"),
    ("pixels-indices-rank", "permute_pixels", (IMG, [[0], [1]], 0), "shape"),
    ("pixels-seed-vector", "permute_pixels", (IMG, [0, 1], [3]), "shape"),
    ("pixels-negative-index", "permute_pixels", (IMG, [0, -5], 0), "content"),
    ("pixels-negative-index-shared", "permute_pixels", (IMG, [-5, 0], 0, "shared"), "content"),
    ("pixels-empty-batch", "permute_pixels", (np.zeros((0, 4, 4, 3), np.uint8),
                                              np.zeros(0, np.int64), 0), "ok"),
    ("pixels-empty-height", "permute_pixels", (np.zeros((2, 0, 4, 3), np.float32), [0, 1], 0),
     "ok"),
    ("pixels-empty-channels", "permute_pixels", (np.zeros((2, 2, 2, 0), np.float32), [0, 1], 0,
                                                 "per_example", "value"), "ok"),
    ("pixels-single-image", "permute_pixels", (np.arange(27, dtype=np.uint8).reshape(3, 3, 3),
                                               np.int64(4), 1), "ok"),
    ("gaussian-shape-zero", "gaussian_images", ([0], 0, [4, 0, 1], [0.0], [1.0]), "value"),
    ("gaussian-shape-negative", "gaussian_images", ([0], 0, [4, -4, 1], [0.0], [1.0]), "value"),
    ("gaussian-shape-empty", "gaussian_images", ([0], 0, np.zeros(0, np.int64), [0.0], [1.0]),
     "value"),
    ("gaussian-shape-2d", "gaussian_images", ([0], 0, [[3, 3, 1]], [0.0], [1.0]), "shape"),
    ("gaussian-mean-length", "gaussian_images", ([0], 0, [3, 3, 2], [0.0], [1.0]), "value"),
    ("gaussian-mean-nan", "gaussian_images", ([0], 0, [3, 3, 1], [NAN], [1.0]), "value"),
    ("gaussian-std-negative", "gaussian_images", ([0], 0, [3, 3, 1], [0.0], [-1.0]), "value"),
    ("gaussian-std-inf", "gaussian_images", ([0], 0, [3, 3, 1], [0.0], [INF]), "value"),
    ("gaussian-seed-vector", "gaussian_images", ([0], [1, 2], [3, 3, 1], [0.0], [1.0]), "shape"),
    ("gaussian-negative-index", "gaussian_images", ([0, -2], 0, [3, 3, 1], [0.0], [1.0]),
     "content"),
    ("gaussian-empty-indices", "gaussian_images", (np.zeros(0, np.int64), 0, [4, 4, 3],
                                                   [0.0] * 3, [1.0] * 3), "ok"),
    ("gaussian-2d-indices", "gaussian_images", (np.arange(6).reshape(2, 3), 5, [2, 2, 1], [0.5],
                                                [2.0]), "ok"),
    ("gaussian-scalar-mean", "gaussian_images", ([3], 5, [2, 2, 1], 0.5, 2.0), "ok"),
]
ARRAY_DTYPES = {"corrupt_prob": np.float64, "num_classes": np.int64, "seed": np.int64,
                "shape": np.int64, "mean": np.float32, "stddev": np.float32}
PARAMS = {"corrupt_labels": ("labels", "indices", "corrupt_prob", "num_classes", "seed"),
          "permute_pixels": ("images", "indices", "seed"),
          "gaussian_images": ("indices", "seed", "shape", "mean", "stddev")}


def _reference(fn, args):
    if fn == "permute_pixels" and np.asarray(args[0]).size == 0:
        return np.asarray(args[0])  # nothing to permute (ref cannot reshape empty images)
    return getattr(ref, fn)(*args)


def _call(api, where, fn, args):
    """Runs ops.fn / native_numpy.fn with the malformed args.  In the graph
    modes every tensor argument is a tf.function argument (values unknown
    when traced; "graph_unknown_rank": shapes unknown too)."""
    if api == "native":
        return getattr(native_numpy, fn)(*args)
    names = PARAMS[fn]
    tensors, attrs = args[:len(names)], args[len(names):]
    if where == "eager":
        return getattr(ops, fn)(*args).numpy()
    arrays = [np.asarray(a, ARRAY_DTYPES.get(n)) for a, n in zip(tensors, names)]
    spec = [tf.TensorSpec(None if where == "graph_unknown_rank" else a.shape, tf.as_dtype(a.dtype))
            for a in arrays]
    f = tf.function(lambda *t: getattr(ops, fn)(*t, *attrs), input_signature=spec)
    return f(*arrays).numpy()


@pytest.mark.parametrize("api,where", [(a, w) for a in ("compiled", "fallback")
                                       for w in ("eager", "graph", "graph_unknown_rank")]
                         + [("native", "eager")])
@pytest.mark.parametrize("name,fn,args,kind", MALFORMED, ids=[c[0] for c in MALFORMED])
@pytest.mark.slow
def test_malformed_inputs_raise(api, where, name, fn, args, kind, monkeypatch):
    _api(api, monkeypatch)
    if kind == "ok":
        got = _call(api, where, fn, args)
        want = _reference(fn, args)
        assert got.shape == want.shape
        np.testing.assert_array_equal(_bits(got), _bits(want))
        return
    if api == "native":
        expected = ValueError
    elif kind == "content" or where == "graph_unknown_rank":
        expected = IAE
    elif where == "eager" or kind == "shape":
        expected = ValueError
    else:
        expected = IAE
    with pytest.raises(expected):
        _call(api, where, fn, args)


@pytest.mark.slow
def test_forced_fallback_in_tf_data_and_layer():
    """RETHINKGEN_FORCE_FALLBACK=1 (ops decides at import): labels through
    tf.data.map and the Keras layer, and a NaN mean in a graph, as the op."""
    r = _subprocess("""
        import warnings
        warnings.simplefilter("ignore")
        import numpy as np, tensorflow as tf
        from rethinkgen_tf import ops
        from rethinkgen_tf.ops import layers, reference as ref
        assert not ops.NATIVE
        lab, idx = np.arange(30) % 4, np.arange(30)
        ds = tf.data.Dataset.from_tensor_slices((lab, idx)).batch(7).map(
            lambda l, i: ops.corrupt_labels(l, i, 0.5, 4, 8))
        got = np.concatenate(list(ds.as_numpy_iterator()))
        np.testing.assert_array_equal(got, ref.corrupt_labels(lab, idx, 0.5, 4, 8))
        layer = layers.RandomizeOnDevice("labels", 8, num_classes=4, corrupt_prob=0.5)
        np.testing.assert_array_equal(tf.function(layer)((lab, idx)), got)
        f = tf.function(lambda m: ops.gaussian_images([0], 1, (2, 2, 1), m, [1.0]))
        try:
            f(tf.constant([float("nan")]))
            raise SystemExit("no error")
        except tf.errors.InvalidArgumentError as e:
            assert "mean[0] is not finite" in str(e), e
        print("ok")
    """, env={"RETHINKGEN_FORCE_FALLBACK": "1"})
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


@pytest.mark.slow
def test_fallback_checks_run_before_allocating():
    """A shape of 2^34 values in a graph is refused before any work (the
    fallback would otherwise build [2^32] Philox counters).  In a subprocess
    with an address-space limit, so a regression cannot take the machine."""
    r = _subprocess("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (12 << 30, 12 << 30))
        import tensorflow as tf
        from rethinkgen_tf import ops
        from rethinkgen_tf.ops import tf_ops
        tf_ops.NATIVE = False
        f = tf.function(lambda s: ops.gaussian_images(tf.zeros([0], tf.int64), 0, s, [0.0], [1.0]))
        try:
            f(tf.constant([2**17, 2**17, 1], tf.int64))
            raise SystemExit("no error")
        except tf.errors.InvalidArgumentError as e:
            assert "images have more than 2^34 values" in str(e), e
        print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


NEG_DENORMAL = -2.2250738585e-313


def test_a_negative_denormal_probability_is_refused_everywhere():
    """TensorFlow's CPU threads run with denormals-are-zero, where -2e-313 >= 0
    holds; the op, the TF fallback (in a graph) and the NumPy module still
    refuse it, as they refuse any p < 0 (found by test_ops.py's fuzz test)."""
    labels, idx = np.array([1, 2], np.int64), np.array([0, 1], np.int64)
    with pytest.raises(tf.errors.InvalidArgumentError, match="corrupt_prob must be in"):
        tf_ops._lib.rethinkgen_corrupt_labels(labels, idx, NEG_DENORMAL, 3, 0, mode="uniform")
    graph = tf.function(lambda p: _tf_impl.corrupt_labels(labels, idx, p, 3, 0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="corrupt_prob must be in"):
        graph(tf.constant(NEG_DENORMAL, tf.float64))
    assert (graph(tf.constant(-0.0, tf.float64)).numpy() == labels).all()
    with pytest.raises(ValueError, match="corrupt_prob must be in"):
        native_numpy.corrupt_labels(labels, idx, NEG_DENORMAL, 3, 0)
