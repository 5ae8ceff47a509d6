"""The randomization ops in TensorFlow: label corruption, pixel permutation, Gaussian images.

Importing this module (directly, or by the first use of one of its names
through ``rethinkgen_tf.ops``) loads the compiled library
(``rethinkgen_tf/ops/_rethinkgen_ops.so``), which registers the TensorFlow ops
``RethinkgenCorruptLabels``, ``RethinkgenPermutePixels`` and
``RethinkgenGaussianImages`` in this process, so graphs, ``tf.data``
pipelines and SavedModels that contain them work.  If the library cannot be
loaded (not built, built for another TensorFlow), the functions below run a
pure-TensorFlow implementation with identical outputs (``_tf_impl``), and a
warning says so once.  Which one runs is read from ``NATIVE`` at each call.
Semantics: ``docs/randomization.md``.

Bad arguments, the same with either implementation, eagerly or in a graph
(tf.function, tf.data): what is known when the op is built (Python numbers,
NumPy arrays, eager tensors, dtypes, static shapes) raises ValueError, by the
rules of ``rethinkgen_tf.ops._checks``; what is only known when the graph runs,
and the tensors' contents (indices >= 0, labels in [0, num_classes)), raise
tf.errors.InvalidArgumentError.  A seed is an integer in [-2^63, 2^63 - 1].
"""
import json
import os
import warnings

import numpy as np
import tensorflow as tf

from rethinkgen_tf.ops import _checks, _tf_impl

_HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY_PATH = os.path.join(_HERE, "_rethinkgen_ops.so")
BUILD_INFO_PATH = os.path.join(_HERE, "_build_info.json")


def _build_info():
    try:
        with open(BUILD_INFO_PATH) as f:
            return json.load(f)
    except OSError:
        return {}


def _load():
    """Returns (module or None, build description)."""
    if os.environ.get("RETHINKGEN_FORCE_FALLBACK") == "1":
        return None, "pure TensorFlow (RETHINKGEN_FORCE_FALLBACK=1)"
    info = _build_info()
    if not info:
        return None, f"pure TensorFlow (no compiled op at {LIBRARY_PATH}; run `make setup`)"
    if info.get("tensorflow_version") != tf.__version__:
        return None, (f"pure TensorFlow (op built for TensorFlow {info.get('tensorflow_version')}, "
                      f"running {tf.__version__}; rebuild: see BUILD.md)")
    try:
        lib = tf.load_op_library(LIBRARY_PATH)
    except (tf.errors.NotFoundError, OSError) as e:
        return None, f"pure TensorFlow (could not load {LIBRARY_PATH}: {e})"
    gpu = "CPU+GPU" if info.get("gpu_kernels") else "CPU"
    return lib, f"compiled op ({gpu} kernels, TensorFlow {info['tensorflow_version']})"


_lib, BUILD = _load()
NATIVE = _lib is not None


def cpu_path():
    """The compiled op's CPU loops: "avx512", "avx2" or "generic"
    (RETHINKGEN_CPU_PATH, read once at load; BUILD.md), or None when the TF fallback is in use."""
    return _lib.rethinkgen_cpu_path().numpy().decode() if NATIVE else None
GPU_KERNELS = NATIVE and bool(_build_info().get("gpu_kernels"))
if not NATIVE:
    warnings.warn(f"rethinkgen_tf: using the {BUILD}; outputs are identical but slower.",
                  RuntimeWarning, stacklevel=2)
else:
    for _name in ("RethinkgenCorruptLabels", "RethinkgenPermutePixels",
                  "RethinkgenGaussianImages"):
        tf.no_gradient(_name)


_UNKNOWN = object()


def _static(x):
    """The value of x if known now (anything but a graph tensor), else _UNKNOWN."""
    if tf.is_tensor(x):
        if hasattr(x, "numpy") and tf.executing_eagerly():
            return x.numpy()
        return _UNKNOWN
    return x


def _graph_scalar(x, name, integer):
    """A scalar argument whose value is only known when the graph runs: its
    dtype and (if known) rank are checked now, its value by the op."""
    t = tf.convert_to_tensor(x)
    if not (t.dtype.is_integer or (not integer and t.dtype.is_floating)):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind}, got a {t.dtype.name} tensor")
    if t.shape.rank is not None and t.shape.rank != 0:
        raise ValueError(f"{name} must be a scalar, got shape {t.shape}")
    return t


def _prob(p):
    v = _static(p)
    if v is not _UNKNOWN:
        return tf.constant(_checks.corrupt_prob(v), tf.float64)  # Python float -> exact float64
    return tf.cast(_graph_scalar(p, "corrupt_prob", False), tf.float64)


def _num_classes(k):
    v = _static(k)
    if v is not _UNKNOWN:
        return tf.constant(_checks.num_classes(v), tf.int64)
    return tf.cast(_graph_scalar(k, "num_classes", True), tf.int64)


def _seed(seed):
    """The op's int64 seed: an integer in [-2^63, 2^63 - 1] (see _checks)."""
    v = _static(seed)
    if v is not _UNKNOWN:
        return tf.constant(_checks.seed(v), tf.int64)
    return tf.cast(_graph_scalar(seed, "seed", True), tf.int64)


def _int_tensor(x, name):
    t = tf.convert_to_tensor(x)
    # Lists and arrays are named by their NumPy dtype, as native_numpy names them.
    if not t.dtype.is_integer and not tf.is_tensor(x):
        _checks.int_dtype(name, np.asarray(x).dtype.name, False)
    _checks.int_dtype(name, t.dtype.name, t.dtype.is_integer)
    if t.dtype not in (tf.int32, tf.int64):
        t = tf.cast(t, tf.int64)
    return t


def _dims(shape):
    """A TensorShape as a tuple (None for unknown sizes)."""
    return tuple(shape.as_list())


def corrupt_labels(labels, indices, corrupt_prob, num_classes, seed, mode="uniform", name=None):
    """Randomizes labels, example by example, as a fixed function of (seed, index).

    mode="uniform": with probability corrupt_prob a label is replaced by a class
    drawn uniformly from all num_classes (it may equal the old one).
    mode="permute": the examples selected with probability corrupt_prob
    exchange their labels by a random permutation (class counts preserved);
    pass the whole label column (a dataset-level transform).
    """
    _checks.choice("mode", mode, _checks.LABEL_MODES)
    with tf.name_scope(name or "corrupt_labels"):
        k_t = _num_classes(num_classes)
        labels = _int_tensor(labels, "labels")
        indices = _int_tensor(indices, "indices")
        p, seed_t = _prob(corrupt_prob), _seed(seed)
        if labels.shape.rank is not None and indices.shape.rank is not None \
                and not labels.shape.is_compatible_with(indices.shape):
            _checks.same_shape(_dims(labels.shape), _dims(indices.shape))
        impl = _lib.rethinkgen_corrupt_labels if NATIVE else _tf_impl.corrupt_labels
        return impl(labels, indices, p, k_t, seed_t, mode=mode)


def permute_pixels(images, indices, seed, mode="per_example", unit="position", name=None):
    """Permutes pixels of images [..., H, W, C]; indices has shape images.shape[:-3].

    mode="shared": one permutation for every image (the paper's shuffled
    pixels); mode="per_example": an independent permutation per example index
    (random pixels).  unit="position" moves each pixel's C channels together;
    unit="value" permutes all H*W*C values.
    """
    _checks.choice("mode", mode, _checks.PIXEL_MODES)
    _checks.choice("unit", unit, _checks.PIXEL_UNITS)
    with tf.name_scope(name or "permute_pixels"):
        images = tf.convert_to_tensor(images)
        _checks.image_dtype(images.dtype.name)
        if images.shape.rank is not None:
            _checks.image_rank(_dims(images.shape))
        indices = _int_tensor(indices, "indices")
        if images.shape.rank is not None and indices.shape.rank is not None \
                and not images.shape[:-3].is_compatible_with(indices.shape):
            _checks.image_indices(_dims(images.shape), _dims(indices.shape))
        if images.shape.rank is not None and images.shape[-3:].is_fully_defined():
            _checks.image_units(*images.shape.as_list()[-3:], unit)
        seed_t = _seed(seed)
        impl = _lib.rethinkgen_permute_pixels if NATIVE else _tf_impl.permute_pixels
        return impl(images, indices, seed_t, mode=mode, unit=unit)


def gaussian_images(indices, seed, shape, mean, stddev, dtype=tf.float32, name=None):
    """One Gaussian image of `shape` [H, W, C] per example index.

    Per-channel mean and stddev (C values each); float32 Box-Muller; no
    clipping, no integer casting.  Returns indices.shape + shape.
    """
    dtype = tf.as_dtype(dtype)
    _checks.gaussian_dtype(dtype.name)
    sv = _static(shape)
    if sv is not _UNKNOWN:
        sv = _checks.gaussian_shape(sv)
    mv, dv = _static(mean), _static(stddev)
    static_params = mv is not _UNKNOWN and dv is not _UNKNOWN
    if static_params:
        mv, dv = _checks.gaussian_params(mv, dv, None if sv is _UNKNOWN else sv[-1])
    with tf.name_scope(name or "gaussian_images"):
        indices = _int_tensor(indices, "indices")
        shape_t = tf.cast(shape, tf.int64) if sv is _UNKNOWN else tf.constant(sv, tf.int64)
        # Mean and stddev: C values each, flattened (static or not).
        if static_params:
            mean_t, std_t = tf.constant(mv), tf.constant(dv)
        else:
            mean_t = tf.reshape(tf.cast(mean, tf.float32), [-1])
            std_t = tf.reshape(tf.cast(stddev, tf.float32), [-1])
        seed_t = _seed(seed)
        impl = _lib.rethinkgen_gaussian_images if NATIVE else _tf_impl.gaussian_images
        return impl(indices, seed_t, shape_t, mean_t, std_t, dtype=dtype)
