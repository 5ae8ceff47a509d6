"""The randomization ops: label corruption, pixel permutation, Gaussian images.

``import rethinkgen_tf.ops`` loads the compiled library
(``rethinkgen_tf/_rethinkgen_ops.so``), which registers the TensorFlow ops
``RethinkgenCorruptLabels``, ``RethinkgenPermutePixels`` and
``RethinkgenGaussianImages`` in this process, so graphs, ``tf.data``
pipelines and SavedModels that contain them work.  If the library cannot be
loaded (not built, built for another TensorFlow), the functions below run a
pure-TensorFlow implementation with identical outputs, and a warning says so
once.  Semantics: ``docs/randomization.md``.
"""
import json
import os
import warnings

import numpy as np
import tensorflow as tf

from rethinkgen_tf import _tf_impl
from rethinkgen_tf.reference import derive_seed  # noqa: F401  (public)

_HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY_PATH = os.path.join(_HERE, "_rethinkgen_ops.so")
BUILD_INFO_PATH = os.path.join(_HERE, "_build_info.json")

LABEL_MODES = ("uniform", "permute")
PIXEL_MODES = ("shared", "per_example")
PIXEL_UNITS = ("position", "value")


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
GPU_KERNELS = NATIVE and bool(_build_info().get("gpu_kernels"))
if not NATIVE:
    warnings.warn(f"rethinkgen_tf: using the {BUILD}; outputs are identical but slower.",
                  RuntimeWarning, stacklevel=2)
else:
    for _name in ("RethinkgenCorruptLabels", "RethinkgenPermutePixels",
                  "RethinkgenGaussianImages"):
        tf.no_gradient(_name)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _static(x):
    """The value of x if known now (Python number or eager tensor), else None."""
    if isinstance(x, (int, float, np.integer, np.floating)):
        return x
    if isinstance(x, (np.ndarray, list, tuple)):
        return np.asarray(x)
    if tf.is_tensor(x) and hasattr(x, "numpy") and tf.executing_eagerly():
        return x.numpy()
    return None


def _prob(p):
    v = _static(p)
    if v is not None:
        v = float(v)
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"corrupt_prob must be in [0, 1], got {v}")
        return tf.constant(v, tf.float64)  # Python float -> exact float64
    return tf.cast(p, tf.float64)


def _seed(seed):
    v = _static(seed)
    if v is not None:
        return tf.constant(int(v), tf.int64)
    return tf.cast(seed, tf.int64)


def _int_tensor(x, name):
    t = tf.convert_to_tensor(x)
    if t.dtype not in (tf.int32, tf.int64):
        if t.dtype.is_integer:
            t = tf.cast(t, tf.int64)
        else:
            raise ValueError(f"{name} must be an int32 or int64 tensor, got {t.dtype.name}")
    return t


def corrupt_labels(labels, indices, corrupt_prob, num_classes, seed, mode="uniform", name=None):
    """Randomizes labels, example by example, as a fixed function of (seed, index).

    mode="uniform": with probability corrupt_prob a label is replaced by a class
    drawn uniformly from all num_classes (it may equal the old one).
    mode="permute": the examples selected with probability corrupt_prob
    exchange their labels by a random permutation (class counts preserved);
    pass the whole label column (a dataset-level transform).
    """
    _check_choice("mode", mode, LABEL_MODES)
    k = _static(num_classes)
    if k is not None and not 1 <= int(k) <= 2**32:
        raise ValueError(f"num_classes must be in [1, 2^32], got {k}")
    with tf.name_scope(name or "corrupt_labels"):
        labels = _int_tensor(labels, "labels")
        indices = _int_tensor(indices, "indices")
        p, seed_t = _prob(corrupt_prob), _seed(seed)
        k_t = tf.cast(num_classes, tf.int64)
        if labels.shape.is_fully_defined() and indices.shape.is_fully_defined() \
                and labels.shape != indices.shape:
            raise ValueError(f"labels and indices must have the same shape, got "
                             f"{labels.shape} and {indices.shape}")
        if NATIVE:
            return _lib.rethinkgen_corrupt_labels(labels, indices, p, k_t, seed_t, mode=mode)
        with tf.control_dependencies(_fallback_label_checks(labels, indices, p, k_t)):
            return _tf_impl.corrupt_labels(labels, indices, p, k_t, seed_t, mode)


def permute_pixels(images, indices, seed, mode="per_example", unit="position", name=None):
    """Permutes pixels of images [..., H, W, C]; indices has shape images.shape[:-3].

    mode="shared": one permutation for every image (the paper's shuffled
    pixels); mode="per_example": an independent permutation per example index
    (random pixels).  unit="position" moves each pixel's C channels together;
    unit="value" permutes all H*W*C values.
    """
    _check_choice("mode", mode, PIXEL_MODES)
    _check_choice("unit", unit, PIXEL_UNITS)
    with tf.name_scope(name or "permute_pixels"):
        images = tf.convert_to_tensor(images)
        if images.dtype not in (tf.uint8, tf.float16, tf.bfloat16, tf.float32, tf.float64):
            raise ValueError(f"images must be uint8, float16, bfloat16, float32 or float64, "
                             f"got {images.dtype.name}")
        if images.shape.rank is not None and images.shape.rank < 3:
            raise ValueError(f"images must have shape [..., H, W, C], got {images.shape}")
        indices = _int_tensor(indices, "indices")
        if images.shape.is_fully_defined() and indices.shape.is_fully_defined() \
                and images.shape[:-3] != indices.shape:
            raise ValueError(f"indices must have shape images.shape[:-3] = {images.shape[:-3]}, "
                             f"got {indices.shape}")
        seed_t = _seed(seed)
        if NATIVE:
            return _lib.rethinkgen_permute_pixels(images, indices, seed_t, mode=mode, unit=unit)
        with tf.control_dependencies([_nonneg(indices)]):
            return _tf_impl.permute_pixels(images, indices, seed_t, mode, unit)


def gaussian_images(indices, seed, shape, mean, stddev, dtype=tf.float32, name=None):
    """One Gaussian image of `shape` [H, W, C] per example index.

    Per-channel mean and stddev (length C); float32 Box-Muller; no clipping,
    no integer casting.  Returns indices.shape + shape.
    """
    dtype = tf.as_dtype(dtype)
    if dtype not in (tf.float32, tf.float16, tf.bfloat16):
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype.name}")
    sv = _static(shape)
    if sv is not None:
        sv = np.asarray(sv).reshape(-1)
        if sv.size == 0 or np.any(sv < 1):
            raise ValueError(f"shape must be a non-empty list of positive sizes, got {list(sv)}")
    mv, dv = _static(mean), _static(stddev)
    if mv is not None and dv is not None and sv is not None:
        mv, dv = np.asarray(mv, np.float64).reshape(-1), np.asarray(dv, np.float64).reshape(-1)
        if mv.shape != (sv[-1],) or dv.shape != (sv[-1],):
            raise ValueError(f"mean and stddev must have length C = shape[-1] = {sv[-1]}, "
                             f"got {mv.size} and {dv.size}")
        if not (np.all(np.isfinite(mv)) and np.all(np.isfinite(dv)) and np.all(dv >= 0)):
            raise ValueError("mean must be finite and stddev finite and >= 0")
    with tf.name_scope(name or "gaussian_images"):
        indices = _int_tensor(indices, "indices")
        shape_t = tf.cast(shape, tf.int64)
        mean_t, std_t = tf.cast(mean, tf.float32), tf.cast(stddev, tf.float32)
        seed_t = _seed(seed)
        if NATIVE:
            return _lib.rethinkgen_gaussian_images(indices, seed_t, shape_t, mean_t, std_t,
                                                   dtype=dtype)
        checks = [_nonneg(indices),
                  tf.debugging.assert_greater_equal(std_t, 0.0, message="stddev must be >= 0"),
                  tf.debugging.assert_equal(tf.size(mean_t, tf.int64), shape_t[-1],
                                            message="mean must have length shape[-1]")]
        with tf.control_dependencies(checks):
            return _tf_impl.gaussian_images(indices, seed_t, shape_t, mean_t, std_t, dtype)


def _nonneg(indices):
    return tf.debugging.assert_non_negative(indices, message="indices must be >= 0")


def _fallback_label_checks(labels, indices, p, k):
    return [
        _nonneg(indices),
        tf.debugging.assert_equal(tf.shape(labels), tf.shape(indices),
                                  message="labels and indices must have the same shape"),
        tf.debugging.assert_greater_equal(p, tf.constant(0.0, tf.float64),
                                          message="corrupt_prob must be in [0, 1]"),
        tf.debugging.assert_less_equal(p, tf.constant(1.0, tf.float64),
                                       message="corrupt_prob must be in [0, 1]"),
        tf.debugging.assert_non_negative(labels, message="labels must be in [0, num_classes)"),
        tf.debugging.assert_less(tf.cast(labels, tf.int64), k,
                                 message="labels must be in [0, num_classes)"),
    ]
