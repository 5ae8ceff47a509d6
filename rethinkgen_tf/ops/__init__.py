"""The randomization ops, one family: label corruption, pixel permutation, Gaussian images.

    import rethinkgen_tf.ops as rops
    noisy = rops.corrupt_labels(labels, indices, 0.5, num_classes=10, seed=0)

Modules (semantics: ``docs/randomization.md``; who holds which rule: ``docs/CONTRACTS.md``):
  tf_ops        the TensorFlow ops: the compiled library (``_rethinkgen_ops.so``, here),
                else a pure-TensorFlow fallback with identical outputs
  _tf_impl      that fallback
  reference     the NumPy reference, the specification (NumPy only)
  native_numpy  the compiled CPU kernels on NumPy arrays (``_rethinkgen_np*.so``, here; no TF)
  layers        the Keras layer that randomizes on the model's device
  _checks       the argument rules they share (NumPy only)

This package imports none of them when it loads, so ``rethinkgen_tf.ops.reference`` and
``rethinkgen_tf.ops.native_numpy`` import without TensorFlow.  The public names below are
read from the module that holds them when first used: a TensorFlow name (``rops.NATIVE``,
``rops.corrupt_labels``, ...) imports TensorFlow and ``tf_ops``, which loads the compiled
op and registers it in this process (``import rethinkgen_tf.ops.tf_ops`` does so
explicitly, e.g. before loading a SavedModel that contains the ops).  They cannot be set
here: patch them where they live (``tf_ops.NATIVE``), which is what the functions read.
"""
import importlib
import sys
import types

# public name -> the module of this package that holds it
_HOMES = {name: "tf_ops" for name in (
    "corrupt_labels", "permute_pixels", "gaussian_images", "NATIVE", "BUILD", "GPU_KERNELS",
    "cpu_path", "LIBRARY_PATH", "BUILD_INFO_PATH")}
_HOMES.update(derive_seed="reference",
              LABEL_MODES="_checks", PIXEL_MODES="_checks", PIXEL_UNITS="_checks")


def __getattr__(name):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


def __dir__():
    return sorted(set(globals()) | set(_HOMES))


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        if name in _HOMES:  # a copy here would change nothing that reads it
            raise AttributeError(f"set {__name__}.{_HOMES[name]}.{name}, the module that "
                                 f"holds {name}, not {__name__}.{name}")
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
