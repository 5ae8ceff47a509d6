"""The randomization ops' argument rules, in one place, without TensorFlow.

Each rule that can be checked before a kernel runs lives here once:
``tf_ops`` (the TensorFlow ops) applies it to the arguments whose values it
knows when the op is built (Python numbers, NumPy arrays, eager tensors),
``native_numpy`` to all of its arguments, and ``layers`` to its constructor
arguments (all three in ``rethinkgen_tf.ops``).  A violation is a
one-line ValueError worded as the compiled TensorFlow op words it.

The rules that need the tensors' contents (indices >= 0, labels in
[0, num_classes)) are checked by the kernels themselves: the compiled op
(InvalidArgumentError), its pure-TensorFlow fallback (assertions, also
InvalidArgumentError) and the pybind11 module (ValueError).  The same applies
to every rule when its value is only known while a graph runs.

Seeds: the ops take an int64 seed, so a seed is an integer in
[-2^63, 2^63 - 1] (Python int, NumPy integer, 0-d integer array); floats,
bools and anything outside that range are refused rather than rounded or
wrapped.  NumPy only.
"""
import numbers
import operator

import numpy as np

LABEL_MODES = ("uniform", "permute")
PIXEL_MODES = ("shared", "per_example")
PIXEL_UNITS = ("position", "value")
IMAGE_DTYPES = ("uint8", "float16", "bfloat16", "float32", "float64")
GAUSSIAN_DTYPES = ("float32", "float16", "bfloat16")

SEED_MIN, SEED_MAX = -2**63, 2**63 - 1   # the ops' int64 seed
MAX_NUM_CLASSES = 2**32                  # uniform_index draws below m <= 2^32
MAX_PERMUTE_LABELS = 2**31               # permute mode: the GPU sort counts items in int32
MAX_PIXEL_UNITS = 2**32                  # permuted units (and channels) per image: < 2^32
MAX_GAUSSIAN_BLOCKS = 2**32              # Philox blocks per image, (H*W*C + 3) // 4: < 2^32


def show(v, limit=60):
    """A one-line, bounded repr of v for error messages."""
    s = " ".join(repr(v).split())
    return s if len(s) <= limit else s[:limit - 3] + "..."


def integer(v):
    """v as a Python int if it is an integer scalar (Python or NumPy integer,
    0-d integer array, not bool), else None."""
    if isinstance(v, (bool, np.bool_)):
        return None
    try:
        return operator.index(v)
    except TypeError:
        return None


def _real(v):
    """v as a Python float if it is a real scalar (not bool), else None."""
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iuf":
        v = v[()]
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        return None
    return float(v)


def choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def seed(v):
    s = integer(v)
    if s is None or not SEED_MIN <= s <= SEED_MAX:
        raise ValueError(f"seed must be an integer in [-2^63, 2^63 - 1], got {show(v)}")
    return s


def num_classes(v):
    k = integer(v)
    if k is None or not 1 <= k <= MAX_NUM_CLASSES:
        raise ValueError(f"num_classes must be an integer in [1, 2^32], got {show(v)}")
    return k


def corrupt_prob(v):
    p = _real(v)
    if p is None or not 0.0 <= p <= 1.0:  # also refuses NaN
        raise ValueError(f"corrupt_prob must be in [0, 1], got {show(v)}")
    return p


def int_dtype(name, dtype_name, is_integer):
    """labels / indices: integers (int32 and int64 are used as they are, other
    integer types are widened to int64)."""
    if not is_integer:
        raise ValueError(f"{name} must be an int32 or int64 tensor, got {dtype_name}")


def same_shape(labels_shape, indices_shape):
    if tuple(labels_shape) != tuple(indices_shape):
        raise ValueError(f"labels and indices must have the same shape, got "
                         f"{tuple(labels_shape)} and {tuple(indices_shape)}")


def image_dtype(dtype_name):
    if dtype_name not in IMAGE_DTYPES:
        raise ValueError(f"images must be uint8, float16, bfloat16, float32 or float64, "
                         f"got {dtype_name}")


def image_rank(images_shape):
    if len(images_shape) < 3:
        raise ValueError(f"images must have shape [..., H, W, C], got {tuple(images_shape)}")


def image_indices(images_shape, indices_shape):
    want = tuple(images_shape)[:-3]
    if tuple(indices_shape) != want:
        raise ValueError(f"indices must have shape images.shape[:-3] = {want}, "
                         f"got {tuple(indices_shape)}")


def image_units(h, w, c, unit):
    """H, W, C of the images (ints): the units permuted must number < 2^32."""
    units, channels = (h * w * c, 1) if unit == "value" else (h * w, c)
    if units >= MAX_PIXEL_UNITS or channels >= MAX_PIXEL_UNITS:
        raise ValueError("images have more than 2^32 pixels or channels")


def gaussian_dtype(dtype_name):
    if dtype_name not in GAUSSIAN_DTYPES:
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype_name}")
    return dtype_name


def gaussian_shape(shape):
    """shape [H, W, C]: a non-empty vector of positive integers; returns a tuple of ints."""
    a = np.asarray(shape) if not isinstance(shape, (list, tuple)) else None
    items = list(shape) if a is None else (list(a) if a.ndim == 1 else None)
    sizes = None if items is None else [integer(s) for s in items]
    if not sizes or any(s is None or s < 1 for s in sizes):
        raise ValueError(f"shape must be a non-empty list of positive sizes, got {show(shape)}")
    n = 1
    for s in sizes:
        n *= s
    if (n + 3) // 4 >= MAX_GAUSSIAN_BLOCKS:
        raise ValueError("images have more than 2^34 values")
    return tuple(sizes)


def gaussian_params(mean, stddev, channels=None):
    """Per-channel mean and stddev: C values each (any shape, flattened), as
    float32 finite, stddev >= 0.  Returns them as float32 vectors."""
    with np.errstate(over="ignore", invalid="ignore"):
        m = np.asarray(mean, np.float32).reshape(-1)
        s = np.asarray(stddev, np.float32).reshape(-1)
    if channels is not None and (m.size != channels or s.size != channels):
        raise ValueError(f"mean and stddev must have length C = shape[-1] = {channels}, "
                         f"got {m.size} and {s.size}")
    bad = np.flatnonzero(~np.isfinite(m))
    if bad.size:
        raise ValueError(f"mean[{bad[0]}] is not finite")
    bad = np.flatnonzero(~(np.isfinite(s) & (s >= 0)))
    if bad.size:
        raise ValueError(f"stddev[{bad[0]}] must be finite and >= 0, got {s[bad[0]]}")
    return m, s
