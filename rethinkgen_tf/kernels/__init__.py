"""Minimum-norm kernel interpolation (Zhang et al. 2017, Section 5; docs/theory.md).

    config       KernelConfig: the experiment's choices, one frozen dataclass checked when made
    features     the feature maps: raw pixels, random convolutional features (patch or Gaussian filters)
    distances    squared distances accumulated over feature blocks, checkpointed and resumable
    solvers      Gaussian kernel matrices, the direct and mixed-precision solvers, validation fits
    experiment   kernel_experiment(cfg): features, validation, the solves, the linear rows, the curve
    design       the random conv design table on held-out training images (python -m ...kernels.design)

The names below are the package's public interface (experiments/kernel.py, the tests, the docs).
"""
from rethinkgen_tf.kernels import config, distances, experiment, features, solvers  # noqa: F401
from rethinkgen_tf.kernels.config import (  # noqa: F401
    BANDWIDTH_GRID,
    DEFAULT_RIDGE,
    LINEAR_MAX_N,
    LINEAR_RIDGE_GRID,
    MIN_VAL,
    RIDGE_GRID,
    VAL_FIT_N,
    VAL_FRACTION,
    VAL_N,
    KernelConfig,
)
from rethinkgen_tf.kernels.experiment import (  # noqa: F401
    centered_gram,
    feature_blocks,
    kernel_experiment,
    linear_fit,
    memory_estimate,
    merge_curves,
    peak_rss_gib,
)
from rethinkgen_tf.kernels.features import RandomConvFeatures, raw_features  # noqa: F401
from rethinkgen_tf.kernels.solvers import (  # noqa: F401
    DenseKernel,
    Float32Cholesky,
    KernelOperator,
    LargeKernel,
    Solution,
    best,
    interpolate,
    median_distance,
    pcg,
    predict,
    rbf,
    rkhs_norm,
    solve_direct,
    sq_dists,
    validate,
    validation_split,
)
