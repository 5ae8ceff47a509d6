"""rethinkgen_tf: the randomization tests of Zhang et al. (ICLR 2017) in TensorFlow/Keras.

Submodules (imported on demand, so ``rethinkgen_tf.reference`` needs NumPy only):
  ops           the randomization ops (compiled TensorFlow op, pure-TF fallback)
  reference     the NumPy reference of the same randomizations (the spec)
  native_numpy  the compiled CPU kernels on NumPy arrays
  data          sources, randomized tf.data pipelines, preprocessing
  models        the paper's models, by name
  train         training loop, run directories, results
  theory        Theorem 1 construction, Rademacher estimates
  kernels       minimum-norm kernel interpolation
"""
__version__ = "0.1.0"
