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
"""
__version__ = "0.1.0"
