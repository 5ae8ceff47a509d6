"""The compiled CPU kernels on NumPy arrays, without TensorFlow.

Same results as ``rethinkgen_tf.ops`` and ``rethinkgen_tf.reference``, bit for
bit, at compiled speed (multi-threaded).  For users of other frameworks::

    from rethinkgen_tf import native_numpy as rn
    noisy = rn.corrupt_labels(labels, np.arange(len(labels)), 0.5, 10, seed=0)

Raises ImportError if the module was not built (see BUILD.md).
"""
import numpy as np

from rethinkgen_tf import _rethinkgen_np as _np_ext

philox4x32 = _np_ext.philox4x32


def corrupt_labels(labels, indices, corrupt_prob, num_classes, seed, mode="uniform", threads=0):
    return _np_ext.corrupt_labels(np.asarray(labels), np.asarray(indices), float(corrupt_prob),
                                  int(num_classes), int(seed), mode, threads)


def permute_pixels(images, indices, seed, mode="per_example", unit="position", threads=0):
    return _np_ext.permute_pixels(np.asarray(images), np.asarray(indices), int(seed), mode, unit,
                                  threads)


def gaussian_images(indices, seed, shape, mean, stddev, dtype=np.float32, threads=0):
    name = np.dtype(dtype).name
    out = _np_ext.gaussian_images(np.asarray(indices), int(seed), [int(s) for s in shape],
                                  np.asarray(mean, np.float32).reshape(-1),
                                  np.asarray(stddev, np.float32).reshape(-1), name, threads)
    return out if name == "float32" else out.view(dtype)
