"""The compiled CPU kernels on NumPy arrays, without TensorFlow.

Same results as ``rethinkgen_tf.ops`` and ``rethinkgen_tf.ops.reference``, bit
for bit, at compiled speed (multi-threaded).  For users of other frameworks::

    from rethinkgen_tf.ops import native_numpy as rn
    noisy = rn.corrupt_labels(labels, np.arange(len(labels)), 0.5, 10, seed=0)

Arguments follow the TensorFlow op's rules (``rethinkgen_tf.ops._checks``: seeds
are integers in [-2^63, 2^63 - 1], labels and indices integer arrays, images
uint8/float16/bfloat16/float32/float64, ...); what the op refuses raises
ValueError here, with the op's wording.  ``threads``: 0 (the default) runs one
thread per CPU core, 1..MAX_THREADS that many.

Raises ImportError if the module was not built (see BUILD.md).
"""
import numpy as np

from rethinkgen_tf.ops import _checks
from rethinkgen_tf.ops import _rethinkgen_np as _np_ext

philox4x32 = _np_ext.philox4x32
cpu_path = _np_ext.cpu_path  # "avx512", "avx2" or "generic": the loops in use (RETHINKGEN_CPU_PATH)
MAX_THREADS = _np_ext.MAX_THREADS  # the module's own cap (it never starts more)


def _threads(threads):
    t = _checks.integer(threads)
    if t is None or not 0 <= t <= MAX_THREADS:
        raise ValueError(f"threads must be an integer in [0, {MAX_THREADS}] (0: one per CPU "
                         f"core), got {_checks.show(threads)}")
    return t


def _int_array(x, name):
    a = np.asarray(x)
    _checks.int_dtype(name, a.dtype.name, a.dtype.kind in "iu")
    return a


def corrupt_labels(labels, indices, corrupt_prob, num_classes, seed, mode="uniform", threads=0):
    _checks.choice("mode", mode, _checks.LABEL_MODES)
    k = _checks.num_classes(num_classes)
    labels, indices = _int_array(labels, "labels"), _int_array(indices, "indices")
    p, s = _checks.corrupt_prob(corrupt_prob), _checks.seed(seed)
    _checks.same_shape(labels.shape, indices.shape)
    return _np_ext.corrupt_labels(labels, indices, p, k, s, mode, _threads(threads))


def permute_pixels(images, indices, seed, mode="per_example", unit="position", threads=0):
    _checks.choice("mode", mode, _checks.PIXEL_MODES)
    _checks.choice("unit", unit, _checks.PIXEL_UNITS)
    images = np.asarray(images)
    _checks.image_dtype(images.dtype.name)
    _checks.image_rank(images.shape)
    indices = _int_array(indices, "indices")
    _checks.image_indices(images.shape, indices.shape)
    _checks.image_units(*images.shape[-3:], unit)
    return _np_ext.permute_pixels(images, indices, _checks.seed(seed), mode, unit,
                                  _threads(threads))


def gaussian_images(indices, seed, shape, mean, stddev, dtype=np.float32, threads=0):
    name = _checks.gaussian_dtype(np.dtype(dtype).name)
    shape = _checks.gaussian_shape(shape)
    mean, stddev = _checks.gaussian_params(mean, stddev, shape[-1])
    indices = _int_array(indices, "indices")
    out = _np_ext.gaussian_images(indices, _checks.seed(seed), list(shape), mean, stddev, name,
                                  _threads(threads))
    return out if name == "float32" else out.view(dtype)
