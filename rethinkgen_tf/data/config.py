"""What a run's data is: DataConfig (the settings) and Data (the loaded pipelines).

The package's face, `rethinkgen_tf.data`, hands these names on; the pipelines
(`pipeline`, `imagenet`) import them from here, so the data layer has no
import circle.
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Callable, NamedTuple, Optional

from rethinkgen_tf.ops.randomizations import NAMES

from . import datasets
from .sources import DataError

RANDOMIZATIONS = NAMES  # the records: rethinkgen_tf.ops.randomizations
AUGMENTATIONS = ("none", "crop", "crop_flip", "imagenet")
DATASETS = datasets.NAMES  # the records: data.datasets
PERMUTE_VERSION = 2  # label_mode="permute": 2 = keyed Feistel bijection (1, Fisher-Yates throughout, is gone)
# known before reading; imagenet ignores crop
IMAGE_SIZES = {d.name: d.image_size for d in datasets.ALL if d.image_size is not None}


def check_crop(crop, height, width, where):
    """DataError unless a crop x crop (center or random) crop fits height x width images."""
    if crop is not None and (crop > height or crop > width):
        raise DataError(f"--crop={crop} is larger than the {width}x{height} images{where}: pass --crop of "
                        f"at most {min(height, width)} (the paper crops CIFAR-10 to 28), or no crop")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str = "cifar10"      # a name in DATASETS (data.datasets.NAMES)
    data_dir: Optional[str] = None  # local copy; None -> tfds
    randomize: str = "none"       # a name in RANDOMIZATIONS (ops.randomizations.NAMES)
    corrupt: float = 0.0          # label corruption probability p (train labels only); randomize="labels" means p=1
    label_mode: str = "uniform"   # uniform | permute
    pixel_unit: str = "position"  # position | value
    seed: int = 0                 # randomization seed
    shuffle_seed: int = 0         # per-epoch shuffling (and augmentation) seed
    train_size: Optional[int] = None  # first n examples in index order
    balanced: bool = False        # class-balanced subset: the first n/K examples of each class
    test_size: Optional[int] = None   # first n test examples
    crop: Optional[int] = 28      # center crop size (paper: 28); None = no crop
    standardize: bool = True      # per-image standardization
    augment: str = "none"         # none | crop | crop_flip | imagenet
    batch_size: int = 128
    deterministic: bool = True
    image_size: Optional[int] = None  # for imagenet (default 299)
    # Beyond the paper: what the test images are under pixel randomizations, and ImageNet's labels
    test_images: str = "auto"     # auto | original | randomized: test images under pixel randomizations
    num_classes: Optional[int] = None  # imagenet: number of classes (default 1000)
    label_offset: Optional[int] = None  # imagenet TFRecords: subtracted from image/class/label (default 1)
    # Derived, not set: the version of label_mode="permute"'s permutation (2: keyed Feistel bijection,
    # docs/randomization.md), None for uniform.  Recorded in config.json and the run key, so a run made
    # with an older permutation (no such entry) is never resumed or reused with this one.
    permute_version: Optional[int] = dataclasses.field(default=None, init=False)

    def __post_init__(self):
        def check(name, value, allowed):
            if value not in allowed:
                raise ValueError(f"DataConfig.{name}={value!r}; choose one of {allowed}")
        check("dataset", self.dataset, DATASETS)
        check("randomize", self.randomize, RANDOMIZATIONS)
        check("label_mode", self.label_mode, ("uniform", "permute"))
        object.__setattr__(self, "permute_version", PERMUTE_VERSION if self.label_mode == "permute" else None)
        check("pixel_unit", self.pixel_unit, ("position", "value"))
        check("augment", self.augment, AUGMENTATIONS)
        check("test_images", self.test_images, ("auto", "original", "randomized"))
        if not 0.0 <= self.corrupt <= 1.0:
            raise ValueError(f"DataConfig.corrupt={self.corrupt} must be a probability in [0, 1]")
        if self.randomize == "labels" and self.corrupt not in (0.0, 1.0):
            raise ValueError("randomize='labels' means corrupt=1; set either randomize='labels' or corrupt=p")
        if self.batch_size < 1:
            raise ValueError("DataConfig.batch_size must be >= 1")
        for name in ("seed", "shuffle_seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 <= v < 2**63:
                raise ValueError(f"DataConfig.{name}={v!r} must be an integer in [0, 2^63 - 1]")
        if self.crop is not None and (isinstance(self.crop, bool) or not isinstance(self.crop, numbers.Integral)
                                      or self.crop < 1):
            raise DataError(f"--crop={self.crop!r} (DataConfig.crop) must be a positive number of pixels, or None")
        if self.crop is not None and self.dataset in IMAGE_SIZES:
            size = IMAGE_SIZES[self.dataset]
            check_crop(self.crop, size, size, f" of {self.dataset}")

    @property
    def label_prob(self) -> float:
        """The label corruption probability actually applied to training labels."""
        return 1.0 if self.randomize == "labels" else float(self.corrupt)


class Data(NamedTuple):
    train: Any          # tf.data.Dataset: one epoch, batched, reshuffled each iteration: (images, labels)
    train_eval: Any     # whole training set in index order, no augmentation: (images, randomized, original labels)
    test: Any           # (images, true labels)
    num_train: int
    num_test: int
    num_classes: int
    input_shape: tuple
    class_names: list
    config: DataConfig
    # For resumable training (a fixed order per epoch) and the Gaussian statistics:
    # (start, stop) -> epochs start..stop-1 as one Dataset, each epoch's order fixed by (shuffle_seed, epoch),
    # each epoch built as it is reached (pipeline.each_epoch: the same cost for any number of epochs)
    train_epochs: Optional[Callable] = None
    train_indices: Any = None  # example indices of the training examples, in index order (None: streamed)
    stats: Any = None          # (mean, std) per channel of the training images in [0, 255] scale, or None
    # {"train": sha1 hex, "test": sha1 hex} of the data this run reads (pipeline.fingerprint_arrays /
    # fingerprint_files), for a resume to check that the data has not changed; None: not known
    fingerprint: Any = None
    eval_batch_size: Optional[int] = None  # the batch size of train_eval and test (None: config.batch_size)
