"""The kernel experiment's configuration: one frozen dataclass, checked when it is made.

`KernelConfig` holds every choice of `kernel_experiment` (rethinkgen_tf/kernels/experiment.py);
experiments/kernel.py builds it from its flags, field by field.  Each field is the flag of the
same name, and a bad value is a ValueError of one line that names the flag (it reaches the user
as `error: ...`, see rethinkgen_tf.entry).  What needs the file system (--out, --state_dir,
--start_from, --curve_with) is checked by the experiment, still before any work.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Tuple

from rethinkgen_tf.kernels import features as kf

# Bandwidths tried: these factors of the median pairwise distance (powers of sqrt(2), 1/8 to 2).
BANDWIDTH_GRID = (0.125, 0.177, 0.25, 0.354, 0.5, 0.707, 1.0, 1.414, 2.0)
RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # ridges tried for the regularized row (besides 0)
# Ridges of the linear kernel's ridge row, as fractions of the mean diagonal of its (centered) matrix
LINEAR_RIDGE_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
LINEAR_MAX_N = 12000  # the linear rows use a dense float64 matrix (16 n^2 bytes): up to this n
VAL_N = 5000         # held-out training images, at most ...
VAL_FRACTION = 0.2   # ... and at most this fraction of n
VAL_FIT_N = 10000    # training images the validation fits use, at most
MIN_VAL = 20         # a smaller default validation split is too noisy to choose by: defaults instead
DEFAULT_RIDGE = 1e-3
FEATURES = ("raw", "random_conv")
PREPROCESS = ("auto", "scale", "standardize")
METHODS = ("auto", "direct", "mixed")
RIDGE_SCALING = ("none", "n")


def _floats(grid):
    try:
        values = tuple(float(v) for v in grid)
    except (TypeError, ValueError):
        return None
    return values if values and all(0 < v < math.inf for v in values) else None


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """kernel_experiment's arguments (see its docstring for what each does)."""

    dataset: str = "fashion_mnist"
    data_dir: Optional[str] = None
    n: Optional[int] = None
    test_n: Optional[int] = None
    holdout: Optional[int] = None
    features: str = "raw"
    preprocess: str = "auto"
    conv_filters: int = kf.FILTERS
    conv_kernel: int = kf.PATCH
    conv_pool: int = kf.POOL
    conv_threshold: float = kf.THRESHOLD
    conv_two_sided: bool = False
    conv_whiten: bool = True
    conv_standardize: bool = True
    conv_block: int = kf.FILTER_BLOCK
    conv_filters_from: str = kf.DEFAULT_FILTERS_FROM  # summaries without the key: gaussian
    conv_filter_seed: Optional[int] = None
    bandwidth: Optional[float] = None
    bandwidth_factor: Optional[float] = None
    ridge: Optional[float] = None
    ridge_scaling: str = "none"
    val_n: Optional[int] = None
    val_fit_n: int = VAL_FIT_N
    val_loo: bool = False
    bandwidth_grid: Tuple[float, ...] = BANDWIDTH_GRID
    ridge_grid: Tuple[float, ...] = RIDGE_GRID
    linear: bool = True
    linear_ridge_grid: Tuple[float, ...] = LINEAR_RIDGE_GRID
    method: str = "auto"
    tol: float = 1e-4
    max_abs_tol: float = 1e-3
    maxiter: int = 100
    random_labels: bool = True
    seed: int = 0
    out: Optional[str] = None
    state_dir: Optional[str] = None
    keep_state: bool = False
    checkpoint_minutes: float = 10.0
    curve_filters: Tuple[int, ...] = ()
    start_from: Optional[str] = None
    curve_with: Tuple[str, ...] = ()
    plot_only: bool = False

    def __post_init__(self):
        for name in ("curve_with",):
            object.__setattr__(self, name, tuple(str(p) for p in getattr(self, name) or ()))
        if self.plot_only:  # no run: only --out and --curve_with matter
            return
        self._check()
        object.__setattr__(self, "bandwidth_grid", _floats(self.bandwidth_grid))
        object.__setattr__(self, "ridge_grid", _floats(self.ridge_grid))
        object.__setattr__(self, "linear_ridge_grid", _floats(self.linear_ridge_grid))
        object.__setattr__(self, "curve_filters", self._curve())

    @property
    def conv(self) -> dict:
        """The random conv features' settings, as feature_blocks takes them."""
        return dict(conv_filters=self.conv_filters, conv_kernel=self.conv_kernel, conv_pool=self.conv_pool,
                    conv_threshold=self.conv_threshold, conv_two_sided=self.conv_two_sided,
                    conv_whiten=self.conv_whiten, conv_standardize=self.conv_standardize,
                    conv_block=self.conv_block, conv_filters_from=self.conv_filters_from,
                    conv_filter_seed=self.conv_filter_seed)

    def replace(self, **changes) -> "KernelConfig":
        return dataclasses.replace(self, **changes)

    def _check(self):
        """The values, before any work: ValueError naming the flag."""
        for name, allowed in (("features", FEATURES), ("preprocess", PREPROCESS), ("method", METHODS),
                              ("conv_filters_from", kf.FILTERS_FROM), ("ridge_scaling", RIDGE_SCALING)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name} must be {', '.join(allowed[:-1])} or {allowed[-1]}, "
                                 f"not {getattr(self, name)!r}")
        for name in ("bandwidth", "bandwidth_factor"):
            v = getattr(self, name)
            if v is not None and not 0 < v < math.inf:
                raise ValueError(f"--{name} must be finite and > 0")
        if self.ridge is not None and not 0 <= self.ridge < math.inf:
            raise ValueError(f"--ridge must be finite and >= 0, got {self.ridge}")
        for name in ("bandwidth_grid", "ridge_grid", "linear_ridge_grid"):
            grid = getattr(self, name)
            if _floats(grid) is None:
                raise ValueError(f"--{name} must be a non-empty list of finite numbers > 0, got "
                                 f"{list(grid or []) if isinstance(grid, (list, tuple)) else grid!r}")
        for name in ("n", "test_n", "holdout", "val_n", "conv_filter_seed"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"--{name} must be >= 0, got {v}")
        if self.holdout is not None and (self.holdout < 1 or self.test_n is not None):
            raise ValueError(f"--holdout={self.holdout}: needs >= 1 held-out training images, and no --test_n "
                             "(the held-out images stand in for the test images)")
        if self.val_loo and self.val_n:
            raise ValueError(f"--val_n={self.val_n} and --val_loo exclude each other: a held-out split or "
                             "leave-one-out")
        if self.val_fit_n < 1:
            raise ValueError(f"--val_fit_n must be >= 1, got {self.val_fit_n}")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")
        for name in ("conv_filters", "conv_kernel", "conv_pool", "conv_block", "maxiter"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if not math.isfinite(self.conv_threshold):
            raise ValueError(f"--conv_threshold must be finite, got {self.conv_threshold}")
        for name in ("tol", "max_abs_tol"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"--{name} must be finite and >= 0, got {getattr(self, name)}")
        if not 0 <= self.checkpoint_minutes < math.inf:
            raise ValueError(f"--checkpoint_minutes must be finite and >= 0, got {self.checkpoint_minutes}")
        if self.start_from is not None and self.features != "random_conv":
            raise ValueError("--start_from needs --features=random_conv")
        if self.start_from is not None and not (self.out or self.state_dir):
            raise ValueError("--start_from needs --out or --state_dir (the state it continues in)")
        if self.curve_with and (self.features != "random_conv" or not self.out):
            raise ValueError("--curve_with needs --features=random_conv and --out (the curve's figure is named "
                             "after it)")

    def _curve(self) -> Tuple[int, ...]:
        """curve_filters, sorted: ValueError naming --curve_filters unless each is a multiple of
        --conv_block below --conv_filters, with random_conv features and --out."""
        try:
            fs = sorted({int(f) for f in self.curve_filters or ()})
        except (TypeError, ValueError):
            raise ValueError(f"--curve_filters must be a list of filter counts, got {list(self.curve_filters)}"
                             ) from None
        if not fs:
            return ()
        if self.features != "random_conv":
            raise ValueError("--curve_filters needs --features=random_conv")
        bad = [f for f in fs if f < 1 or f >= self.conv_filters or f % self.conv_block]
        if bad:
            raise ValueError(f"--curve_filters: {', '.join(map(str, bad))} not a multiple of "
                             f"--conv_block={self.conv_block} below --conv_filters={self.conv_filters}")
        if not self.out:
            raise ValueError("--curve_filters needs --out (each point's summary and state are named after it)")
        return tuple(fs)
