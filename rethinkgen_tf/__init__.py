"""rethinkgen_tf: the randomization tests of Zhang et al. (ICLR 2017) in TensorFlow/Keras.

Submodules (imported on demand, so ``rethinkgen_tf.ops.reference`` needs NumPy only):
  ops           the randomization ops: the TensorFlow ops (compiled, or a pure-TF
                fallback), their NumPy reference (the spec), the compiled CPU kernels
                on NumPy arrays, the Keras layer that randomizes on the device
  data          sources, randomized tf.data pipelines, preprocessing
  models        the paper's models, by name
  train         training loop, run directories, results
  theory        Theorem 1 construction, Rademacher estimates
  kernels       minimum-norm kernel interpolation
  api           randomization_test(model, data, ...): the test from Python (exported here)
  user_model    your own Keras builder (module:function): its contract and identity
"""
__version__ = "0.1.0"


def __getattr__(name):
    """randomization_test and Results (rethinkgen_tf.api), imported when first used: the
    package itself loads without TensorFlow."""
    if name in ("randomization_test", "Results"):
        from rethinkgen_tf import api
        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
